"""Gated equivariant block (Schütt et al. 2021, PaiNN) on scalar + vector features.

Layout: scalars ``x (N, F)``, vectors ``v (N, 3, F)`` (spatial axis 1, channels last); the rep is
``F x 0e + F x 1o``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from eqt.primitives.activations import activation
from eqt.primitives.radial import safe_norm

__all__ = ["GatedEquivariantBlock"]


class GatedEquivariantBlock(nn.Module):
    """``(x, v) -> (x', v')`` with vector norms feeding the scalars and scalars gating vectors.

    ``v1 = |W1 v|``, ``v2 = W2 v`` (bias-free, channel mixing only);
    ``[x', g] = MLP([x, v1])``; ``v' = g * v2``; optionally ``x' = act(x')``.
    The norm has a zero gradient at zero vectors (isolated atoms stay NaN-free).

    Args:
        in_channels: ``F``.
        out_channels: ``F'``.
        intermediate_channels: hidden width of the MLP (default ``F``).
        act: activation name.
        scalar_activation: apply the activation to ``x'``.
    """

    def __init__(self, in_channels: int, out_channels: int, intermediate_channels: int | None = None,
                 act: str = "silu", scalar_activation: bool = False):
        super().__init__()
        hidden = intermediate_channels or in_channels
        self.out_channels = out_channels
        self.vec1_proj = nn.Linear(in_channels, in_channels, bias=False)
        self.vec2_proj = nn.Linear(in_channels, out_channels, bias=False)
        self.update_net = nn.Sequential(nn.Linear(2 * in_channels, hidden), activation(act),
                                        nn.Linear(hidden, 2 * out_channels))
        self.act = activation(act) if scalar_activation else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.vec1_proj.weight)
        nn.init.xavier_uniform_(self.vec2_proj.weight)
        for lin in (self.update_net[0], self.update_net[2]):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x ``(N, F)``, v ``(N, 3, F)``. Returns: ``(N, F')``, ``(N, 3, F')``."""
        v1 = safe_norm(self.vec1_proj(v), dim=-2)  # (N, F)
        v2 = self.vec2_proj(v)  # (N, 3, F')
        x, gate = self.update_net(torch.cat([x, v1], dim=-1)).split(self.out_channels, dim=-1)
        v = gate.unsqueeze(1) * v2
        if self.act is not None:
            x = self.act(x)
        return x, v
