"""The n-body experiment driver end to end on a tiny budget; the CLI entry points."""

from __future__ import annotations

import json

from eqt.cli import main as cli
from eqt.models.nbody import NBodyModel
from eqt.train.nbody import n_params, run, sized_config


def test_sized_configs_match_the_target():
    for variant in ("E-GATr", "C-GATr", "Transformer"):
        n = n_params(NBodyModel(sized_config(variant, 20_000, num_blocks=1)))
        assert abs(n - 20_000) / 20_000 < 0.25, (variant, n)


def test_tiny_run_writes_results_and_skips_finished_models(tmp_path):
    logs = []
    kw = dict(models=("E-GATr", "Transformer"), steps=4, train_size=16, eval_size=8, target_params=5_000,
              num_blocks=1, log=logs.append)
    res = run(tmp_path / "out", tmp_path / "data", **kw)
    assert set(res) == {"E-GATr", "Transformer"}
    for r in res.values():
        assert r["finished"] and r["steps"] == 4
        assert all(r[s]["mse"] >= 0 for s in ("eval", "e3_generalization", "object_generalization"))
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == res
    assert "| E-GATr |" in (tmp_path / "out" / "results.md").read_text()
    logs.clear()
    run(tmp_path / "out", tmp_path / "data", **kw)
    assert sum("done already" in line for line in logs) == 2


def test_cli_data_nbody(tmp_path, capsys):
    assert cli(["data", "nbody", str(tmp_path / "d"), "--size", "train=6", "--size", "eval=3"]) == 0
    assert (tmp_path / "d" / "train.npz").exists() and (tmp_path / "d" / "eval.npz").exists()
    assert cli(["data", "nbody", str(tmp_path / "d"), "--size", "nope=3"]) == 2
    assert "unknown n-body split" in capsys.readouterr().err
    assert cli(["data", "nbody", str(tmp_path / "d"), "--size", "train"]) == 2
