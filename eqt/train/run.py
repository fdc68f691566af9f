"""``train(config)``: data, splits, model, Lightning trainer, checkpoints, resume, export.

Files written under ``config.out_dir`` (the run directory; docs/training.md has the contract):

- ``fingerprint.json`` (what defines the run, :func:`run_fingerprint`), ``splits.npz``
  (``idx_train/idx_val/idx_test``), both at the first start; ``config.yaml`` (the resolved config),
- ``checkpoints/last.ckpt`` every ``checkpoint_every_n_steps`` steps and at each epoch end,
  ``checkpoints/best.ckpt`` (lowest validation loss) — Lightning checkpoints for resuming,
- ``metrics.csv`` (one row per epoch, whole across resumes) and ``learning_curve.png``
  (:mod:`eqt.train.curves`), ``logs/`` (Lightning's CSV and TensorBoard when installed),
- ``model.pt``: the eqt checkpoint of the best model (EMA weights when enabled), what
  ``eqt test``, ``eqt md`` and :class:`eqt.ase.Calculator` load,
- ``.lock`` while it runs (:class:`eqt.files.RunLock`).

Nothing is written before the config, model, data, split and devices are checked. A run whose
``out_dir`` holds ``checkpoints/last.ckpt`` resumes from it when its fingerprint matches (only
:data:`RESUMABLE_KEYS` may change). The training order is a function of ``(seed, epoch)`` only, so
a run resumed from an epoch-end checkpoint ends with the same weights and metrics as an
uninterrupted one. (A checkpoint written in the middle of an epoch resumes at the next epoch
boundary as Lightning does, which changes the data order of that epoch.)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import signal
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from eqt.checkpoint import save_checkpoint
from eqt.train.config import TrainConfig

__all__ = ["train", "build_model", "fit_energy_offsets", "EpochSeededSampler", "run_fingerprint", "RESUMABLE_KEYS"]


class EpochSeededSampler(Sampler[int]):
    """A shuffle that depends only on ``(seed, epoch)``, so resumed runs see the same order.

    Args:
        n: data set size.
        seed: base seed.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def build_model(config: TrainConfig) -> torch.nn.Module:
    """The model named by ``config.model_name`` with ``config.model`` overrides.

    Raises:
        ValueError: unknown model name or model key, or a model that is not an energy model
            (``eqt train`` fits energies and forces).
    """
    from eqt.checkpoint import _models, energy_model_names

    models, names = _models(), energy_model_names()
    if config.model_name not in models:
        raise ValueError(f"unknown model_name '{config.model_name}' (energy models: {', '.join(names)})")
    if config.model_name not in names:
        raise ValueError(f"model_name '{config.model_name}' is not an energy model; eqt train fits energies and "
                         f"forces with one of {', '.join(names)}")
    cls, cfg_cls = models[config.model_name]
    return cls(cfg_cls.from_dict(config.model))


def _loaders(config: TrainConfig, frames, splits, dtype):
    from eqt.data.dataset import AtomsDataset, collate_atoms

    def loader(idx, batch_size, shuffle):
        ds = torch.utils.data.Subset(AtomsDataset(frames, dtype=dtype), idx.tolist())
        sampler = EpochSeededSampler(len(ds), config.seed) if shuffle else None
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, collate_fn=collate_atoms, num_workers=0)

    return (loader(splits["train"], config.batch_size, True),
            loader(splits["val"], config.inference_batch_size, False),
            loader(splits["test"], config.inference_batch_size, False))


def fit_energy_offsets(model: torch.nn.Module, frames, batch_size: int = 64) -> np.ndarray:
    """Per-element energy offsets of a force-trained model, by least squares on ``frames``.

    A model trained on forces alone knows its energy only up to a constant per element (forces do
    not see it). This fits ``E_f - model_f ≈ Σ_i e[z_i]`` over the frames (which need energies) and
    adds ``e`` to ``model.atomref``, in place.

    Args:
        model: an energy model (its ``atomref`` is updated).
        frames: :class:`eqt.data.readers.Frames` with energies.
        batch_size: frames per evaluation call.

    Returns:
        ``(max_z,)`` the offsets added, eV.
    """
    from eqt.data.dataset import fit_atomrefs
    from eqt.train.evaluate import evaluate

    dtype = model.atomref.dtype
    predicted = evaluate(model, dataclasses.replace(frames, forces=None), batch_size=batch_size, dtype=dtype,
                         device=model.atomref.device)["energy_pred"]
    offsets = fit_atomrefs(frames, max_z=model.max_z, baseline=predicted)
    with torch.no_grad():
        model.atomref.add_(torch.as_tensor(offsets, dtype=dtype, device=model.atomref.device))
    return offsets


