"""The shared pre-norm block skeleton and the baseline's layers."""

from __future__ import annotations

import torch

from eqt.layers.transformer import MLP, LayerNorm, PreNormBlock, SelfAttention
from eqt.testing import Invariant, Permutations, assert_equivariant


def test_pre_norm_block_is_two_residuals():
    torch.manual_seed(0)
    block = PreNormBlock(LayerNorm(8), SelfAttention(8, 2), LayerNorm(8), MLP(8, 16)).double()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    (h,) = block((x,))
    y = x + block.attention(*block.norm1(x))[0]
    torch.testing.assert_close(h, y + block.mlp(*block.norm2(y))[0])


def test_none_features_pass_through():
    class Pair(torch.nn.Module):
        def forward(self, a, b):
            return a, b

    block = PreNormBlock(Pair(), Pair(), Pair(), Pair())
    x = torch.randn(2, 3)
    out = block((x, None))
    assert out[1] is None
    torch.testing.assert_close(out[0], 4 * x)


def test_self_attention_permutation_equivariant_and_masked():
    torch.manual_seed(1)
    att = SelfAttention(6, 3).double()
    x = torch.randn(2, 7, 6, dtype=torch.float64)
    fn = lambda a: att(a)[0]  # noqa: E731
    assert assert_equivariant(fn, Permutations(7), [(x, Invariant(atom_axis=1))], [Invariant(atom_axis=1)]) < 1e-12
    mask = torch.zeros(7, 7, dtype=torch.bool)
    mask[:4, :4] = mask[4:, 4:] = True
    torch.testing.assert_close(att(x, attn_mask=mask)[0][:, :4], att(x[:, :4])[0])
