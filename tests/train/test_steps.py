"""Step trainer: learns, checkpoints, resumes exactly after a kill, clear errors."""

from __future__ import annotations

import pytest
import torch

from eqt.models.transformer import Transformer, TransformerConfig
from eqt.train.steps import StepConfig, batches, fit

NET = TransformerConfig(in_features=2, out_features=1, hidden=8, num_blocks=1, heads=2)


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 2, generator=g)
    return {"x": x, "y": x.sum(-1, keepdim=True).cumsum(1)}


def _mse(model, batch):
    loss = (model(batch["x"]) - batch["y"]).square().mean()
    return loss, {"mse": loss.detach()}


def test_batches_cover_each_epoch_once():
    seen = [idx for _, (_, idx) in zip(range(4), batches(10, 3, seed=0))]
    assert sorted(torch.cat(seen).tolist()) == list(range(10))
    assert [len(i) for i in seen] == [3, 3, 3, 1]


def test_fit_learns_and_writes_best(tmp_path):
    torch.manual_seed(0)
    model = Transformer(NET)
    cfg = StepConfig(steps=60, batch_size=16, lr=3e-3, val_every=20, checkpoint_every=20)
    out = fit(model, _mse, _data(64, 0), _data(32, 1), cfg, tmp_path, log=None)
    assert out["finished"] and out["step"] == 60
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert len(rows) == 4 and float(rows[-1].split(",")[-1]) < float(rows[1].split(",")[-1])
    from eqt.checkpoint import load_model

    assert isinstance(load_model(tmp_path / "best.pt"), Transformer)


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    train, val = _data(50, 0), _data(20, 1)
    cfg = StepConfig(steps=30, batch_size=8, lr=1e-3, val_every=10, checkpoint_every=10)
    torch.manual_seed(0)
    ref = Transformer(NET)
    fit(ref, _mse, train, val, cfg, tmp_path / "ref", log=None)

    calls = {"n": 0}

    def dying(model, batch):
        if model.training:
            calls["n"] += 1
            if calls["n"] == 25:
                raise KeyboardInterrupt
        return _mse(model, batch)

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit(Transformer(NET), dying, train, val, cfg, tmp_path / "run", log=None)
    resumed = Transformer(NET)  # fresh weights: everything comes from last.pt
    out = fit(resumed, _mse, train, val, cfg, tmp_path / "run", log=None)
    assert out["finished"]
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="lr_decay"):
        StepConfig(lr_decay=0.0)
    with pytest.raises(ValueError, match="non-empty"):
        fit(Transformer(NET), _mse, {"x": torch.zeros(0, 3, 2)}, _data(4, 0), StepConfig(), tmp_path, log=None)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "last.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot resume from .*last.pt"):
        fit(Transformer(NET), _mse, _data(8, 0), _data(4, 0), StepConfig(steps=2), tmp_path / "c", log=None)
