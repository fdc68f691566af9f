"""Polymer reference data (PolyGET): capped oligomers, GFN2-xTB Langevin MD, extended XYZ.

Three steps, each usable alone:

1. :func:`build_oligomer` assembles ``cap-(repeat unit)_n-cap`` from a family's repeat-unit SMILES
   (two attachment points ``[*]``: the first is the head, the second the tail; units are joined
   head to tail), adds hydrogens and embeds one 3D conformer with RDKit (ETKDGv3, seeded), then
   relaxes it with MMFF94 (UFF where MMFF lacks parameters). Stereocentres left open by the SMILES
   (e.g. polypropylene's) are set at random by the embedding, so the chain's tacticity is random
   and fixed by the seed.
2. :func:`run_trajectory` / :func:`sample_conformations` run Langevin MD on the GFN2-xTB surface
   (tblite, through :func:`eqt.physics.reference.xtb_calculator`) and store every ``stride``-th
   step after equilibration, labelled with the energy (eV) and forces (eV/Å) the dynamics computed
   at that geometry. Before every force call the geometry is checked against the starting bond
   graph (a bond broken, a new bond formed, two atoms closer than ``min_distance``), after it the
   labels (non-finite values, energy rise, force size). A run that fails a check, or whose xTB
   calculation fails, ends with a :class:`Failure` record and no frames: a blown-up trajectory is a
   result, not an exception.
3. :func:`generate` loops over families × chain lengths × temperatures × trajectories, writes the
   frames to one extended XYZ file (``energy`` in ``info``, ``forces`` in ``arrays``, the keys
   :func:`eqt.data.readers.read_frames` looks for) with ``family``, ``n_repeat``, ``cap``,
   ``temperature``, ``traj_id``, ``step`` and ``time_fs`` in each frame's info, and a JSON summary
   of every trajectory (failures included) next to it.

Units: Å, eV, eV/Å, fs, K. RDKit (``pip install rdkit``, extra ``eqt[polymers]``) and tblite
(``pip install tblite``, extra ``eqt[label]``) are imported lazily.

Command line (``eqt data polymers``, or ``python -m eqt.data.polymers``)::

    python -m eqt.data.polymers train.xyz --families PE PP PS PVC PTFE PEO PMMA nylon-6 \\
        --lengths 3-6 --temperatures 300 600
    python -m eqt.data.polymers size.xyz --families PE PEO PVC --lengths 8-12
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import os
import re
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eqt.config import Config

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

__all__ = [
    "BondGuard",
    "FAMILIES",
    "CAPS",
    "PolymerFamily",
    "SamplingConfig",
    "Failure",
    "TrajectoryResult",
    "get_family",
    "repeat_unit_formula",
    "build_oligomer",
    "run_trajectory",
    "sample_conformations",
    "generate",
    "parse_lengths",
    "family_table",
    "add_arguments",
    "run_from_args",
    "main",
]


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PolymerFamily:
    """A polymer family: its repeat unit with two attachment points.

    Attributes:
        name: short name used in files and on the command line (e.g. ``"PE"``).
        full_name: the polymer's name (e.g. ``"polyethylene"``); also accepted by :func:`get_family`.
        smiles: repeat-unit SMILES with exactly two ``[*]`` attachment points, each bonded by a single
            bond to one atom; the first ``[*]`` is the head, the second the tail.
    """

    name: str
    full_name: str
    smiles: str


#: The built-in families, by short name.
FAMILIES: dict[str, PolymerFamily] = {f.name: f for f in (
    PolymerFamily("PE", "polyethylene", "[*]CC[*]"),
    PolymerFamily("PP", "polypropylene", "[*]CC(C)[*]"),
    PolymerFamily("PS", "polystyrene", "[*]CC(c1ccccc1)[*]"),
    PolymerFamily("PVC", "poly(vinyl chloride)", "[*]CC(Cl)[*]"),
    PolymerFamily("PTFE", "polytetrafluoroethylene", "[*]C(F)(F)C(F)(F)[*]"),
    PolymerFamily("PVDF", "poly(vinylidene fluoride)", "[*]CC(F)(F)[*]"),
    PolymerFamily("PEO", "poly(ethylene oxide)", "[*]CCO[*]"),
    PolymerFamily("POM", "polyoxymethylene", "[*]CO[*]"),
    PolymerFamily("PVA", "poly(vinyl alcohol)", "[*]CC(O)[*]"),
    PolymerFamily("PAN", "polyacrylonitrile", "[*]CC(C#N)[*]"),
    PolymerFamily("PMMA", "poly(methyl methacrylate)", "[*]CC(C)(C(=O)OC)[*]"),
    PolymerFamily("PLA", "poly(lactic acid)", "[*]OC(C)C(=O)[*]"),
    PolymerFamily("nylon-6", "polycaprolactam", "[*]NCCCCCC(=O)[*]"),
    PolymerFamily("PET", "poly(ethylene terephthalate)", "[*]OCCOC(=O)c1ccc(cc1)C(=O)[*]"),
    PolymerFamily("PDMS", "polydimethylsiloxane", "[*]O[Si](C)(C)[*]"),
)}

#: End caps: the group that replaces each of the chain's two open attachment points.
CAPS: tuple[str, ...] = ("H", "CH3")

#: Families of the default training set and of the default size test.
DEFAULT_TRAIN_FAMILIES: tuple[str, ...] = ("PE", "PP", "PS", "PVC", "PTFE", "PEO", "PMMA", "nylon-6",
                                           "PET", "PAN")
DEFAULT_LENGTHS: tuple[int, ...] = (3, 4, 5, 6)
SIZE_TEST_LENGTHS: tuple[int, ...] = (8, 9, 10, 11, 12)


def _key(name: str) -> str:
    """Lookup key of a family name: lower case, letters and digits only (``Nylon_6`` → ``nylon6``)."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def get_family(family: str | PolymerFamily) -> PolymerFamily:
    """The family called ``family`` (short or full name, case and punctuation ignored).

    Args:
        family: a name such as ``"PE"``, ``"polyethylene"``, ``"nylon6"``, or a :class:`PolymerFamily`
            (returned as is, for custom repeat units).

    Returns:
        The :class:`PolymerFamily`.

    Raises:
        ValueError: unknown name; the message suggests the closest known name and lists them all.
    """
    if isinstance(family, PolymerFamily):
        return family
    if not isinstance(family, str):
        raise ValueError(f"polymer family must be a name or a PolymerFamily, got {type(family).__name__}")
    index: dict[str, PolymerFamily] = {}
    for f in FAMILIES.values():
        index[_key(f.name)] = f
        index[_key(f.full_name)] = f
    if _key(family) in index and _key(family):
        return index[_key(family)]
    near = difflib.get_close_matches(_key(family), list(index), n=1, cutoff=0.6)
    hint = f"; did you mean '{index[near[0]].name}' ({index[near[0]].full_name})?" if near else ""
    raise ValueError(f"unknown polymer family '{family}'{hint or '.'} Known families: {', '.join(FAMILIES)}")


