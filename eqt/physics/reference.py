"""Reference labels from real electronic-structure codes: GFN-xTB (tblite) and DFT (PySCF).

:func:`label` computes energies (eV) and forces (eV/Å) for a list of structures, :func:`sample_md`
samples a data set by Langevin molecular dynamics on the GFN2-xTB surface and labels each frame with
the energy and forces the dynamics already computed. Both return independent :class:`ase.Atoms`
copies whose results sit in a :class:`~ase.calculators.singlepoint.SinglePointCalculator` *and* in
``atoms.info["energy"]`` / ``atoms.arrays["forces"]``.

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
import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms
    from ase.calculators.calculator import Calculator

__all__ = ["XTB_METHODS", "label", "sample_md", "xtb_calculator"]

#: xTB Hamiltonians served by tblite, by their canonical name.
XTB_METHODS: tuple[str, ...] = ("GFN2-xTB", "GFN1-xTB")

_PYSCF_PREFIX = "pyscf:"


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


class _Progress:
    """Minimal progress report to stderr, about every 10 %."""

    def __init__(self, total: int, what: str, enabled: bool):
        self.total, self.what, self.enabled = max(int(total), 1), what, enabled
        self.start, self.next = time.perf_counter(), 0.1

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        frac = done / self.total
        if frac >= self.next or done == self.total:
            elapsed = time.perf_counter() - self.start
            print(f"{self.what}: {done}/{self.total} ({elapsed:.1f} s)", file=sys.stderr, flush=True)
            while self.next <= frac:
                self.next += 0.1


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


def _label_xtb(structures: list[Atoms], method: str, charge: int, progress: bool,
               accuracy: float) -> list[Atoms]:
    from ase.calculators.calculator import CalculationFailed, InputError

    out: list[Atoms] = []
    bar = _Progress(len(structures), f"labelling with {method}", progress)
    for i, atoms in enumerate(structures):
        copy = atoms.copy()
        # A fresh calculator per structure: labels do not depend on the order (no SCF restart).
        calc = xtb_calculator(method, charge=charge, multiplicity=_multiplicity(copy, charge), accuracy=accuracy)
        try:
            energy = calc.get_potential_energy(copy)
            forces = calc.get_forces(copy)
        except (CalculationFailed, InputError, RuntimeError) as err:
            raise RuntimeError(f"{method} calculation failed for structure {i}: {err}") from err
        out.append(_store(copy, energy, forces))
        bar.update(i + 1)
    return out


def _label_pyscf(structures: list[Atoms], xc: str, basis: str, charge: int, progress: bool) -> list[Atoms]:
    try:
        from pyscf import dft, gto, scf
    except ImportError as err:
        raise ImportError("PySCF reference labels need pyscf: pip install pyscf") from err
    from ase.units import Bohr, Hartree

    out: list[Atoms] = []
    bar = _Progress(len(structures), f"labelling with PySCF {xc}/{basis}", progress)
    for i, atoms in enumerate(structures):
        if np.any(atoms.pbc):
            raise ValueError(f"structure {i} is periodic; the PySCF reference supports molecules only")
        copy = atoms.copy()
        spin = _multiplicity(copy, charge) - 1
        try:
            mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(copy.get_chemical_symbols(), copy.positions)],
                        unit="Angstrom", basis=basis, charge=int(charge), spin=spin, verbose=0)
            mf = scf.HF(mol) if xc.upper() == "HF" else dft.KS(mol, xc=xc)
            energy = mf.kernel()
            if not mf.converged:
                raise RuntimeError("SCF did not converge")
            gradient = mf.nuc_grad_method().kernel()
        except Exception as err:  # PySCF raises many kinds (RuntimeError, KeyError for bad basis, ...)
            raise RuntimeError(f"PySCF {xc}/{basis} calculation failed for structure {i}: {err}") from err
        forces = -np.asarray(gradient, dtype=np.float64) * (Hartree / Bohr)
        out.append(_store(copy, float(energy) * Hartree, forces))
        bar.update(i + 1)
    return out


def label(structures: list[Atoms], method: str = "GFN2-xTB", *, charge: int = 0, progress: bool = False,
          accuracy: float = 1.0, num_threads: int | None = 1) -> list[Atoms]:
    """Label structures with reference energies and forces.

    Each structure is computed independently, at the lowest spin multiplicity its electron count
    allows (singlet or doublet).

    Args:
        structures: the geometries (left untouched).
        method: ``"GFN2-xTB"`` or ``"GFN1-xTB"`` (tblite), or ``"pyscf:<xc>/<basis>"``, e.g.
            ``"pyscf:PBE/def2-SVP"`` or ``"pyscf:HF/sto-3g"`` (PySCF, molecules only).
        charge: total charge of every structure in e.
        progress: report progress on stderr.
        accuracy: tblite's accuracy factor (xTB only). At 1.0 (default) forces carry ~1e-4 eV/Å of
            SCF convergence noise, 0.01 brings it to ~3e-6 eV/Å for ~20 % more time.
        num_threads: OpenMP threads for the calculation (``None``: leave the process setting as is).
            One thread is fastest for small molecules.

    Returns:
        Copies of ``structures`` with ``energy`` (eV) and ``forces`` (eV/Å) available from
        ``get_potential_energy()``/``get_forces()`` and in ``info["energy"]``/``arrays["forces"]``.

    Raises:
        ValueError: unknown method.
        ImportError: the code behind ``method`` is not installed.
        RuntimeError: a calculation failed; the message names the structure's index.
    """
    structures = list(structures)
    xtb = _xtb_method(method)
    if xtb is not None:
        _import_tblite_ase()
        with _openmp_threads(num_threads):
            return _label_xtb(structures, xtb, charge, progress, accuracy)
    pyscf_spec = _pyscf_method(method)
    if pyscf_spec is not None:
        return _label_pyscf(structures, *pyscf_spec, charge=charge, progress=progress)
    raise _unknown_method(method)


def sample_md(atoms: Atoms, *, temperature_K: float = 500.0, n_frames: int = 2000, interval: int = 5,
              timestep_fs: float = 0.5, equilibration_steps: int = 200, friction_per_fs: float = 0.02,
              seed: int = 0, method: str = "GFN2-xTB", progress: bool = False, accuracy: float = 1.0,
              num_threads: int | None = 1) -> list[Atoms]:
    """Sample frames by Langevin molecular dynamics on a GFN-xTB surface.

    Velocities start from a seeded Maxwell-Boltzmann distribution at ``temperature_K`` (with zero
    total momentum); the centre of mass is held fixed (:class:`ase.constraints.FixCom`). After
    ``equilibration_steps`` steps, a frame is stored every ``interval`` steps, labelled with the energy
    and forces the dynamics computed at that geometry (no second calculation). The run takes
    ``equilibration_steps + n_frames * interval`` force calls.

    Args:
        atoms: the starting structure (left untouched); total charge 0.
        temperature_K: thermostat temperature in K.
        n_frames: number of frames to return.
        interval: MD steps between stored frames.
        timestep_fs: time step in fs.
        equilibration_steps: steps run before the first frame is stored.
        friction_per_fs: Langevin friction in 1/fs.
        seed: seed of the initial velocities and the thermostat noise.
        method: ``"GFN2-xTB"`` or ``"GFN1-xTB"``.
        progress: report progress on stderr.
        accuracy: tblite's accuracy factor (see :func:`label`). Each SCF restarts from the previous
            step's wavefunction, so at 1.0 the forces agree with :func:`label` to ~3e-4 eV/Å
            (energies to ~1e-8 eV).
        num_threads: OpenMP threads for xTB (``None``: leave the process setting as is).

    Returns:
        ``n_frames`` independent Atoms copies (with momenta) whose energy (eV) and forces (eV/Å)
        are stored as in :func:`label`.

    Raises:
        ValueError: unknown method or invalid argument.
        ImportError: tblite is not installed.
        RuntimeError: the xTB calculation failed during the dynamics (the message names the step).
    """
    name = _xtb_method(method)
    if name is None:
        raise _unknown_method(method)
    if n_frames < 1 or interval < 1 or equilibration_steps < 0:
        raise ValueError(f"need n_frames >= 1, interval >= 1, equilibration_steps >= 0; got "
                         f"{n_frames}, {interval}, {equilibration_steps}")
    if not (timestep_fs > 0 and friction_per_fs >= 0 and temperature_K >= 0):
        raise ValueError(f"need timestep_fs > 0, friction_per_fs >= 0, temperature_K >= 0; got "
                         f"{timestep_fs}, {friction_per_fs}, {temperature_K}")
    if len(atoms) < 2:
        raise ValueError(f"MD needs at least 2 atoms, got {len(atoms)}")

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

    rng = np.random.default_rng(seed)
    system = atoms.copy()
    system.set_constraint(FixCom())
    system.calc = xtb_calculator(name, charge=0, multiplicity=_multiplicity(system, 0), accuracy=accuracy)
    thermalize_momenta(system, temperature_K, rng=rng)
    Stationary(system)
    dyn = Langevin(system, timestep_fs * units.fs, temperature_K=temperature_K,
                   friction=friction_per_fs / units.fs, fixcm=False, rng=rng)

    total = equilibration_steps + n_frames * interval
    frames: list[Atoms] = []
    bar = _Progress(total, f"{name} MD at {temperature_K:g} K", progress)
    step = 0
    with _openmp_threads(num_threads):
        try:
            system.get_forces()
            for step in range(1, total + 1):
                dyn.step()
                dyn.nsteps += 1
                if step > equilibration_steps and (step - equilibration_steps) % interval == 0:
                    calc = system.calc
                    if calc.check_state(system):  # pragma: no cover - guards the no-recalculation claim
                        raise RuntimeError("calculator results do not match the current geometry")
                    frame = system.copy()
                    del frame.constraints
                    frames.append(_store(frame, calc.results["energy"], calc.results["forces"]))
                bar.update(step)
        except (CalculationFailed, InputError) as err:
            raise RuntimeError(f"{name} calculation failed at MD step {step}: {err}") from err
    return frames
