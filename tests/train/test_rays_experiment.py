"""The ray-space reconstruction experiment end to end on a tiny budget; its data helpers; the entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eqt.data.scenes import SceneConfig, generate, load
from eqt.models.rays import RayModelConfig, RayOccupancyModel
from eqt.train.rays import (
    ExperimentConfig,
    _move,
    canonical_frame,
    haar_se3,
    main,
    make_loss,
    predict,
    run,
    sample_table,
    scene_store,
)

SCENE = SceneConfig(n_views=3, height=8, width=8, n_points=48)
MODEL = RayModelConfig(scalars=8, vectors=2, heads=2, head_scalars=4, head_vectors=1, point_channels=8, point_blocks=1,
                       hidden=8, transformer_hidden=16, transformer_blocks=1, transformer_heads=2)
TINY = ExperimentConfig(n_train=4, n_val=2, n_test=2, steps=4, batch_size=2, points_per_scene=8, train_points=24,
                        val_points=16, val_every=2)


def test_tiny_run_writes_results_figure_and_skips_finished_runs(tmp_path):
    logs = []
    res = run(tmp_path / "out", tmp_path / "data", TINY, SCENE, MODEL, log=logs.append)
    assert list(res) == ["equivariant-I", "equivariant-SO3", "transformer-I", "transformer-SO3"]
    for r in res.values():
        assert r["finished"] and r["experiment"]["steps"] == 4
        assert all(0.0 <= r[t]["iou"] <= 1.0 and 0.0 <= r[t]["accuracy"] <= 1.0 for t in ("test_I", "test_SO3"))
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == res
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| equivariant |" in md and "| transformer |" in md and "I/SO3" in md
    assert (tmp_path / "out" / "reconstructions.png").stat().st_size > 1000
    logs.clear()
    run(tmp_path / "out", tmp_path / "data", TINY, SCENE, MODEL, figure=False, log=logs.append)
    assert sum("done already" in line for line in logs) == 4


def test_canonical_frame_store_and_invariance_of_the_pipeline(tmp_path):
    """Camera 0 sits at the identity; the equivariant model's test logits on moved scenes equal the canonical
    ones (neighbours recomputed from the moved inputs), the baseline's do not."""
    generate(tmp_path, 0, 0, 2, SCENE, seed=3)
    raw = canonical_frame(load(tmp_path, "test", rays=False))
    assert np.allclose(raw["cam_to_world"][:, 0], np.eye(4), atol=1e-12)
    store = scene_store(raw, rays_per_view=2)
    assert store["neighbours"].shape == (2, 48, 6) and store["occupancy"].shape == (2, 48)
    rot, trans = haar_se3(2, np.random.default_rng(0), 1.0)
    assert np.allclose(rot @ np.swapaxes(rot, 1, 2), np.eye(3), atol=1e-12) and np.allclose(np.linalg.det(rot), 1.0)
    moved = _move(store, torch.as_tensor(rot, dtype=torch.float32), torch.as_tensor(trans, dtype=torch.float32))
    torch.manual_seed(0)
    for variant, tol in (("equivariant", 1e-4), ("transformer", None)):
        model = RayOccupancyModel(MODEL.replace(variant=variant, rays_per_view=2))
        a = predict(model, store, 1, store["points"][1], None)
        b = predict(model, moved, 1, moved["points"][1], None)
        if tol is None:
            assert (a - b).abs().max() > 1e-3
        else:
            assert (a - b).abs().max() <= tol * max(1.0, a.abs().max().item())


def test_sample_tables_and_loss_are_deterministic(tmp_path):
    a = sample_table(5, 12, "SO3", 0, 1.0)
    b = sample_table(5, 12, "SO3", 0, 1.0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["scene"].tolist() == [i % 5 for i in range(12)]
    ident = sample_table(5, 3, "I", 0, 1.0)
    assert torch.equal(ident["rotation"], torch.eye(3).expand(3, 3, 3)) and not ident["translation"].any()
    with pytest.raises(ValueError, match="unknown augmentation"):
        sample_table(5, 3, "SE2", 0, 1.0)
    generate(tmp_path, 3, 2, 0, SCENE, seed=1)
    train = scene_store(canonical_frame(load(tmp_path, "train", rays=False)), 1, 24)
    val = scene_store(canonical_frame(load(tmp_path, "val", rays=False)), 1, 24)
    loss_fn = make_loss({0: (train, 8), 1: (val, 8)})
    torch.manual_seed(0)
    model = RayOccupancyModel(MODEL.replace(rays_per_view=1))
    batch = {k: v[:2] for k, v in a.items()}
    batch["scene"] = batch["scene"] % 2
    l1, m1 = loss_fn(model, batch)
    l2, _ = loss_fn(model, batch)
    assert torch.equal(l1, l2) and set(m1) == {"bce", "accuracy", "iou"}
    # the split column picks the store: validation rows read the validation scenes
    val_batch = {**batch, "split": torch.ones(2, dtype=torch.long)}
    assert torch.equal(loss_fn(model, val_batch)[0], make_loss({0: (val, 8)})(model, batch)[0])
    assert not torch.equal(loss_fn(model, val_batch)[0], l1)
    with pytest.raises(ValueError, match="one known split"):
        loss_fn(model, {**batch, "split": torch.tensor([0, 1])})
    assert sample_table(2, 2, "I", 0, 1.0, split=1)["split"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="points_per_scene"):
        ExperimentConfig(points_per_scene=64, train_points=32)


def test_main_entry_point(tmp_path, capsys):
    argv = ["--out", str(tmp_path / "out"), "--data", str(tmp_path / "data"), "--models", "transformer",
            "--augmentations", "I", "--n-train", "2", "--n-val", "1", "--n-test", "1", "--steps", "1",
            "--batch-size", "1", "--points-per-scene", "4", "--train-points", "8", "--val-points", "4",
            "--val-every", "1", "--no-figure"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| transformer |" in out and (tmp_path / "out" / "transformer-I" / "result.json").exists()