# --------------------------------------------------------------------------------------------------
# RDKit helpers
# --------------------------------------------------------------------------------------------------
def _import_rdkit():
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import AllChem
    except ImportError as err:
        raise ImportError("building polymer oligomers needs RDKit: pip install rdkit "
                          "(or the extra eqt[polymers])") from err
    return Chem, AllChem, RDLogger


@contextlib.contextmanager
def _quiet_rdkit() -> Iterator[None]:
    """Silence RDKit's own error printout (we raise one clear message instead)."""
    _, _, RDLogger = _import_rdkit()
    RDLogger.DisableLog("rdApp.*")
    try:
        yield
    finally:
        RDLogger.EnableLog("rdApp.*")


def _repeat_unit(family: PolymerFamily):
    """The kekulised repeat unit and ``((head_dummy, head_atom), (tail_dummy, tail_atom))``."""
    Chem, _, _ = _import_rdkit()
    with _quiet_rdkit():
        mol = Chem.MolFromSmiles(family.smiles) if isinstance(family.smiles, str) else None
    if mol is None:
        raise ValueError(f"repeat-unit SMILES {family.smiles!r} of family '{family.name}' does not parse "
                         f"(RDKit could not read it)")
    dummies = [a for a in mol.GetAtoms() if a.GetAtomicNum() == 0]
    if len(dummies) != 2:
        raise ValueError(f"repeat-unit SMILES {family.smiles!r} of family '{family.name}' must have exactly "
                         f"two attachment points [*] (head and tail), found {len(dummies)}")
    ends = []
    for d in dummies:
        bonds = list(d.GetBonds())
        if len(bonds) != 1 or bonds[0].GetBondType() != Chem.BondType.SINGLE:
            raise ValueError(f"repeat-unit SMILES {family.smiles!r} of family '{family.name}': each attachment "
                             f"point [*] must be bonded to one atom by a single bond")
        ends.append((d.GetIdx(), bonds[0].GetOtherAtomIdx(d.GetIdx())))
    Chem.Kekulize(mol, clearAromaticFlags=True)
    return mol, ends[0], ends[1]


def _assemble(family: PolymerFamily, n_repeat: int, cap: str):
    """RDKit molecule ``cap-(unit)_n-cap`` with explicit hydrogens (no coordinates)."""
    Chem, _, _ = _import_rdkit()
    unit, (head_dummy, head_atom), (tail_dummy, tail_atom) = _repeat_unit(family)
    rw = Chem.RWMol()
    first_head = last_tail = None
    for _ in range(n_repeat):
        index = {}
        for atom in unit.GetAtoms():
            if atom.GetIdx() not in (head_dummy, tail_dummy):
                index[atom.GetIdx()] = rw.AddAtom(Chem.Atom(atom))
        for bond in unit.GetBonds():
            a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            if a in index and b in index:
                rw.AddBond(index[a], index[b], bond.GetBondType())
        if last_tail is None:
            first_head = index[head_atom]
        else:
            rw.AddBond(last_tail, index[head_atom], Chem.BondType.SINGLE)
        last_tail = index[tail_atom]
    for anchor in (first_head, last_tail):
        cap_atom = rw.AddAtom(Chem.Atom(1 if cap == "H" else 6))
        rw.AddBond(anchor, cap_atom, Chem.BondType.SINGLE)
    mol = rw.GetMol()
    try:
        with _quiet_rdkit():
            Chem.SanitizeMol(mol)
    except Exception as err:  # noqa: BLE001 - RDKit raises several sanitisation error types
        raise ValueError(f"family '{family.name}': the {n_repeat}-unit oligomer is not a valid molecule "
                         f"({str(err).splitlines()[0]})") from None
    mol = Chem.AddHs(mol)
    radicals = sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms())
    charge = Chem.GetFormalCharge(mol)
    electrons = sum(a.GetAtomicNum() for a in mol.GetAtoms()) - charge
    if radicals or charge or electrons % 2:
        raise ValueError(f"family '{family.name}': the oligomer is not a neutral closed-shell molecule "
                         f"(charge {charge}, {radicals} radical electron(s)); check the repeat-unit SMILES "
                         f"{family.smiles!r}")
    return mol


