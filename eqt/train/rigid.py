"""One training run on the rigid-body task ("Does equivariance matter at scale?"), as one function call.

``train_run(RigidRunConfig(...))`` loads the splits written by :func:`eqt.data.rigid.generate`
(the first ``n_train`` / ``n_val`` / ``n_test`` samples: the data are prefix-stable, so smaller
training sets are nested in larger ones), builds a :class:`~eqt.models.rigid.RigidBodyModel` of the
given family, width and depth, trains it with :func:`eqt.train.steps.fit` (Adam, exponential
learning-rate decay, gradient clipping, validation and checkpoints in the run folder), evaluates it,
and writes ``result.json`` in the run folder. A killed run called again with the same config resumes
from ``last.pt`` and ends with the same weights as an uninterrupted one; a finished run (its
``result.json`` matches the config) is returned without retraining. A sweep over size x steps x data
is a loop over configs.

Choices:

- **Augmentation** (``augment=True``): every training batch is moved by per-sample random E(3)
  elements, Haar rotations composed with the point inversion ``-I`` with probability 1/2
  (reflections included) and translations ``N(0, translation_std^2)`` per coordinate. The floor
  and gravity move with the bodies (each array by its role in :func:`eqt.data.rigid.apply_e3`, applied
  to torch tensors by :func:`transform_batch`). The draws of step ``k`` come from
  ``np.random.default_rng([seed, k])``, so a resumed run augments exactly as an uninterrupted one.
- **Evaluation**: the loss (:func:`eqt.models.rigid.rigid_loss`) and its metrics on the validation
  and test sets and on ``test_e3``, the test set moved by :func:`eqt.data.rigid.apply_e3` with one
  random E(3) element per sample drawn as for augmentation from the fixed seed ``E3_TEST_SEED``
  (the same for every run). An exactly equivariant model scores the same on ``test`` and
  ``test_e3``; a transformer without augmentation does not. Reported for the final weights and for
  the best-validation checkpoint (``best``); ``static_test_loss`` is the loss of predicting the
  current pose, for scale.
- **Compute**: ``flops_per_step`` is measured once with :class:`torch.utils.flop_counter.FlopCounterMode`
  on one full training batch, forward and backward (the loss included, the optimizer not); it
  counts what the counter counts (matrix products, ``scaled_dot_product_attention``), not
  elementwise work. ``train_flops = flops_per_step * steps`` (short last batches of an epoch and
  validation are not discounted / counted). ``flops_forward_per_sample`` is a forward pass's count
  divided by the batch size.

Command line (``python -m eqt.train.rigid``; data from ``python -m eqt.data.rigid``)::

    python -m eqt.train.rigid --data data/rigid --out runs/rigid/gatr-w1 --family gatr --width 1 \\
        --depth 4 --n-train 1000 --steps 3000
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

import eqt
from eqt.checkpoint import load_model
from eqt.config import Config
from eqt.data import rigid as rigid_data
from eqt.models.rigid import (
    FAMILIES,
    GATR_VARIANTS,
    INPUT_KEYS,
    TARGET_KEYS,
    RigidBodyModel,
    RigidModelConfig,
    rigid_loss,
)
from eqt.primitives.rotations import haar_rotations
from eqt.train.steps import StepConfig, evaluate, fit

__all__ = ["RigidRunConfig", "train_run", "transform_batch", "random_e3", "flops_per_step", "add_arguments",
           "run_from_args", "main", "E3_TEST_SEED"]

E3_TEST_SEED = 20_250_001
"""Seed of the random E(3) elements of the ``test_e3`` set (fixed: every run sees the same set)."""
_KEYS = INPUT_KEYS + TARGET_KEYS
# Fields that may change between a killed run and its resumption without changing the run.
_FREE_FIELDS = ("out", "device", "max_time", "threads")


@dataclasses.dataclass(frozen=True)
class RigidRunConfig(Config):
    """One training run. ``n_train`` / ``n_val`` / ``n_test`` of 0 mean the whole split.

    Model: ``family``, ``width``, ``depth``, ``gatr_variant`` and ``centre`` of
    :class:`~eqt.models.rigid.RigidModelConfig` (its ``history`` is read from the data).
    Optimisation: as :class:`~eqt.train.steps.StepConfig` (checkpoints at every validation).
    ``translation_std`` (metres) sets the translations of augmentation and of ``test_e3``.
    ``threads`` > 0 sets ``torch.set_num_threads``.
    """

    data: str = "data/rigid"
    out: str = "runs/rigid/run"
    n_train: int = 0
    n_val: int = 0
    n_test: int = 0
    family: str = "gatr"
    width: int = 1
    depth: int = 4
    gatr_variant: str = "iP-GATr"
    centre: bool = False
    steps: int = 5000
    batch_size: int = 64
    lr: float = 3e-4
    lr_decay: float = 0.01
    grad_clip: float = 10.0
    rot_weight: float = 1.0
    augment: bool = False
    translation_std: float = 1.0
    val_every: int = 250
    seed: int = 0
    device: str = "cpu"
    max_time: float = 0.0
    threads: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "n_test", "seed", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"RigidRunConfig: {name} must be an int >= 0, got {value!r}")
        if not (math.isfinite(self.translation_std) and self.translation_std >= 0):
            raise ValueError(f"RigidRunConfig: translation_std must be >= 0, got {self.translation_std!r}")
        if not (math.isfinite(self.rot_weight) and self.rot_weight >= 0):
            raise ValueError(f"RigidRunConfig: rot_weight must be >= 0, got {self.rot_weight!r}")
        self.model_config(1)  # validates family, width, depth, gatr_variant
        self.step_config()  # validates steps, batch_size, lr, ...

    def model_config(self, history: int) -> RigidModelConfig:
        """The model's config for data with ``history`` frames."""
        return RigidModelConfig(family=self.family, width=self.width, depth=self.depth, history=history,
                                gatr_variant=self.gatr_variant, centre=self.centre)

    def step_config(self) -> StepConfig:
        """The optimisation settings passed to :func:`eqt.train.steps.fit`."""
        return StepConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, lr_decay=self.lr_decay,
                          grad_clip=self.grad_clip, val_every=min(self.val_every, self.steps),
                          checkpoint_every=min(self.val_every, self.steps), seed=self.seed, max_time=self.max_time)


