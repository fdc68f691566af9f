"""Embedding Euclidean objects into the conformal algebra G(4,1,0) (C-GATr), mirroring :mod:`~eqt.primitives.pga`.

Basis vectors (positions 0..4, indices 1..5 of a multivector): ``e1, e2, e3, e4`` square to +1,
``e5`` to -1. Blades in the order of :mod:`eqt.primitives.clifford` (32 of them; e.g. ``e12, e13,
e14, e15, e23, ...`` at 6..15). The null vectors (Dorst's conventions)

- ``e_inf = e4 + e5`` (point at infinity) and ``e_o = (e5 - e4) / 2`` (origin),

satisfy ``e_inf² = e_o² = 0`` and ``e_inf · e_o = -1``; conversely ``e4 = ½ e_inf - e_o``,
``e5 = ½ e_inf + e_o``. Embeddings:

- point ``x``: the null vector ``x + e_o + ½|x|² e_inf`` (``e4 = ½|x|² - ½``, ``e5 = ½|x|² + ½``).
  Its weight ``w = -<P, e_inf> = P_e5 - P_e4`` is 1; ``<P(x), P(y)> = -½|x - y|²``. Unlike PGA's
  trivector points, a reflection maps ``P(x)`` to exactly ``P(x')`` (no sign);
- direction (free vector) ``v``: the **bivector** ``v ∧ e_inf`` (``v_i`` on both ``e_i4`` and
  ``e_i5``). It is invariant under translations and rotates (and reflects) with ``R``, like a
  displacement. The grade-1 ``v`` is not used for directions: it is the plane through the origin
  with normal ``v`` and picks up ``(R v · t) e_inf`` under translations;
- oriented plane ``n·x = d``: the vector ``n + d e_inf`` (``d = n·position``); a point lies on it
  iff ``<P, plane> = n·x - d = 0``. Its ``e1..e3`` part is the normal;
- translation by ``t``: the versor ``1 - ½ t e_inf`` (bivector ``-½ t ∧ e_inf``, the analogue of
  PGA's ``1 - ½ t_i e0i``); ``sandwich(CGA, T, P(x))`` is ``P(x + t)``;
- rotation ``R``: the rotor on ``e12, e13, e23`` of :func:`eqt.primitives.rotations.orthogonal_versor`
  (GATr's quaternion signs: scalar ``w``, ``e12 = -z``, ``e13 = y``, ``e23 = -x``); an improper ``R``
  gives the odd versor ``rotor(-R) e123``;
- scalar ``[0]``, pseudoscalar ``[31]``.

A Euclidean motion ``x -> R x + t`` (``R`` orthogonal, reflections included) acts on the basis
vectors ``(e1, .., e5)`` by the matrix of :func:`euclidean_vector_action` (an isometry of the metric
``diag(1, 1, 1, 1, -1)``); multivectors transform by its outermorphism
(:class:`eqt.reps.actions.Multivector`), which equals the sandwich with the versors above. The
metric reflection (:func:`eqt.reps.groups.metric_reflection`, as in ``Pin(4, 1, 0,
subgroup="euclidean")``) in the unit vector ``n + d e_inf`` is exactly (sign +1) the action of the
mirror ``x -> x - 2 (n·x - d) n``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eqt.primitives.clifford import Algebra
from eqt.primitives.rotations import orthogonal_versor

__all__ = ["CGA", "E_INF", "E_ORIGIN", "embed_point", "extract_point", "point_distance_squared",
           "embed_vector", "extract_vector", "embed_translation", "embed_rotation", "embed_oriented_plane",
           "extract_oriented_plane", "euclidean_vector_action"]

CGA = Algebra(4, 1, 0)

E_INF = (0.0, 0.0, 0.0, 1.0, 1.0)
"""Coefficients of ``e_inf`` on the basis vectors ``(e1, .., e5)`` (multivector indices 1..5)."""
E_ORIGIN = (0.0, 0.0, 0.0, -0.5, 0.5)
"""Coefficients of ``e_o`` on the basis vectors ``(e1, .., e5)`` (multivector indices 1..5)."""

_E4, _E5 = 4, 5  # multivector indices of the basis vectors e4, e5
_WEDGE_E4 = tuple(CGA.blade_index((i, 3)) for i in range(3))  # e14, e24, e34
_WEDGE_E5 = tuple(CGA.blade_index((i, 4)) for i in range(3))  # e15, e25, e35


def _check3(x: Tensor, name: str) -> None:
    if x.dim() == 0 or x.shape[-1] != 3:
        raise ValueError(f"{name} must have a last axis of 3 (x, y, z), got shape {tuple(x.shape)}")


def _check_mv(mv: Tensor) -> None:
    if mv.dim() == 0 or mv.shape[-1] != 32:
        raise ValueError(f"CGA multivectors need a last axis of 32, got shape {tuple(mv.shape)}")


def _weight(mv: Tensor, threshold: float | None) -> Tensor:
    """``w = -<mv, e_inf> = mv_e5 - mv_e4`` ``(...)``, its magnitude clamped below at ``threshold``."""
    w = mv[..., _E5] - mv[..., _E4]
    if threshold is None:
        return w
    return torch.where(w.abs() < threshold, torch.full_like(w, threshold) * torch.where(w < 0, -1.0, 1.0), w)


def embed_point(x: Tensor) -> Tensor:
    """Points ``(..., 3)`` to null vectors ``x + e_o + ½|x|² e_inf`` ``(..., 32)``."""
    _check3(x, "points")
    mv = x.new_zeros(*x.shape[:-1], 32)
    half_sq = 0.5 * (x * x).sum(-1)
    mv[..., 1:4] = x
    mv[..., _E4] = half_sq - 0.5
    mv[..., _E5] = half_sq + 0.5
    return mv


def extract_point(mv: Tensor, threshold: float = 1e-3) -> Tensor:
    """Vectors ``(..., 32)`` to points ``(..., 3)``: the ``e1..e3`` part divided by the weight.

    The weight ``w = -<mv, e_inf> = mv_e5 - mv_e4`` (1 for :func:`embed_point`) is clamped in
    magnitude at ``threshold``, keeping its sign, as in :func:`eqt.primitives.pga.extract_point`.
    """
    _check_mv(mv)
    return mv[..., 1:4] / _weight(mv, threshold).unsqueeze(-1)


def point_distance_squared(p: Tensor, q: Tensor, threshold: float = 1e-3) -> Tensor:
    """Squared Euclidean distance ``-2 <P, Q> / (w_P w_Q)`` ``(...)`` of embedded points ``(..., 32)``.

    Only the grade-1 parts matter. For ``P = embed_point(x)``, ``Q = embed_point(y)`` it is
    ``|x - y|²``; it is invariant under :func:`euclidean_vector_action` (and scale-invariant in
    ``P`` and ``Q``). Weights are clamped as in :func:`extract_point`.

    Args:
        p: ``(..., 32)`` points.
        q: ``(..., 32)`` points (broadcast against ``p``).
        threshold: lower bound on the magnitude of each weight.

    Returns:
        ``(...)`` squared distances (broadcast shape, no trailing axis).
    """
    _check_mv(p)
    _check_mv(q)
    pq = (p[..., 1:5] * q[..., 1:5]).sum(-1) - p[..., _E5] * q[..., _E5]
    return -2.0 * pq / (_weight(p, threshold) * _weight(q, threshold))


def embed_vector(v: Tensor) -> Tensor:
    """Directions ``(..., 3)`` to translation-invariant bivectors ``v ∧ e_inf`` ``(..., 32)``."""
    _check3(v, "vectors")
    mv = v.new_zeros(*v.shape[:-1], 32)
    mv[..., _WEDGE_E4] = v
    mv[..., _WEDGE_E5] = v
    return mv


def extract_vector(mv: Tensor) -> Tensor:
    """The ``e_i ∧ e_inf`` coefficients ``½ (mv_ei4 + mv_ei5)`` ``(..., 3)`` of bivectors ``(..., 32)``."""
    _check_mv(mv)
    return 0.5 * (mv[..., _WEDGE_E4] + mv[..., _WEDGE_E5])


def embed_translation(t: Tensor) -> Tensor:
    """Translations ``(..., 3)`` to even versors ``1 - ½ t e_inf`` ``(..., 32)``."""
    _check3(t, "translations")
    mv = t.new_zeros(*t.shape[:-1], 32)
    mv[..., 0] = 1.0
    mv[..., _WEDGE_E4] = -0.5 * t
    mv[..., _WEDGE_E5] = -0.5 * t
    return mv


def embed_rotation(rotation: Tensor) -> Tensor:
    """Orthogonal matrices ``(..., 3, 3)`` to unit versors ``(..., 32)`` fixing ``e4, e5`` (the origin).

    ``det R = +1``: an even rotor on ``e12, e13, e23`` (GATr's quaternion signs); ``det R = -1``: the
    odd versor ``rotor(-R) e123``. ``sandwich(CGA, V, embed_point(x))`` is ``embed_point(R @ x)``.

    Args:
        rotation: ``(..., 3, 3)`` orthogonal matrices (proper and improper may be mixed).

    Returns:
        ``(..., 32)`` versors.
    """
    return orthogonal_versor(CGA, rotation)


def embed_oriented_plane(normal: Tensor, position: Tensor) -> Tensor:
    """Planes through ``position (..., 3)`` with ``normal (..., 3)`` to vectors ``(..., 32)``.

    The vector is ``n + (n·position) e_inf``; ``<embed_point(x), plane> = n·(x - position)``.
    """
    _check3(normal, "normals")
    _check3(position, "positions")
    d = (normal * position).sum(-1)
    normal, d = torch.broadcast_tensors(normal, d.unsqueeze(-1))
    mv = normal.new_zeros(*normal.shape[:-1], 32)
    mv[..., 1:4] = normal
    mv[..., _E4] = d[..., 0]
    mv[..., _E5] = d[..., 0]
    return mv


def extract_oriented_plane(mv: Tensor) -> Tensor:
    """The ``e1..e3`` part ``(..., 3)``: the normal of a plane (rotation-covariant, translation-invariant)."""
    _check_mv(mv)
    return mv[..., 1:4]


def euclidean_vector_action(rotation: Tensor, translation: Tensor) -> Tensor:
    """Matrix ``(..., 5, 5)`` of ``x -> R x + t`` on the basis vectors ``(e1, e2, e3, e4, e5)``.

    In terms of ``e_o, e_inf``: ``M e_o = t + e_o + ½|t|² e_inf``, ``M e_inf = e_inf`` and
    ``M v = R v + (R v · t) e_inf`` for ``v`` in span(e1, e2, e3); rewritten with
    ``e4 = ½ e_inf - e_o``, ``e5 = ½ e_inf + e_o``, the columns are
    ``M e_i = (R e_i, R e_i·t, R e_i·t)``, ``M e4 = (-t, 1 - ½|t|², -½|t|²)``,
    ``M e5 = (t, ½|t|², 1 + ½|t|²)``. ``M`` preserves ``diag(1, 1, 1, 1, -1)``, maps
    ``embed_point(x)`` to ``embed_point(R x + t)`` and the plane ``n + d e_inf`` to
    ``R n + (d + R n·t) e_inf``.

    Args:
        rotation: ``(..., 3, 3)`` orthogonal matrix (``det = ±1``).
        translation: ``(..., 3)`` (broadcast against ``rotation``'s batch shape).

    Returns:
        ``(..., 5, 5)`` matrix ``M`` (``M @ a`` for a column of vector coefficients).
    """
    if rotation.dim() < 2 or rotation.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have last axes (3, 3), got shape {tuple(rotation.shape)}")
    _check3(translation, "translation")
    batch = torch.broadcast_shapes(rotation.shape[:-2], translation.shape[:-1])
    r = rotation.expand(*batch, 3, 3)
    t = translation.expand(*batch, 3)
    half_sq = 0.5 * (t * t).sum(-1)
    rt = (t.unsqueeze(-2) @ r).squeeze(-2)  # (R e_i)·t = (R^T t)_i
    m = r.new_zeros(*batch, 5, 5)
    m[..., :3, :3] = r
    m[..., 3, :3] = rt
    m[..., 4, :3] = rt
    m[..., :3, 3] = -t
    m[..., 3, 3] = 1.0 - half_sq
    m[..., 4, 3] = -half_sq
    m[..., :3, 4] = t
    m[..., 3, 4] = half_sq
    m[..., 4, 4] = 1.0 + half_sq
    return m