def _check_cap(cap: str) -> str:
    for c in CAPS:
        if isinstance(cap, str) and cap.strip().lower() == c.lower():
            return c
    raise ValueError(f"unknown end cap {cap!r}; use one of {', '.join(CAPS)}")


def _check_n_repeat(n_repeat: Any, family: PolymerFamily | None = None) -> int:
    if isinstance(n_repeat, bool) or not isinstance(n_repeat, (int, np.integer)):
        raise ValueError(f"n_repeat must be an integer, got {n_repeat!r}")
    if n_repeat < 1:
        where = f"family '{family.name}': " if family is not None else ""
        raise ValueError(f"{where}n_repeat={n_repeat} is too short to cap; a capped oligomer needs at least "
                         f"1 repeat unit between its two end caps")
    return int(n_repeat)


def repeat_unit_formula(family: str | PolymerFamily) -> dict[str, int]:
    """Composition of one repeat unit with its hydrogens (the ``[*]`` points excluded).

    Computed from the repeat unit alone, independently of :func:`build_oligomer`; an oligomer of
    ``n`` units has ``n`` times this plus two caps.

    Args:
        family: a family name or :class:`PolymerFamily`.

    Returns:
        Element symbol → count, e.g. ``{"C": 2, "H": 4}`` for polyethylene.
    """
    Chem, _, _ = _import_rdkit()
    unit, _, _ = _repeat_unit(get_family(family))
    with _quiet_rdkit():
        Chem.SanitizeMol(unit)
    counts: Counter[str] = Counter()
    for atom in unit.GetAtoms():
        if atom.GetAtomicNum() > 0:
            counts[atom.GetSymbol()] += 1
            counts["H"] += atom.GetTotalNumHs()
    return {k: v for k, v in counts.items() if v}


def build_oligomer(family: str | PolymerFamily, n_repeat: int, cap: str = "CH3", seed: int = 0) -> Atoms:
    """A capped oligomer ``cap-(repeat unit)_n-cap`` with one 3D conformer.

    Args:
        family: family name (see :data:`FAMILIES`) or a :class:`PolymerFamily` with a custom
            repeat unit.
        n_repeat: number of repeat units, >= 1.
        cap: ``"H"`` or ``"CH3"``: the group on each chain end.
        seed: seed of the ETKDG embedding (conformer and open stereocentres). Where ETKDG fails,
            it is retried from random starting coordinates (same seed).

    Returns:
        ``ase.Atoms`` (N atoms: heavy atoms in chain order, then hydrogens; positions in Å, no
        cell, no pbc) with ``info``: ``family``, ``n_repeat``, ``cap``, ``smiles`` (the oligomer's
        canonical SMILES), ``conformer_seed``.

    Raises:
        ValueError: unknown family or cap, a repeat-unit SMILES that does not parse or lacks two
            single-bonded attachment points, ``n_repeat < 1`` (too short to cap), a result that is
            not a neutral closed-shell molecule, or an embedding failure.
        ImportError: RDKit is not installed.
    """
    fam = get_family(family)
    cap = _check_cap(cap)
    n_repeat = _check_n_repeat(n_repeat, fam)
    Chem, AllChem, _ = _import_rdkit()
    from ase import Atoms

    mol = _assemble(fam, n_repeat, cap)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) & 0x7FFFFFFF
    with _quiet_rdkit():
        status = AllChem.EmbedMolecule(mol, params)
        if status != 0:
            params.useRandomCoords = True
            status = AllChem.EmbedMolecule(mol, params)
        if status != 0:
            raise ValueError(f"family '{fam.name}', n_repeat={n_repeat}: RDKit could not embed a 3D conformer")
        if AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMolecule(mol, maxIters=5000)
        else:  # pragma: no cover - every built-in family has MMFF94 parameters
            AllChem.UFFOptimizeMolecule(mol, maxIters=5000)
    positions = mol.GetConformer().GetPositions()
    atoms = Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=positions)
    atoms.info.update(family=fam.name, n_repeat=n_repeat, cap=cap,
                      smiles=Chem.MolToSmiles(Chem.RemoveHs(mol)), conformer_seed=int(seed))
    return atoms


