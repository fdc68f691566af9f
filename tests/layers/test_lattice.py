"""Lattice layers: O(3) x translations x D4 equivariance (every lattice element), shapes, errors."""

from __future__ import annotations

import pytest
import torch

from eqt.layers.lattice import ShellConvolution, ShellReadout, SpinAttention
from eqt.testing import O3, Invariant, Vector, assert_equivariant, square_lattice_group

L = 4
N = L * L


def _features(c, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, N, c, 3, generator=g, dtype=torch.float64)


def _layers():
    torch.manual_seed(0)
    conv = ShellConvolution(L, 3, 5, num_shells=3).double()
    att = SpinAttention(L, 3, heads=2, head_channels=2, num_shells=2).double()
    with torch.no_grad():
        att.mix.normal_()  # zero at init: make the attention branch count
    return {"conv": conv, "attention": att}


@pytest.mark.parametrize("name", ["conv", "attention"])
def test_equivariant_under_every_lattice_symmetry_and_o3(name):
    layer = _layers()[name]
    x = _features(3)
    rep = Vector(atom_axis=1)
    # every one of the 8 L^2 = 128 translations x D4 elements
    assert assert_equivariant(layer, square_lattice_group(L), [(x, rep)], [rep]) < 1e-12
    assert assert_equivariant(layer, O3(), [(x, rep)], [rep], n_samples=6) < 1e-10


def test_readout_invariant_and_equal_to_linear_model():
    from eqt.physics.linear_model import LinearSpinModel
    from eqt.physics.monte_carlo import random_spins

    torch.manual_seed(1)
    readout = ShellReadout(L, 1, num_shells=3).double()
    with torch.no_grad():
        readout.couplings.normal_()
        readout.e0.fill_(0.7)
    x = _features(1)
    assert assert_equivariant(readout, square_lattice_group(L) * O3(), [(x, Vector(atom_axis=1))], [Invariant()],
                              n_samples=12) < 1e-10
    spins = random_spins(3, L, torch.Generator().manual_seed(2))
    linear = LinearSpinModel(L=L, e0=0.7, couplings=tuple(readout.couplings[:, 0].tolist()))
    torch.testing.assert_close(readout(spins.reshape(3, N, 1, 3)), linear(spins))


def test_attention_starts_as_identity_and_keeps_unit_spins():
    att = SpinAttention(L, 2, heads=1, head_channels=2, num_shells=2).double()
    x = torch.nn.functional.normalize(_features(2), dim=-1)
    torch.testing.assert_close(att(x), x)
    with torch.no_grad():
        att.mix.normal_()
    norms = att(x).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_errors():
    with pytest.raises(ValueError, match="neighbour shells"):
        ShellConvolution(L, 1, 1, num_shells=99)
    with pytest.raises(ValueError, match=r"\(B, 16, 3, 3\)"):
        _layers()["conv"](torch.zeros(2, 16, 2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="even"):
        ShellReadout(5, 1, 1)
