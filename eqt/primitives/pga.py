"""Embedding Euclidean objects into the projective algebra G(3,0,1), with GATr's conventions.

Plane-based PGA (Roelfs & De Keninck; Dorst), blade order of :mod:`eqt.primitives.clifford`
(``1, e0, e1, e2, e3, e01, e02, e03, e12, e13, e23, e012, e013, e023, e123, e0123``):

- point ``(x, y, z)``: ``e123 = 1, e023 = -x, e013 = y, e012 = -z`` (indices 14, 13, 12, 11);
- oriented plane through ``position`` with ``normal``: the normal on ``e1..e3`` moved by the
  translation to ``position``; its ``e1..e3`` part is the (rotation-covariant) normal;
- translation by ``t``: the versor ``1 - ½ t_i e0i``;
- rotation ``R``: the rotor with GATr's quaternion signs, quaternion ``(x, y, z, w)`` to ``[0] = w,
  [8] = -z, [9] = y, [10] = -x`` (``e12, e13, e23``); an improper ``R`` gives the odd versor
  ``rotor(-R) e123`` (``e123`` is the point at the origin, whose sandwich is the point inversion);
- scalar: ``[0]``, pseudoscalar: ``[15]``.

A Euclidean motion ``x -> R x + t`` (``R`` orthogonal, reflections included) acts on the basis
vectors ``(e0, e1, e2, e3)`` (planes ``n.x = d`` are ``n_i e_i - d e0``) by the matrix of
:func:`euclidean_vector_action`; multivectors transform by its outermorphism
(:class:`eqt.reps.actions.Multivector`). Points then pick up ``det R``: a reflection maps the
embedded point to minus the embedding of the reflected point, which :func:`extract_point` removes by
dividing by ``e123``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eqt.primitives.clifford import Algebra, sandwich
from eqt.primitives.rotations import orthogonal_versor
from eqt.primitives.rotations import quaternion_to_rotor as _quaternion_to_rotor

__all__ = ["PGA", "embed_point", "extract_point", "embed_translation", "embed_oriented_plane",
           "extract_oriented_plane", "euclidean_vector_action", "embed_rotation", "quaternion_to_rotor"]

PGA = Algebra(3, 0, 1)


def _check3(x: Tensor, name: str) -> None:
    if x.shape[-1] != 3:
        raise ValueError(f"{name} must have a last axis of 3 (x, y, z), got shape {tuple(x.shape)}")


def embed_point(x: Tensor) -> Tensor:
    """Points ``(..., 3)`` to trivectors ``(..., 16)``."""
    _check3(x, "points")
    mv = x.new_zeros(*x.shape[:-1], 16)
    mv[..., 14] = 1.0
    mv[..., 13] = -x[..., 0]
    mv[..., 12] = x[..., 1]
    mv[..., 11] = -x[..., 2]
    return mv


def extract_point(mv: Tensor, threshold: float = 1e-3) -> Tensor:
    """Trivectors ``(..., 16)`` to points ``(..., 3)``, dividing by ``e123`` (clamped at ``threshold``)."""
    if mv.shape[-1] != 16:
        raise ValueError(f"PGA multivectors need a last axis of 16, got shape {tuple(mv.shape)}")
    w = mv[..., 14]
    w = torch.where(w.abs() < threshold, torch.full_like(w, threshold) * torch.where(w < 0, -1.0, 1.0), w)
    return torch.stack([-mv[..., 13], mv[..., 12], -mv[..., 11]], dim=-1) / w.unsqueeze(-1)


def embed_translation(t: Tensor) -> Tensor:
    """Translations ``(..., 3)`` to even versors ``1 - ½ t_i e0i`` ``(..., 16)``."""
    _check3(t, "translations")
    mv = t.new_zeros(*t.shape[:-1], 16)
    mv[..., 0] = 1.0
    mv[..., 5:8] = -0.5 * t
    return mv


def embed_oriented_plane(normal: Tensor, position: Tensor) -> Tensor:
    """Planes through ``position (..., 3)`` with ``normal (..., 3)`` to vectors ``(..., 16)``."""
    _check3(normal, "normals")
    _check3(position, "positions")
    mv = normal.new_zeros(*normal.shape[:-1], 16)
    mv[..., 2:5] = normal
    return sandwich(PGA, embed_translation(position), mv)


def extract_oriented_plane(mv: Tensor) -> Tensor:
    """The ``e1..e3`` part ``(..., 3)``: the normal of a plane (rotation-covariant, translation-invariant)."""
    if mv.shape[-1] != 16:
        raise ValueError(f"PGA multivectors need a last axis of 16, got shape {tuple(mv.shape)}")
    return mv[..., 2:5]


def euclidean_vector_action(rotation: Tensor, translation: Tensor) -> Tensor:
    """Matrix ``(4, 4)`` of ``x -> R x + t`` on the basis vectors ``(e0, e1, e2, e3)``.

    The plane ``n.x = d`` (vector ``n_i e_i - d e0``) moves to ``(R n).x = d + (R n).t``, so
    ``n -> R n`` and the ``e0`` coefficient ``c -> c - (R n).t``.

    Args:
        rotation: ``(3, 3)`` orthogonal matrix (``det = ±1``).
        translation: ``(3,)``.

    Returns:
        ``(4, 4)`` matrix ``M``.
    """
    m = rotation.new_zeros(4, 4)
    m[0, 0] = 1.0
    m[1:, 1:] = rotation
    m[0, 1:] = -(translation @ rotation)
    return m


def quaternion_to_rotor(quaternion: Tensor) -> Tensor:
    """Quaternions ``(..., 4)`` ``(x, y, z, w)`` to rotors ``(..., 16)``: ``[0]=w, [8]=-z, [9]=y, [10]=-x``.

    GATr's ``embed_rotation``: a unit quaternion of the rotation ``R`` (Hamilton convention, see
    :mod:`eqt.primitives.rotations`) gives a unit rotor whose sandwich moves points ``x -> R x``.
    """
    return _quaternion_to_rotor(PGA, quaternion)


def embed_rotation(rotation: Tensor) -> Tensor:
    """Orthogonal matrices ``(..., 3, 3)`` to unit versors ``(..., 16)`` fixing the origin.

    ``det R = +1``: the even rotor :func:`quaternion_to_rotor` of the matrix's quaternion;
    ``det R = -1``: the odd versor ``rotor(-R) e123``. Either way the sandwich acts as the
    outermorphism of ``euclidean_vector_action(R, 0)``, so
    ``extract_point(sandwich(PGA, V, embed_point(x))) == R @ x``.

    Args:
        rotation: ``(..., 3, 3)`` orthogonal matrices (proper and improper may be mixed).

    Returns:
        ``(..., 16)`` versors.
    """
    return orthogonal_versor(PGA, rotation)