#: Config keys that may change when a run resumes: when it stops, how often it writes, what it shows,
#: where it runs, and where its files are (the data file's content is fingerprinted, not its path).
#: Everything else changes what is trained or how, and is part of the run's fingerprint.
RESUMABLE_KEYS = ("max_epochs", "max_steps", "max_time", "early_stopping_patience", "checkpoint_every_n_steps",
                  "log_every_n_steps", "progress_bar", "accelerator", "data", "out_dir", "refit_offsets")


def run_fingerprint(config: TrainConfig, data_digest: str) -> dict[str, Any]:
    """What defines a training run (see :func:`eqt.files.check_fingerprint`).

    Every config key but :data:`RESUMABLE_KEYS`, with ``model`` expanded to the model's full
    config (so that spelling out a default does not count as a change), plus the data file's
    content digest.
    """
    from eqt.checkpoint import _models

    values = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_KEYS}
    values["model"] = _models()[config.model_name][1].from_dict(config.model).to_dict()
    if isinstance(config.atomrefs, str):  # an E0s file: its content, not its path
        from eqt.files import file_digest

        if not Path(config.atomrefs).is_file():
            raise ValueError(f"atomrefs file (E0s) not found: {config.atomrefs}")
        values["atomrefs"] = file_digest(config.atomrefs)
    values["data_digest"] = data_digest
    return values


def _splits(config: TrainConfig, n: int, path: Path) -> dict[str, np.ndarray]:
    """The train/val/test split of ``n`` frames: ``path`` when it exists, else a new seeded one.

    An existing ``splits.npz`` is one written by an earlier start of this run, or one put there
    before the first start (torchmd-net's, a benchmark's); it must fit the data and the sizes.

    Raises:
        ValueError: sizes beyond the data, no training or validation frames, or a ``path`` that
            does not match the sizes or the data.
    """
    from eqt.data.dataset import load_splits, split_indices

    try:
        new = split_indices(n, (config.train_size, config.val_size, config.test_size), config.seed)
    except ValueError as err:
        raise ValueError(f"{config.data}: {str(err).removeprefix('split_indices: ')}") from None
    for name in ("train", "val"):
        if len(new[name]) == 0:
            raise ValueError(f"{name}_size {getattr(config, f'{name}_size')!r} leaves no {name} frames of the {n} "
                             f"in {config.data}")
    if not path.exists():
        return new
    old = load_splits(path)
    counts = {k: len(v) for k, v in old.items()}
    if counts != {k: len(v) for k, v in new.items()} or any(len(v) and (v.min() < 0 or v.max() >= n)
                                                            for v in old.values()):
        raise ValueError(f"{path} ({counts['train']}/{counts['val']}/{counts['test']} frames) does not fit "
                         f"{config.data} ({n} frames) with sizes {config.train_size}/{config.val_size}/"
                         f"{config.test_size}; remove it or set the sizes to match")
    return old


def _dry_run(module: torch.nn.Module, loader: DataLoader, config: TrainConfig) -> None:
    """Evaluate energies, forces and the loss on one batch, so that a model that cannot run on the
    data (a bad cutoff, an element beyond ``max_z``, ...) fails before anything is written.
    The random number generators are left as they were."""
    batch = next(iter(loader))
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        try:
            module._losses(module.model, batch, train=False, stage="check")
        except (RuntimeError, IndexError) as err:
            text = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ValueError(f"model {config.model_name} cannot evaluate {config.data}: {text}") from None


def _early_stopping(patience: int):
    """Early stopping on the validation loss whose patience is the config's also after a resume
    (Lightning restores the patience saved in the checkpoint, so raising it to continue a stopped
    run would have no effect)."""
    from lightning.pytorch.callbacks import EarlyStopping

    class ConfiguredPatience(EarlyStopping):
        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            super().load_state_dict(state_dict)
            self.patience = patience

    return ConfiguredPatience("val_loss", patience=patience)