# --------------------------------------------------------------------------------------------------
# GFN2-xTB Langevin MD with blow-up detection
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SamplingConfig(Config):
    """Settings of the sampling MD (:func:`run_trajectory`).

    Attributes:
        n_frames: frames stored per trajectory.
        stride: MD steps between stored frames.
        equilibration_steps: steps before the first stored frame.
        timestep_fs: time step in fs.
        friction_per_fs: Langevin friction in 1/fs.
        method: ``"GFN2-xTB"`` or ``"GFN1-xTB"``.
        accuracy: tblite's accuracy factor (1.0: its default).
        bond_factor: atoms i, j of the starting structure are bonded when
            ``d_ij < bond_factor · (r_i + r_j)`` (covalent radii).
        break_factor: a starting bond counts as broken at ``d_ij > break_factor · (r_i + r_j)``.
        form_factor: a pair not bonded at the start counts as a new bond at
            ``d_ij < form_factor · (r_i + r_j)``.
        min_distance: fail when two atoms get closer than this (Å).
        max_energy_rise_per_atom: fail when the potential energy exceeds the starting energy by
            more than this times the number of atoms (eV).
        max_force: fail when a force exceeds this (eV/Å).
    """

    n_frames: int = 30
    stride: int = 10
    equilibration_steps: int = 100
    timestep_fs: float = 0.5
    friction_per_fs: float = 0.02
    method: str = "GFN2-xTB"
    accuracy: float = 1.0
    bond_factor: float = 1.2
    break_factor: float = 1.5
    form_factor: float = 1.1
    min_distance: float = 0.5
    max_energy_rise_per_atom: float = 0.5
    max_force: float = 50.0

    def __post_init__(self) -> None:
        for name in ("n_frames", "stride", "equilibration_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"SamplingConfig.{name} must be an integer, got {value!r}")
        if self.n_frames < 1 or self.stride < 1 or self.equilibration_steps < 0:
            raise ValueError(f"SamplingConfig needs n_frames >= 1, stride >= 1, equilibration_steps >= 0; got "
                             f"{self.n_frames}, {self.stride}, {self.equilibration_steps}")
        for name in ("timestep_fs", "accuracy", "bond_factor", "break_factor", "form_factor", "min_distance",
                     "max_energy_rise_per_atom", "max_force"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"SamplingConfig.{name} must be a number > 0, got {value!r}")
        if not self.friction_per_fs >= 0:
            raise ValueError(f"SamplingConfig.friction_per_fs must be >= 0, got {self.friction_per_fs}")
        if not self.break_factor > self.bond_factor > self.form_factor:
            raise ValueError(f"SamplingConfig needs break_factor > bond_factor > form_factor, got "
                             f"{self.break_factor}, {self.bond_factor}, {self.form_factor}")
        from eqt.physics.reference import _xtb_method

        if _xtb_method(self.method) is None:
            raise ValueError(f"SamplingConfig.method must be GFN2-xTB or GFN1-xTB, got {self.method!r}")

    @property
    def total_steps(self) -> int:
        """MD steps of one trajectory (force calls: one more, for the start)."""
        return self.equilibration_steps + self.n_frames * self.stride


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why a trajectory was stopped.

    Attributes:
        step: MD step at which the check failed (0: the starting structure).
        check: ``"bond_broken"``, ``"bond_formed"``, ``"min_distance"``, ``"non_finite"``,
            ``"energy_rise"``, ``"max_force"``, ``"calculator"`` (the xTB calculation failed) or,
            in :func:`generate`, ``"build"`` (no 3D conformer could be embedded).
        message: one line for people.
        atoms: the atoms involved (may be empty).
    """

    step: int
    check: str
    message: str
    atoms: tuple[int, ...] = ()


@dataclasses.dataclass
class TrajectoryResult:
    """One sampling trajectory.

    Attributes:
        traj_id: identifier, also in each frame's ``info["traj_id"]``.
        temperature_K: thermostat temperature.
        seed: seed of the velocities and thermostat noise.
        n_atoms: atoms in the molecule.
        frames: the labelled frames (empty when the run failed).
        steps_done: MD steps completed.
        seconds: wall time of the run.
        mean_temperature_K: mean instantaneous temperature over the stored frames (NaN if none).
        failure: why the run stopped, or None for a complete run.
    """

    traj_id: str
    temperature_K: float
    seed: int
    n_atoms: int
    frames: list
    steps_done: int
    seconds: float
    mean_temperature_K: float
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        """True for a complete run."""
        return self.failure is None

    def record(self) -> dict[str, Any]:
        """JSON-ready summary (no frames)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("frames", "failure")}
        out.update(n_frames=len(self.frames), ok=self.ok,
                   failure=None if self.failure is None else dataclasses.asdict(self.failure))
        if out["failure"] is not None:
            out["failure"]["atoms"] = list(out["failure"]["atoms"])
        if not np.isfinite(out["mean_temperature_K"]):
            out["mean_temperature_K"] = None
        return out


class _BlowUp(Exception):
    """Raised inside the dynamics when a check fails; carries the :class:`Failure`."""

    def __init__(self, check: str, message: str, atoms: Sequence[int] = ()):
        super().__init__(message)
        self.check, self.message, self.atoms = check, message, tuple(int(i) for i in atoms)

    def failure(self, step: int) -> Failure:
        """The :class:`Failure` record of this blow-up at MD step ``step``."""
        return Failure(step=step, check=self.check, message=f"MD step {step}: {self.message}", atoms=self.atoms)


