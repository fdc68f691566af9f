"""Splits, per-element reference energies and PyTorch datasets/loaders over :class:`Frames`.

Items and batches are plain dictionaries of tensors. A batch of ``B`` systems with ``N`` atoms
in total is stored flat as in :mod:`eqt.data.atoms`: ``z`` (N,), ``pos`` (N, 3) and ``batch``
(N,) mapping each atom to its system.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from eqt.data.readers import Frames, read_frames

__all__ = [
    "read_e0s",
    "check_e0s",
    "split_indices",
    "save_splits",
    "load_splits",
    "fit_atomrefs",
    "energy_statistics",
    "AtomsDataset",
    "collate_atoms",
    "make_loader",
]

_SPLIT_NAMES = ("train", "val", "test")


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------
def _split_count(size: int | float | None, n: int, name: str) -> int | None:
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)):
        raise ValueError(f"split_indices: {name} size must be an int, a float or None, got {size!r}")
    if isinstance(size, (float, np.floating)):
        if not 0.0 <= size <= 1.0:
            raise ValueError(f"split_indices: {name} fraction {size} is outside [0, 1]")
        return int(round(float(size) * n))
    if size < 0:
        raise ValueError(f"split_indices: {name} size {size} is negative")
    return int(size)


def split_indices(
    n: int, sizes: tuple[int | float | None, int | float | None, int | float | None], seed: int
) -> dict[str, np.ndarray]:
    """Split ``range(n)`` into disjoint train/val/test index sets.

    Each size is a count (int), a fraction of ``n`` (float in [0, 1], rounded to the nearest
    count) or None for "all the frames left" (at most one None). A seeded random permutation is
    cut into consecutive pieces, as in torchmd-net; frames not covered by any size are unused.

    Args:
        n: number of frames.
        sizes: (train, val, test) sizes, e.g. ``(950, 50, None)`` or ``(0.8, 0.1, 0.1)``.
        seed: seed of the permutation (same seed, same split).

    Returns:
        ``{"train": (n_train,), "val": (n_val,), "test": (n_test,)}`` int64 arrays, each sorted.

    Raises:
        ValueError: on a negative size, a fraction outside [0, 1], more than one None or sizes
            that add up to more than ``n``.
    """
    if n < 0:
        raise ValueError(f"split_indices: n must be >= 0, got {n}")
    if len(sizes) != 3:
        raise ValueError(f"split_indices: sizes must be (train, val, test), got {sizes!r}")
    counts = [_split_count(s, n, name) for s, name in zip(sizes, _SPLIT_NAMES)]
    if sum(c is None for c in counts) > 1:
        raise ValueError(f"split_indices: at most one size may be None (the rest), got {sizes!r}")
    given = sum(c for c in counts if c is not None)
    if given > n:
        raise ValueError(
            f"split_indices: sizes {sizes!r} ask for {given} frames but there are only {n}"
        )
    counts = [n - given if c is None else c for c in counts]
    perm = np.random.default_rng(seed).permutation(n)
    out, start = {}, 0
    for name, c in zip(_SPLIT_NAMES, counts):
        out[name] = np.sort(perm[start : start + c]).astype(np.int64)
        start += c
    return out


def save_splits(path: str | os.PathLike, splits: dict[str, np.ndarray]) -> None:
    """Save splits to an ``.npz`` with torchmd-net's keys ``idx_train``, ``idx_val``, ``idx_test``.

    The file is written atomically (temporary file, then rename).

    Args:
        path: destination file (NumPy appends ``.npz`` only if we let it; we do not).
        splits: ``{"train": (n_train,), "val": (n_val,), "test": (n_test,)}`` index arrays.

    Raises:
        ValueError: if a split is missing or the folder does not exist.
    """
    path = Path(path)
    missing = [k for k in _SPLIT_NAMES if k not in splits]
    if missing:
        raise ValueError(f"save_splits: splits lack {', '.join(missing)} (writing {path})")
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **{f"idx_{k}": np.asarray(splits[k], dtype=np.int64) for k in _SPLIT_NAMES})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_splits(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load splits written by :func:`save_splits` (or torchmd-net's ``splits.npz``).

    Args:
        path: an ``.npz`` file with ``idx_train``, ``idx_val`` and ``idx_test``.

    Returns:
        ``{"train": ..., "val": ..., "test": ...}`` int64 index arrays.

    Raises:
        ValueError: if the file is missing, unreadable or lacks a key.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"splits file not found: {path}")
    try:
        with np.load(str(path), allow_pickle=False) as data:
            files = list(data.files)
            missing = [f"idx_{k}" for k in _SPLIT_NAMES if f"idx_{k}" not in files]
            if missing:
                raise ValueError(
                    f"splits file {path} lacks {', '.join(missing)} (has {', '.join(files)})"
                )
            return {k: np.asarray(data[f"idx_{k}"]).astype(np.int64) for k in _SPLIT_NAMES}
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"cannot read splits file {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - zipfile/pickle errors on corrupt files
        raise ValueError(f"cannot read splits file {path}: {type(exc).__name__}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Energy references and statistics
# --------------------------------------------------------------------------------------------
def _composition(frames: Frames, max_z: int) -> np.ndarray:
    counts = np.zeros((len(frames), max_z), dtype=np.float64)
    for k, z in enumerate(frames.z):
        if z.min() < 0 or z.max() >= max_z:
            raise ValueError(
                f"frame {k} of {frames.source} has atomic number {int(z.max())} outside 0..{max_z - 1}"
            )
        counts[k] = np.bincount(z, minlength=max_z)
    return counts


def fit_atomrefs(frames: Frames, max_z: int = 100, baseline: np.ndarray | None = None) -> np.ndarray:
    """Fit per-element reference energies by least squares, ``E_f - baseline_f ≈ Σ_i e[z_i]``.

    Solved with ``numpy.linalg.lstsq`` (``rcond=None``) over the elements present; elements absent
    from the data get 0. When the compositions are collinear, e.g. a single-molecule data set
    such as rMD17 where every frame has the same atoms, the system is rank deficient and the
    result is the minimum-norm solution: it reproduces the mean energy but the split between
    elements is arbitrary (do not read it as physical atomic energies).

    Args:
        frames: frames with energies (eV).
        max_z: size of the returned table (atomic numbers must be ``< max_z``).
        baseline: ``(F,)`` energies to subtract first (e.g. a force-trained model's own energies,
            whose per-element offsets are then what this fits), or None.

    Returns:
        (max_z,) float64 reference energy of each element in eV.

    Raises:
        ValueError: if the frames have no energies or an atomic number is ``>= max_z``.
    """
    if frames.energy is None:
        raise ValueError(f"fit_atomrefs: {frames.source} has no energies")
    if len(frames) == 0:
        raise ValueError(f"fit_atomrefs: {frames.source} has no frames")
    counts = _composition(frames, max_z)
    present = np.flatnonzero(counts.sum(axis=0) > 0)
    target = np.asarray(frames.energy, np.float64)
    if baseline is not None:
        baseline = np.asarray(baseline, np.float64)
        if baseline.shape != target.shape:
            raise ValueError(f"fit_atomrefs: baseline has shape {baseline.shape}, expected {target.shape}")
        target = target - baseline
    sol, *_ = np.linalg.lstsq(counts[:, present], target, rcond=None)
    refs = np.zeros(max_z, dtype=np.float64)
    refs[present] = sol
    return refs


def read_e0s(spec: str | os.PathLike | dict, max_z: int = 100) -> np.ndarray:
    """Isolated-atom reference energies (E0s, as MACE's ``--E0s``) as a ``(max_z,)`` table.

    Args:
        spec: a mapping of element symbol (or atomic number) to energy in eV, or the path of an
            extended-XYZ file of single-atom frames with energies (e.g. ``eqt data label`` of
            isolated atoms with the method that labelled the data set).
        max_z: size of the table.

    Returns:
        ``(max_z,)`` float64 energies in eV; elements not given are NaN (so that a data set with an
        element that has no E0 is caught by :func:`check_e0s`).

    Raises:
        ValueError: an unknown element, a file that cannot be read, a frame with more than one atom
            or without an energy, or two different energies for one element.
    """
    from ase.data import atomic_numbers

    refs = np.full(max_z, np.nan)
    if isinstance(spec, dict):
        for key, energy in spec.items():
            z = key if isinstance(key, int) else atomic_numbers.get(str(key))
            if z is None or not 0 < z < max_z:
                raise ValueError(f"E0s: unknown element {key!r}")
            refs[z] = float(energy)
        return refs
    frames = read_frames(spec, require_energy=True, require_forces=False)
    for f, (zs, energy) in enumerate(zip(frames.z, frames.energy)):
        if len(zs) != 1:
            raise ValueError(f"E0s file {spec}: frame {f} has {len(zs)} atoms; it must hold isolated atoms, one per frame")
        z = int(zs[0])
        if np.isfinite(refs[z]) and abs(refs[z] - energy) > 1e-8:
            raise ValueError(f"E0s file {spec}: element Z={z} appears with energies {refs[z]} and {energy}")
        refs[z] = float(energy)
    return refs


def check_e0s(refs: np.ndarray, frames: Frames, source: str = "E0s") -> np.ndarray:
    """``refs`` with NaN (elements absent from the data) set to 0, after checking that every element
    of ``frames`` has an E0.

    Raises:
        ValueError: an element of the data has no E0 (named).
    """
    from ase.data import chemical_symbols

    present = sorted({int(z) for zs in frames.z for z in np.unique(zs)})
    missing = [chemical_symbols[z] for z in present if z >= len(refs) or not np.isfinite(refs[z])]
    if missing:
        raise ValueError(f"{source} has no energy for element(s) {', '.join(missing)} of {frames.source}")
    return np.nan_to_num(refs, nan=0.0)


def energy_statistics(frames: Frames, atomrefs: np.ndarray | None = None) -> tuple[float, float]:
    """Mean per-atom residual energy and the spread of the total residual energy.

    With the residual ``r_f = E_f - Σ_i atomrefs[z_i]`` of frame ``f`` with ``n_f`` atoms, returns
    ``(mean_f(r_f / n_f), std_f(r_f))``: the first is a per-atom energy shift, the second the
    typical size of the energies left for the model to learn (used to set ``energy_scale``).
    After :func:`fit_atomrefs` the mean is close to 0.

    Args:
        frames: frames with energies (eV).
        atomrefs: (max_z,) per-element reference energies, or None for zeros.

    Returns:
        ``(mean_per_atom, std_of_total_residual)`` in eV (the std is 0 for a single frame).

    Raises:
        ValueError: if the frames have no energies or an atomic number is outside ``atomrefs``.
    """
    if frames.energy is None:
        raise ValueError(f"energy_statistics: {frames.source} has no energies")
    if len(frames) == 0:
        raise ValueError(f"energy_statistics: {frames.source} has no frames")
    if atomrefs is None:
        ref_sum = np.zeros(len(frames))
    else:
        atomrefs = np.asarray(atomrefs, dtype=np.float64)
        ref_sum = _composition(frames, len(atomrefs)) @ atomrefs
    residual = np.asarray(frames.energy, np.float64) - ref_sum
    per_atom = residual / frames.num_atoms
    return float(per_atom.mean()), float(residual.std())


# --------------------------------------------------------------------------------------------
# Dataset, collation, loader
# --------------------------------------------------------------------------------------------
class AtomsDataset(torch.utils.data.Dataset):
    """A map-style dataset over :class:`Frames` that yields dictionaries of tensors.

    Item ``i`` with ``n`` atoms has ``z`` (n,) int64, ``pos`` (n, 3), ``energy`` () and
    ``forces`` (n, 3) when the frames have them, ``stress`` (1, 3, 3) when present, and
    ``cell`` (1, 3, 3) plus ``pbc`` (1, 3) bool for a periodic frame only.

    Args:
        frames: the data set (eV, Å).
        dtype: floating dtype of pos, energy, forces, stress and cell.
    """

    def __init__(self, frames: Frames, dtype: torch.dtype = torch.float32) -> None:
        if not dtype.is_floating_point:
            raise ValueError(f"AtomsDataset: dtype must be floating point, got {dtype}")
        self.frames = frames
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        fr, dt = self.frames, self.dtype
        if not -len(fr) <= i < len(fr):
            raise IndexError(f"AtomsDataset index {i} out of range for {len(fr)} frames of {fr.source}")
        item: dict[str, Tensor] = {
            "z": torch.as_tensor(fr.z[i], dtype=torch.long),
            "pos": torch.as_tensor(fr.pos[i]).to(dt),
        }
        if fr.energy is not None:
            item["energy"] = torch.tensor(float(fr.energy[i]), dtype=dt)
        if fr.forces is not None:
            item["forces"] = torch.as_tensor(fr.forces[i]).to(dt)
        if fr.stress is not None:
            item["stress"] = torch.as_tensor(fr.stress[i]).to(dt).reshape(1, 3, 3)
        if fr.cell[i] is not None:
            item["cell"] = torch.as_tensor(fr.cell[i]).to(dt).reshape(1, 3, 3)
            item["pbc"] = torch.as_tensor(fr.pbc[i], dtype=torch.bool).reshape(1, 3)
        return item


def collate_atoms(items: list[dict[str, Tensor]]) -> dict[str, Any]:
    """Batch items of :class:`AtomsDataset` into one flat batch.

    Args:
        items: non-empty list of item dictionaries.

    Returns:
        A dictionary with ``z`` (N,) int64, ``pos`` (N, 3), ``batch`` (N,) int64,
        ``num_systems`` (int B), and when the items have them ``energy`` (B,), ``forces``
        (N, 3), ``stress`` (B, 3, 3), ``cell`` (B, 3, 3) and ``pbc`` (B, 3) bool. Cells are
        present when any item is periodic; the others get a zero cell and ``pbc`` False.

    Raises:
        ValueError: on an empty list or when some items have a label that others lack.
    """
    if not items:
        raise ValueError("collate_atoms: empty list of items")
    sizes = torch.tensor([int(it["z"].shape[0]) for it in items], dtype=torch.long)
    pos = torch.cat([it["pos"] for it in items])
    out: dict[str, Any] = {
        "z": torch.cat([it["z"] for it in items]),
        "pos": pos,
        "batch": torch.repeat_interleave(torch.arange(len(items)), sizes),
        "num_systems": len(items),
    }
    for key, stack in (("energy", torch.stack), ("forces", torch.cat), ("stress", torch.cat)):
        have = [key in it for it in items]
        if all(have):
            out[key] = stack([it[key] for it in items])
        elif any(have):
            raise ValueError(
                f"collate_atoms: item {have.index(False)} has no {key} but item {have.index(True)} has"
            )
    if any("cell" in it for it in items):
        out["cell"] = torch.cat([
            it["cell"].to(pos.dtype) if "cell" in it else pos.new_zeros(1, 3, 3) for it in items
        ])
        out["pbc"] = torch.cat([
            it["pbc"] if "pbc" in it else torch.zeros(1, 3, dtype=torch.bool) for it in items
        ])
    return out


def make_loader(
    frames: Frames,
    indices: Sequence[int] | np.ndarray | None = None,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.utils.data.DataLoader:
    """A single-process ``DataLoader`` over selected frames, batched with :func:`collate_atoms`.

    Args:
        frames: the data set.
        indices: frame indices to use (e.g. ``splits["train"]``), or None for all frames.
        batch_size: systems per batch (the last batch may be smaller).
        shuffle: reshuffle every epoch with a generator seeded by ``seed`` (reproducible).
        seed: seed of the shuffling generator.
        dtype: floating dtype of the tensors.

    Returns:
        A ``DataLoader`` with ``num_workers=0`` yielding :func:`collate_atoms` dictionaries.

    Raises:
        ValueError: on a non-positive batch size or an index out of range.
    """
    if batch_size < 1:
        raise ValueError(f"make_loader: batch_size must be >= 1, got {batch_size}")
    data = frames if indices is None else frames.subset(np.asarray(indices, dtype=np.int64))
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return torch.utils.data.DataLoader(
        AtomsDataset(data, dtype=dtype),
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate_atoms,
        num_workers=0,
        generator=generator,
    )
