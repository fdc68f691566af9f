"""Scaling sweeps: a tiny grid end to end, resumption, sharding, bad sizes, FLOP correction, fits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from eqt.models.rigid import RigidBodyModel, RigidModelConfig
from eqt.primitives.rotations import haar_rotations
from eqt.train import scaling, scaling_fit
from eqt.train.rigid import RigidRunConfig, _Loss, flops_per_step
from eqt.train.scaling import SweepConfig, corrected_flops, grid, load_sweep_config, run_sweep, shard_points

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(families=["transformer"], sizes={"transformer": [[1, 1], [1, 2]]}, steps=[2, 4], n_train=[8, 16],
            run={"batch_size": 8, "val_every": 2}, n_val=8, n_test=8)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    pytest.importorskip("mujoco")
    from eqt.data.rigid import RigidConfig, generate

    root = tmp_path_factory.mktemp("rigid")
    generate(root, n_train=16, n_val=8, n_test=8, seed=0,
             config=RigidConfig(n_bodies=3, warmup=10, history=2, history_stride=5, horizon=20))
    return root


def _config(data_dir, out, **changes) -> SweepConfig:
    return SweepConfig.from_dict({**TINY, "data": str(data_dir), "out": str(out), **changes})


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------
def test_tiny_sweep_interrupted_then_resumed(data_dir, tmp_path, monkeypatch):
    config = _config(data_dir, tmp_path / "sweep")
    assert len(grid(config)) == 8
    calls = []
    real = scaling.train_run

    def killing(line: str) -> None:
        if line.startswith("step      4"):  # after the step-2 checkpoint, before the step-4 one
            raise KeyboardInterrupt

    def crashing(run, log=None):  # the first 4-step run is killed mid-way
        calls.append(Path(run.out).name)
        if run.steps == 4:
            return real(run, log=killing)
        return real(run, log=log)

    monkeypatch.setattr(scaling, "train_run", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, log=None)
    finished, killed = calls[:-1], Path(config.out) / "runs" / calls[-1]
    assert len(finished) == 4 and (killed / "last.pt").exists() and not (killed / "result.json").exists()
    rows = scaling.load_results(config.out)
    assert sorted(r["name"] for r in rows) == sorted(finished)
    stamps = {n: (Path(config.out) / "runs" / n / "result.json").stat().st_mtime_ns for n in finished}

    calls.clear()
    def counting(run, log=None):
        calls.append(Path(run.out).name)
        return real(run, log=log)

    monkeypatch.setattr(scaling, "train_run", counting)
    out = run_sweep(config, log=None)
    assert len(calls) == 4 and set(out["skipped"]) == set(stamps) and len(out["trained"]) == 4
    assert not out["failed"] and out["rows"] == 8
    for n, t in stamps.items():  # finished runs were not redone
        assert (Path(config.out) / "runs" / n / "result.json").stat().st_mtime_ns == t
    log = (killed / "train.log").read_text()
    assert "resuming" in log  # the killed run continued from its checkpoint

    rows = scaling.load_results(config.out)
    assert [r["name"] for r in rows] == [p.name for p in grid(config)]  # grid order
    csv = (Path(config.out) / "results.csv").read_text().splitlines()
    assert len(csv) == 9 and csv[0].startswith("name,family")
    for r in rows:
        assert r["train_flops"] == r["flops_per_step"] * r["steps"]
        assert r["flops_per_step_true"] == r["flops_per_step"]  # no geometric products in a transformer
        assert r["samples_seen"] == 8 * r["steps"] and r["epochs"] == r["samples_seen"] / r["n_train"]
        assert r["test_loss"] > 0 and r["best_test_loss"] > 0

    calls.clear()  # a third call trains nothing
    assert run_sweep(config, log=None)["trained"] == [] and calls == []


def test_max_runs_and_order(data_dir, tmp_path):
    config = _config(data_dir, tmp_path / "sweep", max_runs=3, families=["gatr", "transformer+aug"],
                     sizes={"gatr": [[1, 1]], "transformer": [[1, 1]]}, steps=[2], n_train=[8, 16])
    out = run_sweep(config, log=None)
    assert len(out["trained"]) == 3 and len(out["pending"]) == 1
    assert all(n.startswith("transformer-aug") for n in out["trained"][:2])  # cheapest first
    rows = scaling.load_results(config.out)
    aug = [r for r in rows if r["family"] == "transformer+aug"]
    assert aug and all(r["augment"] and r["base_family"] == "transformer" for r in aug)
    gatr = [r for r in rows if r["family"] == "gatr"]
    assert gatr and all(r["flops_per_step_true"] < r["flops_per_step"] for r in gatr)


def test_shards_partition_the_grid_exactly(tmp_path):
    config = SweepConfig(out=str(tmp_path), steps=(1, 2, 3), n_train=(64, 128, 256), seeds=(0, 1))
    points = grid(config)
    assert len(points) == 3 * 3 * 3 * 3 * 2 and len({p.name for p in points}) == len(points)
    for n in (1, 2, 3, 7, len(points) + 1):
        parts = [shard_points(points, i, n) for i in range(n)]
        flat = sorted(p.index for part in parts for p in part)
        assert flat == list(range(len(points)))  # disjoint and complete
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError, match="shard"):
        shard_points(points, 2, 2)
    with pytest.raises(ValueError, match="shard must be 'i/n'"):
        SweepConfig(shard="2/2")
    assert SweepConfig(shard=" 1 / 4 ").shard_index() == (1, 4)


@pytest.mark.parametrize("changes, match", [
    (dict(sizes={"gatr": [[0, 2]], "transformer": [[1, 1]]}), r"sizes\['gatr'\]\[0\] = \[0, 2\]: width"),
    (dict(sizes={"gatr": [[1, -1]], "transformer": [[1, 1]]}), "depth must be an int >= 1"),
    (dict(sizes={"gatr": [[1]], "transformer": [[1, 1]]}), r"must be \[width, depth\]"),
    (dict(sizes={"transformer": [[1, 1]]}), "no sizes for family 'gatr'"),
    (dict(steps=[0, 100]), "steps must be an int >= 1"),
    (dict(steps=[100, 100]), "steps lists 100 more than once"),
    (dict(n_train=[]), "n_train must be a non-empty list"),
    (dict(n_train=[1.5]), "n_train must be an int"),
    (dict(n_train=[32]), "n_train 32 is smaller than batch_size 64"),
    (dict(families=["gatr", "mlp"]), "unknown family 'mlp'"),
    (dict(run={"steps": 10}), "run sets steps"),
    (dict(run={"lr": -1.0}), "SweepConfig.run: need lr > 0"),
    (dict(run={"batch": 8}), "did you mean .batch_size."),
    (dict(workers=0), "workers must be an int >= 1"),
    (dict(devices=["gpu0"]), "devices must be"),
    (dict(order="random"), "order must be one of"),
    (dict(fabric={"precision": "16"}), "fabric takes only"),
])
def test_impossible_configs_are_clear_errors(changes, match):
    with pytest.raises(ValueError, match=match):
        SweepConfig.from_dict(changes)
    with pytest.raises(ValueError, match="unknown key 'step'"):
        SweepConfig.from_dict({"step": [1]})


def test_impossible_sizes_against_data_and_machine(data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"needs 64 train samples but .*train.npz has 16"):
        scaling.plan(_config(data_dir, tmp_path, n_train=[8, 64]))
    with pytest.raises(ValueError, match="needs 99 val samples"):
        scaling.plan(_config(data_dir, tmp_path, n_val=99))
    with pytest.raises(FileNotFoundError, match="no rigid-body data"):
        scaling.plan(_config(tmp_path / "nowhere", tmp_path))
    huge = _config(data_dir, tmp_path, sizes={"transformer": [[4000, 64]]})
    with pytest.raises(ValueError, match=r"transformer width 4000 depth 64 has .* parameters.*GB"):
        scaling.plan(huge, measure=False)
    # a run folder that holds a run with other settings stops the sweep before anything is trained
    config = _config(data_dir, tmp_path / "sweep", max_runs=1)
    run_sweep(config, log=None)
    changed = _config(data_dir, tmp_path / "sweep", run={"batch_size": 8, "val_every": 2, "lr": 1e-2})
    with pytest.raises(ValueError, match="hold runs with other settings"):
        run_sweep(changed, log=None)


@pytest.mark.slow
def test_fabric_launcher_on_cpu(data_dir, tmp_path):
    pytest.importorskip("lightning")
    config = _config(data_dir, tmp_path / "sweep", launcher="fabric", max_runs=1, n_train=[8],
                     fabric={"accelerator": "cpu", "devices": 1, "strategy": "auto"})
    out = run_sweep(config, log=None)
    assert out["shard"] == "0/1" and len(out["trained"]) == 1


def test_shipped_configs_load():
    cpu = load_sweep_config(ROOT / "configs" / "scaling.yaml")
    gpu = load_sweep_config(ROOT / "configs" / "scaling-gpu.yaml")
    for c in (cpu, gpu):
        assert set(c.families) == set(scaling.FAMILIES)
        assert len(c.steps) >= 3 and len(c.n_train) >= 3 and all(len(s) >= 3 for s in c.sizes.values())
    assert len(grid(cpu)) == 81
    over = load_sweep_config(ROOT / "configs" / "scaling.yaml", ["out=/tmp/x", "run.lr=0.01", "steps=[5, 6, 7]"])
    assert over.out == "/tmp/x" and over.run["lr"] == 0.01 and over.run["batch_size"] == 64 and over.steps == (5, 6, 7)


# --------------------------------------------------------------------------------------------
# FLOPs: the sparse products at their true cost, against a hand count
# --------------------------------------------------------------------------------------------
def _synthetic_batch(n: int, h: int, b: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    rot = torch.as_tensor(haar_rotations(np.random.default_rng(0), n * (h + 1) * b), dtype=torch.float32)
    mass = torch.rand(n, b, generator=g) + 0.5
    return {"kind_onehot": torch.eye(4)[torch.randint(0, 4, (n, b), generator=g)],
            "size": 0.05 + 0.05 * torch.rand(n, b, 3, generator=g), "mass": mass,
            "radius": 0.1 + 0.02 * torch.rand(n, b, generator=g),
            "inertia": torch.diag_embed(0.01 * mass[..., None].expand(n, b, 3)),
            "pos": torch.randn(n, h, b, 3, generator=g) * 0.2, "rot": rot[: n * h * b].reshape(n, h, b, 3, 3),
            "vel": torch.randn(n, h, b, 3, generator=g), "angvel": torch.randn(n, h, b, 3, generator=g),
            "floor_point": torch.zeros(n, 3), "floor_normal": torch.tensor([0.0, 0.0, 1.0]).expand(n, 3),
            "gravity": torch.tensor([0.0, 0.0, -9.81]).expand(n, 3),
            "target_pos": torch.randn(n, b, 3, generator=g) * 0.2, "target_rot": rot[n * h * b:].reshape(n, b, 3, 3)}


def _hand_count(n: int, h: int, b: int, width: int, depth: int) -> dict[str, int]:
    """The GATr rigid model's sparse products: (rows, nonzero entries P, operands needing a gradient)."""
    gp, join = 192, 81  # nonzero entries of the G(3,0,1) geometric product and join tables
    products = [(n * h * b, gp, 0)] * 3  # angular-velocity lines: sandwich = 2 products + 1 in the inverse
    products += [(n, gp, 0)] * 3  # the floor plane, moved to the floor point: one sandwich per sample
    products += [(n * b * 4 * width, gp, 2), (n * b * 4 * width, join, 2)] * depth  # bilinear_mv = 4 w channels
    products += [(n * b * 3, gp, 1), (n * b, gp, 0), (n * b * 3, gp, 1)]  # outputs moved to the body: sandwich
    # FlopCounterMode: forward x@L, y@R, (.)@S; backward g@S.T then two GEMMs per operand needing a gradient
    dense = lambda rows, p, grads: 2 * rows * 16 * p * (3 + (1 + 2 * grads if grads else 0))  # noqa: E731
    true = lambda rows, p, grads: 2 * rows * p * (1 + grads)  # noqa: E731 - one multiply-add per entry and pass
    return {"sparse_step_counted": sum(dense(*x) for x in products),
            "sparse_step_true": sum(true(*x) for x in products),
            "sparse_forward_counted": sum(2 * r * 16 * p * 3 for r, p, _ in products),
            "sparse_forward_true": sum(2 * r * p for r, p, _ in products)}


