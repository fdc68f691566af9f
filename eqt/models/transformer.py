"""The plain (non-equivariant) transformer baseline, on GATr's block skeleton.

``Transformer`` = ``Linear`` in, ``num_blocks`` :class:`~eqt.layers.transformer.PreNormBlock`
(``LayerNorm -> SelfAttention``; ``LayerNorm -> MLP``), ``Linear`` out, on tokens ``(..., T, C)``.
As in the GATr reference's ``BaselineTransformer`` there is no final layer norm: the residual
stream reaches the output layer directly, so a regression target of large magnitude (absolute
positions) is one linear map away from the input embedding.
It is GATr's baseline in the n-body and scaling experiments: same skeleton, raw coordinates as
features, no symmetry beyond token permutations (equivariance to E(3) comes only from data
augmentation).
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from eqt.config import Config
from eqt.layers.transformer import MLP, LayerNorm, PreNormBlock, SelfAttention

__all__ = ["TransformerConfig", "Transformer"]


@dataclasses.dataclass(frozen=True)
class TransformerConfig(Config):
    """Baseline transformer hyper-parameters (``hidden`` features, ``mlp_ratio * hidden`` in the MLP)."""

    in_features: int = 7
    out_features: int = 3
    hidden: int = 128
    num_blocks: int = 4
    heads: int = 8
    mlp_ratio: int = 2

    def __post_init__(self) -> None:
        for name in ("in_features", "out_features", "hidden", "num_blocks", "heads", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")


class Transformer(nn.Module):
    """Pre-norm transformer over a set of tokens.

    Args:
        config: a :class:`TransformerConfig`.

    Attributes:
        rep_in, rep_out: feature counts.
    """

    def __init__(self, config: TransformerConfig = TransformerConfig()):
        super().__init__()
        c = self.config = config
        self.rep_in, self.rep_out = c.in_features, c.out_features
        self.embed = nn.Linear(c.in_features, c.hidden)
        self.blocks = nn.ModuleList(
            PreNormBlock(LayerNorm(c.hidden), SelfAttention(c.hidden, c.heads), LayerNorm(c.hidden),
                         MLP(c.hidden, c.mlp_ratio * c.hidden))
            for _ in range(c.num_blocks))
        self.head = nn.Linear(c.hidden, c.out_features)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """Args: x ``(..., T, in_features)``; attn_mask boolean ``(..., T, T)``. Returns ``(..., T, out_features)``."""
        if x.dim() < 2 or x.shape[-1] != self.rep_in:
            raise ValueError(f"Transformer expects tokens (..., T, {self.rep_in}), got {tuple(x.shape)}")
        h = (self.embed(x),)
        for block in self.blocks:
            h = block(h, dict(attn_mask=attn_mask))
        return self.head(h[0])
