"""Models for GATr's n-body task: embed bodies, run a GATr variant or the baseline, extract positions.

Input per body: ``(mass, x0 (3), v0 (3))``; output: the final position (3). One class,
:class:`NBodyModel`, whose ``variant`` picks the representation (as in the GATr reference's
wrappers, one token per body):

- ``P-GATr`` / ``iP-GATr`` (G(3,0,1)): one multivector per body, ``mass + point(x0) +
  translation(v0)`` (scalar, trivector and bivector grades, summed as the reference does); the
  prediction is the output channel's point (:func:`eqt.primitives.pga.extract_point`).
- ``C-GATr`` (G(4,1,0)): the same sum with the conformal point and translation versor
  (:mod:`eqt.primitives.cga`).
- ``E-GATr`` (G(3,0,0)): translations are not representable, so positions are centred on their
  mean over bodies (the mean moves with the input, so the model stays E(3)-equivariant) and two
  channels carry ``mass + (x0 - mean)`` and ``v0``; the prediction is the output vector plus the mean.
- ``Transformer``: the raw 7 numbers per body in, 3 numbers out, as the reference's baseline (no
  centring, so it must learn translation equivariance from data).

``forward`` returns ``(positions, reg)``: GATr's regulariser ``reg`` (per sample) keeps the output
point's weight near 1 (``(|e123| - 1)^2`` for PGA, ``(|w| - 1)^2`` for CGA, summed over bodies; 0
for E-GATr and the Transformer). The reference adds the squared non-point components; we keep only
the weight term (a choice, documented in docs/gatr.md).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from eqt.config import Config
from eqt.models.gatr import VARIANTS, GATr, GATrConfig
from eqt.models.transformer import Transformer, TransformerConfig
from eqt.primitives import cga, pga, vga

__all__ = ["NBodyModelConfig", "NBodyModel", "MODEL_NAMES"]

MODEL_NAMES = (*VARIANTS, "Transformer")


@dataclasses.dataclass(frozen=True)
class NBodyModelConfig(Config):
    """Which model and how large. GATr sizes apply to the four GATr variants, ``hidden`` etc. to the Transformer.

    ``centre=True`` subtracts the mean initial position before the model and adds it back after
    (always on for E-GATr). It keeps exact E(3) equivariance and makes the inputs small, which
    matters for C-GATr: a conformal point carries ``|x|^2 / 2`` on ``e4, e5``, so far from the
    origin its components are large and float32 products lose the O(1) distances.
    """

    variant: str = "iP-GATr"
    num_blocks: int = 4
    hidden_mv: int = 16
    hidden_s: int = 32
    heads: int = 4
    head_mv: int = 4
    head_s: int = 8
    bilinear_mv: int = 8
    hidden: int = 128
    transformer_heads: int = 8
    mlp_ratio: int = 2
    centre: bool = False

    def __post_init__(self) -> None:
        if self.variant not in MODEL_NAMES:
            raise ValueError(f"unknown n-body model '{self.variant}' (choose from {', '.join(MODEL_NAMES)})")

    def net_config(self) -> GATrConfig | TransformerConfig:
        """The configuration of the wrapped network."""
        if self.variant == "Transformer":
            return TransformerConfig(in_features=7, out_features=3, hidden=self.hidden, num_blocks=self.num_blocks,
                                     heads=self.transformer_heads, mlp_ratio=self.mlp_ratio)
        return GATrConfig(**VARIANTS[self.variant], in_mv=2 if self.variant == "E-GATr" else 1, in_s=0, out_mv=1,
                          out_s=0, hidden_mv=self.hidden_mv, hidden_s=self.hidden_s, num_blocks=self.num_blocks,
                          heads=self.heads, head_mv=self.head_mv, head_s=self.head_s, bilinear_mv=self.bilinear_mv)


class NBodyModel(nn.Module):
    """Predict final body positions from initial masses, positions and velocities.

    Args:
        config: an :class:`NBodyModelConfig`.
    """

    def __init__(self, config: NBodyModelConfig = NBodyModelConfig()):
        super().__init__()
        self.config = config
        net = config.net_config()
        self.net = Transformer(net) if isinstance(net, TransformerConfig) else GATr(net)

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Args: inputs ``(B, N, 7)`` = mass, x0, v0 per body.

        Returns: positions ``(B, N, 3)`` and the regulariser ``(B,)``.
        """
        if inputs.dim() != 3 or inputs.shape[-1] != 7:
            raise ValueError(f"n-body inputs must be (batch, bodies, 7) = mass, x0, v0; got {tuple(inputs.shape)}")
        m, x, v = inputs[..., :1], inputs[..., 1:4], inputs[..., 4:7]
        variant = self.config.variant
        zero = inputs.new_zeros(inputs.shape[0])
        centre = x.mean(dim=-2, keepdim=True) if self.config.centre or variant == "E-GATr" else None  # (B, 1, 3)
        if centre is not None and variant != "E-GATr":
            x = x - centre
        if variant == "Transformer":
            out = self.net(torch.cat([m, x, v], dim=-1))
            return (out if centre is None else out + centre), zero
        if variant == "E-GATr":
            mv = torch.stack([vga.embed_point(x, centre), vga.embed_vector(v)], dim=-2)  # (B, N, 2, 8)
            mv[..., 0, 0] = m[..., 0]
            out, _ = self.net(mv)
            return vga.extract_point(out[..., 0, :], centre), zero
        mod = cga if variant == "C-GATr" else pga
        mv = mod.embed_point(x) + mod.embed_translation(v)
        mv[..., 0] = mv[..., 0] + m[..., 0]
        out, _ = self.net(mv.unsqueeze(-2))  # (B, N, 1, dim)
        out = out[..., 0, :]
        weight = out[..., 14] if mod is pga else out[..., 5] - out[..., 4]  # e123 / -<P, e_inf>
        pred = mod.extract_point(out)
        return (pred if centre is None else pred + centre), (weight.abs() - 1.0).square().sum(-1)
