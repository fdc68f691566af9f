"""ET: equivariance of every tier, the potential contract, bad input, and float32 behaviour."""

from __future__ import annotations

import pytest
import torch

from eqt.models.et import ET, ETConfig
from eqt.physics.potential import Potential
from eqt.testing import E3, O3, AtomIndex, Invariant, Permutations, Position, Vector, assert_equivariant
from eqt.testing.potential import PotentialContract, test_molecule

SMALL = ETConfig(hidden_channels=16, num_layers=2, num_heads=4, num_rbf=8, cutoff_upper=4.0)


def _randomise(model: torch.nn.Module, scale: float = 0.2) -> torch.nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(scale * torch.randn_like(p))
    return model


class TestETContract(PotentialContract):
    def make_model(self):
        return ET(SMALL)


@pytest.mark.parametrize("config", [
    SMALL,
    SMALL.replace(vector_cutoff=False),
    SMALL.replace(distance_influence="keys", neighbor_embedding=False),
    SMALL.replace(distance_influence="values", rbf_type="gauss", trainable_rbf=True),
    SMALL.replace(distance_influence="none", cutoff_lower=0.5),
])
def test_representation_equivariant(config):
    model = _randomise(ET(config)).double().eval()
    z, pos = test_molecule()
    edge_index, shifts = model.graph(pos, torch.zeros_like(z))
    edge_vec = pos[edge_index[0]] - pos[edge_index[1]]
    group = O3() * Permutations(len(z))
    err = assert_equivariant(model.representation, group,
                             [(z, Invariant(atom_axis=0)), (edge_index, AtomIndex()), (edge_vec, Vector(atom_axis=None))],
                             [Invariant(atom_axis=0), Vector(spatial_axis=1)], n_samples=6)
    assert err < 1e-10


def test_et_float32_equivariant_and_matches_float64():
    model = _randomise(ET(SMALL)).eval()
    z, pos = test_molecule()
    pot32 = Potential(model)

    def fn(p, zz):
        out = pot32(zz, p)
        return out["energy"], out["forces"]

    assert_equivariant(fn, E3(), [(pos.float(), Position()), (z, Invariant(atom_axis=0))],
                       [Invariant(), Vector()], dtype=torch.float32, rtol=1e-5, grad=True)
    out32 = pot32(z, pos.float())
    out64 = Potential(model.double())(z, pos)
    torch.testing.assert_close(out32["forces"].double(), out64["forces"], rtol=1e-4, atol=1e-5)


def test_config_rejects_unknown_key():
    with pytest.raises(ValueError, match="did you mean 'num_heads'"):
        ETConfig.from_dict({"num_head": 4})


def test_heads_must_divide_channels():
    with pytest.raises(ValueError, match="divisible"):
        ET(SMALL.replace(num_heads=3))


def test_init_output_scale():
    """Initialisation contract: per-atom outputs of a fresh model are O(1), neither vanishing nor exploding."""
    torch.manual_seed(0)
    model = ET(ETConfig(hidden_channels=64, num_layers=4, num_heads=8)).eval()
    z, pos = test_molecule("C6H6")
    e = model.atomic_energies(z, pos.float())
    assert 1e-3 < e.std() < 10, f"per-atom energy std at init is {e.std():.3g}"


@pytest.mark.parametrize("make_input, message", [
    (lambda z, p: (z, p.new_full(p.shape, float("nan"))), "atom 0"),
    (lambda z, p: (z, torch.cat([p[:1], p[:1] + 0.01, p[2:]])), "closer"),
    (lambda z, p: (torch.cat([torch.tensor([150]), z[1:]]), p), "150"),
    (lambda z, p: (z[:0], p[:0]), "empty"),
    (lambda z, p: (z, p[:, :2]), "shape"),
])
def test_bad_input_is_a_clear_error(make_input, message):
    model = ET(SMALL)
    z, pos = test_molecule()
    z, pos = make_input(z, pos.float())
    with pytest.raises(ValueError, match=message):
        Potential(model)(z, pos)


def test_unsorted_batch_is_rejected():
    model = ET(SMALL)
    z, pos = test_molecule()
    batch = torch.tensor([0, 0, 1, 1, 0, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="sorted"):
        Potential(model)(z, pos.float(), batch)
