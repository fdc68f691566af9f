"""Readers for labelled atomistic data sets (extended XYZ, ASE databases, sGDML ``.npz``).

Everything is converted on reading to the library's internal units: positions in Å, energies
in eV, forces in eV/Å and stresses in eV/Å^3. :func:`read_frames` returns a :class:`Frames`
object that holds a whole data set in memory as per-frame NumPy arrays; errors in the input
raise a one-line ``ValueError`` naming the file and the frame.

Supported formats (chosen by file suffix):

* ``.xyz`` / ``.extxyz``: extended XYZ through ``ase.io.read``. Energies are looked for in
  ``atoms.info`` and in the ``SinglePointCalculator`` results that ASE creates for the
  ``energy``/``forces``/``stress`` keys; forces in ``atoms.arrays`` and the calculator results.
* ``.db``: ASE database (``ase.db``). Keys are looked for in ``row.data``, then
  ``row.key_value_pairs``, then the stored calculator results (``row.energy``, ...). Units are
  taken from the database metadata (``_property_unit_dict`` and ``_distance_unit``, as written
  by schnetpack, e.g. QM9's ``energy_U0`` in Ha) unless ``units`` is given.
* ``.npz``: sGDML arrays ``z`` (n,), ``R`` (F, n, 3), ``E`` (F,) or (F, 1) and ``F`` (F, n, 3);
  units default to kcal/mol and kcal/mol/Å.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import ase

__all__ = [
    "Frames",
    "read_frames",
    "write_extxyz",
    "energy_unit_factor",
    "ENERGY_KEYS",
    "FORCES_KEYS",
    "STRESS_KEYS",
]

#: Keys searched, in order, for the energy when ``energy_key`` is None.
ENERGY_KEYS: tuple[str, ...] = ("energy", "REF_energy", "Energy", "energy_total")
#: Keys searched, in order, for the forces when ``forces_key`` is None.
FORCES_KEYS: tuple[str, ...] = ("forces", "REF_forces", "force")
#: Keys searched, in order, for the stress when ``stress_key`` is None.
STRESS_KEYS: tuple[str, ...] = ("stress", "REF_stress")

_XYZ_SUFFIXES = (".xyz", ".extxyz")
_SUFFIXES = (*_XYZ_SUFFIXES, ".db", ".npz")


# --------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------
def _energy_units() -> dict[str, float]:
    from ase import units

    return {
        "ev": 1.0,
        "mev": 1e-3,
        "kcal/mol": units.kcal / units.mol,
        "kj/mol": units.kJ / units.mol,
        "ha": units.Hartree,
        "hartree": units.Hartree,
    }


def _length_units() -> dict[str, float]:
    from ase import units

    return {"ang": 1.0, "angstrom": 1.0, "a": 1.0, "å": 1.0, "bohr": units.Bohr, "a0": units.Bohr}


def energy_unit_factor(units: str) -> float:
    """Factor that converts an energy in ``units`` to eV.

    Args:
        units: one of ``"eV"``, ``"meV"``, ``"kcal/mol"``, ``"kJ/mol"``, ``"Ha"`` / ``"Hartree"``
            (case-insensitive).

    Returns:
        The multiplicative factor (1.0 for eV).

    Raises:
        ValueError: for an unknown unit.
    """
    table = _energy_units()
    key = units.strip().lower()
    if key not in table:
        raise ValueError(
            f"unknown energy unit '{units}'; expected one of eV, meV, kcal/mol, kJ/mol, Ha"
        )
    return table[key]


def _length_unit_factor(units: str, source: str) -> float:
    table = _length_units()
    key = units.strip().lower()
    if key not in table:
        raise ValueError(f"unknown distance unit '{units}' in the metadata of {source}")
    return table[key]


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------
@dataclass
class Frames:
    """A labelled data set held in memory, in eV and Å.

    Attributes:
        z: per frame, (n_i,) int64 atomic numbers.
        pos: per frame, (n_i, 3) float64 positions in Å.
        energy: (F,) float64 energies in eV, or None if the data set has no energies.
        forces: per frame, (n_i, 3) float64 forces in eV/Å, or None if it has no forces.
        cell: per frame, (3, 3) float64 cell (rows are lattice vectors, Å), or None for a frame
            that is not periodic in any direction (the dummy box of a molecule is dropped).
        pbc: per frame, (3,) bool periodic flags, or None where ``cell`` is None.
        stress: (F, 3, 3) float64 stresses in eV/Å^3, or None.
        source: the file the frames came from (used in messages).
        units: the energy unit of the source file (already converted to eV here).
    """

    z: list[np.ndarray]
    pos: list[np.ndarray]
    energy: np.ndarray | None = None
    forces: list[np.ndarray] | None = None
    cell: list[np.ndarray | None] = field(default_factory=list)
    pbc: list[np.ndarray | None] = field(default_factory=list)
    stress: np.ndarray | None = None
    source: str = "<memory>"
    units: str = "eV"

    def __post_init__(self) -> None:
        n = len(self.z)
        if not self.cell:
            self.cell = [None] * n
        if not self.pbc:
            self.pbc = [None] * n
        lengths = {
            "pos": len(self.pos),
            "cell": len(self.cell),
            "pbc": len(self.pbc),
            **({} if self.energy is None else {"energy": len(self.energy)}),
            **({} if self.forces is None else {"forces": len(self.forces)}),
            **({} if self.stress is None else {"stress": len(self.stress)}),
        }
        for name, length in lengths.items():
            if length != n:
                raise ValueError(
                    f"Frames from {self.source}: {name} has {length} entries but z has {n}"
                )

    def __len__(self) -> int:
        """Number of frames ``F``."""
        return len(self.z)

    @property
    def num_atoms(self) -> np.ndarray:
        """(F,) int64 number of atoms of each frame."""
        return np.array([len(z) for z in self.z], dtype=np.int64)

    def subset(self, idx: int | slice | Sequence[int] | np.ndarray) -> Frames:
        """Select frames.

        Args:
            idx: an int, a slice, an integer index array (F',) or a boolean mask (F,).

        Returns:
            A new :class:`Frames` with the selected frames in the given order (arrays shared).

        Raises:
            ValueError: if an index is out of range.
        """
        try:
            sel = np.arange(len(self))[idx]
        except IndexError as exc:
            raise ValueError(f"Frames.subset of {self.source}: {exc}") from None
        sel = np.atleast_1d(sel).astype(np.int64)
        return Frames(
            z=[self.z[i] for i in sel],
            pos=[self.pos[i] for i in sel],
            energy=None if self.energy is None else self.energy[sel],
            forces=None if self.forces is None else [self.forces[i] for i in sel],
            cell=[self.cell[i] for i in sel],
            pbc=[self.pbc[i] for i in sel],
            stress=None if self.stress is None else self.stress[sel],
            source=self.source,
            units=self.units,
        )

    def to_ase(self) -> list[ase.Atoms]:
        """Convert to ASE structures.

        Returns:
            One ``ase.Atoms`` per frame (eV, Å) with a ``SinglePointCalculator`` holding the
            energy, forces and stress (Voigt order) that are present.
        """
        import ase
        from ase.calculators.singlepoint import SinglePointCalculator
        from ase.stress import full_3x3_to_voigt_6_stress

        out = []
        for k in range(len(self)):
            cell = self.cell[k]
            atoms = ase.Atoms(
                numbers=self.z[k],
                positions=self.pos[k],
                cell=np.zeros((3, 3)) if cell is None else cell,
                pbc=False if self.pbc[k] is None else self.pbc[k],
            )
            results: dict[str, Any] = {}
            if self.energy is not None:
                results["energy"] = float(self.energy[k])
            if self.forces is not None:
                results["forces"] = np.array(self.forces[k])
            if self.stress is not None:
                results["stress"] = full_3x3_to_voigt_6_stress(self.stress[k])
            if results:
                atoms.calc = SinglePointCalculator(atoms, **results)
            out.append(atoms)
        return out


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _parse_index(index: Any) -> int | slice | Sequence[int]:
    if isinstance(index, str):
        from ase.io.formats import string2index

        return string2index(index)
    return index


def _frame_numbers(index: Any, n_total: int, source: str) -> np.ndarray:
    """Positions in the file of the frames selected by ``index`` (for db / npz)."""
    try:
        sel = np.arange(n_total)[_parse_index(index)]
    except (IndexError, ValueError, TypeError) as exc:
        raise ValueError(f"invalid index {index!r} for {source} with {n_total} frames: {exc}") from None
    return np.atleast_1d(sel).astype(np.int64)


def _as_energy(value: Any, what: str) -> float:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size != 1:
        raise ValueError(f"{what}: energy must be a scalar, got {arr.size} values")
    return float(arr[0])


def _as_stress(value: Any, what: str) -> np.ndarray:
    from ase.stress import voigt_6_to_full_3x3_stress

    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 6:
        return voigt_6_to_full_3x3_stress(arr.reshape(6))
    if arr.size == 9:
        return arr.reshape(3, 3)
    raise ValueError(f"{what}: stress must have 6 (Voigt) or 9 entries, got shape {arr.shape}")


class _Collector:
    """Gathers per-frame labels and checks them (presence, shapes, finiteness)."""

    def __init__(self, source: str, labels: list[str], *, require_forces: bool,
                 require_energy: bool, energy_keys: Sequence[str], forces_keys: Sequence[str]):
        self.source = source
        self.labels = labels  # human-readable frame names, e.g. "frame 12"
        self.require_forces = require_forces
        self.require_energy = require_energy
        self.energy_keys = energy_keys
        self.forces_keys = forces_keys
        self.z: list[np.ndarray] = []
        self.pos: list[np.ndarray] = []
        self.energy: list[float | None] = []
        self.forces: list[np.ndarray | None] = []
        self.stress: list[np.ndarray | None] = []
        self.cell: list[np.ndarray | None] = []
        self.pbc: list[np.ndarray | None] = []

    def where(self, k: int) -> str:
        return f"{self.labels[k]} of {self.source}"

    def add(self, z: Any, pos: Any, energy: Any, forces: Any, stress: Any = None,
            cell: Any = None, pbc: Any = None) -> None:
        k = len(self.z)
        where = self.where(k)
        z = np.asarray(z).astype(np.int64).reshape(-1)
        pos = np.asarray(pos, dtype=np.float64)
        if pos.shape != (len(z), 3):
            raise ValueError(f"{where}: positions have shape {pos.shape} but the frame has {len(z)} atoms")
        if len(z) == 0:
            raise ValueError(f"{where} has no atoms")
        if not np.isfinite(pos).all():
            raise ValueError(f"{where} has non-finite positions (atom {int(np.argwhere(~np.isfinite(pos))[0, 0])})")
        if energy is None:
            if self.require_energy:
                raise ValueError(f"{where} has no energy (looked for keys {', '.join(self.energy_keys)})")
        else:
            energy = _as_energy(energy, where)
            if not np.isfinite(energy):
                raise ValueError(f"{where} has a non-finite energy ({energy})")
        if forces is None:
            if self.require_forces:
                raise ValueError(f"{where} has no forces (looked for keys {', '.join(self.forces_keys)})")
        else:
            forces = np.asarray(forces, dtype=np.float64)
            if forces.shape != (len(z), 3):
                raise ValueError(
                    f"{where}: forces have shape {forces.shape} but the frame has {len(z)} atoms "
                    f"(expected ({len(z)}, 3))"
                )
            if not np.isfinite(forces).all():
                raise ValueError(
                    f"{where} has non-finite forces (atom {int(np.argwhere(~np.isfinite(forces))[0, 0])})"
                )
        if stress is not None:
            stress = _as_stress(stress, where)
            if not np.isfinite(stress).all():
                raise ValueError(f"{where} has a non-finite stress")
        if pbc is not None and bool(np.any(pbc)):
            pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
            cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
            if not np.isfinite(cell).all():
                raise ValueError(f"{where} has a non-finite cell")
        else:
            cell = pbc = None
        self.z.append(z)
        self.pos.append(pos)
        self.energy.append(energy)
        self.forces.append(forces)
        self.stress.append(stress)
        self.cell.append(cell)
        self.pbc.append(pbc)

    def _all_or_none(self, values: list[Any], what: str) -> bool:
        have = [v is not None for v in values]
        if all(have):
            return True
        if not any(have):
            return False
        k_with, k_without = have.index(True), have.index(False)
        raise ValueError(
            f"{self.where(k_without)} has no {what} but {self.labels[k_with]} has "
            f"(a data set must label all frames or none)"
        )

    def build(self, e_factor: float, units: str) -> Frames:
        if not self.z:
            raise ValueError(f"no frames selected in {self.source}")
        has_e = self._all_or_none(self.energy, "energy")
        has_f = self._all_or_none(self.forces, "forces")
        has_s = self._all_or_none(self.stress, "stress")
        return Frames(
            z=self.z,
            pos=self.pos,
            energy=np.array(self.energy, dtype=np.float64) * e_factor if has_e else None,
            forces=[f * e_factor for f in self.forces] if has_f else None,  # type: ignore[operator]
            cell=self.cell,
            pbc=self.pbc,
            stress=np.stack(self.stress) * e_factor if has_s else None,  # type: ignore[arg-type]
            source=self.source,
            units=units,
        )


# --------------------------------------------------------------------------------------------
# Format readers
# --------------------------------------------------------------------------------------------
def _atoms_lookup(atoms: ase.Atoms, keys: Sequence[str], per_atom: bool) -> Any:
    """First of ``keys`` found in info/arrays, then in the calculator results."""
    results = getattr(atoms.calc, "results", None) or {}
    store = atoms.arrays if per_atom else atoms.info
    for key in keys:
        if key in store:
            return store[key]
        if key in results:
            return results[key]
        if per_atom and key in atoms.info:  # e.g. a flattened force list in info
            return atoms.info[key]
        if not per_atom and key in atoms.arrays and key not in ("numbers", "positions"):
            return atoms.arrays[key]
    return None


def _read_xyz(path: Path, index: Any, col: _Collector, keys: dict[str, Sequence[str]]) -> None:
    full = isinstance(index, str) and index.strip() == ":"
    import ase.io

    try:
        images = ase.io.read(str(path), index=_parse_index(index), format="extxyz")
    except Exception as exc:  # noqa: BLE001 - the parser raises many types on bad input
        raise ValueError(f"cannot read {path} as extended XYZ: {_one_line(exc)}") from None
    if not isinstance(images, list):
        images = [images]
    # ASE does not report which file frames a selection maps to: name the selection instead.
    suffix = "" if full else f" (of selection index={index!r})"
    col.labels.extend(f"frame {k}{suffix}" for k in range(len(images)))
    for atoms in images:
        col.add(
            atoms.numbers,
            atoms.positions,
            _atoms_lookup(atoms, keys["energy"], per_atom=False),
            _atoms_lookup(atoms, keys["forces"], per_atom=True),
            _atoms_lookup(atoms, keys["stress"], per_atom=False),
            atoms.cell.array,
            atoms.pbc,
        )


def _row_lookup(row: Any, keys: Sequence[str]) -> Any:
    data = row.get("data") or {}
    kvp = row.key_value_pairs
    for key in keys:
        if key in data:
            return data[key]
        if key in kvp:
            return kvp[key]
        value = row.get(key)
        if value is not None:
            return value
    return None


def _read_db(path: Path, index: Any, col: _Collector, keys: dict[str, Sequence[str]],
             units: str | None, energy_key: str | None) -> tuple[float, str]:
    import ase.db

    try:
        db = ase.db.connect(str(path), type="db", create_indices=False, use_lock_file=False)
        metadata = db.metadata
        rows = list(db.select())
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read {path} as an ASE database: {_one_line(exc)}") from None
    unit_dict = metadata.get("_property_unit_dict", {}) if isinstance(metadata, dict) else {}
    if units is None:
        found = [k for k in keys["energy"] if k in unit_dict]
        key = energy_key if energy_key is not None else (found[0] if found else None)
        units = str(unit_dict.get(key, "eV")) if key is not None else "eV"
    e_factor = energy_unit_factor(units)
    dist = metadata.get("_distance_unit", "Ang") if isinstance(metadata, dict) else "Ang"
    l_factor = _length_unit_factor(str(dist), str(path))
    sel = _frame_numbers(index, len(rows), str(path))
    col.labels.extend(f"frame {k} (row id {rows[k].id})" for k in sel)
    for k in sel:
        row = rows[k]
        forces = _row_lookup(row, keys["forces"])
        stress = _row_lookup(row, keys["stress"])
        if l_factor != 1.0:
            forces = None if forces is None else np.asarray(forces, dtype=np.float64) / l_factor
            stress = None if stress is None else np.asarray(stress, dtype=np.float64) / l_factor**3
        col.add(
            row.numbers,
            np.asarray(row.positions, dtype=np.float64) * l_factor,
            _row_lookup(row, keys["energy"]),
            forces,
            stress,
            None if row.get("cell") is None else np.asarray(row.cell) * l_factor,
            row.get("pbc"),
        )
    return e_factor, units


def _read_npz(path: Path, index: Any, col: _Collector, energy_key: str | None,
              forces_key: str | None, require_energy: bool, require_forces: bool) -> None:
    ekey = energy_key or "E"
    fkey = forces_key or "F"
    try:
        with np.load(str(path), allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files if k in ("z", "R", ekey, fkey)}
            names = list(data.files)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read {path} as an sGDML .npz file: {_one_line(exc)}") from None
    required = ["z", "R"] + ([ekey] if require_energy else []) + ([fkey] if require_forces else [])
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ValueError(
            f"{path} is missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(has {', '.join(names) or 'none'})"
        )
    z, R = arrays["z"], arrays["R"]
    if z.ndim != 1 or R.ndim != 3 or R.shape[2] != 3:
        raise ValueError(f"{path}: expected z of shape (n,) and R of shape (F, n, 3), got {z.shape} and {R.shape}")
    if R.shape[1] != z.shape[0]:
        raise ValueError(
            f"{path}: inconsistent atom counts: z has {z.shape[0]} atoms but R has {R.shape[1]}"
        )
    n_frames = R.shape[0]
    E = arrays.get(ekey)
    F = arrays.get(fkey)
    if E is not None:
        if E.size != n_frames:
            raise ValueError(f"{path}: {ekey} has {E.size} values but R has {n_frames} frames")
        E = E.reshape(n_frames)
    if F is not None and F.shape[0] != n_frames:
        raise ValueError(f"{path}: {fkey} has {F.shape[0]} frames but R has {n_frames}")
    sel = _frame_numbers(index, n_frames, str(path))
    col.labels.extend(f"frame {k}" for k in sel)
    for k in sel:
        col.add(z, R[k], None if E is None else E[k], None if F is None else F[k])


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def read_frames(
    path: str | os.PathLike,
    *,
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    units: str | None = None,
    index: int | str | slice = ":",
    require_forces: bool = True,
    require_energy: bool = False,
) -> Frames:
    """Read a labelled data set into memory and convert it to eV and Å.

    Args:
        path: a ``.xyz``/``.extxyz``, ``.db`` or ``.npz`` (sGDML) file.
        energy_key: key holding the energy, or None to search :data:`ENERGY_KEYS`
            (for npz: the array name, default ``"E"``).
        forces_key: key holding the forces, or None to search :data:`FORCES_KEYS`
            (for npz: default ``"F"``).
        stress_key: key holding the stress (Voigt 6 or 3x3), or None to search
            :data:`STRESS_KEYS`. Stresses are optional (not in npz).
        units: energy unit of the FILE (``"eV"``, ``"kcal/mol"``, ``"kJ/mol"``, ``"Ha"``, ...);
            forces are taken to be in that unit per Å. None picks the format's default:
            kcal/mol for npz, the database metadata (``_property_unit_dict``) for ``.db``, eV
            otherwise. The value used is stored in :attr:`Frames.units`.
        index: frames to read, ASE style (``":"``, ``"-1"``, ``"::10"``, an int or a slice).
        require_forces: raise if a frame has no forces.
        require_energy: raise if a frame has no energy.

    Returns:
        A :class:`Frames` with F frames: z (n_i,), pos (n_i, 3) Å, energy (F,) eV or None,
        forces (n_i, 3) eV/Å or None, stress (F, 3, 3) eV/Å^3 or None.

    Raises:
        ValueError: (one line) a missing file, an unknown suffix or unit, an unreadable file,
            a frame without required labels, a forces shape that does not match the atom
            count, missing npz keys, inconsistent npz atom counts, or non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(
            f"unknown data file suffix '{path.suffix}' for {path}; expected one of {', '.join(_SUFFIXES)}"
        )
    keys = {
        "energy": (energy_key,) if energy_key is not None else ENERGY_KEYS,
        "forces": (forces_key,) if forces_key is not None else FORCES_KEYS,
        "stress": (stress_key,) if stress_key is not None else STRESS_KEYS,
    }
    if suffix == ".npz":
        keys["energy"] = (energy_key or "E",)
        keys["forces"] = (forces_key or "F",)
    col = _Collector(
        str(path), [], require_forces=require_forces, require_energy=require_energy,
        energy_keys=keys["energy"], forces_keys=keys["forces"],
    )
    if suffix in _XYZ_SUFFIXES:
        units = "eV" if units is None else units
        e_factor = energy_unit_factor(units)
        _read_xyz(path, index, col, keys)
    elif suffix == ".db":
        e_factor, units = _read_db(path, index, col, keys, units, energy_key)
    else:
        units = "kcal/mol" if units is None else units
        e_factor = energy_unit_factor(units)
        _read_npz(path, index, col, energy_key, forces_key, require_energy, require_forces)
    return col.build(e_factor, units)


def write_extxyz(path: str | os.PathLike, frames: Frames) -> None:
    """Write frames to an extended XYZ file atomically (temporary file, then rename).

    Labels are written under the keys ``energy`` (eV), ``forces`` (eV/Å) and ``stress``
    (eV/Å^3), which :func:`read_frames` finds by default.

    Args:
        path: destination file (``.xyz`` or ``.extxyz``); its folder must exist.
        frames: the frames to write.

    Raises:
        ValueError: if the destination folder does not exist or the file cannot be written.
    """
    import ase.io

    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w") as fh:
            ase.io.write(fh, frames.to_ase(), format="extxyz")
        os.replace(tmp, path)
    except Exception as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ValueError(f"cannot write {path}: {_one_line(exc)}") from None
        raise
