"""Helpers shared by the benchmark scripts (imported from the scripts' own folder)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["DATA_ROOT", "load_batch", "sync"]

#: The reference data sets: ``../shared/data`` beside the checkout, or ``$EQT_SHARED_DATA`` (for a
#: machine where the data travel inside the working tree, e.g. the GPU script ``benchmarks/gpu.sh``).
DATA_ROOT = Path(os.environ.get("EQT_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def load_batch(path: Path, n: int, device: str):
    """The first ``n`` frames of an ASE-readable file as ``(z (N,), pos (N, 3) float32, batch (N,))``."""
    import ase.io

    frames = ase.io.read(path, f":{n}")
    z = torch.cat([torch.as_tensor(a.numbers) for a in frames]).long().to(device)
    pos = torch.cat([torch.as_tensor(a.positions) for a in frames]).float().to(device)
    batch = torch.repeat_interleave(torch.arange(n), torch.tensor([len(a) for a in frames])).to(device)
    return z, pos, batch


def sync(device: str) -> None:
    """Wait for queued GPU work, so wall-clock timings are honest (no-op on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