class BondGuard:
    """Blow-up checks of one molecule against its starting bond graph.

    :meth:`geometry` (a bond broken, a new bond formed, two atoms closer than ``min_distance``,
    non-finite positions) runs before each force call, :meth:`labels` (non-finite values, the
    potential energy risen past ``max_energy_rise_per_atom`` per atom above its first value,
    a force past ``max_force``) after it; both raise on failure. :meth:`failure` runs both and
    returns the :class:`Failure` instead. The thresholds are those of a :class:`SamplingConfig`,
    so the GFN2-xTB sampling and the ML-potential MD of the PolyGET study
    (:mod:`eqt.train.polyget_md`) count failures by the same rules.

    Args:
        atoms: the starting structure (defines the bonds: ``d_ij < bond_factor (r_i + r_j)``).
        config: the thresholds.
    """

    def __init__(self, atoms: Atoms, config: SamplingConfig):
        from ase.data import covalent_radii

        self.config = config
        self.symbols = atoms.get_chemical_symbols()
        radii = covalent_radii[atoms.numbers]
        self.rsum = radii[:, None] + radii[None, :]  # (N, N)
        d = self._distances(atoms.positions)
        n = len(atoms)
        self.bonded = (d < config.bond_factor * self.rsum) & ~np.eye(n, dtype=bool)  # (N, N)
        self.energy0: float | None = None

    @staticmethod
    def _distances(pos: np.ndarray) -> np.ndarray:
        diff = pos[:, None, :] - pos[None, :, :]  # (N, N, 3)
        return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))

    def _pair(self, i: int, j: int) -> str:
        return f"{self.symbols[i]}{i}-{self.symbols[j]}{j}"

    def geometry(self, pos: np.ndarray) -> None:
        if not np.isfinite(pos).all():
            bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
            raise _BlowUp("non_finite", f"non-finite position of atom(s) {', '.join(map(str, bad[:10]))}", bad)
        c = self.config
        d = self._distances(pos)
        np.fill_diagonal(d, np.inf)
        i, j = np.unravel_index(np.argmin(d), d.shape)
        if d[i, j] < c.min_distance:
            raise _BlowUp("min_distance", f"atoms {self._pair(i, j)} are {d[i, j]:.3f} Å apart, closer than "
                          f"min_distance={c.min_distance} Å", (i, j))
        ratio = d / self.rsum
        broken = np.where(self.bonded, ratio, -np.inf)
        i, j = np.unravel_index(np.argmax(broken), d.shape)
        if broken[i, j] > c.break_factor:
            raise _BlowUp("bond_broken", f"bond {self._pair(i, j)} broke: {d[i, j]:.3f} Å, more than "
                          f"{c.break_factor} x the covalent radii sum ({self.rsum[i, j]:.2f} Å)", (i, j))
        formed = np.where(self.bonded, np.inf, ratio)
        i, j = np.unravel_index(np.argmin(formed), d.shape)
        if formed[i, j] < c.form_factor:
            raise _BlowUp("bond_formed", f"new bond {self._pair(i, j)}: {d[i, j]:.3f} Å, less than "
                          f"{c.form_factor} x the covalent radii sum ({self.rsum[i, j]:.2f} Å)", (i, j))

    def failure(self, pos: np.ndarray, energy: float | None = None, forces: np.ndarray | None = None,
                step: int = 0) -> Failure | None:
        """The first failed check for ``pos`` (``(N, 3)``, Å) and, if given, the labels, or None."""
        try:
            self.geometry(pos)
            if energy is not None and forces is not None:
                self.labels(energy, forces)
        except _BlowUp as err:
            return err.failure(step)
        return None

    def labels(self, energy: float, forces: np.ndarray) -> None:
        c = self.config
        if not np.isfinite(energy) or not np.isfinite(forces).all():
            raise _BlowUp("non_finite", "the xTB energy or forces are not finite")
        if self.energy0 is None:
            self.energy0 = float(energy)
        rise = float(energy) - self.energy0
        if rise > c.max_energy_rise_per_atom * len(forces):
            raise _BlowUp("energy_rise", f"potential energy rose by {rise:.3g} eV since the start, more than "
                          f"{c.max_energy_rise_per_atom} eV/atom x {len(forces)} atoms")
        norms = np.linalg.norm(forces, axis=1)
        k = int(np.argmax(norms))
        if norms[k] > c.max_force:
            raise _BlowUp("max_force", f"force {norms[k]:.3g} eV/Å on atom {self.symbols[k]}{k} exceeds "
                          f"max_force={c.max_force} eV/Å", (k,))


