"""Attention weights on graphs: the one place where edge scores become edge weights.

Graph attention in eqt computes an invariant score per edge and head, then normalises it over the
edges that arrive at the same target atom. Two normalisations cover the models of the project:

- ``"softmax"``: the usual softmax over a target's incoming edges (Equiformer, GATr-style).
- ``"silu"`` (or any activation name): an element-wise activation without normalisation
  (TorchMD-NET ET, which replaced its softmax by SiLU), so each edge weight is independent of the
  other neighbours and the energy stays smooth as atoms enter the cutoff.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from eqt.primitives.activations import ACTIVATIONS
from eqt.primitives.clifford import Algebra, inner_product
from eqt.primitives.segment import segment_softmax

__all__ = ["edge_attention_weights", "is_elementwise", "multivector_qk_features", "distance_feature_count",
           "qk_blades", "distance_features"]


def edge_attention_weights(scores: Tensor, target: Tensor, num_nodes: int, normalization: str = "softmax") -> Tensor:
    """Turn invariant edge scores into attention weights.

    Args:
        scores: ``(E, H)`` scores per edge and head.
        target: ``(E,)`` target atom of each edge (the aggregation index).
        num_nodes: number of atoms ``N``.
        normalization: ``"softmax"`` over each target's edges, ``"none"``, or the name of an
            element-wise activation (``silu``, ``ssp``, ``tanh``, ``sigmoid``).

    Returns:
        ``(E, H)`` weights.
    """
    if normalization == "softmax":
        return segment_softmax(scores, target, num_nodes)
    if normalization == "none":
        return scores
    if normalization == "silu":
        return F.silu(scores)
    if normalization in ACTIVATIONS:
        return ACTIVATIONS[normalization]()(scores)
    raise ValueError(f"unknown attention normalization '{normalization}'")


def is_elementwise(normalization: str) -> bool:
    """Whether each edge's weight depends on its own score only (so edges can be split freely)."""
    return normalization != "softmax"


@functools.lru_cache(maxsize=None)
def _qk_layout(alg: Algebra, distance: bool) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...], int | None]:
    """Blades entering the inner product (and their metric signs); coordinate and homogeneous blades."""
    metric = _inner_diag(alg)
    coords, homog = (), None
    if distance:
        if alg.r != 1 or alg.q != 0:
            raise ValueError(f"distance-aware attention needs a projective algebra G(n,0,1), got {alg!r}")
        n = alg.n
        homog = alg.blade_index(tuple(range(1, n)))  # e12..n: the weight of a point (e123 in PGA)
        coords = tuple(alg.blade_index((0,) + tuple(i for i in range(1, n) if i != j)) for j in range(1, n))
    idx = tuple(i for i in range(alg.dim) if metric[i] != 0 and i != homog)
    return idx, tuple(float(metric[i]) for i in idx), coords, homog