#: Lightning's messages that say nothing about this run (what eqt does instead: stderr progress,
#: one DataLoader process by design, metrics.csv; the checkpoint folder is meant to be reused).
_NOISE = (r".*does not have many workers.*", r".*smaller than the logging interval.*",
          r".*exists and is not empty.*", r".*litmodels.*", r".*litlogger.*", r".*on epoch level in distributed.*",
         r".*LeafSpec.*")


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's info lines (GPU/TPU available, LOCAL_RANK, restoring states, adverts) and its
    warnings in :data:`_NOISE` off, for the duration only."""
    loggers = [logging.getLogger(name) for name in ("lightning", "lightning.pytorch", "lightning.fabric",
                                                     "pytorch_lightning")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            for pattern in _NOISE:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _movable_checkpoint(**kwargs):
    """Lightning's ``ModelCheckpoint`` whose state survives a moved run directory.

    Lightning keeps only ``best_model_path`` when the checkpoint folder's path has changed (and
    that path still points into the old folder): the best score is forgotten, so the next
    validation would become "best" whatever its loss, and the export would read the old folder's
    file. Here paths saved under the old folder are read under the new one and the whole state is
    restored.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    class MovableCheckpoint(ModelCheckpoint):
        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            old = state_dict.get("dirpath")
            if old and self.dirpath and old != self.dirpath:
                def moved(path):
                    if not path or not str(path).startswith(str(old)):
                        return path
                    return str(Path(self.dirpath) / Path(path).relative_to(old))

                state_dict = {**state_dict, "dirpath": self.dirpath,
                              **{k: moved(state_dict.get(k)) for k in ("best_model_path", "kth_best_model_path",
                                                                       "last_model_path") if k in state_dict},
                              "best_k_models": {moved(k): v for k, v in (state_dict.get("best_k_models") or {}).items()}}
            super().load_state_dict(state_dict)

    return MovableCheckpoint(**kwargs)


def _trainer(config: TrainConfig, out: Path, callbacks: list, dtype: torch.dtype):
    """The Lightning trainer: checkpoints, early stopping, loggers.

    Returns:
        ``(trainer, best)``: ``best`` is the checkpoint callback of the lowest validation loss.

    Raises:
        ValueError: an accelerator, device or strategy that this machine does not have.
    """
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger

    ckpt_dir = out / "checkpoints"
    # last.ckpt is refreshed every N steps and at every epoch end (the state a resumed run starts from)
    by_steps = _movable_checkpoint(dirpath=ckpt_dir, filename="latest-step", save_last=True, save_top_k=1,
                               every_n_train_steps=config.checkpoint_every_n_steps, enable_version_counter=False)
    by_epoch = _movable_checkpoint(dirpath=ckpt_dir, filename="latest-epoch", save_last=True, save_top_k=1,
                               every_n_epochs=1, save_on_train_epoch_end=True, enable_version_counter=False)
    best = _movable_checkpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min", save_top_k=1,
                           enable_version_counter=False)
    loggers = [CSVLogger(out, name="logs", version=0)]  # this process's steps only; the whole curve: metrics.csv
    try:
        from lightning.pytorch.loggers import TensorBoardLogger
        import tensorboard  # noqa: F401

        loggers.append(TensorBoardLogger(out, name="logs", version=0, default_hp_metric=False))
    except ImportError:
        pass
    cbs = [by_steps, by_epoch, best, _early_stopping(config.early_stopping_patience),
           LearningRateMonitor("epoch")] + list(callbacks)
    try:
        trainer = L.Trainer(max_epochs=config.max_epochs, max_steps=config.max_steps, max_time=config.max_time,
                            accelerator=config.accelerator, devices=config.devices, num_nodes=config.num_nodes,
                            strategy=config.strategy, precision="64-true" if dtype == torch.float64 else "32-true",
                            gradient_clip_val=config.gradient_clip or None, callbacks=cbs, logger=loggers,
                            log_every_n_steps=config.log_every_n_steps, inference_mode=False,
                            enable_progress_bar=False, enable_model_summary=False, deterministic=False)
    except (MisconfigurationException, RuntimeError, ValueError) as err:
        text = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"accelerator={config.accelerator!r} devices={config.devices!r} "
                         f"strategy={config.strategy!r}: {text}") from None
    return trainer, best