def _guarded_calculator(inner, guard: BondGuard):
    """An ASE calculator that runs ``guard`` around every call of the xTB calculator ``inner``."""
    from ase.calculators.calculator import Calculator, CalculationFailed, InputError, all_changes

    class GuardedXTB(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            guard.geometry(self.atoms.positions)
            try:
                energy = inner.get_potential_energy(self.atoms)
                forces = np.array(inner.get_forces(self.atoms), dtype=np.float64)
            except (CalculationFailed, InputError, RuntimeError, ValueError, FloatingPointError) as err:
                raise _BlowUp("calculator", f"the xTB calculation failed: "
                              f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
            guard.labels(energy, forces)
            self.results = {"energy": float(energy), "forces": forces}

    return GuardedXTB()


def run_trajectory(atoms: Atoms, temperature_K: float, config: SamplingConfig = SamplingConfig(), *,
                   seed: int = 0, traj_id: str = "traj-0", num_threads: int | None = 1) -> TrajectoryResult:
    """One Langevin trajectory on the xTB surface, frames labelled on the fly, blow-ups recorded.

    Velocities start from a seeded Maxwell-Boltzmann distribution (zero total momentum and, for
    the start, zero angular momentum); the centre of mass is held fixed. After
    ``config.equilibration_steps`` steps, every ``config.stride``-th step is stored with the energy
    and forces computed there (no second calculation).

    Args:
        atoms: the starting molecule, N atoms, neutral and closed shell (left untouched). Its info
            (e.g. ``family``, ``n_repeat``, ``cap`` from :func:`build_oligomer`) is copied into
            each frame.
        temperature_K: thermostat (and initial velocity) temperature in K, > 0.
        config: MD settings and blow-up thresholds.
        seed: seed of the velocities and the thermostat noise.
        traj_id: written to each frame's ``info["traj_id"]``.
        num_threads: OpenMP threads for xTB (``None``: leave the process setting as is).

    Returns:
        A :class:`TrajectoryResult`: ``config.n_frames`` frames (``ase.Atoms`` with
        ``info["energy"]`` in eV, ``arrays["forces"]`` in eV/Å, ``info`` ``temperature``,
        ``traj_id``, ``step``, ``time_fs``, ``method``), or no frames and a :class:`Failure`.

    Raises:
        ValueError: invalid arguments (not a failed run).
        ImportError: tblite is not installed.
    """
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase import units
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    try:  # ASE >= 3.29
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # pragma: no cover - older ASE
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        def thermalize_momenta(atoms: Atoms, temperature_K: float, *, rng: np.random.Generator) -> None:
            MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)

    from eqt.physics.reference import _import_tblite_ase, _multiplicity, _openmp_threads, _store, xtb_calculator

    if not isinstance(config, SamplingConfig):
        raise ValueError(f"config must be a SamplingConfig, got {type(config).__name__}")
    if isinstance(temperature_K, bool) or not isinstance(temperature_K, (int, float, np.number)) \
            or not temperature_K > 0:
        raise ValueError(f"temperature must be a number > 0 K, got {temperature_K!r}")
    if len(atoms) < 2:
        raise ValueError(f"MD needs at least 2 atoms, got {len(atoms)}")
    if _multiplicity(atoms, 0) != 1:
        raise ValueError(f"the molecule has an odd number of electrons; polymer sampling expects a neutral "
                         f"closed-shell molecule ({atoms.get_chemical_formula()})")
    _import_tblite_ase()

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    system = atoms.copy()
    system.calc = None
    system.set_constraint(FixCom())
    guard = BondGuard(system, config)
    inner = xtb_calculator(config.method, charge=0, multiplicity=1, accuracy=config.accuracy)
    system.calc = _guarded_calculator(inner, guard)
    thermalize_momenta(system, temperature_K, rng=rng)
    Stationary(system)
    with np.errstate(divide="ignore", invalid="ignore"):
        ZeroRotation(system)
    dyn = Langevin(system, config.timestep_fs * units.fs, temperature_K=float(temperature_K),
                   friction=config.friction_per_fs / units.fs, fixcm=False, rng=rng)

    frames: list = []
    temps: list[float] = []
    step = 0
    failure = None
    with _openmp_threads(num_threads):
        try:
            system.get_forces()
            for step in range(1, config.total_steps + 1):
                dyn.step()
                dyn.nsteps += 1
                after = step - config.equilibration_steps
                if after > 0 and after % config.stride == 0:
                    res = system.calc.results
                    frame = system.copy()
                    del frame.constraints
                    frame.calc = None
                    frame.info.update(temperature=float(temperature_K), traj_id=traj_id, step=step,
                                      time_fs=step * config.timestep_fs, method=config.method)
                    frames.append(_store(frame, res["energy"], res["forces"]))
                    temps.append(float(system.get_temperature()))
        except _BlowUp as err:
            failure = err.failure(step)
            frames = []
    return TrajectoryResult(traj_id=traj_id, temperature_K=float(temperature_K), seed=int(seed),
                            n_atoms=len(atoms), frames=frames, steps_done=step if failure is None else max(step - 1, 0),
                            seconds=time.perf_counter() - start,
                            mean_temperature_K=float(np.mean(temps)) if temps else float("nan"), failure=failure)


def sample_conformations(atoms: Atoms, temperatures: Sequence[float] = (300.0, 600.0),
                         config: SamplingConfig = SamplingConfig(), *, seed: int = 0,
                         num_threads: int | None = 1) -> list[TrajectoryResult]:
    """One :func:`run_trajectory` per temperature, from the same starting structure.

    Args:
        atoms: the starting molecule (e.g. from :func:`build_oligomer`).
        temperatures: thermostat temperatures in K.
        config: MD settings.
        seed: the trajectory at ``temperatures[k]`` uses the seed ``seed + k``.
        num_threads: OpenMP threads for xTB.

    Returns:
        The results in the order of ``temperatures`` (failed runs included, with no frames).
    """
    base = str(atoms.info.get("family", "mol"))
    n = atoms.info.get("n_repeat")
    base = f"{base}-n{n}" if n is not None else base
    return [run_trajectory(atoms, float(t), config, seed=seed + k, traj_id=f"{base}-T{float(t):g}-{k}",
                           num_threads=num_threads) for k, t in enumerate(temperatures)]


# --------------------------------------------------------------------------------------------------
# Data set generation
# --------------------------------------------------------------------------------------------------
def _trajectory_seed(seed: int, family: str, n_repeat: int, temperature: float, index: int) -> int:
    """A seed that depends only on the run's own settings (adding families leaves others unchanged)."""
    key = zlib.crc32(f"{family}|{n_repeat}|{temperature:g}|{index}".encode())
    return int(np.random.SeedSequence([int(seed), key]).generate_state(1)[0] & 0x7FFFFFFF)


def _summary_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.stem + ".summary.json")


