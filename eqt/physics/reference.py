"""Reference labels from real electronic-structure codes: GFN-xTB (tblite) and DFT (PySCF).

:func:`label` computes energies (eV) and forces (eV/Å) for a list of structures, :func:`sample_md`
samples a data set by Langevin molecular dynamics on the GFN2-xTB surface and labels each frame with
the energy and forces the dynamics already computed. Both return independent :class:`ase.Atoms`
copies whose results sit in a :class:`~ase.calculators.singlepoint.SinglePointCalculator` *and* in
``atoms.info["energy"]`` / ``atoms.arrays["forces"]``.

:func:`label_to_file` and :func:`sample_md_to_file` do the same work straight into an extended XYZ
file, for runs too long to lose (what ``eqt data label`` / ``eqt data sample`` use):

- nothing is overwritten: an existing output is refused unless ``force=True``, and the output
  path is checked before any calculation; with ``force`` the old file is replaced only when the
  new one is complete (an atomic rename);
- frames are appended to ``<output>.partial`` as they are made, and ``<output>.state`` (JSON,
  replaced atomically) records what defines the job (a digest of the input structures, the
  method, seed, temperature, ...) and how far it got (for MD also positions, momenta, the
  thermostat's random-generator state and the step). A killed run (SIGKILL, Ctrl-C, a crash)
  rerun with the same arguments resumes from the last checkpoint (with or without ``force``); a
  rerun with other arguments is refused, naming what differs (``force=True`` starts over). At the
  end ``.partial`` is renamed to the output and ``.state`` removed;
- checkpoints are taken at most every ``checkpoint_s`` seconds (default 1 s, environment
  variable ``EQT_CHECKPOINT_INTERVAL``), on an error and on Ctrl-C, so a SIGKILL loses at most
  that much work. Frames appended after the last checkpoint, and a frame torn by the kill, are
  cut off on resume (the state records the byte length of ``.partial`` it belongs to).

Resumed labelling is identical to an uninterrupted run (each frame is computed independently).
A resumed MD is not bit-identical: the xTB SCF of each MD step starts from the previous step's
wavefunction, and the first step after a resume starts from scratch, so its forces differ by the
SCF convergence noise (max ~3e-5 eV/Å over 300 frames of ethanol at ``accuracy=1``, see
:func:`sample_md_to_file`).

No labeller returns or writes a frame with a non-finite energy or force, and structures that
cannot be labelled (no atoms, an atomic number outside the method's elements such as ``Z = 0``
for ``X``, non-finite positions, two atoms closer than :data:`MIN_DISTANCE`) are refused before
any calculation with a :class:`LabelError` (a ``ValueError``) naming the frame.

``tblite`` and ``pyscf`` are optional and imported lazily (``pip install tblite`` /
``pip install pyscf``).

Speed note: tblite runs on OpenMP. For molecules of a few atoms, OpenMP threads only add overhead,
and on busy or shared cores the default spin-waiting threads made one GFN2-xTB step of ethanol
~300x slower (0.6 s instead of 2 ms). :func:`label` and :func:`sample_md` therefore run the
xTB work on ``num_threads=1`` OpenMP thread by default and restore the previous setting afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eqt.files import OutputError, atomic_write_text, check_output, deferred_interrupts, differences, fingerprint
from eqt.progress import Progress

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms
    from ase.calculators.calculator import Calculator

__all__ = ["XTB_METHODS", "MIN_DISTANCE", "LabelError", "FileResult", "label", "label_to_file", "read_structures",
           "sample_md", "sample_md_to_file", "structure_problem", "xtb_calculator"]

#: xTB Hamiltonians served by tblite, by their canonical name.
XTB_METHODS: tuple[str, ...] = ("GFN2-xTB", "GFN1-xTB")

#: Highest atomic number GFN1-/GFN2-xTB are parametrised for (radon).
XTB_MAX_Z = 86

#: Two atoms closer than this (Å) make a structure unlabelable: a duplicated atom or a broken
#: file, not chemistry (the shortest bond, H2, is 0.74 Å; xTB returns garbage or fails there).
MIN_DISTANCE = 0.3

_PYSCF_PREFIX = "pyscf:"


class LabelError(ValueError):
    """A structure (or an MD step) that cannot be labelled; the message names the frame.

    Attributes:
        index: the frame's index in the input (None for an MD step).
        reason: why, without the frame's name.
    """

    def __init__(self, message: str, index: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.index, self.reason = index, reason


class _Unlabelable(Exception):
    """Internal: one structure failed (the reason only; callers add which frame)."""


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _xtb_method(method: str) -> str | None:
    """Canonical xTB method name for ``method`` (case-insensitive), ``None`` if not an xTB method."""
    for name in XTB_METHODS:
        if method.strip().lower() == name.lower():
            return name
    return None


def _pyscf_method(method: str) -> tuple[str, str] | None:
    """``(xc, basis)`` for ``"pyscf:<xc>/<basis>"``, ``None`` if not a PySCF method string."""
    if not method.lower().startswith(_PYSCF_PREFIX):
        return None
    spec = method[len(_PYSCF_PREFIX):]
    xc, sep, basis = spec.partition("/")
    if not sep or not xc.strip() or not basis.strip():
        raise ValueError(f"PySCF method must read 'pyscf:<xc>/<basis>' (e.g. 'pyscf:PBE/def2-SVP'), got {method!r}")
    return xc.strip(), basis.strip()


def _unknown_method(method: str) -> ValueError:
    return ValueError(f"unknown reference method {method!r}; use one of {', '.join(XTB_METHODS)} "
                      f"or 'pyscf:<xc>/<basis>' (e.g. 'pyscf:PBE/def2-SVP')")


def _import_tblite_ase():
    try:
        from tblite import ase as tblite_ase
    except ImportError as err:
        raise ImportError("GFN-xTB reference labels need tblite: pip install tblite") from err
    return tblite_ase


def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime already loaded in this process (tblite's, shared with torch's), if any."""
    mode = getattr(os, "RTLD_NOLOAD", None)
    if mode is None:  # pragma: no cover - platform without RTLD_NOLOAD
        return None
    for name in ("libgomp.so.1", "libomp.so", "libomp.so.5", "libiomp5.so", "libomp.dylib",
                 "libgomp.1.dylib", "libiomp5.dylib"):
        try:
            lib = ctypes.CDLL(name, mode=mode)
            lib.omp_get_max_threads.restype = ctypes.c_int
            lib.omp_set_num_threads.argtypes = [ctypes.c_int]
            return lib
        except (OSError, AttributeError):
            continue
    return None


