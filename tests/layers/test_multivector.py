"""EquiLinear on multivector + scalar channels: equivariance (float64) for every algebra, errors."""

from __future__ import annotations

import pytest
import torch

from eqt.layers.multivector import EquiLinear
from eqt.primitives.clifford import Algebra
from eqt.testing import Invariant, Multivector, Permutations, Pin, assert_equivariant

CASES = [((3, 0, 0), "pin", False), ((3, 0, 1), "pin", False), ((4, 1, 0), "euclidean", False),
         ((3, 0, 1), "euclidean", True)]


@pytest.mark.parametrize("sig, subgroup, proper", CASES)
def test_equilinear_equivariant(sig, subgroup, proper):
    alg = Algebra(*sig)
    torch.manual_seed(0)
    layer = EquiLinear(alg, 3, 4, in_s=2, out_s=5, subgroup=subgroup, proper=proper).double()
    with torch.no_grad():
        layer.bias.normal_()
    mv = torch.randn(6, 3, alg.dim, dtype=torch.float64)  # 6 tokens, 3 channels
    s = torch.randn(6, 2, dtype=torch.float64)
    group = Pin(*sig, subgroup=subgroup, proper=proper) * Permutations(6)
    err = assert_equivariant(layer, group, [(mv, Multivector(*sig, atom_axis=0)), (s, Invariant(atom_axis=0))],
                             [Multivector(*sig, atom_axis=0), Invariant(atom_axis=0)], n_samples=6)
    assert err < 1e-10


def test_equilinear_float32_equivariant():
    alg = Algebra(3, 0, 1)
    layer = EquiLinear(alg, 4, 4, 0, 0)
    mv = torch.randn(5, 4, 16)
    assert_equivariant(lambda x: layer(x)[0], Pin(3, 0, 1), [(mv, Multivector(3, 0, 1))], [Multivector(3, 0, 1)],
                       dtype=torch.float32, rtol=1e-5)


def test_output_scale_at_init():
    torch.manual_seed(0)
    layer = EquiLinear(Algebra(3, 0, 1), 64, 64)
    with torch.no_grad():
        out, _ = layer(torch.randn(256, 64, 16))
    assert 0.3 < float(out.std()) < 3.0


def test_wrong_shapes_are_clear_errors():
    layer = EquiLinear(Algebra(3, 0, 1), 3, 4, in_s=2, out_s=1)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 16\)"):
        layer(torch.randn(5, 3, 8), torch.randn(5, 2))
    with pytest.raises(ValueError, match="scalars"):
        layer(torch.randn(5, 3, 16), None)


@pytest.mark.parametrize("sig, subgroup, proper", CASES)
def test_norm_gelu_and_bilinear_equivariant(sig, subgroup, proper):
    from eqt.layers.multivector import EquiLayerNorm, GeometricBilinear, scalar_gated_gelu

    alg = Algebra(*sig)
    torch.manual_seed(1)
    mv = torch.randn(5, 3, alg.dim, dtype=torch.float64)
    s = torch.randn(5, 2, dtype=torch.float64)
    group = Pin(*sig, subgroup=subgroup, proper=proper) * Permutations(5)
    reps_in = [(mv, Multivector(*sig, atom_axis=0)), (s, Invariant(atom_axis=0))]
    reps_out = [Multivector(*sig, atom_axis=0), Invariant(atom_axis=0)]
    assert assert_equivariant(EquiLayerNorm(alg, 2).double(), group, reps_in, reps_out) < 1e-10
    assert assert_equivariant(scalar_gated_gelu, group, reps_in, reps_out) < 1e-10
    use_join = sig == (3, 0, 1)
    bil = GeometricBilinear(alg, 3, 4, hidden=4, in_s=2, out_s=3, use_join=use_join, subgroup=subgroup,
                            proper=proper).double()
    if use_join:
        # GATr's reference multivector: the mean of the input, transformed with it
        fn = lambda m, x: bil(m, x, reference=m.mean(dim=(0, 1)).expand(m.shape[0], -1))  # noqa: E731
    else:
        fn = bil
    assert assert_equivariant(fn, group, reps_in, reps_out, n_samples=4) < 1e-10


