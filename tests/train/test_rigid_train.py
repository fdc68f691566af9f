"""The rigid-body training run end to end on a tiny MuJoCo data set: result, resume, FLOPs, augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")

from eqt.data.rigid import RigidConfig, apply_e3, generate, load  # noqa: E402
from eqt.models.rigid import INPUT_KEYS, TARGET_KEYS, RigidBodyModel, RigidModelConfig  # noqa: E402
from eqt.train.rigid import (  # noqa: E402
    RigidRunConfig,
    _Loss,
    flops_per_step,
    main,
    random_e3,
    train_run,
    transform_batch,
)

TINY = dict(family="transformer", width=1, depth=1, steps=8, batch_size=8, val_every=4)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rigid")
    config = RigidConfig(n_bodies=3, warmup=10, history=2, history_stride=5, horizon=20)
    generate(root, n_train=24, n_val=8, n_test=8, config=config, seed=0)
    return root


def _batch(data_dir, n=8):
    split = load(data_dir, "train")
    return {k: torch.as_tensor(split[k][:n], dtype=torch.float32) for k in INPUT_KEYS + TARGET_KEYS}


def test_transform_batch_matches_apply_e3(data_dir):
    split = load(data_dir, "train")
    arrays = {k: split[k][:6] for k in INPUT_KEYS + TARGET_KEYS}
    rot, shift = random_e3(6, np.random.default_rng(0), 1.0)
    assert (np.linalg.det(rot) < 0).any() and (np.linalg.det(rot) > 0).any()
    want = apply_e3(arrays, rot, shift)
    tensors = {k: torch.as_tensor(v) for k, v in arrays.items()}
    got = transform_batch(tensors, torch.as_tensor(rot), torch.as_tensor(shift))
    for key in arrays:
        np.testing.assert_allclose(got[key].numpy(), want[key], rtol=0, atol=1e-12, err_msg=key)


def test_tiny_gatr_run_end_to_end(data_dir, tmp_path):
    logs = []
    config = RigidRunConfig(data=str(data_dir), out=str(tmp_path / "run"), **{**TINY, "family": "gatr", "steps": 4})
    res = train_run(config, log=logs.append)
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved == json.loads(json.dumps(res))
    assert res["finished"] and res["steps"] == 4 and res["n_train"] == 24 and res["n_test"] == 8
    assert res["params"] > 0 and res["flops_per_step"] > 0 and res["train_flops"] == 4 * res["flops_per_step"]
    assert 0 < res["flops_forward_per_sample"] * 8 < res["flops_per_step"]
    for split in ("val", "test", "test_e3"):
        assert set(res[split]) == {"loss", "pos_mse", "rot_mse", "angle"}
        assert np.isfinite(res[split]["loss"]) and res[split]["loss"] == res[f"{split}_loss"]
    assert res["best"]["step"] == res["best_step"] and "test_e3" in res["best"]
    # GATr is E(3)-equivariant: the randomly moved test set scores the same (float32 round-off).
    assert abs(res["test_e3_loss"] - res["test_loss"]) < 1e-4 * res["test_loss"]
    assert res["static_test_loss"] > 0 and res["wall_seconds"] >= res["train_seconds"] > 0
    logs.clear()
    assert train_run(config, log=logs.append) == saved
    assert any("finished already" in line for line in logs)


def test_killed_run_resumes_to_the_same_result(data_dir, tmp_path):
    """With augmentation, whose draws follow the step, a resumed run equals an uninterrupted one."""
    config = RigidRunConfig(data=str(data_dir), out=str(tmp_path / "ref"), augment=True, **TINY)
    ref = train_run(config, log=None)
    assert ref["test_e3_loss"] != ref["test_loss"]  # the transformer is not invariant

    def dying(line: str) -> None:
        if line.startswith("step") and "      8" in line:  # the second validation: last.pt holds step 4
            raise KeyboardInterrupt

    killed = config.replace(out=str(tmp_path / "run"))
    with pytest.raises(KeyboardInterrupt):
        train_run(killed, log=dying)
    assert not (tmp_path / "run" / "result.json").exists()
    logs = []
    res = train_run(killed, log=logs.append)
    assert any("resuming" in line and "step 4" in line for line in logs)
    for key in ("val", "test", "test_e3", "best", "flops_per_step", "params", "best_step"):
        assert res[key] == ref[key], key


def test_flops_scale_with_the_size_knob(data_dir):
    batch = _batch(data_dir)
    loss = _Loss(RigidRunConfig())
    for family in ("gatr", "transformer"):
        flops = {}
        for w, d in ((1, 1), (2, 1), (1, 2)):
            torch.manual_seed(0)
            flops[w, d], fwd = flops_per_step(RigidBodyModel(RigidModelConfig(family=family, width=w, depth=d,
                                                                              history=2)), loss, batch)
            assert 0 < fwd < flops[w, d]
        assert flops[1, 1] < flops[2, 1] and flops[1, 1] < flops[1, 2], (family, flops)
        assert 1.5 < flops[1, 2] / flops[1, 1] < 2.5  # a second block roughly doubles the work


def test_config_errors_and_cli(data_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown rigid-body model family"):
        RigidRunConfig(family="mlp")
    with pytest.raises(ValueError, match="n_train must be an int >= 0"):
        RigidRunConfig(n_train=-1)
    with pytest.raises(ValueError, match="lr_decay"):
        RigidRunConfig(lr_decay=0.0)
    with pytest.raises(ValueError, match="n_train=100 but"):
        train_run(RigidRunConfig(data=str(data_dir), out=str(tmp_path / "big"), n_train=100, **TINY), log=None)
    with pytest.raises(FileNotFoundError, match="not found"):
        train_run(RigidRunConfig(data=str(tmp_path / "none"), out=str(tmp_path / "x"), **TINY), log=None)
    out = tmp_path / "cli"
    argv = ["--data", str(data_dir), "--out", str(out), "--family", "transformer", "--width", "1", "--depth", "1",
            "--steps", "2", "--batch-size", "8", "--val-every", "2", "--n-train", "16"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{"):])["n_train"] == 16
    with pytest.raises(ValueError, match=r"holds a run with other settings \(steps"):
        train_run(RigidRunConfig(data=str(data_dir), out=str(out), n_train=16, **{**TINY, "steps": 3}), log=None)
    with pytest.raises(SystemExit):
        main(["--family", "mlp"])


def test_run_stopped_before_its_first_validation_still_reports(data_dir, tmp_path):
    """max_time can stop a run before any best.pt exists: the result falls back to the final weights."""
    config = RigidRunConfig(data=str(data_dir), out=str(tmp_path / "t"), **{**TINY, "steps": 50, "max_time": 1e-9})
    result = train_run(config, log=None)
    assert not result["finished"] and result["best"]["step"] == -1  # -1: no validation yet
    assert result["best"]["test"] == result["test"]  # the final weights