@functools.lru_cache(maxsize=None)
def _qk_tensors(alg: Algebra, distance: bool, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The layout of :func:`_qk_layout` as tensors, cached per dtype and device (no copies per call)."""
    idx, signs, tri = qk_blades(alg, distance)
    return (torch.tensor(idx, device=device), torch.tensor(signs, dtype=dtype, device=device),
            torch.tensor(tri, dtype=torch.long, device=device))


def _inner_diag(alg: Algebra) -> Tensor:
    """``(dim,)`` diagonal of the invariant inner product ``<e_A, e_A>`` (0 on blades with a null vector)."""
    eye = torch.eye(alg.dim, dtype=torch.float64)
    return inner_product(alg, eye, eye).squeeze(-1)


def distance_feature_count(alg: Algebra, distance: bool = False) -> int:
    """Number of query/key features per multivector channel in :func:`multivector_qk_features`."""
    idx, _, coords, _ = _qk_layout(alg, distance)
    return len(idx) + (len(coords) + 2 if distance else 0)


def multivector_qk_features(alg: Algebra, q: Tensor, k: Tensor, distance_weights: Tensor | None = None,
                            eps: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Flatten multivector queries and keys so that a plain dot product is the invariant score.

    ``qf . kf = sum_c <q_c, k_c>`` with the algebra's invariant inner product (blades containing a
    null vector drop out; metric signs are folded into ``qf``, so conformal points score
    ``<P(x), P(y)> = -|x - y|^2 / 2`` by themselves). With ``distance_weights`` (projective
    algebras G(n,0,1) only: GATr's distance-aware attention, iP-GATr) the homogeneous blade
    (``e123``) leaves the inner product and each channel adds

        ``- w_c |q_h k_vec - k_h q_vec|^2``,

    where ``(q_vec, q_h)`` are the grade-n coordinate blades (``e012, e013, e023``) and the
    homogeneous blade of the query, first multiplied by ``q_h / (q_h^2 + eps)`` (about ``1 / q_h``,
    so embedded points score ``-w_c |x_q - x_k|^2``). The term is a function of the grade-n part
    only, which transforms like a weighted point, so the score stays Pin-invariant. It is the
    dot product of ``(w |q_vec|^2, w q_h^2, w q_h q_vec)`` with ``(-k_h^2, -|k_vec|^2, 2 k_h k_vec)``.

    Args:
        alg: the algebra.
        q: ``(..., C, dim)`` queries.
        k: ``(..., C, dim)`` keys.
        distance_weights: ``(..., C)`` positive weights (broadcast against ``q``), or None.
        eps: regulariser of the homogeneous normalisation.

    Returns:
        ``qf``, ``kf``: ``(..., C * F)`` with ``F = distance_feature_count(alg, distance)``.
    """
    distance = distance_weights is not None
    index, sign, tri = _qk_tensors(alg, distance, q.dtype, q.device)
    qf, kf = q.index_select(-1, index) * sign, k.index_select(-1, index)  # (..., C, n_ip)
    if distance:
        qd, kd = distance_features(q.index_select(-1, tri), k.index_select(-1, tri), distance_weights, eps)
        qf, kf = torch.cat([qf, qd], dim=-1), torch.cat([kf, kd], dim=-1)
    return qf.flatten(-2), kf.flatten(-2)


def qk_blades(alg: Algebra, distance: bool = False) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
    """Which blades :func:`multivector_qk_features` reads.

    Args:
        alg: the algebra.
        distance: the distance-aware layout (G(n,0,1) only).

    Returns:
        ``(inner, signs, grade_n)``: the blades entering the inner product and their metric signs
        (folded into the queries), and, with ``distance``, the grade-n blades of
        :func:`distance_features` (coordinates, then the homogeneous blade; empty otherwise).
    """
    idx, signs, coords, homog = _qk_layout(alg, distance)
    return idx, signs, (coords + (homog,) if distance else ())


def distance_features(q: Tensor, k: Tensor, weights: Tensor, eps: float = 1e-3) -> tuple[Tensor, Tensor]:
    """GATr's distance-aware query and key features from grade-n parts (see :func:`multivector_qk_features`).

    Args:
        q, k: ``(..., C, n)`` the blades ``qk_blades(alg, True)[2]`` of queries and keys
            (coordinates, then the homogeneous blade).
        weights: ``(..., C)`` positive weights (broadcast against ``q``).
        eps: regulariser of the homogeneous normalisation.

    Returns:
        ``(..., C, n + 1)`` each, whose dot product is ``-w_c |q_h k_vec - k_h q_vec|^2`` after
        normalising the homogeneous coordinates.
    """
    def normalised(x: Tensor) -> tuple[Tensor, Tensor]:
        h = x[..., -1:]
        x = x * (h / (h * h + eps))
        return x[..., :-1], x[..., -1:]

    qv, qh = normalised(q)
    kv, kh = normalised(k)
    qd = torch.cat([(qv * qv).sum(-1, keepdim=True), qh * qh, qh * qv], dim=-1) * weights.unsqueeze(-1)
    kd = torch.cat([-kh * kh, -(kv * kv).sum(-1, keepdim=True), 2.0 * kh * kv], dim=-1)
    return qd, kd
