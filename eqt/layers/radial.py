"""Radial basis modules: distances to basis vectors, with optional trainable parameters."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from eqt.primitives.radial import expnorm_init, expnorm_rbf, gaussian_rbf

__all__ = ["ExpNormalBasis", "GaussianBasis", "radial_basis"]


class ExpNormalBasis(nn.Module):
    """PhysNet exponential-normal basis with TorchMD-NET's initialisation.

    Args:
        num_rbf: number of functions ``K``.
        cutoff_upper: ``r_hi`` (the cosine envelope goes to zero there).
        cutoff_lower: ``r_lo``.
        trainable: make ``means``/``betas`` parameters (else buffers).
    """

    def __init__(self, num_rbf: int, cutoff_upper: float, cutoff_lower: float = 0.0, trainable: bool = False):
        super().__init__()
        self.num_rbf, self.cutoff_upper, self.cutoff_lower = num_rbf, cutoff_upper, cutoff_lower
        means, betas = expnorm_init(num_rbf, cutoff_upper, cutoff_lower)
        if trainable:
            self.means, self.betas = nn.Parameter(means), nn.Parameter(betas)
        else:
            self.register_buffer("means", means)
            self.register_buffer("betas", betas)

    def forward(self, d: Tensor) -> Tensor:
        """Args: d ``(*S)`` distances. Returns: ``(*S, K)``."""
        return expnorm_rbf(d, self.means, self.betas, self.cutoff_upper, self.cutoff_lower)


class GaussianBasis(nn.Module):
    """Gaussians evenly spaced on ``[r_lo, r_hi]`` (TorchMD-NET ``GaussianSmearing``).

    Args:
        num_rbf: number of functions ``K``.
        cutoff_upper: ``r_hi``.
        cutoff_lower: ``r_lo``.
        trainable: make the offsets a parameter.
    """

    def __init__(self, num_rbf: int, cutoff_upper: float, cutoff_lower: float = 0.0, trainable: bool = False):
        super().__init__()
        offsets = torch.linspace(cutoff_lower, cutoff_upper, num_rbf)
        self.coeff = -0.5 / float(offsets[1] - offsets[0]) ** 2
        if trainable:
            self.offsets = nn.Parameter(offsets)
        else:
            self.register_buffer("offsets", offsets)

    def forward(self, d: Tensor) -> Tensor:
        """Args: d ``(*S)`` distances. Returns: ``(*S, K)``."""
        return gaussian_rbf(d, self.offsets, self.coeff)


def radial_basis(kind: str, num_rbf: int, cutoff_upper: float, cutoff_lower: float = 0.0, trainable: bool = False) -> nn.Module:
    """Build a radial basis by name (``expnorm`` or ``gauss``)."""
    kinds = {"expnorm": ExpNormalBasis, "gauss": GaussianBasis}
    if kind not in kinds:
        raise ValueError(f"unknown rbf_type '{kind}'; choose from {', '.join(kinds)}")
    return kinds[kind](num_rbf, cutoff_upper, cutoff_lower, trainable)
