"""SLMC transformer: invariant energy (all of translations x D4, random O(3)), linear start, training."""

from __future__ import annotations

import pytest
import torch

from eqt.models.spin_transformer import SpinTransformer, SpinTransformerConfig
from eqt.physics.linear_model import LinearSpinModel
from eqt.physics.monte_carlo import random_spins
from eqt.testing import O3, Invariant, Vector, assert_equivariant, square_lattice_group


def _model(L, layers=2):
    torch.manual_seed(0)
    cfg = SpinTransformerConfig(L=L, num_layers=layers, channels=3, heads=2, head_channels=2, qkv_shells=2,
                                readout_shells=3)
    model = SpinTransformer(cfg).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


@pytest.mark.parametrize("L", [4, 6])
def test_energy_invariant_under_every_lattice_symmetry(L):
    model = _model(L)
    spins = random_spins(2, L, torch.Generator().manual_seed(0)).reshape(2, L * L, 3)
    fn = lambda s: model(s.reshape(-1, L, L, 3))  # noqa: E731
    err = assert_equivariant(fn, square_lattice_group(L), [(spins, Vector(atom_axis=1))], [Invariant()])
    assert err < 1e-12


def test_energy_invariant_under_o3_with_inversion():
    L = 4
    model = _model(L, layers=3)
    spins = random_spins(3, L, torch.Generator().manual_seed(1)).reshape(3, L * L, 3)
    fn = lambda s: model(s.reshape(-1, L, L, 3))  # noqa: E731
    assert assert_equivariant(fn, O3(), [(spins, Vector(atom_axis=1))], [Invariant()], n_samples=8) < 1e-10
    fn32 = lambda s: model.float()(s.reshape(-1, L, L, 3))  # noqa: E731
    assert_equivariant(fn32, O3(), [(spins.float(), Vector(atom_axis=1))], [Invariant()], dtype=torch.float32,
                       rtol=1e-5)


def test_starts_exactly_at_the_linear_model():
    linear = LinearSpinModel(L=4, e0=-3.0, couplings=(0.3, -0.1, 0.05))
    spins = random_spins(5, 4, torch.Generator().manual_seed(3))
    for layers in (0, 2):
        cfg = SpinTransformerConfig(L=4, num_layers=layers, channels=3, readout_shells=3, qkv_shells=2)
        model = SpinTransformer.from_linear(cfg, linear.e0, linear.couplings).double()
        torch.testing.assert_close(model(spins), linear(spins))


def test_training_improves_on_a_nonlinear_target():
    """A four-spin term the linear model cannot express: two layers fit it better than zero layers."""
    L = 4
    g = torch.Generator().manual_seed(4)
    spins = random_spins(256, L, g)
    s = spins.reshape(256, L * L, 3)
    right = torch.roll(spins, 1, dims=2).reshape(256, L * L, 3)
    target = -((s * right).sum(-1) ** 2).sum(-1)  # sum of (S_i . S_i+x)^2
    losses = {}
    for layers in (0, 2):
        torch.manual_seed(0)
        model = SpinTransformer(SpinTransformerConfig(L=L, num_layers=layers, channels=2, heads=2, head_channels=2,
                                                      qkv_shells=2, readout_shells=2)).double()
        opt = torch.optim.Adam(model.parameters(), lr=2e-2)
        for _ in range(150):
            loss = (model(spins) - target).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses[layers] = float(loss.detach())
    assert losses[2] < 0.7 * losses[0], losses


def test_errors():
    with pytest.raises(ValueError, match="even"):
        SpinTransformerConfig(L=5)
    with pytest.raises(ValueError, match="num_layers"):
        SpinTransformerConfig(num_layers=-1)
    with pytest.raises(ValueError, match=r"\(B, 6, 6, 3\)"):
        SpinTransformer()(torch.zeros(2, 4, 4, 3))
    with pytest.raises(ValueError, match="couplings"):
        SpinTransformer.from_linear(SpinTransformerConfig(readout_shells=2), 0.0, (1.0,))