def test_layer_norm_normalises_the_channel_rms():
    from eqt.layers.multivector import EquiLayerNorm
    from eqt.primitives.clifford import squared_norm

    alg = Algebra(3, 0, 1)
    out, _ = EquiLayerNorm(alg)(10 * torch.randn(7, 8, 16, dtype=torch.float64))
    rms = squared_norm(alg, out, absolute=True).mean(dim=-2)
    torch.testing.assert_close(rms, torch.ones_like(rms), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sig, subgroup, proper", CASES)
def test_attention_equivariant(sig, subgroup, proper):
    from eqt.layers.multivector import MultivectorAttention

    alg = Algebra(*sig)
    torch.manual_seed(2)
    att = MultivectorAttention(alg, 3, 2, heads=2, hidden_mv=2, hidden_s=3, subgroup=subgroup, proper=proper).double()
    mv = torch.randn(2, 6, 3, alg.dim, dtype=torch.float64)  # batch 2, 6 tokens
    s = torch.randn(2, 6, 2, dtype=torch.float64)
    group = Pin(*sig, subgroup=subgroup, proper=proper) * Permutations(6)
    err = assert_equivariant(att, group, [(mv, Multivector(*sig, atom_axis=1)), (s, Invariant(atom_axis=1))],
                             [Multivector(*sig, atom_axis=1), Invariant(atom_axis=1)], n_samples=4)
    assert err < 1e-10


def test_attention_mask_and_batch_independence():
    from eqt.layers.multivector import MultivectorAttention

    alg = Algebra(3, 0, 1)
    att = MultivectorAttention(alg, 2, 0, heads=2, hidden_mv=2).double()
    mv = torch.randn(1, 5, 2, 16, dtype=torch.float64)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[:3, :3] = mask[3:, 3:] = True  # two independent sets of tokens
    both, _ = att(mv, attn_mask=mask)
    first, _ = att(mv[:, :3])
    torch.testing.assert_close(both[:, :3], first, rtol=1e-12, atol=1e-12)


def test_distance_attention_equivariant_and_validated():
    from eqt.layers.multivector import MultivectorAttention

    alg = Algebra(3, 0, 1)
    torch.manual_seed(3)
    att = MultivectorAttention(alg, 3, 2, heads=2, hidden_mv=2, hidden_s=3, distance=True).double()
    with torch.no_grad():
        att.log_weights.normal_()
    mv = torch.randn(2, 6, 3, 16, dtype=torch.float64)
    s = torch.randn(2, 6, 2, dtype=torch.float64)
    group = Pin(3, 0, 1) * Permutations(6)
    err = assert_equivariant(att, group, [(mv, Multivector(3, 0, 1, atom_axis=1)), (s, Invariant(atom_axis=1))],
                             [Multivector(3, 0, 1, atom_axis=1), Invariant(atom_axis=1)], n_samples=4)
    assert err < 1e-10
    with pytest.raises(ValueError, match="projective"):
        MultivectorAttention(Algebra(3, 0, 0), 3, 2, heads=2, hidden_mv=2, distance=True)


def test_mlp_is_bilinear_gelu_linear():
    from eqt.layers.multivector import MultivectorMLP, scalar_gated_gelu

    alg = Algebra(3, 0, 1)
    mlp = MultivectorMLP(alg, 3, 2, hidden=2, use_join=True).double()
    mv, s = torch.randn(4, 3, 16, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    ref = mv.mean(dim=(0, 1)).expand(4, -1)
    expected = mlp.linear(*scalar_gated_gelu(*mlp.bilinear(mv, s, reference=ref)))
    for a, b in zip(mlp(mv, s, reference=ref), expected):
        torch.testing.assert_close(a, b)