@pytest.mark.parametrize("width, depth", [(1, 1), (2, 2)])
def test_flop_correction_matches_hand_count(width, depth):
    n, h, b = 3, 2, 4
    batch = _synthetic_batch(n, h, b)
    run = RigidRunConfig(family="gatr", width=width, depth=depth)
    torch.manual_seed(0)
    model = RigidBodyModel(RigidModelConfig(family="gatr", width=width, depth=depth, history=h))
    got = corrected_flops(model, _Loss(run), batch)
    want = _hand_count(n, h, b, width, depth)
    for key, value in want.items():
        assert got[key] == value, key
    step, fwd = flops_per_step(model, _Loss(run), batch)
    assert got["step"] == step and got["forward"] == fwd  # the same count as train_run records
    assert got["step_true"] == step - want["sparse_step_counted"] + want["sparse_step_true"]
    assert got["forward_true"] == fwd - want["sparse_forward_counted"] + want["sparse_forward_true"]
    assert want["sparse_step_counted"] / want["sparse_step_true"] > 40  # the overcount being corrected
    tf = corrected_flops(RigidBodyModel(RigidModelConfig(family="transformer", history=h)), _Loss(run), batch)
    assert tf["step_true"] == tf["step"] and tf["sparse_gemms"] == 0


# --------------------------------------------------------------------------------------------
# Fits on synthetic data with known exponents
# --------------------------------------------------------------------------------------------
def test_frontier_and_power_law():
    assert scaling_fit.frontier([1, 2, 3, 4], [5.0, 6.0, 4.0, 4.0]).tolist() == [0, 2]
    rng = np.random.default_rng(1)
    c = np.geomspace(1e10, 1e13, 12)
    loss = 3e2 * c**-0.25 * np.exp(0.01 * rng.standard_normal(12))
    fit = scaling_fit.fit_power_law(c, loss)
    assert abs(fit["b"] - 0.25) < 0.01 and fit["rmse_log"] < 0.02
    rows = [{"c": x, "l": y} for x, y in zip(c, loss)]
    boot = scaling_fit.bootstrap(rows, lambda s: scaling_fit.fit_power_law([r["c"] for r in s], [r["l"] for r in s]),
                                 200, seed=0)
    lo, hi = boot["ci"]["b"]
    assert lo < 0.25 < hi and hi - lo < 0.03
    off = scaling_fit.fit_power_law(c, 2.0 * c**-0.3 * 1e3 + 0.05, offset=True)
    assert abs(off["b"] - 0.3) < 0.02 and abs(off["c"] - 0.05) < 0.005


