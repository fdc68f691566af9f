"""Attention weights on graphs: the one place where edge scores become edge weights.

Graph attention in eqt computes an invariant score per edge and head, then normalises it over the
edges that arrive at the same target atom. Two normalisations cover the models of the project:

- ``"softmax"``: the usual softmax over a target's incoming edges (Equiformer, GATr-style).
- ``"silu"`` (or any activation name): an element-wise activation without normalisation
  (TorchMD-NET ET, which replaced its softmax by SiLU), so each edge weight is independent of the
  other neighbours and the energy stays smooth as atoms enter the cutoff.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from eqt.primitives.activations import ACTIVATIONS
from eqt.primitives.segment import segment_softmax

__all__ = ["edge_attention_weights", "is_elementwise"]



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
