"""Embedding Euclidean objects into the projective algebra G(3,0,1), with GATr's conventions.

Plane-based PGA (Roelfs & De Keninck; Dorst), blade order of :mod:`eqt.primitives.clifford`
(``1, e0, e1, e2, e3, e01, e02, e03, e12, e13, e23, e012, e013, e023, e123, e0123``):

- point ``(x, y, z)``: ``e123 = 1, e023 = -x, e013 = y, e012 = -z`` (indices 14, 13, 12, 11);
- oriented plane through ``position`` with ``normal``: the normal on ``e1..e3`` moved by the
  translation to ``position``; its ``e1..e3`` part is the (rotation-covariant) normal;
- translation by ``t``: the versor ``1 - ½ t_i e0i``;
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

__all__ = ["PGA", "embed_point", "extract_point", "embed_translation", "embed_oriented_plane",
           "extract_oriented_plane", "euclidean_vector_action"]

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