def _synthetic_rows(true: dict, family: str, rng, noise: float = 0.01) -> list[dict]:
    rows = []
    for n in (1e4, 3e4, 1e5, 3e5):
        for d in (1e4, 3e4, 1e5, 3e5):
            loss = (true["E"] + true["A"] * n ** -true["alpha"] + true["B"] * d ** -true["beta"]) * math.exp(
                noise * rng.standard_normal())
            rows.append({"name": f"{family}-{n:g}-{d:g}", "family": family, "params": n, "samples_seen": d,
                         "n_train": 4000, "steps": d / 64, "batch_size": 64, "best_test_loss": loss,
                         "flops_per_step_true": 64 * 6 * n, "train_flops_true": 6 * n * d})
    return rows


def test_chinchilla_fit_recovers_exponents_with_covering_intervals():
    true = {"E": 0.1, "A": 40.0, "B": 200.0, "alpha": 0.5, "beta": 0.6}
    rows = _synthetic_rows(true, "gatr", np.random.default_rng(0))
    fit = scaling_fit.chinchilla_fit(rows, "gatr", n_boot=60, seed=0)
    for key in ("alpha", "beta"):
        lo, hi = fit["ci"][key]
        assert abs(fit[key] - true[key]) < 0.1 and lo <= true[key] <= hi, (key, fit[key], lo, hi)
    law = scaling_fit.flops_law(rows, "gatr")
    assert abs(law["gamma"] - 1) < 1e-9 and abs(law["k"] - 6) < 1e-6
    alloc = scaling_fit.allocation(fit, law, budgets=[1e12])
    assert abs(alloc["a"] - fit["beta"] / (fit["alpha"] + fit["beta"])) < 1e-12 and alloc["ci"]["a"][0] < alloc["a"]
    # the closed form is the minimiser of L(N, C / (k N^gamma)) over N
    ns = np.geomspace(1e2, 1e9, 20001)
    losses = fit["A"] * ns ** -fit["alpha"] + fit["B"] * (1e12 / (6 * ns)) ** -fit["beta"]
    assert abs(math.log(ns[np.argmin(losses)] / alloc["n_opt"][0])) < 0.01


def test_report_and_figures(tmp_path):
    rng = np.random.default_rng(2)
    rows = _synthetic_rows({"E": 0.1, "A": 40.0, "B": 200.0, "alpha": 0.5, "beta": 0.6}, "gatr", rng)
    rows += _synthetic_rows({"E": 0.1, "A": 40.0, "B": 200.0, "alpha": 0.3, "beta": 0.6}, "transformer", rng)
    for r in rows:
        r.update(train_flops=1.3 * r["train_flops_true"], flops_per_step=1.3 * r["flops_per_step_true"],
                 width=1, depth=1, best_test_e3_loss=r["best_test_loss"])
    text = scaling_fit.report(rows, figures=tmp_path, n_boot=40, n_boot_chinchilla=20)
    assert "**L(N, D)" in text and "Findings" in text and "scaling_compute.png" in text
    for name in ("compute", "data", "allocation"):
        png = tmp_path / f"scaling_{name}.png"
        assert png.exists() and 1_000 < png.stat().st_size < 300_000
    json.dumps(scaling_fit.findings(scaling_fit.analyze(rows, n_boot=20, n_boot_chinchilla=10)))
