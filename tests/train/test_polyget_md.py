"""The PolyGET MD robustness study: distributions, topology, a tiny end-to-end run, resume, errors."""

import json

import numpy as np
import pytest
import torch

from eqt.train.polyget_md import (
    Histograms,
    PolyGETMDConfig,
    bond_angle_topology,
    compare,
    plot_survival,
    run_study,
    survival,
    wasserstein1,
)


def test_wasserstein_of_shifted_histograms_is_the_shift():
    h = Histograms()
    h.add("g", "bond", ["C-H"] * 3, np.array([1.0, 1.0, 1.0]))
    g = Histograms()
    g.add("g", "bond", ["C-H"] * 3, np.array([1.1, 1.1, 1.1]))
    a, b = h.counts["g"]["bond"]["C-H"], g.counts["g"]["bond"]["C-H"]
    assert wasserstein1("bond", a, a) == 0.0
    assert wasserstein1("bond", a, b) == pytest.approx(0.1, abs=1e-9)
    row = compare(h, g)["g"]["bond"]["C-H"]
    assert row["n_ml"] == row["n_ref"] == 3
    assert row["mean_ref"] - row["mean_ml"] == pytest.approx(0.1, abs=1e-9)
    back = Histograms.from_dict(json.loads(json.dumps(h.to_dict())))
    assert np.array_equal(back.counts["g"]["bond"]["C-H"], a)


