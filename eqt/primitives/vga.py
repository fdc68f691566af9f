"""Embedding Euclidean objects into the vector algebra G(3,0,0) (E-GATr), mirroring :mod:`~eqt.primitives.pga`.

Blade order of :mod:`eqt.primitives.clifford`: ``1, e1, e2, e3, e12, e13, e23, e123`` (indices
0..7); ``e1, e2, e3`` are the basis-vector positions 0, 1, 2.

- vector ``v``: ``v_i`` on ``e1..e3`` (indices 1, 2, 3);
- point ``x``: the vector ``x - origin``. **Translations are not representable** in G(3,0,0): the
  caller chooses an origin that moves with the system (e.g. the centroid of a molecule, which a
  rigid motion ``x -> R x + t`` maps to ``R c + t``); relative to it, points transform as vectors,
  by ``R`` alone. ``origin=None`` means the coordinate origin (then only O(3) about it is a symmetry);
- oriented plane: only planes through the origin exist as vectors, given by their normal (the
  vector on ``e1..e3``; its dual ``n e123`` is the plane's bivector);
- rotation ``R``: the rotor of :func:`eqt.primitives.rotations.orthogonal_versor`, scalar ``w``,
  ``e12 = -z``, ``e13 = y``, ``e23 = -x`` for the quaternion ``(x, y, z, w)`` (GATr's signs); an
  improper ``R`` (``det = -1``) gives the **odd** versor ``rotor(-R) e123`` instead (the point
  inversion is the pseudoscalar ``e123``), so ``sandwich(VGA, embed_rotation(R), embed_vector(v))
  == embed_vector(R v)`` for all of O(3);
- scalar ``[0]``, pseudoscalar ``[7]`` (flips sign under reflections).

An orthogonal ``R`` acts on the basis vectors ``(e1, e2, e3)`` by :func:`euclidean_vector_action`
(``R`` itself) and on multivectors by its outermorphism (:class:`eqt.reps.actions.Multivector`),
which equals the sandwich with :func:`embed_rotation`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eqt.primitives.clifford import Algebra
from eqt.primitives.rotations import orthogonal_versor

__all__ = ["VGA", "embed_vector", "extract_vector", "embed_point", "extract_point", "embed_rotation",
           "embed_oriented_plane", "extract_oriented_plane", "euclidean_vector_action"]

VGA = Algebra(3, 0, 0)


def _check3(x: Tensor, name: str) -> None:
    if x.dim() == 0 or x.shape[-1] != 3:
        raise ValueError(f"{name} must have a last axis of 3 (x, y, z), got shape {tuple(x.shape)}")


def _check_mv(mv: Tensor) -> None:
    if mv.dim() == 0 or mv.shape[-1] != 8:
        raise ValueError(f"VGA multivectors need a last axis of 8, got shape {tuple(mv.shape)}")


def embed_vector(v: Tensor) -> Tensor:
    """Vectors ``(..., 3)`` to grade-1 multivectors ``(..., 8)`` (``v_i`` on ``e1..e3``)."""
    _check3(v, "vectors")
    mv = v.new_zeros(*v.shape[:-1], 8)
    mv[..., 1:4] = v
    return mv


def extract_vector(mv: Tensor) -> Tensor:
    """The ``e1..e3`` part ``(..., 3)`` of multivectors ``(..., 8)``."""
    _check_mv(mv)
    return mv[..., 1:4]


def embed_point(x: Tensor, origin: Tensor | None = None) -> Tensor:
    """Points ``(..., 3)`` to vectors ``x - origin`` ``(..., 8)``.

    Args:
        x: ``(..., 3)`` positions.
        origin: ``(..., 3)`` reference point broadcast against ``x`` (e.g. the centroid, shape
            ``(1, 3)``), or None for the coordinate origin. Equivariance under translations holds
            only if the origin moves with the points.

    Returns:
        ``(..., 8)`` grade-1 multivectors.
    """
    _check3(x, "points")
    if origin is not None:
        _check3(origin, "origin")
        x = x - origin
    return embed_vector(x)


def extract_point(mv: Tensor, origin: Tensor | None = None) -> Tensor:
    """Multivectors ``(..., 8)`` to points ``(..., 3)``: the ``e1..e3`` part plus ``origin`` (if given)."""
    x = extract_vector(mv)
    if origin is not None:
        _check3(origin, "origin")
        x = x + origin
    return x


def embed_rotation(rotation: Tensor) -> Tensor:
    """Orthogonal matrices ``(..., 3, 3)`` to unit versors ``(..., 8)`` with the same action.

    ``det R = +1``: an even rotor (GATr's quaternion signs, see the module docstring);
    ``det R = -1``: the odd versor ``rotor(-R) e123``. In both cases
    ``sandwich(VGA, V, embed_vector(v)) == embed_vector(R @ v)``.

    Args:
        rotation: ``(..., 3, 3)`` orthogonal matrices (proper and improper may be mixed).

    Returns:
        ``(..., 8)`` versors.
    """
    return orthogonal_versor(VGA, rotation)


def embed_oriented_plane(normal: Tensor, position: Tensor | None = None) -> Tensor:
    """Planes through the origin with ``normal (..., 3)`` to vectors ``(..., 8)`` (the normal itself).

    Args:
        normal: ``(..., 3)`` normals.
        position: must be None: G(3,0,0) cannot represent planes off the origin.

    Returns:
        ``(..., 8)`` grade-1 multivectors.

    Raises:
        ValueError: if ``position`` is given or a shape is wrong.
    """
    if position is not None:
        raise ValueError("VGA cannot represent planes off the origin; embed the plane relative to its own point "
                         "(position=None) or use pga/cga")
    return embed_vector(normal)


def extract_oriented_plane(mv: Tensor) -> Tensor:
    """The ``e1..e3`` part ``(..., 3)``: the normal of a plane through the origin."""
    return extract_vector(mv)


def euclidean_vector_action(rotation: Tensor, translation: Tensor | None = None) -> Tensor:
    """Matrix ``(..., 3, 3)`` of ``x -> R x + t`` on the basis vectors ``(e1, e2, e3)``: ``R`` itself.

    The translation does not act: embedded points are relative to an origin that moves with the
    system (see the module docstring). It is accepted for symmetry with
    :func:`eqt.primitives.pga.euclidean_vector_action` and only shape-checked.

    Args:
        rotation: ``(..., 3, 3)`` orthogonal matrix (``det = ±1``).
        translation: ``(..., 3)`` or None (ignored).

    Returns:
        ``(..., 3, 3)`` matrix ``M`` (a copy of ``rotation``).
    """
    if rotation.dim() < 2 or rotation.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have last axes (3, 3), got shape {tuple(rotation.shape)}")
    if translation is not None:
        _check3(translation, "translation")
    return rotation.clone()
