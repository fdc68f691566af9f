"""The SLMC study driver on a tiny budget: stages run, cache, resume; power-law fit; config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eqt.cli import main as cli
from eqt.train.slmc import SLMCStudyConfig, load_study_config, power_law_fit, run_study

TINY = ["model.L=4", "chains=6", "val_chains=1", "test_chains=1", "thermalize_sweeps=2", "sample_sweeps=4",
        "layers=[0, 2]", "train_steps=6", "batch_size=8", "slmc_steps=4", "readout_shells=3", "qkv_shells=2",
        "heads=1", "head_channels=2", "widths=[2]", "model.J=4.0", "model.mu=-1.0", "model.temperature=0.25"]


def test_tiny_study_runs_and_resumes(tmp_path):
    cfg = load_study_config(None, TINY + [f"out_dir={tmp_path}"])
    logs = []
    res = run_study(cfg, log=logs.append)
    assert set(k for k in res if not k.startswith("_")) == {"linear", "L2-C2"}
    for r in (res["linear"], res["L2-C2"]):
        assert 0.0 <= r["acceptance"][0] <= 1.0 and r["mse"]["test"] >= 0
    assert (tmp_path / "results.md").exists() and (tmp_path / "data.pt").exists()
    assert json.loads((tmp_path / "results.json").read_text())["linear"]["layers"] == 0
    logs.clear()
    run_study(cfg, log=logs.append)
    assert any("cached" in m for m in logs) and sum("done already" in m for m in logs) == 2


def test_power_law_fit_recovers_exponent():
    x = np.array([10.0, 100.0, 1000.0, 1e4])
    fit = power_law_fit(x, 3.0 * x**-0.5)
    assert abs(fit["b"] + 0.5) < 1e-12 and abs(fit["a"] - 3.0) < 1e-10


def test_config_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="training, validation and test chain"):
        SLMCStudyConfig(chains=2)
    with pytest.raises(ValueError, match="even"):
        load_study_config(None, ["model.L=5"])
    assert cli(["slmc", "--set", "layerz=[1]", "--out", str(tmp_path)]) == 2
    assert "did you mean 'layers'" in capsys.readouterr().err


def test_self_learning_rounds_add_proposals_and_rerun(tmp_path):
    cfg = load_study_config(None, TINY + [f"out_dir={tmp_path}", "self_learning_rounds=2", "self_learning_steps=4"])
    logs = []
    res = run_study(cfg, log=logs.append)
    per_round = 4 * (6 - 1 - 1)  # slmc_steps x training chains: every proposal of every training chain
    exact_train = 2 * 4  # (sample_sweeps / sample_interval) x training chains
    for name in ("linear", "L2-C2"):
        rounds = res[name]["rounds"]
        assert [r["round"] for r in rounds] == [1, 2]
        assert [r["train_configurations"] for r in rounds] == [exact_train + per_round, exact_train + 2 * per_round]
        for r in rounds:
            assert 0.0 <= r["acceptance"][0] <= 1.0 and r["mse"]["proposals_test"] >= 0
    assert (tmp_path / "L2-C2" / "round2" / "best.pt").exists()
    assert "round 2: test MSE / acceptance" in (tmp_path / "results.md").read_text()
    logs.clear()
    run_study(cfg, log=logs.append)  # resumes: nothing to redo
    assert sum("done already" in m for m in logs) == 2
    with pytest.raises(ValueError, match="self_learning_rounds"):
        SLMCStudyConfig(self_learning_rounds=-1)
