"""The learning curve of a training run: one row per epoch, kept whole across resumes, and its plot.

:class:`LearningCurve` is a Lightning callback that appends a row (epoch, step, learning rate, the
epoch's train and validation losses and MAEs) at the end of every training epoch and rewrites
``metrics.csv`` atomically. Its rows are also part of every Lightning checkpoint, so a run resumed
from the checkpoint of epoch ``k`` starts again from exactly the rows ``0..k``: rows that a killed
run wrote after its last checkpoint are replaced, none is lost or doubled, however many times the
run is interrupted. (Lightning's own ``CSVLogger`` starts its file again on every resume.)

:func:`plot_learning_curve` draws train and validation energy and force MAE against the epoch.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import lightning as L

from eqt.files import atomic_path, atomic_write_text

__all__ = ["LearningCurve", "read_curve", "plot_learning_curve"]


class LearningCurve(L.Callback):
    """Record one row per epoch into ``path`` (a CSV file, rewritten atomically each epoch).

    Columns: ``epoch`` (0-based), ``step`` (optimiser steps done), ``lr`` (at the epoch's last
    step), then ``train_*`` (epoch means of what the module logs: ``loss``, ``energy_mae``,
    ``forces_mae``, ... in eV and eV/Å) and ``val_*`` (the validation at that epoch's end).

    The row is written in ``on_train_epoch_end``, which Lightning calls before the epoch-end
    checkpoint is saved, so each checkpoint holds the rows up to and including its epoch.

    Args:
        path: the CSV file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        row: dict[str, float] = {"epoch": epoch, "step": trainer.global_step}
        if trainer.optimizers:
            row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        metrics = trainer.callback_metrics
        for key in sorted(metrics):
            if key.startswith("train_") and key.endswith("_epoch"):
                row[key[: -len("_epoch")]] = float(metrics[key])
            elif key.startswith("val_"):
                row[key] = float(metrics[key])
        self.rows = [r for r in self.rows if r["epoch"] < epoch] + [row]
        if trainer.is_global_zero:
            self.write()

    def write(self) -> None:
        """Rewrite the CSV from the rows (atomically: a complete file or the previous one)."""
        columns = list(dict.fromkeys(k for r in self.rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: repr(v) for k, v in r.items()} for r in self.rows)
        atomic_write_text(self.path, buf.getvalue())

    def state_dict(self) -> dict:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]


def read_curve(path: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` written by :class:`LearningCurve` (empty cells left out)."""
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in r.items() if v not in (None, "")} for r in csv.DictReader(fh)]


def plot_learning_curve(rows: list[dict[str, float]], path: str | os.PathLike) -> Path:
    """Train and validation energy (meV) and force (meV/Å) MAE against the epoch, log y.

    One panel per quantity that the rows have (a force-only or energy-only run has one). Written
    atomically as PNG.

    Args:
        rows: :class:`LearningCurve` rows (``epoch``, ``train_energy_mae``, ``val_forces_mae``, ...).
        path: the PNG file.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(q, label) for q, label in (("energy_mae", "energy MAE (meV)"), ("forces_mae", "force MAE (meV/Å)"))
              if any(f"{s}_{q}" in r for r in rows for s in ("train", "val"))]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 3.6), squeeze=False)
    for ax, (q, label) in zip(axes[0], panels):
        for split, style in (("train", "-"), ("val", "o-")):
            pts = [(r["epoch"], 1e3 * r[f"{split}_{q}"]) for r in rows
                   if f"{split}_{q}" in r and math.isfinite(r[f"{split}_{q}"]) and r[f"{split}_{q}"] > 0]
            if pts:
                ax.plot(*zip(*pts), style, ms=3, label=split)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
