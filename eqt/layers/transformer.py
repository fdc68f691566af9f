"""The transformer block skeleton shared by GATr and its plain baseline, and the baseline's parts.

A :class:`PreNormBlock` is ``x + attention(norm(x))`` then ``x + mlp(norm(x))`` on a *tuple* of
feature tensors (GATr: ``(multivectors, scalars)``; the baseline: ``(features,)``). Each sub-layer
takes the tuple's tensors as positional arguments and returns a tuple of the same kinds; ``None``
entries (absent scalar channels) pass through. GATr and the baseline transformer differ only in
the sub-layers they plug in, so a comparison between them compares representations, not
skeletons.

Baseline parts (non-equivariant): :class:`LayerNorm`, :class:`SelfAttention` (multi-head attention
through ``scaled_dot_product_attention``) and :class:`MLP` (Linear -> GELU -> Linear), all on
``(..., T, C)`` tensors.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

__all__ = ["PreNormBlock", "LayerNorm", "SelfAttention", "MLP"]

Features = tuple  # tuple[Tensor | None, ...]


def _add(x: Features, h: Features) -> Features:
    return tuple(a if b is None else (b if a is None else a + b) for a, b in zip(x, h))


class PreNormBlock(nn.Module):
    """Pre-norm residual block: ``x + attention(norm1(x))``, then ``x + mlp(norm2(x))``.

    Args:
        norm1, attention, norm2, mlp: modules mapping ``*features -> tuple`` of the same kinds.
    """

    def __init__(self, norm1: nn.Module, attention: nn.Module, norm2: nn.Module, mlp: nn.Module):
        super().__init__()
        self.norm1, self.attention, self.norm2, self.mlp = norm1, attention, norm2, mlp

    def forward(self, x: Features, attention_kwargs: dict | None = None, mlp_kwargs: dict | None = None) -> Features:
        """Args: x a tuple of ``(..., T, ...)`` tensors; keyword arguments for the two sub-layers.

        Returns: a tuple of the same shapes.
        """
        x = _add(x, self.attention(*self.norm1(*x), **(attention_kwargs or {})))
        return _add(x, self.mlp(*self.norm2(*x), **(mlp_kwargs or {})))


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the channel axis that returns a 1-tuple (the skeleton's convention).

    Shapes: ``(..., C) -> ((..., C),)``.
    """

    def forward(self, x: Tensor) -> Features:  # type: ignore[override]
        return (super().forward(x),)


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens, one ``scaled_dot_product_attention`` call.

    Args:
        channels: features in and out.
        heads: attention heads.
        head_dim: features per head (default ``channels // heads``).

    Attributes:
        rep_in, rep_out: ``channels``.
    """

    def __init__(self, channels: int, heads: int, head_dim: int | None = None):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim or max(channels // heads, 1)
        self.rep_in = self.rep_out = channels
        self.qkv = nn.Linear(channels, 3 * heads * self.head_dim)
        self.out = nn.Linear(heads * self.head_dim, channels)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Features:
        """Args: x ``(..., T, C)``; attn_mask boolean ``(..., T, T)`` (True = attend).

        Returns: ``((..., T, C),)``.
        """
        if x.shape[-1] != self.rep_in:
            raise ValueError(f"SelfAttention expects (..., T, {self.rep_in}), got {tuple(x.shape)}")
        lead, T = x.shape[:-2], x.shape[-2]
        q, k, v = self.qkv(x).reshape(*lead, T, 3, self.heads, self.head_dim).unbind(-3)  # (..., T, H, D) each
        q, k, v = (a.transpose(-2, -3) for a in (q, k, v))  # (..., H, T, D)
        mask = attn_mask.unsqueeze(-3) if attn_mask is not None else None
        o = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0 / math.sqrt(self.head_dim))
        return (self.out(o.transpose(-2, -3).reshape(*lead, T, self.heads * self.head_dim)),)


class MLP(nn.Module):
    """``Linear -> GELU (tanh) -> Linear``.

    Args:
        channels: features in and out.
        hidden: hidden features.
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.rep_in = self.rep_out = channels
        self.fc1, self.fc2 = nn.Linear(channels, hidden), nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Features:
        """Shapes: ``(..., C) -> ((..., C),)``."""
        return (self.fc2(nn.functional.gelu(self.fc1(x), approximate="tanh")),)