def generate(out_path: str | os.PathLike, families: Sequence[str | PolymerFamily] = DEFAULT_TRAIN_FAMILIES,
             lengths: Sequence[int] = DEFAULT_LENGTHS, temperatures: Sequence[float] = (300.0, 600.0), *,
             trajectories: int = 1, config: SamplingConfig = SamplingConfig(), cap: str = "CH3", seed: int = 0,
             num_threads: int | None = 1, progress: bool = True, force: bool = False) -> dict[str, Any]:
    """Build, sample and label polymer oligomers; write extended XYZ and a JSON summary.

    For every family × length × temperature × trajectory index, a fresh conformer is built
    (:func:`build_oligomer`) and one trajectory is run (:func:`run_trajectory`), both with a seed
    derived from ``seed`` and these settings alone. Frames of complete runs are appended to
    ``out_path`` as each run ends (under ``<out_path>.partial`` until the end, then renamed).

    Args:
        out_path: the ``.xyz``/``.extxyz`` file to write; the summary goes to
            ``<stem>.summary.json`` beside it.
        families: family names or :class:`PolymerFamily` objects.
        lengths: repeat units per chain (e.g. 3–6 for training, 8–12 for the size test).
        temperatures: thermostat temperatures in K.
        trajectories: independent trajectories per family, length and temperature.
        config: MD settings.
        cap: ``"H"`` or ``"CH3"``.
        seed: master seed.
        num_threads: OpenMP threads for xTB.
        progress: one line per trajectory on stderr.
        force: replace an existing output and summary (otherwise refused before any work; the old
            files are replaced only when the new ones are complete).

    Returns:
        The summary written to JSON: ``settings``, ``trajectories`` (one record each, failures
        included), ``frames_per_family``, ``failures`` (count), ``n_frames``, ``seconds``, paths.

    Raises:
        ValueError: an unknown family or cap, a bad SMILES or length, empty lists, or an output
            path that is not ``.xyz``/``.extxyz``, exists (without ``force``) or whose folder
            cannot be written (:class:`eqt.files.OutputError`). Failed MD
            runs do not raise: they are in the summary.
    """
    import ase.io

    out_path = Path(out_path)
    if out_path.suffix.lower() not in (".xyz", ".extxyz"):
        raise ValueError(f"output must be an .xyz or .extxyz file, got {out_path}")
    if isinstance(families, (str, PolymerFamily)):
        families = [families]
    fams = [get_family(f) for f in families]
    if not fams or not list(lengths) or not list(temperatures):
        raise ValueError("generate needs at least one family, one length and one temperature")
    if len({f.name for f in fams}) != len(fams):
        raise ValueError(f"families repeat: {', '.join(f.name for f in fams)}")
    cap = _check_cap(cap)
    lengths = [_check_n_repeat(n) for n in lengths]
    temperatures = [float(t) for t in temperatures]
    if any(not t > 0 for t in temperatures):
        raise ValueError(f"temperatures must be > 0 K, got {temperatures}")
    if isinstance(trajectories, bool) or not isinstance(trajectories, int) or trajectories < 1:
        raise ValueError(f"trajectories must be an integer >= 1, got {trajectories!r}")
    for fam in fams:  # every repeat unit is checked before any MD runs
        _assemble(fam, 1, cap)
    from eqt.files import check_output

    check_output(out_path, force, "output")
    check_output(_summary_path(out_path), force, "summary")
    out_path.parent.mkdir(parents=True, exist_ok=True)

    partial = out_path.with_name(out_path.name + ".partial")
    summary_path = _summary_path(out_path)
    records: list[dict[str, Any]] = []
    per_family: Counter[str] = Counter()
    start = time.perf_counter()
    settings = dict(families={f.name: f.smiles for f in fams}, lengths=lengths, temperatures=temperatures,
                    trajectories=trajectories, cap=cap, seed=int(seed), config=config.to_dict())
    total = len(fams) * len(lengths) * len(temperatures) * trajectories
    done = 0
    with open(partial, "w", encoding="utf-8") as fh:
        for fam in fams:
            for n in lengths:
                for temp in temperatures:
                    for k in range(trajectories):
                        traj_seed = _trajectory_seed(seed, fam.name, n, temp, k)
                        traj_id = f"{fam.name}-n{n}-T{temp:g}-{k}"
                        try:
                            atoms = build_oligomer(fam, n, cap=cap, seed=traj_seed)
                        except ValueError as err:  # e.g. no 3D embedding for this seed: a failed run
                            res = TrajectoryResult(traj_id, temp, traj_seed, 0, [], 0, 0.0, float("nan"),
                                                   Failure(0, "build", str(err).splitlines()[0]))
                        else:
                            res = run_trajectory(atoms, temp, config, seed=traj_seed, traj_id=traj_id,
                                                 num_threads=num_threads)
                        if res.frames:
                            ase.io.write(fh, res.frames, format="extxyz", write_results=False)
                            fh.flush()
                        per_family[fam.name] += len(res.frames)
                        rec = dict(family=fam.name, n_repeat=n, cap=cap, **res.record())
                        records.append(rec)
                        done += 1
                        if progress:
                            status = (f"{len(res.frames)} frames" if res.ok else f"FAILED ({res.failure.message})")
                            print(f"[{done}/{total}] {traj_id} ({res.n_atoms} atoms): {status}, "
                                  f"{res.seconds:.1f} s", file=sys.stderr, flush=True)
    os.replace(partial, out_path)
    summary = dict(
        output=str(out_path), summary=str(summary_path), settings=settings,
        n_frames=int(sum(per_family.values())), frames_per_family={f.name: per_family[f.name] for f in fams},
        failures=sum(1 for r in records if not r["ok"]), seconds=time.perf_counter() - start,
        trajectories=records,
    )
    tmp = summary_path.with_name(summary_path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, summary_path)
    return summary


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
def parse_lengths(tokens: Sequence[str] | str) -> list[int]:
    """Chain lengths from tokens such as ``"3-6"``, ``"8,10,12"`` or ``"4"`` (sorted, unique).

    Raises:
        ValueError: a token that is not an integer or a range ``a-b`` with ``a <= b``.
    """
    if isinstance(tokens, str):
        tokens = [tokens]
    out: set[int] = set()
    for token in tokens:
        for part in str(token).split(","):
            part = part.strip()
            m = re.fullmatch(r"(-?\d+)(?:-(\d+))?", part)
            if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
                raise ValueError(f"--lengths expects integers or ranges such as 3-6, got {part!r}")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            out.update(range(lo, hi + 1))
    return sorted(out)


