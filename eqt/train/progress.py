"""Training progress a person can follow, on stderr (in place of Lightning's progress bar on stdout).

    training: epoch 12/3000, 1.9 s/epoch, step 1428, train loss 0.0213, val E MAE 12.31 meV,
    val F MAE 45.2 meV/Å, lr 1.00e-03, elapsed 23 s, ETA 1 h 35 min

On a terminal the line is redrawn in place; redirected to a file it is one line every
``EQT_PROGRESS_INTERVAL`` seconds (default 10), see :class:`eqt.progress.Progress`. The epoch
count is the number of epochs completed; rate and ETA count only this process's epochs (a resumed
run does not look faster than it is), and a ``max_time`` limit caps the ETA. The validation values
are those of the last completed epoch.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from eqt.progress import Progress

__all__ = ["TrainingProgress"]


def _time_left(trainer: L.Trainer) -> float | None:
    """Seconds until ``max_time`` stops the training (Lightning's Timer, which counts across
    resumes), or None without a time limit: the ETA is the earlier of this and the epochs' ETA."""
    from lightning.pytorch.callbacks import Timer

    for cb in trainer.callbacks:
        if isinstance(cb, Timer):
            left = cb.time_remaining("train")
            return None if left is None else float(left)
    return None


class TrainingProgress(L.Callback):
    """A Lightning callback driving one :class:`eqt.progress.Progress` line.

    Args:
        enabled: False shows nothing (``progress_bar: false``).
        resumed_from: the checkpoint this run resumes from (named in a one-off line), or None.
    """

    def __init__(self, enabled: bool = True, resumed_from: str | None = None):
        self.enabled, self.resumed_from = enabled, resumed_from
        self.bar: Progress | None = None
        self.fields: dict[str, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        enabled = self.enabled and trainer.is_global_zero
        self.bar = Progress(total=total, what="training", unit="epoch", start=trainer.current_epoch, enabled=enabled)
        if enabled and self.resumed_from:
            self.bar.message(f"training: resuming from {self.resumed_from} at epoch {trainer.current_epoch}"
                             + (f"/{total}" if total else "") + f", step {trainer.global_step}")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self.bar is not None:
            self.bar.update(trainer.current_epoch, **self._fields(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.bar is not None and not trainer.sanity_checking:
            self.fields = self._epoch_fields(trainer)
            self.bar.update(trainer.current_epoch + 1, **self._fields(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _fields(self, trainer: L.Trainer) -> dict[str, Any]:
        return {"step": trainer.global_step, **self.fields, "time_left": _time_left(trainer)}

    def _epoch_fields(self, trainer: L.Trainer) -> dict[str, Any]:
        """Named values of the epoch just completed: train loss, validation MAEs (meV, meV/Å), lr."""
        m = trainer.callback_metrics
        out: dict[str, Any] = {}
        if "train_loss_epoch" in m:
            out["train loss"] = f"{float(m['train_loss_epoch']):.4g}"
        if "val_energy_mae" in m:
            out["val E MAE"] = f"{1e3 * float(m['val_energy_mae']):.2f} meV"
        if "val_forces_mae" in m:
            out["val F MAE"] = f"{1e3 * float(m['val_forces_mae']):.1f} meV/Å"
        if trainer.optimizers:
            out["lr"] = f"{trainer.optimizers[0].param_groups[0]['lr']:.2e}"
        return out