def _fit(trainer, module, train_dl: DataLoader, val_dl: DataLoader, ckpt_path: str | None) -> None:
    """``trainer.fit``, with Ctrl-C raised as ``KeyboardInterrupt`` (Lightning turns it into
    ``sys.exit(1)`` after its graceful shutdown, leaving SIGINT ignored; the handler is restored)."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, train_dl, val_dl, ckpt_path=ckpt_path)
    except SystemExit:
        if not trainer.interrupted:
            raise
        if threading.current_thread() is threading.main_thread() and handler is not None:
            signal.signal(signal.SIGINT, handler)
        raise KeyboardInterrupt from None


def _check_not_foreign(out: Path) -> None:
    """Refuse a folder holding training checkpoints but no fingerprint (an older eqt's run, or not
    eqt's): nothing says what they were trained on."""
    from eqt.files import FINGERPRINT, OutputError

    if (out / "checkpoints" / "last.ckpt").exists() and not (out / FINGERPRINT).exists():
        raise OutputError(f"{out} holds checkpoints but no {FINGERPRINT}, so it cannot be resumed safely; use "
                          f"another --out, or delete {out} to start fresh")


def _initial_scales(model: torch.nn.Module, config: TrainConfig, train_frames) -> None:
    """Per-element reference energies (``atomrefs``) and the energy scale (``standardize``) from the
    training frames, in place. A resumed run overwrites them with the checkpoint's."""
    from eqt.data.dataset import energy_statistics, fit_atomrefs

    from eqt.data.dataset import check_e0s, read_e0s

    forces_only = config.objective == "forces"
    if isinstance(config.atomrefs, (str, dict)):  # isolated-atom energies (E0s), whatever the objective
        source = f"atomrefs file {config.atomrefs}" if isinstance(config.atomrefs, str) else "atomrefs"
        refs = check_e0s(read_e0s(config.atomrefs, model.max_z), train_frames, source)
        model.atomref.copy_(torch.as_tensor(refs, dtype=model.atomref.dtype))
    elif config.atomrefs and not forces_only:  # force-only: offsets are fitted after training
        refs = fit_atomrefs(train_frames, max_z=model.max_z)
        model.atomref.copy_(torch.as_tensor(refs, dtype=model.atomref.dtype))
    if config.standardize:
        if forces_only:  # energy unit = RMS force component x 1 Å: forces of order 1 at initialisation
            std = float(np.sqrt(np.mean(np.concatenate([f.ravel() for f in train_frames.forces]) ** 2)))
        else:
            _, std = energy_statistics(train_frames, model.atomref.numpy())
        if np.isfinite(std) and std > 0:
            model.energy_scale.fill_(float(std))


def _record_start(out: Path, config: TrainConfig, fingerprint: dict, splits: dict[str, np.ndarray]) -> None:
    """The files of a start (under the lock): at the first, the fingerprint and the split; at every
    start ``config.yaml`` (on a resume only :data:`RESUMABLE_KEYS` can differ, so it says what the
    run now uses). Raises :class:`eqt.files.OutputError` for a different run."""
    import yaml

    from eqt.data.dataset import save_splits
    from eqt.files import atomic_write_text, check_fingerprint

    if not check_fingerprint(out, fingerprint, write=True) and not (out / "splits.npz").exists():
        save_splits(out / "splits.npz", splits)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))


