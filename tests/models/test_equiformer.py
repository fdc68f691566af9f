"""Equiformer: O(3) x permutation equivariance at l_max 1, 2, 3, the SE(3) labelling's reflection
failure, the potential contract, initial output scale, config errors and the reference's size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqt.models.equiformer import MD17_L2, Equiformer, EquiformerConfig
from eqt.physics.potential import Potential
from eqt.reps.groups import Element, FiniteGroup
from eqt.testing import O3, SO3, AtomIndex, Invariant, Irreps, Permutations, Vector, assert_equivariant
from eqt.testing.potential import PotentialContract, test_molecule

SMALL = EquiformerConfig(irreps_node="8x0e+4x1o+2x2e", l_max=2, num_layers=2, num_heads=2, num_basis=8,
                         radial_hidden=(16,), irreps_feature="8x0e", cutoff=4.0)
BY_LMAX = {1: SMALL.replace(irreps_node="8x0e+4x1o", l_max=1),
           2: SMALL,
           3: SMALL.replace(irreps_node="4x0e+2x1o+2x2e+2x3o", l_max=3)}


def _perturb(model: torch.nn.Module, scale: float = 0.2) -> torch.nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.double().eval()


def _inputs(model):
    z, pos = test_molecule()
    edge_index, _ = model.graph(pos, torch.zeros_like(z))
    return z, pos, edge_index, pos[edge_index[0]] - pos[edge_index[1]]


class TestEquiformerContract(PotentialContract):
    def make_model(self):
        return Equiformer(SMALL.replace(irreps_node="4x0e+2x1o+2x2e", num_heads=1))


@pytest.mark.parametrize("l_max", [1, 2, 3])
def test_representation_equivariant(l_max):
    model = _perturb(Equiformer(BY_LMAX[l_max]))
    z, pos, edge_index, vec = _inputs(model)
    err = assert_equivariant(model.representation, O3() * Permutations(len(z)),
                             [(z, Invariant(atom_axis=0)), (edge_index, AtomIndex()), (vec, Vector(atom_axis=None))],
                             Irreps(model.rep_out), n_samples=6)
    assert err < 1e-10


def test_reference_activation_norm_equivariant():
    """``activation_norm="e3nn"`` (the reference's Monte-Carlo constants) keeps the model equivariant."""
    model = _perturb(Equiformer(SMALL.replace(activation_norm="e3nn")))
    z, pos, edge_index, vec = _inputs(model)
    err = assert_equivariant(model.representation, O3() * Permutations(len(z)),
                             [(z, Invariant(atom_axis=0)), (edge_index, AtomIndex()), (vec, Vector(atom_axis=None))],
                             Irreps(model.rep_out), n_samples=3)
    assert err < 1e-10


def test_qm9_style_options_equivariant():
    cfg = SMALL.replace(radial_basis="gaussian", trainable_basis=True, smooth_cutoff=False, output="homo")
    model = _perturb(Equiformer(cfg))
    z, pos, edge_index, vec = _inputs(model)
    err = assert_equivariant(model.representation, O3() * Permutations(len(z)),
                             [(z, Invariant(atom_axis=0)), (edge_index, AtomIndex()), (vec, Vector(atom_axis=None))],
                             Irreps(model.rep_out), n_samples=3)
    assert err < 1e-10
    dropout = Equiformer(SMALL.replace(alpha_drop=0.5)).train()
    assert torch.isfinite(dropout(z, pos.float())).all()


def test_both_parities_and_vector_features_equivariant():
    cfg = SMALL.replace(irreps_node="4x0e+2x0o+2x1e+2x1o+2x2e+2x2o", irreps_feature="4x0e+2x0o+2x1o")
    model = _perturb(Equiformer(cfg))
    z, pos, edge_index, vec = _inputs(model)
    err = assert_equivariant(model.representation, O3() * Permutations(len(z)),
                             [(z, Invariant(atom_axis=0)), (edge_index, AtomIndex()), (vec, Vector(atom_axis=None))],
                             Irreps(model.rep_out), n_samples=4)
    assert err < 1e-10


def test_se3_labelling_is_not_reflection_equivariant():
    """The reference's labels (1e vectors) give an SE(3) model: rotations pass, an inversion fails."""
    model = _perturb(Equiformer(SMALL.replace(parity="se3")))
    assert str(model.config.sh_irreps) == "1x0e+1x1e+1x2e"
    z, pos = test_molecule()
    args = [(pos, Vector()), (z, Invariant(atom_axis=0))]
    fn = lambda p, zz: model(zz, p)  # noqa: E731
    assert assert_equivariant(fn, SO3(), args, Invariant(), n_samples=3) < 1e-10
    inversion = FiniteGroup([Element(rotation=-np.eye(3))], "inversion")
    with pytest.raises(AssertionError, match="improper=True"):
        assert_equivariant(fn, inversion, args, Invariant())
    o3_model = _perturb(Equiformer(SMALL))
    assert_equivariant(lambda p, zz: o3_model(zz, p), inversion, args, Invariant())


def test_init_output_variance_near_one():
    """Initialisation contract: per-atom outputs of fresh models have second moment ~1."""
    cfg = SMALL.replace(irreps_node="16x0e+8x1o+4x2e", irreps_feature="64x0e", num_layers=3)
    values = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = Equiformer(cfg).eval()
        for name in ("CH3CH2OH", "C6H6", "CH3COOH"):
            z, pos = test_molecule(name, seed=seed)
            with torch.no_grad():
                values.append(model.atomic_energies(z, pos.float()))
    second_moment = torch.cat(values).pow(2).mean()
    assert 0.25 < second_moment < 4, f"per-atom output second moment at init is {second_moment:.3g}"


def test_float32_matches_float64():
    model = _perturb(Equiformer(SMALL))
    z, pos = test_molecule()
    out64 = Potential(model)(z, pos)
    out32 = Potential(model.float())(z, pos.float())
    torch.testing.assert_close(out32["energy"].double(), out64["energy"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out32["forces"].double(), out64["forces"], rtol=1e-4, atol=1e-5)


def test_config_round_trip_and_state_dict():
    model = Equiformer(SMALL)
    again = Equiformer(EquiformerConfig.from_dict({**SMALL.to_dict(), "radial_hidden": [16]}))
    again.load_state_dict(model.state_dict(), strict=True)
    assert again.config == SMALL
    assert not any(k.split(".")[-1].startswith(("cg_", "col_path_", "head_index", "gate_index"))
                   for k in model.state_dict())


def test_reference_parameter_count():
    """Same parameters as the reference MD17 L2 model (3,496,001) except the two documented
    simplifications: the edge-degree product reads only 0e (-73,408) and the atom embedding is an
    nn.Embedding over max_z = 100 (+4,480)."""
    model = Equiformer(MD17_L2.replace(parity="se3"))
    assert sum(p.numel() for p in model.parameters()) == 3_496_001 - 73_408 + 4_480


@pytest.mark.parametrize("changes, message", [
    (dict(irreps_node="128x0e+64x1q"), "cannot parse"),
    (dict(irreps_feature="lots"), "cannot parse"),
    (dict(l_max=13), "l_max=13"),
    (dict(num_heads=3), "does not divide"),
    (dict(irreps_node="64x1o+128x0e"), "sorted"),
    (dict(irreps_node="64x1o"), "start with 0e"),
    (dict(irreps_feature="8x1o"), "no 0e"),
    (dict(parity="e3"), "parity"),
    (dict(radial_basis="bessel"), "radial_basis"),
    (dict(output="dipole"), "QM9 target"),
])
def test_config_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        SMALL.replace(**changes)


def test_unknown_key_rejected():
    with pytest.raises(ValueError, match="did you mean 'num_heads'"):
        EquiformerConfig.from_dict({"num_head": 4})


def test_checkpoint_round_trip(tmp_path):
    """Saves and reloads through eqt.checkpoint."""
    import eqt.checkpoint as ckpt

    model = _perturb(Equiformer(SMALL)).float()
    path = ckpt.save_checkpoint(tmp_path / "equiformer.pt", model)
    again = ckpt.load_model(path)
    z, pos = test_molecule()
    torch.testing.assert_close(again(z, pos.float()), model(z, pos.float()), rtol=0, atol=0)
