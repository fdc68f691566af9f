"""GATr over any geometric algebra (de Haan, Cohen, Brehmer): one class, variants by configuration.

``GATr`` maps tokens of multivector + scalar channels to tokens of multivector + scalar channels:
an input :class:`~eqt.layers.multivector.EquiLinear`, ``num_blocks``
:class:`~eqt.layers.transformer.PreNormBlock` (``EquiLayerNorm -> MultivectorAttention``;
``EquiLayerNorm -> MultivectorMLP``), and an output ``EquiLinear``. The plain baseline
(:mod:`eqt.models.transformer`) uses the same block skeleton. Variants:

- E-GATr: ``algebra=(3, 0, 0)`` (O(3); translations by centring the inputs);
- P-GATr: ``algebra=(3, 0, 1)``, ``use_join=True`` (E(3) = Pin(3,0,1));
- iP-GATr: P-GATr with ``distance_attention=True`` (GATr's distance-aware attention; the released
  reference GATr is this variant);
- C-GATr: ``algebra=(4, 1, 0)``, ``subgroup="euclidean"`` (E(3) inside the conformal group;
  attention sees distances through the null-vector inner product).

The join's reference multivector is the mean of the input multivectors over tokens and channels
(GATr's choice), so it transforms with the input. Layout: ``mv (..., T, C, 2**n)``, ``s (..., T, C_s)``.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from eqt.config import Config
from eqt.layers.multivector import EquiLayerNorm, EquiLinear, MultivectorAttention, MultivectorMLP
from eqt.layers.transformer import PreNormBlock
from eqt.primitives.clifford import Algebra

__all__ = ["GATrConfig", "GATr", "VARIANTS"]


@dataclasses.dataclass(frozen=True)
class GATrConfig(Config):
    """GATr hyper-parameters (defaults: 4 blocks of 16 mv / 32 s channels).

    ``heads`` heads of ``head_mv`` multivector and ``head_s`` scalar channels each; the MLP's
    bilinear has ``bilinear_mv`` channels per product.
    """

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
    distance_attention: bool = False

    def __post_init__(self) -> None:
        sig = tuple(self.algebra)
        if len(sig) != 3 or any(not isinstance(v, int) or v < 0 for v in sig):
            raise ValueError(f"algebra must be a signature (p, q, r) of non-negative ints, got {self.algebra!r}")
        object.__setattr__(self, "algebra", sig)
        if self.use_join and sig[2] != 1:
            raise ValueError(f"use_join needs a projective algebra G(p,q,1), got G{sig}")
        if self.distance_attention and (sig[2] != 1 or sig[1] != 0):
            raise ValueError(f"distance_attention needs a projective algebra G(n,0,1), got G{sig}")
        for name in ("hidden_mv", "num_blocks", "heads", "head_mv", "bilinear_mv"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("in_mv", "in_s", "out_mv", "out_s", "hidden_s", "head_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


#: The paper's four variants as partial configurations (combine with sizes by ``GATrConfig(**VARIANTS[v], ...)``).
VARIANTS = {
    "E-GATr": dict(algebra=(3, 0, 0), use_join=False, distance_attention=False),
    "P-GATr": dict(algebra=(3, 0, 1), use_join=True, distance_attention=False),
    "iP-GATr": dict(algebra=(3, 0, 1), use_join=True, distance_attention=True),
    "C-GATr": dict(algebra=(4, 1, 0), subgroup="euclidean", use_join=False, distance_attention=False),
}


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
        self.algebra = alg = Algebra(*c.algebra)
        g = dict(subgroup=c.subgroup, proper=c.proper)
        self.rep_in, self.rep_out = (c.in_mv, c.in_s), (c.out_mv, c.out_s)
        self.embed = EquiLinear(alg, c.in_mv, c.hidden_mv, c.in_s, c.hidden_s, **g)
        self.blocks = nn.ModuleList(
            PreNormBlock(EquiLayerNorm(alg, c.hidden_s),
                         MultivectorAttention(alg, c.hidden_mv, c.hidden_s, c.heads, c.head_mv, c.head_s,
                                              distance=c.distance_attention, **g),
                         EquiLayerNorm(alg, c.hidden_s),
                         MultivectorMLP(alg, c.hidden_mv, c.hidden_s, c.bilinear_mv, use_join=c.use_join, **g))
            for _ in range(c.num_blocks))
        self.head = EquiLinear(alg, c.hidden_mv, c.out_mv, c.hidden_s, c.out_s, **g)

    def forward(self, mv: Tensor, s: Tensor | None = None, attn_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Args: mv ``(..., T, in_mv, dim)``, s ``(..., T, in_s)``, attn_mask ``(..., T, T)`` boolean.

        Returns: ``(..., T, out_mv, dim)``, ``(..., T, out_s)`` (None when ``out_s == 0``).
        """
        if mv.dim() < 3 or mv.shape[-2:] != (self.config.in_mv, self.algebra.dim):
            raise ValueError(f"GATr over {self.algebra!r} expects multivectors (..., T, {self.config.in_mv}, "
                             f"{self.algebra.dim}), got {tuple(mv.shape)}")
        reference = None
        if self.config.use_join:  # one per token: (..., T, dim)
            reference = mv.mean(dim=(-3, -2), keepdim=True).squeeze(-2).expand(*mv.shape[:-2], -1)
        x = self.embed(mv, s)
        for block in self.blocks:
            x = block(x, dict(attn_mask=attn_mask), dict(reference=reference))
        return self.head(*x)
