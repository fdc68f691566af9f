"""A step-based trainer for set-to-set regression (n-body, rigid bodies, scaling sweeps).

``fit(model, loss_fn, train, val, config, out_dir)`` runs Adam for ``config.steps`` steps on
mini-batches drawn from in-memory tensors, with exponential learning-rate decay, gradient
clipping, periodic validation, and checkpoints. Everything it needs to continue is in
``out_dir/last.pt`` (model, optimizer, step, best validation loss and the data order's seed), so a
killed run started again with the same arguments resumes where it stopped; the batch order is a
function of ``(seed, epoch)`` only, so a resumed run ends with the same weights as an
uninterrupted one. ``out_dir/best.pt`` holds the model with the lowest validation loss (an eqt
checkpoint, :func:`eqt.checkpoint.load_model`), and ``out_dir/log.csv`` one row per validation.

Choices (GATr's n-body protocol): Adam, ``lr`` decayed exponentially to ``lr * lr_decay`` at the
last step, gradient norm clipped at ``grad_clip``; model selection on the validation loss (GATr's
early stopping).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from eqt.checkpoint import save_checkpoint
from eqt.config import Config

__all__ = ["StepConfig", "fit", "batches"]

LossFn = Callable[[torch.nn.Module, dict[str, Tensor]], tuple[Tensor, dict[str, Tensor]]]


@dataclasses.dataclass(frozen=True)
class StepConfig(Config):
    """Optimisation settings of :func:`fit` (defaults: GATr's n-body settings, 5k steps)."""

    steps: int = 5000
    batch_size: int = 64
    lr: float = 3e-4
    lr_decay: float = 0.01
    grad_clip: float = 10.0
    weight_decay: float = 0.0
    val_every: int = 250
    val_batch_size: int = 1024
    checkpoint_every: int = 250
    seed: int = 0
    max_time: float = 0.0  # seconds; 0 = no limit (a stopped run resumes later)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "val_every", "val_batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and 0 < self.lr_decay <= 1):
            raise ValueError(f"need lr > 0 and 0 < lr_decay <= 1, got lr={self.lr}, lr_decay={self.lr_decay}")


def batches(n: int, batch_size: int, seed: int, start_step: int = 0):
    """Yield ``(step, index tensor)`` forever: epochs of a permutation seeded by ``(seed, epoch)``.

    Batches never straddle epochs (the last one of an epoch may be short, as with ``drop_last=False``).
    """
    per_epoch = math.ceil(n / batch_size)
    step = start_step
    while True:
        epoch, pos = divmod(step, per_epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        yield step, perm[pos * batch_size:(pos + 1) * batch_size]
        step += 1


def _take(data: dict[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
    return {k: v[idx] for k, v in data.items()}


@torch.no_grad()
def evaluate(model: torch.nn.Module, loss_fn: LossFn, data: dict[str, Tensor], batch_size: int = 1024) -> dict[str, float]:
    """Sample-weighted means of ``loss_fn``'s metrics over ``data`` (model in eval mode)."""
    was_training = model.training
    model.eval()
    n = len(next(iter(data.values())))
    totals: dict[str, float] = {}
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        loss, metrics = loss_fn(model, _take(data, idx))
        for k, v in {"loss": float(loss.detach()), **metrics}.items():
            totals[k] = totals.get(k, 0.0) + float(v) * len(idx)
    model.train(was_training)
    return {k: v / n for k, v in totals.items()}


def fit(model: torch.nn.Module, loss_fn: LossFn, train: dict[str, Tensor], val: dict[str, Tensor],
        config: StepConfig, out_dir: str | os.PathLike, log: Callable[[str], None] | None = print) -> dict:
    """Train ``model`` in place (resuming from ``out_dir/last.pt``); returns a summary.

    Args:
        model: a registered eqt model (so ``best.pt`` can be written with its config).
        loss_fn: ``(model, batch) -> (scalar loss, {metric: detached scalar tensor})``; a batch is
            ``train`` indexed along the first axis. Metrics are only read at validation (no host
            synchronisation per training step).
        train, val: dicts of tensors with a common first axis (samples).
        config: a :class:`StepConfig`.
        out_dir: run directory.
        log: progress printer (None: silent).

    Returns:
        ``{"step", "best_val", "best_step", "finished", "seconds"}``; ``finished`` is False when
        ``max_time`` stopped the run early.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(train.values())))
    if n == 0 or len(next(iter(val.values()))) == 0:
        raise ValueError("fit needs non-empty training and validation data")
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = {"step": 0, "best_val": float("inf"), "best_step": -1, "seconds": 0.0}
    last = out / "last.pt"
    if last.exists():
        try:
            ckpt = torch.load(last, map_location="cpu", weights_only=True)
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            state = ckpt["state"]
        except Exception as exc:  # noqa: BLE001 - a corrupt checkpoint must say where it is
            raise ValueError(f"cannot resume from {last}: {exc} (delete it to start over)") from exc
        if log:
            log(f"resuming {out} at step {state['step']}")

    def save_last() -> None:
        tmp = last.with_name("last.pt.tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state,
                    "config": config.to_dict()}, tmp)
        os.replace(tmp, last)

    log_path = out / "log.csv"
    t0, start_seconds = time.perf_counter(), state["seconds"]
    model.train()
    finished = state["step"] >= config.steps
    for step, idx in batches(n, config.batch_size, config.seed, state["step"]):
        if step >= config.steps:
            finished = True
            break
        for group in opt.param_groups:
            group["lr"] = config.lr * config.lr_decay ** (step / config.steps)
        loss, _ = loss_fn(model, _take(train, idx))  # scalar tensor
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        state["step"] = step + 1
        state["seconds"] = start_seconds + time.perf_counter() - t0
        if state["step"] % config.val_every == 0 or state["step"] == config.steps:
            if not torch.isfinite(loss):  # checked here, not every step, to keep steps sync-free
                raise FloatingPointError(f"non-finite training loss at step {step} in {out}; "
                                         f"{last.name} still holds the last finite state")
            metrics = evaluate(model, loss_fn, val, config.val_batch_size)
            if metrics["loss"] < state["best_val"]:
                state["best_val"], state["best_step"] = metrics["loss"], state["step"]
                save_checkpoint(out / "best.pt", model, extra={"step": state["step"], "val": metrics})
            new = not log_path.exists()
            with log_path.open("a", newline="") as f:
                w = csv.writer(f)
                if new:
                    w.writerow(["step", "seconds", "lr", "train_loss", *(f"val_{k}" for k in metrics)])
                w.writerow([state["step"], f"{state['seconds']:.1f}", f"{opt.param_groups[0]['lr']:.3g}",
                            f"{float(loss.detach()):.6g}", *(f"{v:.6g}" for v in metrics.values())])
            if log:
                log(f"step {state['step']:6d}  train {float(loss.detach()):.4g}  val {metrics['loss']:.4g}  "
                    f"({state['seconds']:.0f} s)")
        if state["step"] % config.checkpoint_every == 0 or state["step"] == config.steps:
            save_last()
        if config.max_time and state["seconds"] - start_seconds >= config.max_time:
            save_last()
            break
    finished = finished or state["step"] >= config.steps
    return {**state, "finished": finished}
