"""Rotation matrices, unit quaternions and the rotors of the algebras G(3,0,0), G(3,0,1), G(4,1,0).

The one place where rotations are converted; :mod:`eqt.primitives.vga`, :mod:`eqt.primitives.pga`
and :mod:`eqt.primitives.cga` build their ``embed_rotation`` from :func:`orthogonal_versor`.

Conventions:

- A rotation matrix ``R`` acts on column vectors, ``v -> R @ v`` (as in :mod:`eqt.reps.groups`).
- Quaternions are stored ``(x, y, z, w)`` (``i, j, k`` then the real part; scipy's and GATr's order),
  Hamilton convention: ``q = (sin(θ/2) u, cos(θ/2))`` is the rotation by ``θ`` about the unit axis
  ``u``, right-handed. :func:`rotation_to_quaternion` returns the representative with ``w >= 0``.
- The rotor of ``q`` (GATr's ``embed_rotation``): scalar ``w``, ``e12 = -z``, ``e13 = y``,
  ``e23 = -x``, i.e. ``w - (x e23 + y e31 + z e12) = exp(-θ/2 I u)`` with ``I = e123``, where
  ``e1, e2, e3`` are the three Euclidean basis vectors (positions ``r, r+1, r+2`` of the algebra:
  after the null vector in G(3,0,1)). Its sandwich rotates ``e1..e3`` by ``R`` and fixes the other
  basis vectors.
- :func:`haar_rotations` samples rotations in NumPy float64, for the seeded data generators of
  :mod:`eqt.data`.
- An improper ``R`` (``det R = -1``) is the point inversion ``-I`` composed with the rotation ``-R``;
  its versor is the odd ``rotor(-R) e123``, whose (twisted) sandwich maps ``e1..e3`` by ``R`` and
  fixes the other basis vectors.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from eqt.primitives.clifford import Algebra, geometric_product

__all__ = [
    "rotation_to_quaternion",
    "quaternion_to_rotation",
    "quaternion_to_rotor",
    "orthogonal_versor",
    "haar_rotations",
]


def _check_matrix(r: Tensor) -> None:
    if r.dim() < 2 or r.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must have last axes (3, 3), got shape {tuple(r.shape)}")


def _check_quaternion(q: Tensor) -> None:
    if q.dim() == 0 or q.shape[-1] != 4:
        raise ValueError(f"quaternions must have a last axis of 4 (x, y, z, w), got shape {tuple(q.shape)}")


def _check_euclidean(alg: Algebra) -> None:
    if alg.p < 3:
        raise ValueError(f"{alg!r} has fewer than 3 Euclidean basis vectors to rotate")


def rotation_to_quaternion(rotation: Tensor) -> Tensor:
    """Unit quaternions ``(..., 4)`` ``(x, y, z, w)`` with ``w >= 0`` of proper rotations ``(..., 3, 3)``.

    Shepperd's method: of ``w, x, y, z`` the component with the largest magnitude is computed from
    the diagonal with a square root (its argument is then ``>= 1``) and the others from sums and
    differences of off-diagonal entries divided by it, so the result is accurate for every angle,
    including ``π``. The input is not re-orthogonalised; the result is normalised.

    Args:
        rotation: ``(..., 3, 3)`` rotation matrices with ``det = +1``.

    Returns:
        ``(..., 4)`` quaternions ``(x, y, z, w)``.

    Raises:
        ValueError: for a wrong shape, or if some ``det R < 0`` (use :func:`orthogonal_versor`).
    """
    _check_matrix(rotation)
    if bool((torch.linalg.det(rotation) < 0).any()):
        raise ValueError("rotation_to_quaternion needs proper rotations (det R = +1), got an improper one")
    r = rotation
    r00, r01, r02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    r10, r11, r12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    r20, r21, r22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    # 4 q_k^2 for k = w, x, y, z; the largest is >= 1
    sq = torch.stack([1 + r00 + r11 + r22, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22], dim=-1)
    big = 0.5 * sq.clamp(min=1e-6).sqrt()  # q_k for each candidate pivot k (only the argmax is used)
    s = 0.25 / big  # 1 / (4 q_k)
    a, b, c = r21 - r12, r02 - r20, r10 - r01  # 4 w x, 4 w y, 4 w z
    d, e, f = r01 + r10, r02 + r20, r12 + r21  # 4 x y, 4 x z, 4 y z
    cand = torch.stack([
        torch.stack([a * s[..., 0], b * s[..., 0], c * s[..., 0], big[..., 0]], dim=-1),  # pivot w
        torch.stack([big[..., 1], d * s[..., 1], e * s[..., 1], a * s[..., 1]], dim=-1),  # pivot x
        torch.stack([d * s[..., 2], big[..., 2], f * s[..., 2], b * s[..., 2]], dim=-1),  # pivot y
        torch.stack([e * s[..., 3], f * s[..., 3], big[..., 3], c * s[..., 3]], dim=-1),  # pivot z
    ], dim=-2)  # (..., 4 pivots, 4 components)
    pivot = sq.argmax(dim=-1)
    q = torch.gather(cand, -2, pivot[..., None, None].expand(*pivot.shape, 1, 4)).squeeze(-2)
    q = q * torch.where(q[..., 3:] < 0, -1.0, 1.0).to(q.dtype)
    return q / q.norm(dim=-1, keepdim=True)


def quaternion_to_rotation(quaternion: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` of quaternions ``(..., 4)`` ``(x, y, z, w)`` (normalised first).

    Args:
        quaternion: ``(..., 4)`` non-zero quaternions.

    Returns:
        ``(..., 3, 3)`` proper rotations ``R`` with ``v -> R @ v``.
    """
    _check_quaternion(quaternion)
    q = quaternion / quaternion.norm(dim=-1, keepdim=True)
    x, y, z, w = q.unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def quaternion_to_rotor(alg: Algebra, quaternion: Tensor) -> Tensor:
    """Rotors ``(..., alg.dim)`` of quaternions ``(..., 4)`` ``(x, y, z, w)`` (GATr's convention).

    Scalar ``w``, ``e12 = -z``, ``e13 = y``, ``e23 = -x`` on the Euclidean vectors ``e1, e2, e3``
    (positions ``alg.r .. alg.r + 2``). Not normalised: a unit quaternion gives a unit rotor.

    Args:
        alg: an algebra with at least 3 positive basis vectors (G(3,0,0), G(3,0,1), G(4,1,0)).
        quaternion: ``(..., 4)`` quaternions.

    Returns:
        ``(..., alg.dim)`` even multivectors.
    """
    _check_quaternion(quaternion)
    _check_euclidean(alg)
    e1, e2, e3 = alg.r, alg.r + 1, alg.r + 2
    mv = quaternion.new_zeros(*quaternion.shape[:-1], alg.dim)
    mv[..., 0] = quaternion[..., 3]
    mv[..., alg.blade_index((e1, e2))] = -quaternion[..., 2]
    mv[..., alg.blade_index((e1, e3))] = quaternion[..., 1]
    mv[..., alg.blade_index((e2, e3))] = -quaternion[..., 0]
    return mv


