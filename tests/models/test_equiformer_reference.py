"""eqt's Equiformer against golden outputs of the reference (atomicarchitects/equiformer).

``tests/data/golden/equiformer.pt`` holds a small reference ``GraphAttentionTransformerMD17``
(``nonlinear_message=True``, exp basis, SE(3) labels, 2 blocks) with seeded random weights, two
molecules, and the reference's energies, forces and final node features, all float64; made by
``benchmarks/make_golden.py`` (its docstring: command, commit, shims). The weights are transplanted
with :func:`eqt.models.equiformer.from_reference_state_dict`; no reference code is needed here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eqt.models.equiformer import EquiformerConfig, from_reference_state_dict, reference_config
from eqt.physics.potential import Potential

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "equiformer.pt"
TOL = 1e-10  # float64 round-off (observed differences: see docs/equiformer.md, "Reference parity")


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(GOLDEN, weights_only=True)


def _config(g: dict) -> EquiformerConfig:
    c = dict(g["config"])
    c["fc_neurons"] = tuple(int(v) for v in c["fc_neurons"].split(","))
    return reference_config(**c)


@pytest.fixture(scope="module")
def model(golden):
    return from_reference_state_dict(golden["state_dict"], _config(golden)).eval()


def test_golden_file_is_small_and_plain(golden):
    assert GOLDEN.stat().st_size < 2**20
    assert golden["commit"].startswith("64cb786")
    assert golden["state_dict"]["atom_embed.atom_type_lin.tp.weight"].dtype == torch.float64


def test_transplant_drops_only_dead_edge_degree_weights(golden, model):
    """eqt keeps the edge-degree product paths of the 0e input only (the others weigh zeros)."""
    sd, n0 = golden["state_dict"], 8
    assert model.config.parity == "se3" and not model.config.smooth_cutoff
    assert sd["edge_deg_embed.rad.net.6.weight"].shape[0] > 3 * n0
    assert model.edge_embedding.radial.net[6].weight.shape[0] == 3 * n0  # 0e x (0e, 1e, 2e)


def test_node_features_match(golden, model):
    z, pos, batch = golden["z"], golden["pos"], golden["batch"]
    pot = Potential(model)
    feats = {}
    h = model.norm.register_forward_hook(lambda m, i, o: feats.__setitem__("x", o.detach()))
    pot(z, pos, batch)
    h.remove()
    assert (feats["x"] - golden["features"]).abs().max().item() < TOL * max(1.0, golden["features"].abs().max().item())


def test_energy_and_forces_match(golden, model):
    out = Potential(model)(golden["z"], golden["pos"], golden["batch"])
    e, f = out["energy"].detach(), out["forces"].detach()
    assert e.dtype == torch.float64
    assert (e - golden["energy"]).abs().max().item() < TOL * max(1.0, golden["energy"].abs().max().item())
    assert (f - golden["forces"]).abs().max().item() < TOL * max(1.0, golden["forces"].abs().max().item())
    assert golden["forces"].abs().max() > 1e-2  # forces are not trivially zero


def test_energy_and_forces_match_float32(golden):
    model = from_reference_state_dict(golden["state_dict"], _config(golden)).float().eval()
    out = Potential(model)(golden["z"], golden["pos"].float(), golden["batch"])
    e, f = out["energy"].detach().double(), out["forces"].detach().double()
    assert (e - golden["energy"]).abs().max().item() < 1e-5 * max(1.0, golden["energy"].abs().max().item())
    # float32 round-off of a second-derivative-free autograd force: ~1e-5 of max |F| (observed 1.5e-5)
    assert (f - golden["forces"]).abs().max().item() < 5e-5 * max(1.0, golden["forces"].abs().max().item())


def test_eqt_defaults_differ_from_the_reference(golden):
    """The deliberate differences are real: the smooth cutoff changes the outputs."""
    model = from_reference_state_dict(golden["state_dict"], _config(golden))
    smooth = model.__class__(model.config.replace(smooth_cutoff=True)).double()
    smooth.load_state_dict(model.state_dict())
    e = Potential(smooth)(golden["z"], golden["pos"], golden["batch"])["energy"].detach()
    assert (e - golden["energy"]).abs().max() > 1e-6