def test_survival_curves(tmp_path):
    def rec(fam, t, time_ps, failed):
        return {"family": fam, "temperature_K": t, "time_ps": time_ps,
                "failure": {"time_ps": time_ps, "check": "bond_broken"} if failed else None}

    records = [rec("PVA", 500.0, 3.0, True), rec("PVA", 500.0, 10.0, False), rec("PLA", 500.0, 1.0, True),
               rec("PLA", 500.0, 10.0, False), rec("PVA", 300.0, 10.0, False)]
    s = survival(records)
    times, alive, end = s["all@500K"]
    assert times.tolist() == [1.0, 3.0] and alive.tolist() == [0.75, 0.5] and end == 10.0
    assert s["PVA@500K"][1].tolist() == [0.5] and len(s["PVA@300K"][0]) == 0 and s["PVA@300K"][2] == 10.0
    plot_survival({"a": records, "b": records[:2]}, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0


def test_topology_of_an_oligomer():
    pytest.importorskip("rdkit", reason="building oligomers needs RDKit: pip install rdkit")
    from eqt.data.polymers import build_oligomer

    atoms = build_oligomer("PVDF", 3, seed=0)
    bonds, btypes, angles, atypes = bond_angle_topology(atoms)
    assert len(bonds) == len(atoms) - 1  # an acyclic molecule
    degree = np.bincount(bonds.ravel(), minlength=len(atoms))
    assert len(angles) == int((degree * (degree - 1) // 2).sum())
    assert set(btypes) == {"C-C", "C-H", "C-F"}
    assert "F-C-F" in atypes and all(t.count("-") == 2 for t in atypes)
    h = Histograms()
    h.add_frame("PVDF@300K", atoms.positions, (bonds, btypes, angles, atypes))
    cf = h.counts["PVDF@300K"]["bond"]["C-F"]
    assert cf.sum() == btypes.count("C-F")
    mean = (0.5 * (Histograms.edges("bond")[1:] + Histograms.edges("bond")[:-1]) * cf).sum() / cf.sum()
    assert 1.30 < mean < 1.40


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from eqt.checkpoint import save_checkpoint
    from eqt.models.et import ET, ETConfig

    d = tmp_path_factory.mktemp("pmd")
    torch.manual_seed(0)
    model = ET(ETConfig(hidden_channels=16, num_layers=1, num_heads=2, num_rbf=8, cutoff_upper=3.0))
    save_checkpoint(d / "model.pt", model, extra={"elements": [1, 6, 8, 9]})
    return d / "model.pt"


def _config(model, out, **kw):
    values = dict(model=str(model), families=["PE"], n_repeat=[3], trajectories=2, temperatures=[300.0],
                  length_ps=0.012, timestep_fs=1.0, equilibration_ps=0.002, sample_every=2, check_every=3,
                  checkpoint_every=3, reference_ps=0.0, out_dir=str(out))
    values.update(kw)
    return PolyGETMDConfig.from_dict(values)


def test_study_runs_resumes_and_extends(tiny_model, tmp_path):
    pytest.importorskip("rdkit", reason="building oligomers needs RDKit: pip install rdkit")
    full = run_study(_config(tiny_model, tmp_path / "full"), log=lambda *_: None)
    assert full["steps_done"] == 12 and len(full["trajectories"]) == 2
    assert {r["name"] for r in full["trajectories"]} == {"PE-n3-T300-0", "PE-n3-T300-1"}
    assert (tmp_path / "full" / "results.md").read_text().startswith("ML MD: 12 of 12 steps")
    # the same run in two invocations (a kill after 6 steps, then a longer length) ends in the same state
    run_study(_config(tiny_model, tmp_path / "parts", length_ps=0.006), log=lambda *_: None)
    parts = run_study(_config(tiny_model, tmp_path / "parts"), log=lambda *_: None)
    a = torch.load(tmp_path / "full" / "md_state.pt", weights_only=False)
    b = torch.load(tmp_path / "parts" / "md_state.pt", weights_only=False)
    assert torch.equal(a["md"]["pos"], b["md"]["pos"]) and a["hist"] == b["hist"]
    assert parts["per_group"] == full["per_group"]
    with pytest.raises(ValueError, match="other starting structures"):
        run_study(_config(tiny_model, tmp_path / "full", trajectories=3), log=lambda *_: None)


def test_precision_can_change_on_resume_and_is_recorded(tiny_model, tmp_path):
    pytest.importorskip("rdkit", reason="building oligomers needs RDKit: pip install rdkit")
    f64 = run_study(_config(tiny_model, tmp_path / "f64"), log=lambda *_: None)
    assert f64["precision"] == [[0, "float64"]]
    run_study(_config(tiny_model, tmp_path / "mixed", length_ps=0.006), log=lambda *_: None)
    mixed = run_study(_config(tiny_model, tmp_path / "mixed", dtype="float32"), log=lambda *_: None)
    assert mixed["precision"] == [[0, "float64"], [6, "float32"]]
    assert "float64 from step 0, float32 from step 6" in (tmp_path / "mixed" / "results.md").read_text()
    a = torch.load(tmp_path / "f64" / "md_state.pt", weights_only=False)["md"]["pos"]
    b = torch.load(tmp_path / "mixed" / "md_state.pt", weights_only=False)["md"]["pos"]
    assert a.dtype == b.dtype == torch.float64  # the integrator state stays float64
    assert not torch.equal(a, b) and (a - b).abs().max() < 1e-4  # the same trajectory to float32 precision


def test_blown_up_trajectories_are_failures_not_crashes(tiny_model, tmp_path):
    pytest.importorskip("rdkit", reason="building oligomers needs RDKit: pip install rdkit")
    # a threshold every structure fails: each trajectory is recorded as failed at its first check
    res = run_study(_config(tiny_model, tmp_path, thresholds={"max_energy_rise_per_atom": 1e-9,
                                                              "min_distance": 1.05}), log=lambda *_: None)
    fails = [r["failure"] for r in res["trajectories"]]
    assert all(f is not None for f in fails)
    assert {f["check"] for f in fails} == {"min_distance"}  # C-H bonds are ~1.09 Å
    assert res["per_group"]["PE@300K"]["failures"] == 2


def test_reference_md_gives_distributions(tiny_model, tmp_path):
    pytest.importorskip("rdkit", reason="building oligomers needs RDKit: pip install rdkit")
    pytest.importorskip("tblite.ase", reason="the GFN2-xTB reference needs tblite: pip install tblite")
    res = run_study(_config(tiny_model, tmp_path, reference_ps=0.006), log=lambda *_: None)
    rows = res["distributions"]["PE@300K"]["bond"]
    assert set(rows) == {"C-C", "C-H"}
    assert 1.45 < rows["C-C"]["mean_ref"] < 1.60 and rows["C-C"]["n_ref"] > 0
    assert (tmp_path / "reference" / "PE-n3-T300.xyz").exists()
    assert (tmp_path / "distributions.png").exists() and (tmp_path / "survival.png").exists()


def test_config_errors(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        _config(tiny_model, tmp_path, thresholds={"break": 2.0})
    with pytest.raises(ValueError, match="max_time must look like"):
        _config(tiny_model, tmp_path, max_time="soon")
    with pytest.raises(ValueError, match="trajectories must be an integer"):
        _config(tiny_model, tmp_path, trajectories=0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        _config(tiny_model, tmp_path, dtype="float16")
    with pytest.raises(ValueError, match="did you mean"):
        PolyGETMDConfig.from_dict({"trajectory": 3})
    with pytest.raises(FileNotFoundError, match="not found"):
        pytest.importorskip("rdkit")
        run_study(_config(tmp_path / "missing.pt", tmp_path), log=lambda *_: None)
