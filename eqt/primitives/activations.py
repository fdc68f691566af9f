"""Activation functions by name (the names TorchMD-NET configs use)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "activation"]


class ShiftedSoftplus(nn.Module):
    """``softplus(x) - log 2`` (SchNet's ssp), zero at the origin."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(x) - math.log(2.0)


ACTIVATIONS = {"silu": nn.SiLU, "ssp": ShiftedSoftplus, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def activation(name: str) -> nn.Module:
    """Instantiate an activation by name.

    Args:
        name: one of ``silu``, ``ssp``, ``tanh``, ``sigmoid``.

    Raises:
        ValueError: unknown name.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