def orthogonal_versor(alg: Algebra, rotation: Tensor) -> Tensor:
    """Unit versors ``(..., alg.dim)`` acting on ``e1..e3`` by orthogonal ``R (..., 3, 3)``.

    ``det R = +1``: the rotor of :func:`rotation_to_quaternion` (even). ``det R = -1``: the odd
    versor ``rotor(-R) e123``. Either way ``sandwich(alg, V, x)`` is the outermorphism of the vector
    map that is ``R`` on ``e1..e3`` and the identity on the other basis vectors. Batches may mix
    proper and improper matrices (:func:`eqt.primitives.clifford.sandwich` reads each parity).

    Args:
        alg: an algebra with at least 3 positive basis vectors.
        rotation: ``(..., 3, 3)`` orthogonal matrices.

    Returns:
        ``(..., alg.dim)`` versors.
    """
    _check_matrix(rotation)
    _check_euclidean(alg)
    sign = torch.where(torch.linalg.det(rotation) < 0, -1.0, 1.0).to(rotation.dtype)
    rotor = quaternion_to_rotor(alg, rotation_to_quaternion(rotation * sign[..., None, None]))
    pseudo = rotation.new_zeros(alg.dim)
    pseudo[alg.blade_index((alg.r, alg.r + 1, alg.r + 2))] = 1.0
    odd = geometric_product(alg, rotor, pseudo)
    return torch.where(sign[..., None] < 0, odd, rotor)


def haar_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 3, 3)`` Haar-random proper rotations (NumPy float64), from uniform unit quaternions.

    Draws one ``rng.standard_normal((n, 4))`` call, read as ``(w, x, y, z)`` and normalised (a
    normalised Gaussian vector is uniform on the unit 3-sphere, whose image in SO(3) is the Haar
    measure), and returns the matrices of :func:`quaternion_to_rotation`'s formula. The seeded
    data sets of :mod:`eqt.data.nbody`, :mod:`eqt.data.rigid` and :mod:`eqt.data.scenes` depend
    on these exact draws and operations: changing them changes the data.

    Args:
        rng: the random generator to draw from.
        n: number of rotations (>= 0).

    Returns:
        ``(n, 3, 3)`` float64 rotation matrices with ``det = +1``, ``v -> R @ v``.
    """
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=-2,
    )