# --------------------------------------------------------------------------------------------
# E(3) on batches
# --------------------------------------------------------------------------------------------
def random_e3(n: int, rng: np.random.Generator, translation_std: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random E(3) elements: ``R (n, 3, 3)`` Haar rotations, times ``-1`` with probability 1/2, ``t (n, 3)``."""
    rot = haar_rotations(rng, n)
    flip = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return rot * flip[:, None, None], translation_std * rng.standard_normal((n, 3))


def transform_batch(batch: dict[str, Tensor], rotation: Tensor, translation: Tensor) -> dict[str, Tensor]:
    """Move a batch by ``x -> R x + t`` per sample, each key by its role in :func:`eqt.data.rigid.apply_e3`.

    The torch twin of ``apply_e3`` for training-time augmentation (on the batch's device and dtype);
    ``tests/train/test_rigid_train.py`` checks that they agree. Quaternion keys are not supported.

    Args:
        batch: tensors with a leading sample axis ``n`` and keys of :mod:`eqt.data.rigid`.
        rotation: ``(n, 3, 3)`` orthogonal matrices.
        translation: ``(n, 3)``.

    Returns:
        A new dictionary with the same keys and shapes.
    """
    roles = rigid_data._ROLES
    r = rotation.to(next(iter(batch.values())))
    t = translation.to(r)
    det = torch.linalg.det(r).sign()  # (n,)
    out = {}
    for key, a in batch.items():
        role = roles.get(key)
        if role is None:
            raise ValueError(f"transform_batch: unknown key {key!r}")
        if role == "invariant":
            out[key] = a
        elif role == "quat":
            raise ValueError(f"transform_batch: quaternion key {key!r} is not supported")
        elif role == "frame":  # (n, ..., 3, 3) -> R @ M
            out[key] = (r[:, None] @ a.reshape(a.shape[0], -1, 3, 3)).reshape(a.shape)
        else:  # (n, ..., 3)
            moved = (a.reshape(a.shape[0], -1, 3) @ r.transpose(-1, -2))
            if role == "point":
                moved = moved + t[:, None]
            elif role == "pseudovector":
                moved = moved * det[:, None, None]
            out[key] = moved.reshape(a.shape)
    return out


class _Loss:
    """``rigid_loss`` of the model on a batch; in training mode the batch is first augmented (if enabled).

    Training-mode calls are counted from ``start_step`` (one per optimisation step), and step ``k``
    draws its transformations from ``np.random.default_rng([seed, k])``.
    """

    def __init__(self, config: RigidRunConfig, start_step: int = 0, augment: bool = False):
        self.rot_weight, self.seed, self.std = config.rot_weight, config.seed, config.translation_std
        self.augment, self.step = augment, start_step

    def __call__(self, model: torch.nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        if self.augment and model.training:
            n = batch["pos"].shape[0]
            rot, shift = random_e3(n, np.random.default_rng([self.seed, self.step]), self.std)
            batch = transform_batch(batch, torch.from_numpy(rot), torch.from_numpy(shift))
            self.step += 1
        pos, rot = model(batch)
        return rigid_loss(pos, rot, batch["target_pos"], batch["target_rot"], model.config.length_scale,
                          self.rot_weight)


# --------------------------------------------------------------------------------------------
# Compute
# --------------------------------------------------------------------------------------------
def flops_per_step(model: torch.nn.Module, loss_fn: Callable, batch: dict[str, Tensor]) -> tuple[int, int]:
    """``(forward + backward FLOPs of one step on batch, forward FLOPs)``, measured on a copy of ``model``."""
    m = copy.deepcopy(model).train()
    with FlopCounterMode(display=False) as counter:
        loss, _ = loss_fn(m, batch)
        loss.backward()
    total = counter.get_total_flops()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        loss_fn(m, batch)
    return int(total), int(counter.get_total_flops())


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
def _split(root: Path, split: str, n: int, where: str) -> dict[str, np.ndarray]:
    data = rigid_data.load(root, split)
    have = data["pos"].shape[0]
    if n > have:
        raise ValueError(f"{where}: n_{split}={n} but {root}/{split}.npz has {have} samples")
    return {k: data[k][: n or have] for k in _KEYS}


def _tensors(data: dict[str, np.ndarray], device: str) -> dict[str, Tensor]:
    return {k: torch.as_tensor(v, dtype=torch.float32, device=device) for k, v in data.items()}


def _run_fields(config: RigidRunConfig) -> dict[str, Any]:
    return {k: v for k, v in config.to_dict().items() if k not in _FREE_FIELDS}


def _start_step(last: Path) -> int:
    if not last.exists():
        return 0
    try:
        return int(torch.load(last, map_location="cpu", weights_only=True)["state"]["step"])
    except Exception as exc:  # noqa: BLE001 - fit reports the same file with its own message
        raise ValueError(f"cannot resume from {last}: {exc} (delete it to start over)") from exc


def train_run(config: RigidRunConfig, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train (or resume, or return the finished result of) one run; writes ``{config.out}/result.json``.

    Args:
        config: a :class:`RigidRunConfig`.
        log: progress printer (None: silent).

    Returns:
        ``{"config", "model_config", "family", "width", "depth", "augment", "params", "steps",
        "n_train", "n_val", "n_test", "batch_size", "flops_per_step", "flops_forward_per_sample",
        "train_flops", "train_seconds", "wall_seconds", "finished", "best_step", "val_loss",
        "test_loss", "test_e3_loss", "val", "test", "test_e3", "best", "static_test_loss",
        "eqt_version", "torch_version", "device"}``; ``val`` / ``test`` / ``test_e3`` hold
        ``{"loss", "pos_mse", "rot_mse", "angle"}`` of the final weights, ``best`` the same of the
        best-validation checkpoint plus its ``step``; ``*_loss`` repeat the final losses.

    Raises:
        FileNotFoundError: a split file is missing.
        ValueError: the data are too small, or the run folder holds a run with another config.
    """
    t0 = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    result_path, config_path = out / "result.json", out / "run_config.json"
    if config_path.exists():
        old = json.loads(config_path.read_text())
        diff = sorted(k for k in set(old) | set(_run_fields(config)) if old.get(k) != _run_fields(config).get(k))
        if diff:
            raise ValueError(f"{out} holds a run with other settings ({', '.join(diff)}); use another out folder")
    if result_path.exists():
        done = json.loads(result_path.read_text())
        if done.get("finished") and _run_fields(RigidRunConfig.from_dict(done["config"])) == _run_fields(config):
            if log:
                log(f"{out}: finished already")
            return done
    out.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(_run_fields(config), indent=2) + "\n")

    root = Path(config.data)
    arrays = {s: _split(root, s, n, "train_run") for s, n in
              (("train", config.n_train), ("val", config.n_val), ("test", config.n_test))}
    rot, shift = random_e3(len(arrays["test"]["pos"]), np.random.default_rng(E3_TEST_SEED), config.translation_std)
    arrays["test_e3"] = rigid_data.apply_e3(arrays["test"], rot, shift)
    data = {s: _tensors(a, config.device) for s, a in arrays.items()}
    history = arrays["train"]["pos"].shape[1]

    model_config = config.model_config(history)
    torch.manual_seed(config.seed)
    model = RigidBodyModel(model_config).to(config.device)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    steps = config.step_config()
    n_train = len(arrays["train"]["pos"])
    first = {k: v[: min(config.batch_size, n_train)] for k, v in data["train"].items()}
    flops, flops_fwd = flops_per_step(model, _Loss(config), first)
    if log:
        log(f"{out}: {model_config.family} width {config.width} depth {config.depth}, {params:,} parameters, "
            f"{flops:.3g} FLOPs per step, {config.steps} steps on {n_train} samples"
            f"{' with augmentation' if config.augment else ''}")

    loss_fn = _Loss(config, _start_step(out / "last.pt"), augment=config.augment)
    summary = fit(model, loss_fn, data["train"], data["val"], steps, out, log=log)
    plain = _Loss(config)

    def metrics(m: torch.nn.Module) -> dict[str, dict[str, float]]:
        return {s: evaluate(m, plain, data[s], steps.val_batch_size) for s in ("val", "test", "test_e3")}

    final = metrics(model)
    # a run stopped by max_time before its first validation has no best.pt yet: its best is the final
    best_model = load_model(out / "best.pt", config.device) if (out / "best.pt").exists() else model
    best = {"step": summary["best_step"], **(metrics(best_model) if best_model is not model else final)}
    test = data["test"]
    static, _ = rigid_loss(test["pos"][:, -1], test["rot"][:, -1], test["target_pos"], test["target_rot"],
                           model_config.length_scale, config.rot_weight)
    result = {
        "config": config.to_dict(), "model_config": model_config.to_dict(), "family": config.family,
        "width": config.width, "depth": config.depth, "augment": config.augment, "params": params,
        "steps": config.steps, "n_train": n_train, "n_val": len(arrays["val"]["pos"]),
        "n_test": len(arrays["test"]["pos"]), "batch_size": config.batch_size, "flops_per_step": flops,
        "flops_forward_per_sample": flops_fwd / len(first["pos"]), "train_flops": flops * config.steps,
        "train_seconds": summary["seconds"], "wall_seconds": time.perf_counter() - t0,
        "finished": bool(summary["finished"]), "best_step": summary["best_step"],
        "val_loss": final["val"]["loss"], "test_loss": final["test"]["loss"],
        "test_e3_loss": final["test_e3"]["loss"], **final, "best": best, "static_test_loss": float(static),
        "eqt_version": eqt.__version__, "torch_version": torch.__version__, "device": config.device,
    }
    tmp = result_path.with_name("result.json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(result_path)
    if log:
        log(f"{out}: val {result['val_loss']:.4g}  test {result['test_loss']:.4g}  "
            f"test_e3 {result['test_e3_loss']:.4g}  ({result['train_seconds']:.0f} s training)")
    return result


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """One option per :class:`RigidRunConfig` field (``--n-train`` for ``n_train``, ...)."""
    d = RigidRunConfig()
    choices = {"family": FAMILIES, "gatr_variant": GATR_VARIANTS}
    for f in dataclasses.fields(RigidRunConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(d, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            p.add_argument(flag, type=type(default), default=default, choices=choices.get(f.name))
    return p


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run :func:`train_run` from parsed :func:`add_arguments` options and print the result's summary."""
    config = RigidRunConfig.from_dict({f.name: getattr(args, f.name) for f in dataclasses.fields(RigidRunConfig)})
    result = train_run(config)
    keys = ("family", "width", "depth", "augment", "params", "steps", "n_train", "flops_per_step", "train_flops",
            "train_seconds", "val_loss", "test_loss", "test_e3_loss", "static_test_loss")
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eqt.train.rigid", description=__doc__.splitlines()[0])
    try:
        run_from_args(add_arguments(parser).parse_args(argv))
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc).splitlines()[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
