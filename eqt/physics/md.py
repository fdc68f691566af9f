"""Molecular dynamics with safety checks: ASE's Langevin (NVT) or velocity Verlet (NVE).

:func:`run_md` draws Maxwell-Boltzmann velocities, integrates with ASE, checks the structure after
every step (non-finite values, large forces, large displacements, atoms too close, a fragment
flying off) and stops with :class:`MDInstabilityError` when a check fails. The trajectory
(ASE ``.traj``) and a CSV log are written under temporary names (``<name>.partial``) and renamed
at the end: to the final names on success, to ``<name>.aborted`` on any failure, so a file under
its final name is always a complete run.

Units: time fs, energy eV, temperature K, lengths Å.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import IO, Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator as AseCalculator
from ase.io import Trajectory
from ase.md.langevin import Langevin
from ase.md import velocitydistribution
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet
from ase.neighborlist import neighbor_list

from eqt.config import Config

__all__ = ["MDConfig", "MDResult", "MDInstabilityError", "run_md"]

LOG_HEADER = "step,time_fs,epot_eV,ekin_eV,etot_eV,temperature_K"
INTEGRATORS = ("langevin", "verlet")


@dataclasses.dataclass(frozen=True)
class MDConfig(Config):
    """Settings of :func:`run_md`.

    Attributes:
        integrator: ``"langevin"`` (NVT, ASE's Langevin) or ``"verlet"`` (NVE, velocity Verlet).
        timestep_fs: time step in fs.
        temperature_K: initial (Maxwell-Boltzmann) and, for Langevin, target temperature in K.
        friction_per_fs: Langevin friction in 1/fs.
        steps: number of MD steps.
        log_interval: steps between log lines and trajectory frames (step 0 is always logged).
        seed: seed of the initial velocities and of the Langevin noise.
        max_force: stop when any atomic force exceeds this (eV/Å).
        max_displacement_per_step: stop when an atom moves more than this in one step (Å).
        min_distance: stop when two atoms (or periodic images) get closer than this (Å).
        max_distance_growth: stop when an atom's distance to its nearest neighbour has grown
            by more than this since the start (Å): a fragment flew away. Non-periodic only.
    """

    integrator: str = "langevin"
    timestep_fs: float = 0.5
    temperature_K: float = 300.0
    friction_per_fs: float = 0.01
    steps: int = 2000
    log_interval: int = 10
    seed: int = 0
    max_force: float = 50.0
    max_displacement_per_step: float = 0.5
    min_distance: float = 0.5
    max_distance_growth: float = 5.0

    def __post_init__(self) -> None:
        if self.integrator not in INTEGRATORS:
            raise ValueError(f"MDConfig.integrator must be one of {', '.join(INTEGRATORS)}, got '{self.integrator}'")
        for name in ("steps", "log_interval", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"MDConfig.{name} must be an integer, got {value!r}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "float" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise ValueError(f"MDConfig.{f.name} must be a number, got {value!r}")
        for name in ("timestep_fs", "max_force", "max_displacement_per_step", "max_distance_growth", "log_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(f"MDConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("temperature_K", "friction_per_fs", "steps", "min_distance"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"MDConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.integrator == "langevin" and not self.friction_per_fs > 0:
            raise ValueError(f"MDConfig.friction_per_fs must be > 0 for Langevin, got {self.friction_per_fs}")


@dataclasses.dataclass
class MDResult:
    """Outcome of a completed :func:`run_md`; arrays have one entry per logged frame ``(T,)``.

    Attributes:
        steps_done: MD steps completed.
        times_fs: ``(T,)`` time of each logged frame in fs.
        temperatures: ``(T,)`` instantaneous temperature in K.
        energies: ``(T,)`` total (potential + kinetic) energy in eV.
        potential_energies: ``(T,)`` potential energy in eV.
        drift_eV_per_atom_per_ps: slope of a linear fit of total energy per atom against time, in
            eV/atom/ps (NaN with fewer than two logged frames).
        mean_temperature_K: mean temperature over the logged frames after step 0 (the initial
            frame only, when it is the only one).
        trajectory: path of the ASE trajectory, or None.
        log: path of the CSV log, or None.
    """

    steps_done: int
    times_fs: np.ndarray
    temperatures: np.ndarray
    energies: np.ndarray
    potential_energies: np.ndarray
    drift_eV_per_atom_per_ps: float
    mean_temperature_K: float
    trajectory: Path | None
    log: Path | None


class MDInstabilityError(RuntimeError):
    """The MD run became unstable (a safety check of :func:`run_md` failed).

    Attributes:
        step: MD step at which the check failed (0 is the initial structure).
        check: name of the failed check (``"finite"``, ``"max_force"``, ``"max_displacement"``,
            ``"min_distance"``, ``"distance_growth"``, ``"calculator"``).
        atom_indices: the offending atoms.
    """

    def __init__(self, message: str, step: int, check: str, atom_indices: tuple[int, ...] = ()):
        super().__init__(message)
        self.step, self.check, self.atom_indices = step, check, tuple(int(i) for i in atom_indices)


def _nearest_neighbours(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N,)`` distance of each atom to its nearest other atom and that atom's index (non-periodic).

    By a k-d tree: ``O(N log N)``, milliseconds for 10^4 atoms (ASE's ``neighbor_list`` bins the
    bounding box at the cutoff and took 4 s per call for a 1,000-atom chain).
    """
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(positions).query(positions, k=2)
    return dist[:, 1], idx[:, 1]


def _closest_pair_periodic(atoms: Atoms, cutoff: float) -> tuple[int, int, float] | None:
    """The closest pair (or atom and own image) closer than ``cutoff`` in a periodic cell, or None."""
    i = j = d = None
    try:
        from vesin import NeighborList

        nl = NeighborList(cutoff=cutoff, full_list=False)
        i, j, d = nl.compute(points=atoms.positions, box=atoms.cell.array, periodic=bool(np.all(atoms.pbc)),
                             quantities="ijd")
        if not np.all(atoms.pbc) and np.any(atoms.pbc):  # vesin: all or nothing periodic
            i = None
    except ImportError:
        pass
    if i is None:
        i, j, d = neighbor_list("ijd", atoms, cutoff)
    if not len(d):
        return None
    k = int(np.argmin(d))
    return int(i[k]), int(j[k]), float(d[k])


class _Checker:
    """Per-step safety checks of one run."""

    def __init__(self, atoms: Atoms, config: MDConfig):
        self.config = config
        self.previous = atoms.get_positions().copy()
        self.periodic = bool(np.any(atoms.pbc))
        self.nn0 = None
        if not self.periodic and len(atoms) > 1 and np.isfinite(self.previous).all():
            self.nn0 = _nearest_neighbours(self.previous)[0]

    def __call__(self, atoms: Atoms, step: int) -> None:
        """Raise :class:`MDInstabilityError` if the current state of ``atoms`` is unsafe."""
        c = self.config
        pos = atoms.get_positions()
        bad = ~np.isfinite(pos).all(axis=1)
        if bad.any():
            idx = np.flatnonzero(bad)
            raise MDInstabilityError(f"MD step {step}: non-finite position of atom(s) {_fmt(idx)}", step, "finite", idx)
        forces = atoms.get_forces()
        bad = ~np.isfinite(forces).all(axis=1)
        if bad.any():
            idx = np.flatnonzero(bad)
            raise MDInstabilityError(f"MD step {step}: non-finite force on atom(s) {_fmt(idx)}", step, "finite", idx)
        fnorm = np.linalg.norm(forces, axis=1)
        if fnorm.max() > c.max_force:
            i = int(fnorm.argmax())
            raise MDInstabilityError(f"MD step {step}: force {fnorm[i]:.4g} eV/Å on atom {i} exceeds "
                                     f"max_force={c.max_force}", step, "max_force", (i,))
        disp = np.linalg.norm(pos - self.previous, axis=1)
        self.previous = pos.copy()
        if disp.max() > c.max_displacement_per_step:
            i = int(disp.argmax())
            raise MDInstabilityError(f"MD step {step}: atom {i} moved {disp[i]:.4g} Å in one step, more than "
                                     f"max_displacement_per_step={c.max_displacement_per_step}", step,
                                     "max_displacement", (i,))
        nn = partner = None
        if not self.periodic and len(atoms) > 1:
            nn, partner = _nearest_neighbours(pos)
        if c.min_distance > 0:
            close = None
            if nn is not None:
                k = int(nn.argmin())
                if nn[k] < c.min_distance:
                    close = (k, int(partner[k]), float(nn[k]))
            elif self.periodic:
                close = _closest_pair_periodic(atoms, c.min_distance)
            if close is not None:
                a, b = sorted(close[:2])
                what = f"atoms {a} and {b} are" if a != b else f"atom {a} is"
                image = "" if a != b else " from its own periodic image"
                raise MDInstabilityError(f"MD step {step}: {what} {close[2]:.4g} Å apart{image}, closer than "
                                         f"min_distance={c.min_distance}", step, "min_distance", (a, b))
        if self.nn0 is not None:
            growth = nn - self.nn0
            if growth.max() > c.max_distance_growth:
                i = int(growth.argmax())
                raise MDInstabilityError(f"MD step {step}: atom {i} flew off (its nearest neighbour is "
                                         f"{growth[i]:.4g} Å farther than at the start, "
                                         f"max_distance_growth={c.max_distance_growth})",
                                         step, "distance_growth", (i,))


def _fmt(indices: np.ndarray, limit: int = 10) -> str:
    """``"0, 3, 7"`` (at most ``limit`` indices, then ``...``)."""
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    return shown + (", ..." if len(indices) > limit else "")


def _partial(path: Path) -> Path:
    """Temporary name of an output file while the run is in progress."""
    return path.with_name(path.name + ".partial")


def _aborted(path: Path) -> Path:
    """Name of an output file of a failed run."""
    return path.with_name(path.name + ".aborted")


def run_md(atoms: Atoms, calculator: AseCalculator | None, config: MDConfig = MDConfig(),
           trajectory: str | os.PathLike | None = None, log: str | os.PathLike | None = None) -> MDResult:
    """Run MD on ``atoms`` (in place) with safety checks after every step.

    Initial velocities are drawn from a Maxwell-Boltzmann distribution (ASE's
    ``thermalize_momenta``, formerly ``MaxwellBoltzmannDistribution``) at
    ``config.temperature_K`` (replacing any present), then the centre-of-mass motion is removed
    and, for non-periodic systems, the rotation. Langevin runs with ``fixcm=False`` (ASE's
    ``fixcm`` is deprecated), so the centre of mass diffuses with the noise. The random numbers
    come from ``numpy.random.default_rng(config.seed)``: a run is reproducible.

    Args:
        atoms: the structure, ``N`` atoms; it is evolved in place and gets ``calculator``.
        calculator: any ASE calculator (e.g. :class:`eqt.physics.calculator.Calculator`), or
            None to use ``atoms.calc``.
        config: the settings.
        trajectory: path of the ASE trajectory (a frame every ``log_interval`` steps), or None.
        log: path of the CSV log (``step,time_fs,epot_eV,ekin_eV,etot_eV,temperature_K``), or None.

    Returns:
        An :class:`MDResult`.

    Raises:
        MDInstabilityError: a safety check failed (also when the calculator rejects a structure
            reached by the dynamics); the files are kept as ``<name>.aborted``, the failing frame
            being the last of the trajectory.
        ValueError: the calculator rejects the initial structure.
    """
    if not isinstance(config, MDConfig):
        raise TypeError(f"run_md: config must be an MDConfig, got {type(config).__name__}")
    if calculator is not None:
        atoms.calc = calculator
    if atoms.calc is None:
        raise ValueError("run_md: no calculator (pass one, or attach it to atoms.calc)")
    if len(atoms) == 0:
        raise ValueError("run_md: atoms is empty")
    rng = np.random.default_rng(config.seed)
    # ASE >= 3.29 deprecates MaxwellBoltzmannDistribution for thermalize_momenta (same draws)
    thermalize = getattr(velocitydistribution, "thermalize_momenta", None)
    if thermalize is None:  # pragma: no cover - ASE < 3.29
        thermalize = velocitydistribution.MaxwellBoltzmannDistribution
    thermalize(atoms, temperature_K=config.temperature_K, rng=rng)
    Stationary(atoms)
    if not np.any(atoms.pbc) and len(atoms) > 1:
        with np.errstate(divide="ignore", invalid="ignore"):  # linear molecules: a zero moment of inertia
            ZeroRotation(atoms)
    dt = config.timestep_fs * units.fs
    if config.integrator == "langevin":
        dyn = Langevin(atoms, timestep=dt, temperature_K=config.temperature_K,
                       friction=config.friction_per_fs / units.fs, fixcm=False, rng=rng)
    else:
        dyn = VelocityVerlet(atoms, timestep=dt)

    paths = [Path(p) if p is not None else None for p in (trajectory, log)]
    for p in paths:
        if p is not None:
            p.parent.mkdir(parents=True, exist_ok=True)
    traj_path, log_path = paths
    traj: Any = None
    log_file: IO[str] | None = None
    times, temps, etots, epots = [], [], [], []
    checker = _Checker(atoms, config)
    last_step = -1
    try:
        if traj_path is not None:
            traj = Trajectory(str(_partial(traj_path)), "w", atoms)
        if log_path is not None:
            log_file = open(_partial(log_path), "w", encoding="utf-8")
            log_file.write(LOG_HEADER + "\n")
            log_file.flush()
        try:
            for _ in dyn.irun(config.steps):
                step = dyn.nsteps
                try:
                    checker(atoms, step)
                except MDInstabilityError:
                    if traj is not None:
                        traj.write(atoms)
                    raise
                last_step = step
                if step % config.log_interval == 0 or step == config.steps:
                    epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
                    temp = atoms.get_temperature()
                    t_fs = step * config.timestep_fs
                    times.append(t_fs)
                    temps.append(temp)
                    etots.append(epot + ekin)
                    epots.append(epot)
                    if traj is not None:
                        traj.write(atoms)
                    if log_file is not None:
                        log_file.write(f"{step},{t_fs:.6g},{epot:.10g},{ekin:.10g},{epot + ekin:.10g},{temp:.6g}\n")
                        log_file.flush()
        except ValueError as err:
            if last_step < 0:
                raise  # the initial structure is invalid: a bad input, not an instability
            step = last_step + 1
            raise MDInstabilityError(f"MD step {step}: the calculator rejected the structure: {err}", step,
                                     "calculator") from err
    except BaseException:
        _close(traj, log_file)
        for p in paths:
            if p is not None and _partial(p).exists():
                os.replace(_partial(p), _aborted(p))
        raise
    _close(traj, log_file)
    for p in paths:
        if p is not None:
            os.replace(_partial(p), p)

    times_a, etot_a = np.asarray(times), np.asarray(etots)
    temps_a = np.asarray(temps)
    drift = float("nan")
    if len(times_a) >= 2:
        drift = float(np.polyfit(times_a / 1000.0, etot_a / len(atoms), 1)[0])
    mean_t = float(temps_a[1:].mean() if len(temps_a) > 1 else temps_a.mean())
    return MDResult(steps_done=max(last_step, 0), times_fs=times_a, temperatures=temps_a, energies=etot_a,
                    potential_energies=np.asarray(epots), drift_eV_per_atom_per_ps=drift,
                    mean_temperature_K=mean_t, trajectory=traj_path, log=log_path)


def _close(traj: Any, log_file: IO[str] | None) -> None:
    """Close the trajectory writer and the log file (either may be None)."""
    if traj is not None:
        traj.close()
    if log_file is not None:
        log_file.close()