@contextlib.contextmanager
def _openmp_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``num_threads`` OpenMP threads (``None``: leave as is), then restore."""
    lib = _openmp_runtime() if num_threads is not None else None
    if lib is None:
        yield
        return
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
    previous = lib.omp_get_max_threads()
    lib.omp_set_num_threads(int(num_threads))
    try:
        yield
    finally:
        lib.omp_set_num_threads(previous)


def _multiplicity(atoms: Atoms, charge: int) -> int:
    """Lowest spin multiplicity compatible with the electron count (1 for even, 2 for odd)."""
    n_electrons = int(np.sum(atoms.numbers)) - int(charge)
    if n_electrons < 0:
        raise ValueError(f"charge {charge} leaves {n_electrons} electrons")
    return 1 + n_electrons % 2


def _store(atoms: Atoms, energy: float, forces: np.ndarray) -> Atoms:
    """Attach energy (eV) and forces (eV/Å) to ``atoms`` (calculator results, info and arrays)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    energy = float(energy)
    forces = np.array(forces, dtype=np.float64).reshape(len(atoms), 3)
    atoms.info["energy"] = energy
    atoms.arrays["forces"] = forces.copy()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces.copy())
    return atoms


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def structure_problem(atoms: Atoms, method: str = "GFN2-xTB", charge: int = 0) -> str | None:
    """Why ``atoms`` cannot be labelled with ``method``, or None: cheap checks, no calculation.

    Refused: no atoms; an atomic number the method has no parameters for (``Z = 0``, the ``X`` of
    extended XYZ, is never an element; GFN-xTB covers ``Z = 1-86``); a non-finite position; two
    atoms (or an atom and its periodic image) closer than :data:`MIN_DISTANCE`; a charge that
    leaves fewer than zero electrons; a periodic structure for PySCF (molecules only). These
    inputs made the codes return NaN forces or fail deep inside, or silently gave nonsense.

    Args:
        atoms: the structure.
        method: as for :func:`label` (only its kind matters here).
        charge: total charge in e.

    Returns:
        One line of text (``"atom 0 has atomic number 0 ('X'), not an element"``), or None.
    """
    from ase.data import chemical_symbols

    pyscf = method.lower().startswith(_PYSCF_PREFIX)
    n = len(atoms)
    if n == 0:
        return "it has no atoms"
    z = np.asarray(atoms.numbers)
    max_z = len(chemical_symbols) - 1 if pyscf else XTB_MAX_Z
    bad = np.flatnonzero((z < 1) | (z > max_z))
    if bad.size:
        i = int(bad[0])
        symbol = chemical_symbols[z[i]] if 0 <= z[i] < len(chemical_symbols) else "?"
        if z[i] == 0:
            return f"atom {i} has atomic number 0 ('X'), not an element"
        return f"atom {i} has atomic number {z[i]} ({symbol}); {method} covers Z = 1-{max_z}"
    pos = np.asarray(atoms.positions, dtype=np.float64)
    rows = np.flatnonzero(~np.isfinite(pos).all(axis=1))
    if rows.size:
        i = int(rows[0])
        return f"atom {i} has a non-finite position {pos[i].tolist()}"
    if np.any(atoms.pbc):
        if pyscf:
            return "it is periodic; the PySCF reference supports molecules only"
        if not np.isfinite(atoms.cell.array).all() or abs(atoms.cell.volume) < 1e-6:
            return "it is periodic but its cell is degenerate or not finite"
    from ase.neighborlist import neighbor_list

    i_idx, j_idx, dist = neighbor_list("ijd", atoms, MIN_DISTANCE)
    if len(dist):
        k = int(np.argmin(dist))
        i, j = int(i_idx[k]), int(j_idx[k])
        pair = f"atom {i} and its periodic image are" if i == j else f"atoms {min(i, j)} and {max(i, j)} are"
        return f"{pair} {dist[k]:.3g} Å apart (closer than {MIN_DISTANCE} Å)"
    n_electrons = int(z.sum()) - int(charge)
    if n_electrons < 0:
        return f"charge {charge} leaves {n_electrons} electrons"
    return None


