"""Layers on a periodic square lattice of vector (spin) features: shell convolution, attention, readout.

Layout: ``(B, N, C, 3)``, ``N = L * L`` sites numbered ``i = x * L + y`` (as
:mod:`eqt.primitives.lattice`), ``C`` channels of 3-vectors. Every layer mixes vectors only through
scalar weights and invariant dot products, so it commutes with a global O(3) acting on the last
axis (inversion ``S -> -S`` included); weights are shared within a neighbour shell (sites at the
same minimum-image distance), so it commutes with lattice translations and the square's point
group D4.

- :class:`ShellConvolution`: ``y_i = sum_j W[shell(i, j)] x_j`` (the "block-spin" transform of
  Nagai & Tomiya), shell 0 being the site itself.
- :class:`SpinAttention`: queries, keys and values from one shell convolution, invariant scores
  ``sum_c q_ic . k_jc`` over all sites through one ``scaled_dot_product_attention`` call, a scalar
  channel mix, a residual and (optionally) renormalisation of every channel to unit length.
- :class:`ShellReadout`: the Heisenberg energy ``E0 - sum_n sum_c J_nc sum_<ij>_n S_ic . S_jc``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from eqt.primitives.lattice import shell_correlations, shell_masks

__all__ = ["ShellConvolution", "SpinAttention", "ShellReadout"]


def _check(x: Tensor, n: int, c: int, name: str) -> None:
    if x.dim() != 4 or x.shape[1:] != (n, c, 3):
        raise ValueError(f"{name} expects vector features (B, {n}, {c}, 3), got {tuple(x.shape)}")


class ShellConvolution(nn.Module):
    """Shell-shared linear map of vector channels over the lattice: ``y_i = sum_j W[shell(i,j)] x_j``.

    Args:
        L: lattice size.
        in_channels, out_channels: vector channels.
        num_shells: neighbour shells within range (shell 0, the site itself, is always included).

    Attributes:
        rep_in, rep_out: vector channels.
    """

    def __init__(self, L: int, in_channels: int, out_channels: int, num_shells: int):
        super().__init__()
        self.L, self.rep_in, self.rep_out = L, in_channels, out_channels
        masks = shell_masks(L, num_shells, include_self=True).to(torch.get_default_dtype())
        self.register_buffer("masks", masks, persistent=False)  # (S, N, N)
        s = self.masks.shape[0]
        # a site sums sites_in_shell * in_channels inputs per shell: keep unit scale for random unit spins
        fan_in = in_channels * float(self.masks.sum()) / (L * L)
        self.weight = nn.Parameter(torch.randn(s, out_channels, in_channels) / math.sqrt(fan_in))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(B, N, C_in, 3)``. Returns ``(B, N, C_out, 3)``."""
        _check(x, self.L * self.L, self.rep_in, "ShellConvolution")
        per_shell = torch.einsum("snm,bmcx->bsncx", self.masks.to(x.dtype), x)  # (B, S, N, C_in, 3)
        return torch.einsum("soc,bsncx->bnox", self.weight, per_shell)


class SpinAttention(nn.Module):
    """Equivariant self-attention over all sites of the lattice (one layer of the SLMC transformer).

    ``q, k, v = ShellConvolution(x)`` with ``heads`` heads of ``head_channels`` vector channels;
    ``a_ij = softmax_j(sum_c q_ic . k_jc / sqrt(3 head_channels))`` (O(3)-invariant);
    ``y_i = normalise(x_i + M sum_j a_ij v_j)`` with a scalar channel mix ``M`` initialised at zero
    (the layer starts as the identity) and, if ``normalize``, every channel rescaled to unit length
    (spins stay spins).

    Args:
        L: lattice size.
        channels: vector channels in and out.
        heads: attention heads.
        head_channels: vector channels per head.
        num_shells: range of the query/key/value shell convolution.
        normalize: renormalise channels to unit length after the residual.

    Attributes:
        rep_in, rep_out: vector channels.
    """

    def __init__(self, L: int, channels: int, heads: int, head_channels: int, num_shells: int, normalize: bool = True):
        super().__init__()
        self.L, self.heads, self.head_channels, self.normalize = L, heads, head_channels, normalize
        self.rep_in = self.rep_out = channels
        self.qkv = ShellConvolution(L, channels, 3 * heads * head_channels, num_shells)
        self.mix = nn.Parameter(torch.zeros(channels, heads * head_channels))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(B, N, C, 3)``. Returns ``(B, N, C, 3)``."""
        _check(x, self.L * self.L, self.rep_in, "SpinAttention")
        B, N, H, Ch = x.shape[0], x.shape[1], self.heads, self.head_channels
        q, k, v = self.qkv(x).reshape(B, N, 3, H, Ch * 3).unbind(2)  # (B, N, H, 3 Ch) each
        q, k, v = (a.transpose(1, 2) for a in (q, k, v))  # (B, H, N, 3 Ch)
        o = nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(3 * Ch))
        o = o.transpose(1, 2).reshape(B, N, H * Ch, 3)
        y = x + torch.einsum("oc,bncx->bnox", self.mix, o)
        if self.normalize:
            y = y / torch.sqrt((y * y).sum(-1, keepdim=True) + 1e-12)
        return y


class ShellReadout(nn.Module):
    """Heisenberg energy of vector channels: ``E = E0 - sum_n sum_c J_nc sum_<ij>_n S_ic . S_jc``.

    Pairs ``<ij>_n`` are the unordered site pairs of shell ``n`` (each once), as in
    :class:`eqt.physics.linear_model.LinearSpinModel`; with one channel equal to the spins this *is*
    the linear effective model.

    Args:
        L: lattice size.
        channels: vector channels.
        num_shells: shells with a coupling.

    Attributes:
        rep_in: vector channels.
    """

    def __init__(self, L: int, channels: int, num_shells: int):
        super().__init__()
        self.L, self.rep_in, self.num_shells = L, channels, num_shells
        shell_masks(L, num_shells)  # validates num_shells
        self.couplings = nn.Parameter(torch.zeros(num_shells, channels))  # J_nc
        self.e0 = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(B, N, C, 3)``. Returns energies ``(B,)``."""
        _check(x, self.L * self.L, self.rep_in, "ShellReadout")
        return self.e0 - (shell_correlations(x, self.L, self.num_shells) * self.couplings).sum(dim=(1, 2))