def _export(trainer, module, best_path: str, config: TrainConfig, train_frames, val_dl, test_dl, out: Path,
            write: bool) -> dict[str, Any]:
    """Best weights, energy offsets refitted on the training frames (force-only always; otherwise
    with ``refit_offsets``), final validation and test metrics, and ``model.pt`` (float32) when
    ``write``.

    Why the refit: forces do not see a constant energy, and with TorchMD-NET's recipe the energy
    term is weak (weight 0.2, smoothed by a loss EMA of 0.05), so the network's constant offset is
    left to SGD noise: it wanders by tens of meV from epoch to epoch (rMD17 ethanol: validation
    energy MAE 14-124 meV between consecutive epochs at equal force error), and the best
    checkpoint, chosen by a force-dominated loss, keeps whatever offset it had. Least squares of
    the residual energies over the training frames per element sets that constant exactly and
    changes no force.
    """
    if best_path:
        module.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"])
    if train_frames.energy is not None and (config.objective == "forces" or config.refit_offsets):
        fit_energy_offsets(module.eval_model(), train_frames, batch_size=config.inference_batch_size)
    val = trainer.validate(module, val_dl, verbose=False)[0]
    test = trainer.test(module, test_dl, verbose=False)[0] if len(test_dl.dataset) else {}
    model_path = out / "model.pt"
    if write:
        final = copy.deepcopy(module.eval_model()).float()
        elements = sorted({int(z) for zs in train_frames.z for z in np.unique(zs)})
        save_checkpoint(model_path, final, extra={"elements": elements, "val": val, "test": test,
                                                  "train_config": dataclasses.asdict(config)})
    return {"val": val, "test": test, "model_path": model_path, "out_dir": out}


def train(config: TrainConfig, callbacks: list | None = None) -> dict[str, Any]:
    """Train (or resume) a potential; returns metrics and paths.

    Everything is checked before the first file is written: the output folder, the model (built,
    and evaluated on one batch of the data), the trainer's accelerator and devices, the data and
    the split sizes, and, when ``out_dir`` holds a run, that it is this run (its fingerprint).
    Then ``out_dir`` is locked for the whole training (:class:`eqt.files.RunLock`). Under DDP only
    the process of global rank 0 locks and writes the run's files.

    Args:
        config: the training config.
        callbacks: extra Lightning callbacks (tests use one to simulate a crash).

    Returns:
        ``{"val": {...}, "test": {...}, "model_path": Path, "out_dir": Path}``; metrics in eV, eV/Å.

    Raises:
        ValueError: a bad config, data file or output folder (:class:`eqt.files.OutputError`: a
            folder of another run, or in use), as one line.
        KeyboardInterrupt: Ctrl-C; the last checkpoint is kept for a resume.
    """
    import lightning as L

    from eqt.data.readers import read_frames
    from eqt.files import RunLock, check_fingerprint, check_writable_dir, file_digest
    from eqt.train.curves import LearningCurve, plot_learning_curve
    from eqt.train.module import PotentialModule
    from eqt.train.progress import TrainingProgress

    if not config.data:
        raise ValueError("no data file: set data in the config or --set data=FILE")
    out = check_writable_dir(config.out_dir, "out_dir")
    dtype = torch.float64 if config.precision == "float64" else torch.float32
    with _quiet_lightning():
        L.seed_everything(config.seed, workers=True, verbose=False)
        model = build_model(config)
        curve, progress = LearningCurve(out / "metrics.csv"), TrainingProgress(enabled=config.progress_bar)
        trainer, best = _trainer(config, out, [curve, progress] + list(callbacks or []), dtype)
        frames = read_frames(config.data, energy_key=config.energy_key, forces_key=config.forces_key,
                             units=config.units, require_energy=config.objective != "forces",
                             require_forces=config.forces_weight > 0)
        fingerprint = run_fingerprint(config, file_digest(config.data))
        check_fingerprint(out, fingerprint, write=False)
        _check_not_foreign(out)
        splits = _splits(config, len(frames), out / "splits.npz")
        train_frames = frames.subset(splits["train"])
        _initial_scales(model, config, train_frames)
        module = PotentialModule(model.to(dtype), config)
        train_dl, val_dl, test_dl = _loaders(config, frames, splits, dtype)
        _dry_run(module, val_dl, config)

        primary = trainer.is_global_zero
        with RunLock(out, "eqt train") if primary else contextlib.nullcontext():
            if primary:
                _record_start(out, config, fingerprint, splits)
            resume = out / "checkpoints" / "last.ckpt"
            progress.resumed_from = str(resume) if resume.exists() else None
            _fit(trainer, module, train_dl, val_dl, progress.resumed_from)
            if primary and curve.rows:
                curve.write()
                plot_learning_curve(curve.rows, out / "learning_curve.png")
            return _export(trainer, module, best.best_model_path, config, train_frames, val_dl, test_dl, out,
                           write=primary)