class _Labeller:
    """One reference method, resolved and its code imported: ``labeller(atoms)`` -> labelled copy."""

    def __init__(self, method: str, charge: int = 0, accuracy: float = 1.0):
        self.charge, self.accuracy = int(charge), float(accuracy)
        self.xtb = _xtb_method(method)
        if self.xtb is not None:
            if not self.accuracy > 0:
                raise ValueError(f"accuracy must be > 0, got {accuracy}")
            _import_tblite_ase()
            self.name = self.method_id = self.xtb
            return
        spec = _pyscf_method(method)
        if spec is None:
            raise _unknown_method(method)
        try:
            from pyscf import dft, gto, scf
        except ImportError as err:
            raise ImportError("PySCF reference labels need pyscf: pip install pyscf") from err
        self._pyscf = (dft, gto, scf)
        self.xc, self.basis = spec
        self.name = f"PySCF {self.xc}/{self.basis}"
        self.method_id = f"pyscf:{self.xc}/{self.basis}"

    def job(self) -> dict[str, Any]:
        """What determines the labels (for a resumable job's fingerprint)."""
        return {"method": self.method_id, "charge": self.charge,
                "accuracy": self.accuracy if self.xtb is not None else None}

    def threads(self, num_threads: int | None):
        return _openmp_threads(num_threads) if self.xtb is not None else contextlib.nullcontext()

    def problem(self, atoms: Atoms) -> str | None:
        return structure_problem(atoms, self.method_id, self.charge)

    def _compute(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        if self.xtb is not None:
            # A fresh calculator per structure: labels do not depend on the order (no SCF restart).
            calc = xtb_calculator(self.xtb, charge=self.charge, multiplicity=_multiplicity(atoms, self.charge),
                                  accuracy=self.accuracy)
            try:
                return calc.get_potential_energy(atoms), calc.get_forces(atoms)
            except Exception as err:  # tblite raises RuntimeError, ASE's CalculationFailed, ...
                raise _Unlabelable(f"{self.name} failed: {_one_line(err)}") from err
        from ase.units import Bohr, Hartree

        dft, gto, scf = self._pyscf
        try:
            mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
                        unit="Angstrom", basis=self.basis, charge=self.charge,
                        spin=_multiplicity(atoms, self.charge) - 1, verbose=0)
            mf = scf.HF(mol) if self.xc.upper() == "HF" else dft.KS(mol, xc=self.xc)
            energy = mf.kernel()
            if not mf.converged:
                raise RuntimeError("SCF did not converge")
            gradient = mf.nuc_grad_method().kernel()
        except Exception as err:  # PySCF raises many kinds (RuntimeError, KeyError for bad basis, ...)
            raise _Unlabelable(f"{self.name} failed: {_one_line(err)}") from err
        return float(energy) * Hartree, -np.asarray(gradient, dtype=np.float64) * (Hartree / Bohr)

    def __call__(self, atoms: Atoms) -> Atoms:
        """A labelled copy of ``atoms``; raises :class:`_Unlabelable` (never returns NaN labels)."""
        problem = self.problem(atoms)
        if problem is not None:
            raise _Unlabelable(problem)
        copy = atoms.copy()
        energy, forces = self._compute(copy)
        energy = float(energy)
        forces = np.asarray(forces, dtype=np.float64)
        if forces.shape != (len(copy), 3):
            raise _Unlabelable(f"{self.name} returned forces of shape {forces.shape} for {len(copy)} atoms")
        _check_finite(energy, forces, self.name)
        return _store(copy, energy, forces)


def _check_finite(energy: float, forces: np.ndarray, name: str) -> None:
    if not np.isfinite(energy):
        raise _Unlabelable(f"{name} returned a non-finite energy ({energy})")
    bad = np.flatnonzero(~np.isfinite(forces).all(axis=1))
    if bad.size:
        raise _Unlabelable(f"{name} returned a non-finite force on atom {int(bad[0])}")


def _structures_digest(structures: Iterable[Atoms]) -> str:
    """``sha256:<hex>`` of the geometries (numbers, positions, cell, pbc): what a job labels."""
    h = hashlib.sha256()
    for atoms in structures:
        h.update(np.int64(len(atoms)).tobytes())
        h.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(atoms.positions, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(atoms.cell.array, dtype=np.float64).tobytes())
        h.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
    return "sha256:" + h.hexdigest()[:32]


def _frame_text(atoms: Atoms) -> str:
    """One frame as extended XYZ (energy and forces as ``info``/``arrays`` columns)."""
    import ase.io

    buf = io.StringIO()
    ase.io.write(buf, atoms, format="extxyz", write_results=False)
    return buf.getvalue()


def _checkpoint_interval(checkpoint_s: float | None) -> float:
    if checkpoint_s is not None:
        return float(checkpoint_s)
    env = os.environ.get("EQT_CHECKPOINT_INTERVAL")
    try:
        return float(env) if env else 1.0
    except ValueError:
        raise ValueError(f"EQT_CHECKPOINT_INTERVAL must be a number of seconds, got {env!r}") from None


_STATE_FORMAT = "eqt-resumable-frames-1"


