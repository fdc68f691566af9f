"""Data containers, batching and input validation for atomic systems."""

from eqt.data.atoms import AtomicSystems, collate, validate_systems
from eqt.data.dataset import (
    AtomsDataset,
    collate_atoms,
    energy_statistics,
    fit_atomrefs,
    load_splits,
    make_loader,
    save_splits,
    split_indices,
)
from eqt.data.readers import Frames, read_frames, write_extxyz

__all__ = [
    "AtomicSystems",
    "collate",
    "validate_systems",
    "Frames",
    "read_frames",
    "write_extxyz",
    "split_indices",
    "save_splits",
    "load_splits",
    "fit_atomrefs",
    "energy_statistics",
    "AtomsDataset",
    "collate_atoms",
    "make_loader",
]
