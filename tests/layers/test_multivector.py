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