class _ResumableOutput:
    """An extended XYZ output built frame by frame in ``<output>.partial``, resumable from ``<output>.state``.

    Usage: ``saved = out.resume()`` (the progress of an interrupted run of the same job, or None),
    ``out.open(saved)``, then ``out.append(text, progress)`` per frame, ``out.finish()`` at the end
    and ``out.suspend()`` on any exception. ``progress`` is a JSON-able dict of what a rerun needs
    to continue after that frame; the state file stores it with the byte length of ``.partial``.
    """

    def __init__(self, output: str | os.PathLike, job: dict[str, Any], force: bool, checkpoint_s: float | None):
        self.output = check_output(output, force)
        self.partial = self.output.with_name(self.output.name + ".partial")
        self.state_path = self.output.with_name(self.output.name + ".state")
        check_output(self.partial, force=True, what="partial output")
        check_output(self.state_path, force=True, what="resume state")
        self.job, self.force = fingerprint(job), force
        self.every = _checkpoint_interval(checkpoint_s)
        self.fh: Any = None
        self.pending: dict[str, Any] | None = None
        self.last_checkpoint = 0.0

    def resume(self) -> dict[str, Any] | None:
        """The progress saved by an interrupted run of this job (``.partial`` cut to it), or None.

        Raises:
            OutputError: ``.partial``/``.state`` belong to another job, or are corrupt (unless
                ``force``: then they are discarded by :meth:`open`).
        """
        start_over = "pass --force to start over (discarding it)"
        if not self.state_path.exists():
            if self.partial.exists() and self.partial.stat().st_size > 0 and not self.force:
                raise OutputError(f"{self.partial} exists but {self.state_path.name} does not, so it cannot be "
                                  f"resumed; {start_over}")
            return None
        try:
            state = json.loads(self.state_path.read_text())
            if state.get("format") != _STATE_FORMAT:
                raise ValueError("unknown format")
            progress, old_job = dict(state["progress"]), state["job"]
            size = int(progress["partial_bytes"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            if self.force:
                return None
            raise OutputError(f"{self.state_path} is corrupt, so {self.partial} cannot be resumed; {start_over}") \
                from None
        diff = differences(old_job, self.job)
        if diff:
            if self.force:
                return None
            shown = "; ".join(diff[:3]) + ("; ..." if len(diff) > 3 else "")
            raise OutputError(f"{self.partial} is an unfinished run with other settings ({shown}); rerun with "
                              f"those settings to resume it, or {start_over}")
        have = self.partial.stat().st_size if self.partial.exists() else -1
        if have < size:
            if self.force:
                return None
            raise OutputError(f"{self.partial} has {max(have, 0)} bytes but {self.state_path.name} records {size}; "
                              f"it cannot be resumed; {start_over}")
        return progress

    def open(self, saved: dict[str, Any] | None, initial: dict[str, Any]) -> dict[str, Any]:
        """Open ``.partial`` for appending: cut to ``saved``, or empty with ``initial`` progress."""
        if saved is None:
            self.fh = open(self.partial, "wb")
            saved = {**initial, "partial_bytes": 0}
            self.pending = saved
            self.checkpoint(now=True)
        else:
            self.fh = open(self.partial, "r+b")
            self.fh.truncate(int(saved["partial_bytes"]))  # frames after the checkpoint, a torn last frame
            self.fh.seek(0, os.SEEK_END)
            self.last_checkpoint = time.monotonic()
        return saved

    def append(self, text: str | None, progress: dict[str, Any]) -> None:
        """Append one frame (``None``: no frame, only progress) and checkpoint when it is time."""
        if text is not None:
            self.fh.write(text.encode("utf-8"))
            self.fh.flush()
        self.pending = {**progress, "partial_bytes": self.fh.tell()}
        if time.monotonic() - self.last_checkpoint >= self.every:
            self.checkpoint()

    def checkpoint(self, now: bool = False) -> None:
        """Make ``.partial`` durable, then record the progress that goes with it."""
        if self.pending is None:
            return
        self.fh.flush()
        os.fsync(self.fh.fileno())
        atomic_write_text(self.state_path, json.dumps({"format": _STATE_FORMAT, "job": self.job,
                                                       "progress": self.pending}) + "\n")
        self.pending, self.last_checkpoint = None, time.monotonic()

    def suspend(self) -> None:
        """On an error or Ctrl-C: save the last complete frame's progress, close (never raises)."""
        with contextlib.suppress(Exception):
            self.checkpoint()
        with contextlib.suppress(Exception):
            self.fh.close()

    def finish(self) -> None:
        """The job is done: ``.partial`` becomes the output (atomically), the state goes."""
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.partial, self.output)
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()

    def discard(self) -> None:
        """Remove ``.partial`` and ``.state`` (nothing worth keeping)."""
        with contextlib.suppress(Exception):
            self.fh.close()
        for p in (self.partial, self.state_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


@dataclasses.dataclass(frozen=True)
class FileResult:
    """What :func:`label_to_file` / :func:`sample_md_to_file` wrote.

    Attributes:
        path: the output file.
        frames: frames in it.
        resumed_from: frames already done by an interrupted earlier run (0: a fresh start).
        skipped: ``(input index, reason)`` of the frames left out (``skip_failed``).
        skipped_path: the text file listing them (``<output>.skipped.txt``), None if none.
    """

    path: Path
    frames: int
    resumed_from: int = 0
    skipped: tuple[tuple[int, str], ...] = ()
    skipped_path: Path | None = None


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------
def xtb_calculator(method: str = "GFN2-xTB", charge: int = 0, multiplicity: int = 1,
                   accuracy: float = 1.0) -> Calculator:
    """A tblite ASE calculator for a GFN-xTB Hamiltonian, with printout switched off.

    Works for molecules (``atoms.pbc`` all False, the cell is ignored) and for periodic systems.

    Args:
        method: ``"GFN2-xTB"`` or ``"GFN1-xTB"`` (case-insensitive).
        charge: total charge in e.
        multiplicity: spin multiplicity ``2S + 1`` (1: closed shell).
        accuracy: tblite's numerical accuracy factor (smaller is tighter; 1.0 is tblite's default).

    Returns:
        A ``tblite.ase.TBLite`` calculator (energy in eV, forces in eV/Å).

    Raises:
        ValueError: unknown method or invalid multiplicity/accuracy.
        ImportError: tblite is not installed.
    """
    name = _xtb_method(method)
    if name is None:
        raise _unknown_method(method)
    if int(multiplicity) < 1:
        raise ValueError(f"multiplicity must be >= 1, got {multiplicity}")
    if not accuracy > 0:
        raise ValueError(f"accuracy must be > 0, got {accuracy}")
    tblite_ase = _import_tblite_ase()
    return tblite_ase.TBLite(method=name, charge=int(charge), multiplicity=int(multiplicity),
                             accuracy=float(accuracy), verbosity=0)


def read_structures(path: str | os.PathLike) -> list[Atoms]:
    """Every structure in a file ASE can read (extended XYZ, ...), with one-line errors.

    Raises:
        ValueError: the file is missing, a folder, empty, holds no structure, or a frame cannot be
            read (a truncated or corrupt file); the message names the file and the frame.
    """
    import ase.io

    path = Path(path)
    if not path.exists():
        raise ValueError(f"input file not found: {path}")
    if path.is_dir():
        raise ValueError(f"input {path} is a folder, not a structure file")
    if path.stat().st_size == 0:
        raise ValueError(f"input {path} is empty")
    frames: list[Atoms] = []
    try:
        for atoms in ase.io.iread(path, index=":"):
            frames.append(atoms)
    except Exception as err:  # ASE raises XYZError, UnknownFileTypeError, IndexError, ...
        raise ValueError(f"{path}: frame {len(frames)} cannot be read ({_one_line(err)}); is the file truncated, "
                         f"or not in a format ASE reads?") from None
    if not frames:
        raise ValueError(f"input {path} holds no structures")
    return frames


def label(structures: list[Atoms], method: str = "GFN2-xTB", *, charge: int = 0, progress: bool = False,
          accuracy: float = 1.0, num_threads: int | None = 1) -> list[Atoms]:
    """Label structures with reference energies and forces.

    Each structure is computed independently, at the lowest spin multiplicity its electron count
    allows (singlet or doublet). Every structure is checked (:func:`structure_problem`) before the
    first calculation, and no label is ever NaN or inf.

    Args:
        structures: the geometries (left untouched).
        method: ``"GFN2-xTB"`` or ``"GFN1-xTB"`` (tblite), or ``"pyscf:<xc>/<basis>"``, e.g.
            ``"pyscf:PBE/def2-SVP"`` or ``"pyscf:HF/sto-3g"`` (PySCF, molecules only).
        charge: total charge of every structure in e.
        progress: report progress on stderr (:class:`eqt.progress.Progress`).
        accuracy: tblite's accuracy factor (xTB only). At 1.0 (default) forces carry ~1e-4 eV/Å of
            SCF convergence noise, 0.01 brings it to ~3e-6 eV/Å for ~20 % more time.
        num_threads: OpenMP threads for the calculation (``None``: leave the process setting as is).
            One thread is fastest for small molecules.

    Returns:
        Copies of ``structures`` with ``energy`` (eV) and ``forces`` (eV/Å) available from
        ``get_potential_energy()``/``get_forces()`` and in ``info["energy"]``/``arrays["forces"]``.

    Raises:
        ValueError: unknown method.
        LabelError: a structure cannot be labelled (see :func:`structure_problem`), the
            calculation failed, or it gave a non-finite energy or force; the message names the
            frame's index. To leave such frames out instead, use :func:`label_to_file`.
        ImportError: the code behind ``method`` is not installed.
    """
    structures = list(structures)
    labeller = _Labeller(method, charge, accuracy)
    for i, atoms in enumerate(structures):
        problem = labeller.problem(atoms)
        if problem is not None:
            raise LabelError(f"frame {i} cannot be labelled: {problem}", i, problem)
    out: list[Atoms] = []
    bar = Progress(len(structures), f"labelling with {labeller.name}", unit="frame", enabled=progress)
    with labeller.threads(num_threads):
        for i, atoms in enumerate(structures):
            try:
                out.append(labeller(atoms))
            except _Unlabelable as err:
                raise LabelError(f"frame {i} cannot be labelled: {err}", i, str(err)) from err
            bar.update(i + 1)
    bar.close()
    return out


def label_to_file(structures: list[Atoms], output: str | os.PathLike, method: str = "GFN2-xTB", *,
                  force: bool = False, skip_failed: bool = False, source: str | None = None, charge: int = 0,
                  progress: bool = False, accuracy: float = 1.0, num_threads: int | None = 1,
                  checkpoint_s: float | None = None) -> FileResult:
    """Label structures into an extended XYZ file, frame by frame, resuming an interrupted run.

    The labels are those of :func:`label`. Frames go to ``<output>.partial`` as they are done and
    a rerun of the same job (same structures, method, charge, accuracy) after a kill or Ctrl-C
    continues after the last checkpoint; the result is identical to an uninterrupted run, since
    each frame is labelled on its own (see the module docstring for the files and the guarantees).

    Args:
        structures: the geometries, in the order of the output.
        output: the extended XYZ file to write.
        method, charge, accuracy, num_threads: as for :func:`label`.
        force: replace an existing ``output`` (only once the new one is complete), and discard an
            unfinished run of other settings instead of refusing. An unfinished run of the same
            job is resumed, with or without ``force``.
        skip_failed: leave out frames that cannot be labelled (see :func:`structure_problem`, a
            failed or non-finite calculation) instead of stopping at the first; they are listed
            in ``<output>.skipped.txt`` (``index: reason`` per line, index from 0 in the input)
            and in the result. Not part of the job's identity: a run stopped by a bad frame can be
            resumed with ``skip_failed=True``.
        source: the input's name, for error messages (``"in.xyz: frame 3 cannot be labelled: ..."``).
        progress: report progress on stderr.
        checkpoint_s: seconds between checkpoints (None: ``EQT_CHECKPOINT_INTERVAL`` or 1 s).

    Returns:
        A :class:`FileResult`.

    Raises:
        OutputError: ``output`` exists (without ``force``), cannot be written, or an unfinished run
            of other settings is in the way; checked before any calculation.
        LabelError: a frame cannot be labelled (without ``skip_failed``: structural problems are
            found before any calculation; the frames done so far stay in ``.partial``), or no frame
            at all can be.
        ValueError: unknown method or no structures.
    """
    structures = list(structures)
    where = f"{source}: " if source else ""
    if not structures:
        raise ValueError(f"{where}no structures to label")
    labeller = _Labeller(method, charge, accuracy)
    problems = {i: p for i, atoms in enumerate(structures) if (p := labeller.problem(atoms)) is not None}
    if problems and not skip_failed:
        i, reason = next(iter(problems.items()))
        raise LabelError(f"{where}frame {i} cannot be labelled: {reason}", i, reason)
    if len(problems) == len(structures):
        i, reason = next(iter(problems.items()))
        raise LabelError(f"{where}none of the {len(structures)} frames can be labelled (frame {i}: {reason})",
                         i, reason)
    job = {"command": "label", "structures": _structures_digest(structures), "frames": len(structures),
           **labeller.job()}
    out = _ResumableOutput(output, job, force, checkpoint_s)
    saved = out.resume()
    state = out.open(saved, {"done": 0, "written": 0, "skipped": []})
    resumed = int(state["written"]) if saved is not None else 0
    skipped = [(int(i), str(r)) for i, r in state["skipped"]]
    written = int(state["written"])
    bar = Progress(len(structures), f"labelling with {labeller.name}", unit="frame", start=int(state["done"]),
                   enabled=progress)
    if saved is not None and progress:
        bar.message(f"resuming {out.partial}: {state['done']} of {len(structures)} frames done")
    try:
        with labeller.threads(num_threads), deferred_interrupts() as interrupted:
            for i in range(int(state["done"]), len(structures)):
                text, reason = None, problems.get(i)
                if reason is None:
                    try:
                        text = _frame_text(labeller(structures[i]))
                    except _Unlabelable as err:
                        reason = str(err)
                if reason is not None:
                    if not skip_failed:
                        kept = f" ({written} frames labelled so far are kept in {out.partial})" if written else ""
                        raise LabelError(f"{where}frame {i} cannot be labelled: {reason}{kept}", i, reason)
                    skipped.append((i, reason))
                else:
                    written += 1
                out.append(text, {"done": i + 1, "written": written, "skipped": [list(s) for s in skipped]})
                bar.update(i + 1)
                interrupted()  # Ctrl-C: stop here, with this frame written
    except BaseException:
        bar.close()
        out.suspend()
        raise
    bar.close()
    if written == 0:
        out.discard()
        i, reason = skipped[0]
        raise LabelError(f"{where}none of the {len(structures)} frames could be labelled (frame {i}: {reason}); "
                         f"nothing written", i, reason)
    skipped_path = out.output.with_name(out.output.name + ".skipped.txt")
    if skipped:
        name = source or "the input"
        atomic_write_text(skipped_path, f"# frames of {name} left out of {out.output.name}: they cannot be labelled "
                                        f"with {labeller.name} (index from 0: reason)\n"
                          + "".join(f"{i}: {r}\n" for i, r in skipped))
    out.finish()
    if not skipped:
        with contextlib.suppress(FileNotFoundError):  # a list that belonged to the replaced output
            skipped_path.unlink()
    return FileResult(out.output, written, resumed, tuple(skipped), skipped_path if skipped else None)


# --------------------------------------------------------------------------------------------------
# molecular dynamics
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _MDParams:
    """What defines a sampling run (validated)."""

    method: str
    temperature_K: float
    n_frames: int
    interval: int
    timestep_fs: float
    equilibration_steps: int
    friction_per_fs: float
    seed: int
    accuracy: float

    @property
    def total_steps(self) -> int:
        return self.equilibration_steps + self.n_frames * self.interval


def _md_params(method: str, temperature_K: float, n_frames: int, interval: int, timestep_fs: float,
               equilibration_steps: int, friction_per_fs: float, seed: int, accuracy: float) -> _MDParams:
    name = _xtb_method(method)
    if name is None:
        if method.lower().startswith(_PYSCF_PREFIX):
            raise ValueError(f"MD sampling runs on GFN-xTB only ({', '.join(XTB_METHODS)}), not {method!r}: sample "
                             f"with GFN2-xTB, then label the sampled frames with {method} "
                             f"(eqt data label FRAMES.xyz OUT.xyz --method {method}, or label(frames, {method!r}))")
        raise ValueError(f"unknown MD method {method!r}; MD sampling runs on {' or '.join(XTB_METHODS)} (label "
                         f"the frames with other methods afterwards)")
    for what, value, ok in [("n_frames", n_frames, n_frames >= 1), ("interval", interval, interval >= 1),
                            ("equilibration_steps", equilibration_steps, equilibration_steps >= 0),
                            ("timestep_fs", timestep_fs, timestep_fs > 0),
                            ("friction_per_fs", friction_per_fs, friction_per_fs >= 0),
                            ("temperature_K", temperature_K, temperature_K >= 0), ("accuracy", accuracy, accuracy > 0)]:
        if not ok:  # also NaN
            bound = "> 0" if what in ("timestep_fs", "accuracy") else ">= 1" if what in ("n_frames", "interval") \
                else ">= 0"
            raise ValueError(f"{what} must be {bound}, got {value}")
    return _MDParams(name, float(temperature_K), int(n_frames), int(interval), float(timestep_fs),
                     int(equilibration_steps), float(friction_per_fs), int(seed), float(accuracy))


def _md_structure_problem(atoms: Atoms, method: str) -> str | None:
    if len(atoms) < 2:
        return f"MD needs at least 2 atoms, got {len(atoms)}"
    return structure_problem(atoms, method)


def _md_start(atoms: Atoms, source: str | None, *args: Any) -> _MDParams:
    """The checked MD settings (``*args`` as :func:`_md_params`), once the structure is one MD can
    start from and tblite is importable; ``source`` names the structure in the message."""
    p = _md_params(*args)
    problem = _md_structure_problem(atoms, p.method)
    if problem is not None:
        raise ValueError(f"{source + ': ' if source else ''}cannot start MD: {problem}")
    _import_tblite_ase()
    return p


def _md_frames(atoms: Atoms, p: _MDParams, *, progress: bool, num_threads: int | None,
               state: dict[str, Any] | None = None,
               notice: Callable[[Progress], None] | None = None) -> Iterator[tuple[Atoms, dict[str, Any]]]:
    """The stored frames of a Langevin run, each with the state a resumed run continues from.

    ``state`` (from an earlier yield) continues that run: positions and momenta exactly, the
    thermostat's random generator, the step count. The state is JSON-able (floats round-trip).
    """
    from ase import units
    from ase.calculators.calculator import CalculationFailed, InputError
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary

    try:  # ASE >= 3.29
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # pragma: no cover - older ASE
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        def thermalize_momenta(atoms: Atoms, temperature_K: float, *, rng: np.random.Generator) -> None:
            MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)

    system = atoms.copy()
    system.set_constraint(FixCom())
    system.calc = xtb_calculator(p.method, charge=0, multiplicity=_multiplicity(system, 0), accuracy=p.accuracy)
    if state is None:
        rng = np.random.default_rng(p.seed)
        thermalize_momenta(system, p.temperature_K, rng=rng)
        Stationary(system)
        step0, n_done = 0, 0
    else:  # exactly as the interrupted run left it (no constraint adjustment on the way in)
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        system.arrays["positions"][:] = np.asarray(state["positions"], dtype=np.float64)
        system.set_momenta(np.asarray(state["momenta"], dtype=np.float64), apply_constraint=False)
        step0, n_done = int(state["step"]), int(state["frames"])
    dyn = Langevin(system, p.timestep_fs * units.fs, temperature_K=p.temperature_K,
                   friction=p.friction_per_fs / units.fs, fixcm=False, rng=rng)
    dyn.nsteps = step0

    total = p.total_steps
    bar = Progress(total, f"{p.method} MD at {p.temperature_K:g} K", unit="step", start=step0, enabled=progress)
    if notice is not None:
        notice(bar)
    step = step0
    try:
        with _openmp_threads(num_threads), deferred_interrupts() as interrupted:
            system.get_forces()
            for step in range(step0 + 1, total + 1):
                interrupted()  # Ctrl-C: stop before the next step (the state of the last frame is kept)
                dyn.step()
                dyn.nsteps += 1
                if step > p.equilibration_steps and (step - p.equilibration_steps) % p.interval == 0:
                    calc = system.calc
                    energy = float(calc.results["energy"])
                    forces = np.asarray(calc.results["forces"], dtype=np.float64)
                    try:
                        _check_finite(energy, forces, p.method)
                    except _Unlabelable as err:
                        raise LabelError(f"MD step {step}: {err}") from None
                    if calc.check_state(system):  # pragma: no cover - guards the no-recalculation claim
                        raise RuntimeError("calculator results do not match the current geometry")
                    frame = system.copy()
                    del frame.constraints
                    n_done += 1
                    yield _store(frame, energy, forces), {
                        "step": step, "frames": n_done, "positions": system.positions.tolist(),
                        "momenta": system.get_momenta().tolist(), "rng": rng.bit_generator.state}
                bar.update(step, frames=f"{n_done}/{p.n_frames}")
    except (CalculationFailed, InputError) as err:
        raise LabelError(f"{p.method} calculation failed at MD step {step}: {_one_line(err)}") from err
    finally:
        bar.close()


def sample_md(atoms: Atoms, *, temperature_K: float = 500.0, n_frames: int = 2000, interval: int = 5,
              timestep_fs: float = 0.5, equilibration_steps: int = 200, friction_per_fs: float = 0.02,
              seed: int = 0, method: str = "GFN2-xTB", progress: bool = False, accuracy: float = 1.0,
              num_threads: int | None = 1) -> list[Atoms]:
    """Sample frames by Langevin molecular dynamics on a GFN-xTB surface.

    Velocities start from a seeded Maxwell-Boltzmann distribution at ``temperature_K`` (with zero
    total momentum); the centre of mass is held fixed (:class:`ase.constraints.FixCom`). After
    ``equilibration_steps`` steps, a frame is stored every ``interval`` steps, labelled with the energy
    and forces the dynamics computed at that geometry (no second calculation). The run takes
    ``equilibration_steps + n_frames * interval`` force calls. For long runs that must survive a
    kill, use :func:`sample_md_to_file`.

    Args:
        atoms: the starting structure (left untouched); total charge 0.
        temperature_K: thermostat temperature in K.
        n_frames: number of frames to return.
        interval: MD steps between stored frames.
        timestep_fs: time step in fs.
        equilibration_steps: steps run before the first frame is stored.
        friction_per_fs: Langevin friction in 1/fs.
        seed: seed of the initial velocities and the thermostat noise.
        method: ``"GFN2-xTB"`` or ``"GFN1-xTB"`` (MD runs on xTB only: label the frames with
            :func:`label` for a DFT data set).
        progress: report progress on stderr.
        accuracy: tblite's accuracy factor (see :func:`label`). Each SCF restarts from the previous
            step's wavefunction, so at 1.0 the forces agree with :func:`label` to ~3e-4 eV/Å
            (energies to ~1e-8 eV).
        num_threads: OpenMP threads for xTB (``None``: leave the process setting as is).

    Returns:
        ``n_frames`` independent Atoms copies (with momenta) whose energy (eV) and forces (eV/Å)
        are stored as in :func:`label`.

    Raises:
        ValueError: unknown or non-xTB method, invalid argument, or a structure MD cannot start
            from (fewer than 2 atoms, or see :func:`structure_problem`).
        LabelError: the xTB calculation failed or gave non-finite results during the dynamics
            (the message names the step).
        ImportError: tblite is not installed.
    """
    p = _md_start(atoms, None, method, temperature_K, n_frames, interval, timestep_fs, equilibration_steps,
                  friction_per_fs, seed, accuracy)
    return [frame for frame, _ in _md_frames(atoms, p, progress=progress, num_threads=num_threads)]


def sample_md_to_file(atoms: Atoms, output: str | os.PathLike, *, force: bool = False,
                      temperature_K: float = 500.0, n_frames: int = 2000, interval: int = 5,
                      timestep_fs: float = 0.5, equilibration_steps: int = 200, friction_per_fs: float = 0.02,
                      seed: int = 0, method: str = "GFN2-xTB", accuracy: float = 1.0, source: str | None = None,
                      progress: bool = False, num_threads: int | None = 1,
                      checkpoint_s: float | None = None) -> FileResult:
    """:func:`sample_md` into an extended XYZ file, frame by frame, resuming an interrupted run.

    A rerun of the same job (same starting structure and MD arguments) after a kill or Ctrl-C
    continues from the last checkpoint with the exact positions, momenta, thermostat random state
    and step count (see the module docstring for the files and the guarantees). A run killed
    during equilibration restarts from the beginning (it is then identical to an uninterrupted
    one).

    Limits: a resumed run is not bit-identical to an uninterrupted one. The first SCF after the
    resume starts from scratch instead of the previous step's wavefunction, a difference at the
    SCF convergence noise that the dynamics then carries along. Measured for ethanol at 500 K,
    0.5 fs, interval 2, resumed after 5 frames, over the next 195 frames (390 fs): max |ΔF|
    3e-5 eV/Å, max |ΔE| 2e-6 eV, max |Δx| 2e-6 Å at ``accuracy=1``; 3e-7 eV/Å at
    ``accuracy=0.01`` (tests allow 1e-3 eV/Å, 1e-4 eV, 1e-4 Å). Over much longer times the
    difference grows like any perturbation of chaotic MD, while the sampled distribution is the
    same. The frames before the resume are those of the interrupted run, as written.

    Args:
        atoms: the starting structure (left untouched); total charge 0.
        output: the extended XYZ file to write.
        force: replace an existing ``output`` (only once the new one is complete), and discard an
            unfinished run of other settings instead of refusing. An unfinished run of the same
            job is resumed, with or without ``force``.
        temperature_K, n_frames, interval, timestep_fs, equilibration_steps, friction_per_fs, seed,
            method, accuracy, progress, num_threads: as for :func:`sample_md`.
        source: the structure's name, for error messages.
        checkpoint_s: seconds between checkpoints (None: ``EQT_CHECKPOINT_INTERVAL`` or 1 s); a
            checkpoint costs ~1 ms (a JSON file and an fsync).

    Returns:
        A :class:`FileResult` (``resumed_from``: frames an earlier run had done).

    Raises:
        OutputError: ``output`` exists (without ``force``), cannot be written, or an unfinished run
            of other settings is in the way; checked before any calculation.
        ValueError, LabelError, ImportError: as for :func:`sample_md`.
    """
    p = _md_start(atoms, source, method, temperature_K, n_frames, interval, timestep_fs, equilibration_steps,
                  friction_per_fs, seed, accuracy)
    job = {"command": "sample", "structure": _structures_digest([atoms]), **dataclasses.asdict(p)}
    out = _ResumableOutput(output, job, force, checkpoint_s)
    saved = out.resume()
    state = out.open(saved, {"frames": 0})
    resumed = int(state["frames"])

    def notice(bar: Progress) -> None:
        if saved is not None and progress:
            bar.message(f"resuming {out.partial}: {resumed} of {p.n_frames} frames done")

    frames = _md_frames(atoms, p, progress=progress, num_threads=num_threads,
                        state=state if resumed > 0 else None, notice=notice)
    try:
        for frame, md_state in frames:
            out.append(_frame_text(frame), md_state)
    except BaseException:
        frames.close()
        out.suspend()
        raise
    out.finish()
    return FileResult(out.output, p.n_frames, resumed)
