"""Atom-type embeddings, including TorchMD-NET's distance-filtered neighbour embedding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from eqt.primitives.radial import cosine_cutoff
from eqt.primitives.segment import segment_sum

__all__ = ["NeighborEmbedding"]


class NeighborEmbedding(nn.Module):
    """ET paper eq. 3: ``x_i <- W_c [x_i || sum_{j != i} phi(d_ij) (W_d e(d_ij)) * Emb'(z_j)]``.

    Args:
        channels: ``F``.
        num_rbf: ``K``, the radial basis size.
        cutoff_upper: ``r_hi`` of the cosine cutoff.
        cutoff_lower: ``r_lo``.
        max_z: size of the embedding table (atomic numbers ``0 .. max_z-1``).
    """

    def __init__(self, channels: int, num_rbf: int, cutoff_upper: float, cutoff_lower: float = 0.0, max_z: int = 100):
        super().__init__()
        self.cutoff_upper, self.cutoff_lower = cutoff_upper, cutoff_lower
        self.embedding = nn.Embedding(max_z, channels)
        self.distance_proj = nn.Linear(num_rbf, channels)
        self.combine = nn.Linear(2 * channels, channels)
        nn.init.xavier_uniform_(self.distance_proj.weight)
        nn.init.xavier_uniform_(self.combine.weight)
        nn.init.zeros_(self.distance_proj.bias)
        nn.init.zeros_(self.combine.bias)

    def forward(self, z: Tensor, x: Tensor, edge_index: Tensor, dist: Tensor, rbf: Tensor) -> Tensor:
        """Mix each atom's embedding with a filtered sum over its neighbours' types.

        Args:
            z: ``(N,)`` atomic numbers.
            x: ``(N, F)`` atom embeddings.
            edge_index: ``(2, E)`` edges ``j -> i`` (no self-loops).
            dist: ``(E,)`` distances.
            rbf: ``(E, K)`` radial basis of the distances.

        Returns:
            ``(N, F)`` updated scalars.
        """
        src, dst = edge_index[0], edge_index[1]
        w = self.distance_proj(rbf) * cosine_cutoff(dist, self.cutoff_upper, self.cutoff_lower).unsqueeze(-1)
        msg = w * self.embedding(z).index_select(0, src)  # (E, F)
        neighbours = segment_sum(msg, dst, z.shape[0])
        return self.combine(torch.cat([x, neighbours], dim=-1))
