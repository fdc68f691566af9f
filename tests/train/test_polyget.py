"""The PolyGET study driver end to end on a tiny GFN2-xTB polymer set (two runs, three test sets)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("rdkit", reason="the polymer builder needs the 'polymers' extra (rdkit)")
pytest.importorskip("tblite", reason="GFN2-xTB labels need tblite")
pytest.importorskip("lightning", reason="training needs the 'train' extra")

from eqt.data.polymers import SamplingConfig, generate  # noqa: E402
from eqt.train.polyget import PolyGETConfig, run_study, split_families  # noqa: E402

TINY_MD = SamplingConfig(n_frames=4, stride=2, equilibration_steps=2)


@pytest.fixture(scope="module")
def polymer_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("poly")
    generate(root / "train.xyz", ["PE", "PEO", "PVC"], [1, 2], [300.0], config=TINY_MD, seed=0, progress=False)
    generate(root / "long.xyz", ["PE"], [3], [300.0], config=TINY_MD, seed=1, progress=False)
    return root


def test_study_runs_both_objectives_on_three_test_sets(polymer_data, tmp_path):
    train = {"model": {"hidden_channels": 16, "num_layers": 1, "num_heads": 2, "num_rbf": 8, "cutoff_upper": 4.0,
                       "max_z": 20},
             "train_size": 0.75, "val_size": 0.125, "test_size": 0.125, "max_epochs": 1, "batch_size": 4,
             "lr_warmup_steps": 1, "progress_bar": False}
    c = PolyGETConfig(data=str(polymer_data / "train.xyz"), size_test=str(polymer_data / "long.xyz"),
                      unseen_families=("PVC",), train=train, out_dir=str(tmp_path))
    res = run_study(c, log=lambda *_: None)
    assert set(res["runs"]) == {"force-only", "joint"}
    for run in res["runs"].values():
        assert set(run) == {"training families (test split)", "unseen families", "long chains"}
        assert set(run["unseen families"]) == {"PVC", "all"} and set(run["long chains"]) == {"PE", "all"}
        assert "PVC" not in run["training families (test split)"]
        assert all(v["forces_mae"] > 0 for t in run.values() for v in t.values())
    assert json.loads((tmp_path / "results.json").read_text())["runs"]
    assert "unseen families" in (tmp_path / "results.md").read_text()
    # a second call re-scores the finished runs without touching their weights
    stamp = {n: (tmp_path / n / "model.pt").stat().st_mtime_ns for n in ("force-only", "joint")}
    logs = []
    again = run_study(c, log=logs.append)
    assert {n: (tmp_path / n / "model.pt").stat().st_mtime_ns for n in stamp} == stamp
    assert sum("reusing" in line for line in logs) == 2
    assert again["runs"] == res["runs"]


def test_config_and_data_errors(polymer_data, tmp_path):
    with pytest.raises(ValueError, match="objectives"):
        PolyGETConfig(objectives=("energy",))
    with pytest.raises(ValueError, match="set by the study"):
        PolyGETConfig(train={"objective": "forces"})
    with pytest.raises(ValueError, match="not in"):
        split_families(polymer_data / "train.xyz", ("PS",), tmp_path)
    with pytest.raises(FileNotFoundError, match="eqt data polymers"):
        split_families(tmp_path / "missing.xyz", (), tmp_path)
