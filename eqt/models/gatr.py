"""GATr over any geometric algebra (de Haan, Cohen, Brehmer): one class, variants by configuration.

``GATr`` maps tokens of multivector + scalar channels to tokens of multivector + scalar channels:
an input :class:`~eqt.layers.multivector.EquiLinear`, ``num_blocks`` pre-norm residual blocks
(``EquiLayerNorm -> MultivectorAttention``; ``EquiLayerNorm -> GeometricBilinear ->
scalar_gated_gelu -> EquiLinear``), and an output ``EquiLinear``. Variants:

- E-GATr: ``algebra=(3, 0, 0)`` (O(3); translations by centring the inputs);
- P-GATr: ``algebra=(3, 0, 1)``, ``use_join=True`` (E(3) = Pin(3,0,1));
- C-GATr: ``algebra=(4, 1, 0)``, ``subgroup="euclidean"`` (E(3) inside the conformal group).

The join's reference multivector is the mean of the input multivectors over tokens and channels
(GATr's choice), so it transforms with the input. Layout: ``mv (..., T, C, 2**n)``, ``s (..., T, C_s)``.
Still missing from the papers: iP-GATr's distance-aware attention features (issue 4).
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from eqt.config import Config
from eqt.layers.multivector import EquiLayerNorm, EquiLinear, GeometricBilinear, MultivectorAttention, scalar_gated_gelu
from eqt.primitives.clifford import Algebra

__all__ = ["GATrConfig", "GATr"]


@dataclasses.dataclass(frozen=True)
class GATrConfig(Config):
    """GATr hyper-parameters (defaults: the reference's n-body size, 4 blocks of 16 mv / 32 s channels)."""

    algebra: tuple = (3, 0, 1)
    subgroup: str = "pin"
    proper: bool = False
    in_mv: int = 1
    in_s: int = 0
    out_mv: int = 1
    out_s: int = 0
    hidden_mv: int = 16
    hidden_s: int = 32
    num_blocks: int = 4
    heads: int = 4
    head_mv: int = 4
    head_s: int = 8
    bilinear_mv: int = 8
    use_join: bool = True

    def __post_init__(self) -> None:
        if self.use_join and tuple(self.algebra)[2] != 1:
            raise ValueError(f"use_join needs a projective algebra G(p,q,1), got G{tuple(self.algebra)}")


class _Block(nn.Module):
    def __init__(self, alg: Algebra, c: GATrConfig):
        super().__init__()
        g = dict(subgroup=c.subgroup, proper=c.proper)
        self.norm1 = EquiLayerNorm(alg, c.hidden_s)
        self.attention = MultivectorAttention(alg, c.hidden_mv, c.hidden_s, c.heads, c.head_mv, c.head_s, **g)
        self.norm2 = EquiLayerNorm(alg, c.hidden_s)
        self.bilinear = GeometricBilinear(alg, c.hidden_mv, c.hidden_mv, c.bilinear_mv, c.hidden_s, c.hidden_s,
                                          use_join=c.use_join, **g)
        self.linear = EquiLinear(alg, c.hidden_mv, c.hidden_mv, c.hidden_s, c.hidden_s, **g)

    def forward(self, mv: Tensor, s: Tensor, reference: Tensor | None, attn_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        h, hs = self.attention(*self.norm1(mv, s), attn_mask=attn_mask)
        mv, s = mv + h, s + hs
        h, hs = self.norm2(mv, s)
        h, hs = scalar_gated_gelu(*self.bilinear(h, hs, reference=reference))
        h, hs = self.linear(h, hs)
        return mv + h, s + hs


class GATr(nn.Module):
    """Geometric Algebra Transformer.

    Args:
        config: a :class:`GATrConfig`.

    Attributes:
        rep_in, rep_out: ``(mv_channels, s_channels)`` over ``algebra``.
    """

    def __init__(self, config: GATrConfig = GATrConfig()):
        super().__init__()
        c = self.config = config
        self.algebra = Algebra(*c.algebra)
        g = dict(subgroup=c.subgroup, proper=c.proper)
        self.rep_in, self.rep_out = (c.in_mv, c.in_s), (c.out_mv, c.out_s)
        self.embed = EquiLinear(self.algebra, c.in_mv, c.hidden_mv, c.in_s, c.hidden_s, **g)
        self.blocks = nn.ModuleList(_Block(self.algebra, c) for _ in range(c.num_blocks))
        self.head = EquiLinear(self.algebra, c.hidden_mv, c.out_mv, c.hidden_s, c.out_s, **g)

    def forward(self, mv: Tensor, s: Tensor | None = None, attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Args: mv ``(..., T, in_mv, dim)``, s ``(..., T, in_s)``, attn_mask ``(..., T, T)`` boolean.

        Returns: ``(..., T, out_mv, dim)``, ``(..., T, out_s)`` (None when ``out_s == 0``).
        """
        reference = mv.mean(dim=(-3, -2)) if self.config.use_join else None  # (..., dim)
        if reference is not None:
            reference = reference.unsqueeze(-2).expand(*mv.shape[:-2], -1)  # one per token: (..., T, dim)
        x, xs = self.embed(mv, s)
        for block in self.blocks:
            x, xs = block(x, xs, reference, attn_mask)
        return self.head(x, xs)