def _custom_family(spec: str) -> PolymerFamily:
    name, sep, smiles = spec.partition("=")
    if not sep or not name.strip() or not smiles.strip():
        raise ValueError(f"--custom expects NAME=SMILES (e.g. PVF=[*]CC(F)[*]), got {spec!r}")
    return PolymerFamily(name.strip(), name.strip(), smiles.strip())


def family_table() -> str:
    """Markdown table of the built-in families (name, polymer, repeat unit, atoms per unit)."""
    lines = ["| family | polymer | repeat unit | atoms per unit | formula |", "|---|---|---|---|---|"]
    for fam in FAMILIES.values():
        formula = repeat_unit_formula(fam)
        order = sorted(formula, key=lambda s: (s != "C", s != "H", s))
        lines.append(f"| {fam.name} | {fam.full_name} | `{fam.smiles}` | {sum(formula.values())} | "
                     f"{''.join(s + (str(formula[s]) if formula[s] > 1 else '') for s in order)} |")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``eqt data polymers`` (also ``python -m eqt.data.polymers``)."""
    p.add_argument("output", nargs="?", help="extended XYZ file to write (summary: <stem>.summary.json)")
    p.add_argument("--families", nargs="+", default=list(DEFAULT_TRAIN_FAMILIES), metavar="NAME",
                   help=f"families to build ('all' for every one; default: {' '.join(DEFAULT_TRAIN_FAMILIES)})")
    p.add_argument("--custom", action="append", default=[], metavar="NAME=SMILES",
                   help="an extra family from a repeat-unit SMILES with two [*] (repeatable)")
    p.add_argument("--lengths", nargs="+", default=["3-6"], metavar="N",
                   help="repeat units per chain, e.g. 3-6 (training, default) or 8-12 (size test)")
    p.add_argument("--temperatures", nargs="+", type=float, default=[300.0, 600.0], metavar="K")
    p.add_argument("--trajectories", type=int, default=1, help="trajectories per family, length and temperature")
    p.add_argument("--frames", type=int, default=SamplingConfig.n_frames, help="frames per trajectory")
    p.add_argument("--stride", type=int, default=SamplingConfig.stride, help="MD steps between frames")
    p.add_argument("--equilibration", type=int, default=SamplingConfig.equilibration_steps, help="MD steps")
    p.add_argument("--timestep", type=float, default=SamplingConfig.timestep_fs, help="fs")
    p.add_argument("--friction", type=float, default=SamplingConfig.friction_per_fs, help="1/fs")
    p.add_argument("--method", default=SamplingConfig.method, help="GFN2-xTB or GFN1-xTB")
    p.add_argument("--cap", default="CH3", choices=list(CAPS), help="end group on both chain ends")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="OpenMP threads for xTB (1 is fastest for small chains)")
    p.add_argument("--list", action="store_true", help="print the family table and exit")
    p.add_argument("--force", action="store_true", help="replace an existing output and its summary")
    return p


def run_from_args(a: argparse.Namespace) -> dict[str, Any] | None:
    """Run :func:`generate` from parsed :func:`add_arguments` options; print a short report."""
    if a.list:
        print(family_table())
        return None
    if not a.output:
        raise ValueError("give the output file (e.g. polymers.xyz), or --list to see the families")
    families: list[str | PolymerFamily] = list(FAMILIES) if [f.lower() for f in a.families] == ["all"] \
        else list(a.families)
    families += [_custom_family(s) for s in a.custom]
    config = SamplingConfig(n_frames=a.frames, stride=a.stride, equilibration_steps=a.equilibration,
                            timestep_fs=a.timestep, friction_per_fs=a.friction, method=a.method)
    summary = generate(a.output, families, parse_lengths(a.lengths), a.temperatures, trajectories=a.trajectories,
                       config=config, cap=a.cap, seed=a.seed, num_threads=a.threads, force=a.force)
    print(f"{summary['n_frames']} frames, {summary['failures']} failed trajectories, "
          f"{summary['seconds']:.0f} s: {summary['output']}")
    print("frames per family: " + ", ".join(f"{k} {v}" for k, v in summary["frames_per_family"].items()))
    print(f"summary: {summary['summary']}")
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m eqt.data.polymers``: same options as ``eqt data polymers``."""
    parser = argparse.ArgumentParser(prog="python -m eqt.data.polymers", description=__doc__.splitlines()[0])
    args = add_arguments(parser).parse_args(argv)
    try:
        run_from_args(args)
    except (ValueError, ImportError) as err:
        print(f"eqt: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
