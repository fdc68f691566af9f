"""``train(config)``: data, splits, model, Lightning trainer, checkpoints, resume, export.

Files written under ``config.out_dir``:

- ``config.yaml`` (the resolved config), ``splits.npz`` (``idx_train/idx_val/idx_test``),
- ``checkpoints/last.ckpt`` every ``checkpoint_every_n_steps`` steps and at each epoch end,
  ``checkpoints/best.ckpt`` (lowest validation loss) — Lightning checkpoints for resuming,
- ``logs/`` (CSV and TensorBoard when installed),
- ``model.pt``: the eqt checkpoint of the best model (EMA weights when enabled), what
  ``eqt test``, ``eqt md`` and :class:`eqt.ase.Calculator` load.

A run whose ``out_dir`` holds ``checkpoints/last.ckpt`` resumes from it. The training order is a
function of ``(seed, epoch)`` only, so a run resumed from an epoch-end checkpoint ends with the same
weights and metrics as an uninterrupted one. (A checkpoint written in the middle of an epoch resumes
at the next epoch boundary as Lightning does, which changes the data order of that epoch.)
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from eqt.checkpoint import save_checkpoint
from eqt.train.config import TrainConfig

__all__ = ["train", "build_model", "fit_energy_offsets", "EpochSeededSampler"]


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
        ValueError: unknown model name or model key.
    """
    from eqt.checkpoint import _models

    models = _models()
    if config.model_name not in models:
        raise ValueError(f"unknown model_name '{config.model_name}' (known: {', '.join(models)})")
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


def train(config: TrainConfig, callbacks: list | None = None) -> dict[str, Any]:
    """Train (or resume) a potential; returns metrics and paths.

    Args:
        config: the training config.
        callbacks: extra Lightning callbacks (tests use one to simulate a crash).

    Returns:
        ``{"val": {...}, "test": {...}, "model_path": Path, "out_dir": Path}``; metrics in eV, eV/Å.
    """
    import lightning as L
    import yaml
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from eqt.data.dataset import energy_statistics, fit_atomrefs, load_splits, save_splits, split_indices
    from eqt.data.readers import read_frames
    from eqt.train.module import PotentialModule

    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.float64 if config.precision == "float64" else torch.float32
    forces_only = config.objective == "forces"
    frames = read_frames(config.data, energy_key=config.energy_key, forces_key=config.forces_key,
                         units=config.units, require_energy=not forces_only, require_forces=config.forces_weight > 0)
    split_path = out / "splits.npz"
    if split_path.exists():
        splits = load_splits(split_path)
    else:
        splits = split_indices(len(frames), (config.train_size, config.val_size, config.test_size), config.seed)
        save_splits(split_path, splits)
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    L.seed_everything(config.seed, workers=True, verbose=False)
    model = build_model(config)
    train_frames = frames.subset(splits["train"])
    if config.atomrefs and not forces_only:  # force-only: offsets are fitted after training
        refs = fit_atomrefs(train_frames, max_z=model.max_z)
        model.atomref.copy_(torch.as_tensor(refs, dtype=model.atomref.dtype))
    if config.standardize:
        if forces_only:  # energy unit = RMS force component x 1 Å: forces of order 1 at initialisation
            std = float(np.sqrt(np.mean(np.concatenate([f.ravel() for f in train_frames.forces]) ** 2)))
        else:
            _, std = energy_statistics(train_frames, model.atomref.numpy())
        if np.isfinite(std) and std > 0:
            model.energy_scale.fill_(float(std))
    model = model.to(dtype)
    module = PotentialModule(model, config)
    train_dl, val_dl, test_dl = _loaders(config, frames, splits, dtype)

    ckpt_dir = out / "checkpoints"
    # last.ckpt is refreshed every N steps and at every epoch end (the state a resumed run starts from)
    by_steps = ModelCheckpoint(dirpath=ckpt_dir, filename="latest-step", save_last=True, save_top_k=1,
                               every_n_train_steps=config.checkpoint_every_n_steps, enable_version_counter=False)
    by_epoch = ModelCheckpoint(dirpath=ckpt_dir, filename="latest-epoch", save_last=True, save_top_k=1,
                               every_n_epochs=1, save_on_train_epoch_end=True, enable_version_counter=False)
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min", save_top_k=1,
                           enable_version_counter=False)
    cbs = [by_steps, by_epoch, best, EarlyStopping("val_loss", patience=config.early_stopping_patience),
           LearningRateMonitor("epoch")] + list(callbacks or [])
    loggers = [CSVLogger(out, name="logs", version=0)]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger
        import tensorboard  # noqa: F401

        loggers.append(TensorBoardLogger(out, name="logs", version=0, default_hp_metric=False))
    except ImportError:
        pass
    trainer = L.Trainer(max_epochs=config.max_epochs, max_steps=config.max_steps, max_time=config.max_time,
                        accelerator=config.accelerator, devices=config.devices, num_nodes=config.num_nodes,
                        strategy=config.strategy, precision="64-true" if dtype == torch.float64 else "32-true",
                        gradient_clip_val=config.gradient_clip or None, callbacks=cbs, logger=loggers,
                        log_every_n_steps=config.log_every_n_steps, inference_mode=False,
                        enable_progress_bar=config.progress_bar, enable_model_summary=False, deterministic=False)
    resume = ckpt_dir / "last.ckpt"
    trainer.fit(module, train_dl, val_dl, ckpt_path=str(resume) if resume.exists() else None)

    if best.best_model_path:
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    if forces_only and train_frames.energy is not None:
        fit_energy_offsets(module.eval_model(), train_frames, batch_size=config.inference_batch_size)
    val = trainer.validate(module, val_dl, verbose=False)[0] if len(splits["val"]) else {}
    test = trainer.test(module, test_dl, verbose=False)[0] if len(splits["test"]) else {}
    final = copy.deepcopy(module.eval_model()).float()
    elements = sorted({int(z) for zs in train_frames.z for z in np.unique(zs)})
    model_path = save_checkpoint(out / "model.pt", final, extra={"elements": elements, "val": val, "test": test,
                                                                  "train_config": dataclasses.asdict(config)})
    return {"val": val, "test": test, "model_path": model_path, "out_dir": out}
