"""Segment reductions over the leading axis, in plain PyTorch.

A *segment* is the set of rows of ``src`` that share a value of ``index``. These are the
graph-aggregation primitives of eqt (messages summed onto their target atom, attention weights
normalised over a target's incoming edges, atoms summed into their system). ``num_segments`` is
always passed explicitly so that no reduction needs a host sync to learn the output size.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["segment_sum", "segment_mean", "segment_max", "segment_softmax"]


def _expand_index(index: Tensor, src: Tensor) -> Tensor:
    return index.view((-1,) + (1,) * (src.dim() - 1)).expand_as(src)


def segment_sum(src: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Sum rows of ``src`` that share a segment index.

    Args:
        src: ``(E, *F)`` values.
        index: ``(E,)`` int64 segment of each row, in ``[0, num_segments)``.
        num_segments: number of output rows ``S``.

    Returns:
        ``(S, *F)`` sums; empty segments are zero.
    """
    out = src.new_zeros((num_segments,) + tuple(src.shape[1:]))
    return out.index_add(0, index, src)


def segment_mean(src: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Mean of rows of ``src`` per segment; empty segments are zero.

    Args:
        src: ``(E, *F)`` values.
        index: ``(E,)`` int64 segment of each row.
        num_segments: number of output rows ``S``.

    Returns:
        ``(S, *F)`` means.
    """
    total = segment_sum(src, index, num_segments)
    count = segment_sum(torch.ones_like(index, dtype=src.dtype), index, num_segments)
    return total / count.clamp(min=1).view((-1,) + (1,) * (src.dim() - 1))


def segment_max(src: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Maximum of rows of ``src`` per segment (``-inf`` for empty segments).

    Args:
        src: ``(E, *F)`` values.
        index: ``(E,)`` int64 segment of each row.
        num_segments: number of output rows ``S``.

    Returns:
        ``(S, *F)`` maxima.
    """
    out = src.new_full((num_segments,) + tuple(src.shape[1:]), float("-inf"))
    return out.scatter_reduce(0, _expand_index(index, src), src, reduce="amax", include_self=True)


def segment_softmax(src: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Softmax of ``src`` over the rows of each segment (e.g. a target atom's incoming edges).

    Numerically stable (the per-segment maximum is subtracted, without gradient, which leaves the
    result unchanged).

    Args:
        src: ``(E, *F)`` scores, e.g. ``(E, heads)``.
        index: ``(E,)`` int64 segment of each row.
        num_segments: number of segments ``S``.

    Returns:
        ``(E, *F)`` weights that sum to one over each non-empty segment.
    """
    shift = segment_max(src.detach(), index, num_segments).index_select(0, index)
    exp = torch.exp(src - shift)
    denom = segment_sum(exp, index, num_segments).index_select(0, index)
    return exp / denom
