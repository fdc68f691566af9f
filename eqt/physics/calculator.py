"""An ASE calculator for any eqt energy model (or an eqt checkpoint file).

Usage::

    from eqt.ase import Calculator

    atoms.calc = Calculator("model.pt")          # or Calculator(model)
    atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()

Units are ASE's: energy eV, forces eV/Å, stress eV/Å³ as a Voigt 6-vector
``(xx, yy, zz, yz, xz, xy)`` with ASE's sign convention (positive under tension). Everything is
computed by :class:`eqt.physics.potential.Potential` (autograd forces and stress), with input
validation on: a bad structure raises a one-line ``ValueError``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator as _AseCalculator
from ase.calculators.calculator import PropertyNotImplementedError, all_changes
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress

from eqt.checkpoint import load_checkpoint, load_energy_model
from eqt.models.base import EnergyModel
from eqt.physics.potential import Potential

__all__ = ["Calculator", "check_device"]


def check_device(device: str | torch.device) -> torch.device:
    """The torch device named by ``device``, refused with one line when this machine lacks it.

    Checked before any model is loaded, so ``--device cuda`` on a machine without CUDA (or a typo
    such as ``gpu0``) is a message, not an assertion deep inside ``torch``.

    Raises:
        ValueError: not a device name torch knows; CUDA asked for but unavailable (CPU-only
            build, no driver or no GPU); a CUDA index beyond the visible GPUs; MPS unavailable.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {str(device)!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}, " \
                                                                          f"but no GPU or driver is usable"
            raise ValueError(f"device {str(device)!r}: CUDA is not available on this machine "
                             f"(torch {torch.__version__}, {build}); use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {str(device)!r}: this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {str(device)!r}: MPS is not available on this machine (torch {torch.__version__})")
    return dev


def _symbol(z: int) -> str:
    """Chemical symbol of atomic number ``z`` (``Z<z>`` when ASE does not know it)."""
    return chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z{z}"


class Calculator(_AseCalculator):
    """ASE calculator backed by an eqt :class:`~eqt.models.base.EnergyModel`.

    Args:
        model_or_path: an :class:`~eqt.models.base.EnergyModel`, or the path of a checkpoint
            written by :func:`eqt.checkpoint.save_checkpoint` (a checkpoint of another kind of
            model, e.g. GATr, raises :class:`~eqt.checkpoint.CheckpointError`). A model passed in is moved to
            ``device``/``dtype`` and set to eval mode in place (``nn.Module.to`` semantics).
        device: torch device the model runs on (checked by :func:`check_device`: ``ValueError``
            when this machine lacks it).
        dtype: floating dtype of the computation (``torch.float64`` or ``torch.float32``);
            results are returned as float64 numpy arrays either way.
        graphed: compute through :class:`eqt.physics.graphed.GraphedPotential` (non-periodic atoms
            only): on a CUDA device the whole energy + force call is one replayed CUDA graph (the
            fast path for MD on a GPU); on the CPU the same fixed-shape computation runs eagerly.
            Rebuilt when the atoms change or the edge capacity is exceeded. Skips the per-call
            model validation (positions are still checked for NaN/inf) and provides no per-atom
            ``energies``.
        **ase_kwargs: passed on to :class:`ase.calculators.calculator.Calculator`
            (``label``, ``directory``, ...).

    Attributes:
        model: the energy model.
        potential: the :class:`~eqt.physics.potential.Potential` wrapping it (eval mode).
        elements: sorted atomic numbers the model was trained on (from the checkpoint's
            ``extra["elements"]``), or ``None`` when unknown (a bare model): then only the
            model's ``max_z`` range is checked.

    Results: ``energy`` and ``free_energy`` (eV), ``energies`` ``(N,)`` per-atom energies (eV;
    the model's per-system ``energy_shift`` is spread evenly so that they sum to ``energy``),
    ``forces`` ``(N, 3)`` eV/Å, and ``stress`` ``(6,)`` eV/Å³ only for atoms periodic in all
    three directions (asking for it otherwise raises ``PropertyNotImplementedError``). Energy
    and forces are always computed together; stress too, whenever the atoms are fully periodic.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model_or_path: EnergyModel | str | os.PathLike, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float64, graphed: bool = False, **ase_kwargs: Any):
        super().__init__(**ase_kwargs)
        self.graphed = bool(graphed)
        self._graph: Any = None
        self._graph_numbers: np.ndarray | None = None
        if dtype not in (torch.float64, torch.float32):
            raise ValueError(f"Calculator: dtype must be torch.float64 or torch.float32, got {dtype}")
        self.device, self.dtype = check_device(device), dtype
        self.elements: list[int] | None = None
        if isinstance(model_or_path, (str, os.PathLike)):
            payload = load_checkpoint(model_or_path)
            extra = payload.get("extra") or {}
            model = load_energy_model(model_or_path, user="the ASE calculator (eqt md)",
                                      payload=payload)
            if "elements" in extra:
                try:
                    self.elements = sorted({int(z) for z in extra["elements"]})
                except (TypeError, ValueError):
                    raise ValueError(f"Calculator: checkpoint {model_or_path} has an invalid extra['elements']: "
                                     f"{extra['elements']!r} (expected a list of atomic numbers)") from None
        elif isinstance(model_or_path, EnergyModel):
            model = model_or_path
        else:
            raise TypeError(f"Calculator: expected an eqt EnergyModel or a checkpoint path, "
                            f"got {type(model_or_path).__name__}")
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.potential = Potential(self.model).eval()

    def check_elements(self, numbers: Sequence[int] | np.ndarray) -> None:
        """Refuse atomic numbers outside the training elements (when those are known).

        Args:
            numbers: ``(N,)`` atomic numbers.

        Raises:
            ValueError: naming each unseen element and the first atom index that has it.
        """
        if self.elements is None:
            return
        numbers = np.asarray(numbers)
        unseen = [int(z) for z in np.unique(numbers) if int(z) not in self.elements]
        if unseen:
            where = ", ".join(f"{_symbol(z)} (atom {int(np.flatnonzero(numbers == z)[0])})" for z in unseen)
            known = ", ".join(_symbol(z) for z in self.elements)
            raise ValueError(f"Calculator: element(s) not seen in training: {where}; the model knows {known}")

    def calculate(self, atoms: Atoms | None = None, properties: Sequence[str] = ("energy",),
                  system_changes: Sequence[str] = all_changes) -> None:
        """Compute energy, per-atom energies, forces (and stress for fully periodic atoms).

        Args:
            atoms: the structure (``N`` atoms).
            properties: the properties asked for.
            system_changes: what changed since the last call (see ASE).

        Raises:
            ValueError: invalid structure (non-finite positions, overlapping atoms, unknown or
                unseen elements, degenerate cell).
            PropertyNotImplementedError: stress asked for atoms not periodic in all directions.
        """
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if "stress" in properties and not pbc.all():
            raise PropertyNotImplementedError(f"Calculator: stress needs atoms periodic in all 3 directions, "
                                              f"got pbc={pbc.tolist()}")
        self.check_elements(atoms.numbers)
        if self.graphed:
            self._calculate_graphed(atoms, properties, pbc)
            return
        z = torch.as_tensor(np.asarray(atoms.numbers, dtype=np.int64), device=self.device)
        pos = torch.as_tensor(np.asarray(atoms.positions, dtype=np.float64), device=self.device).to(self.dtype)
        cell_t = pbc_t = None
        if pbc.any():
            cell_t = torch.as_tensor(np.asarray(atoms.cell.array, dtype=np.float64),
                                     device=self.device).to(self.dtype).unsqueeze(0)
            pbc_t = torch.as_tensor(pbc, device=self.device).unsqueeze(0)
        want_stress = bool(pbc.all())
        out = self.potential(z, pos, cell=cell_t, pbc=pbc_t, num_systems=1, forces=True, stress=want_stress,
                             create_graph=False, validate=True)
        energy = float(out["energy"].detach()[0])
        e_atom = out["atom_energy"].detach().to(torch.float64).cpu().numpy()
        e_atom = e_atom + float(self.model.energy_shift) / len(atoms)
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": e_atom,
            "forces": out["forces"].detach().to(torch.float64).cpu().numpy(),
        }
        if want_stress:
            sigma = out["stress"].detach()[0].to(torch.float64).cpu().numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(sigma)

    def _calculate_graphed(self, atoms: Atoms, properties: Sequence[str], pbc: np.ndarray) -> None:
        from eqt.physics.graphed import GraphedPotential

        if pbc.any():
            raise ValueError("Calculator(graphed=True): only non-periodic atoms are supported; use graphed=False")
        if "energies" in properties:
            raise PropertyNotImplementedError("Calculator(graphed=True) gives no per-atom energies")
        positions = np.asarray(atoms.positions, dtype=np.float64)
        if not np.isfinite(positions).all():
            bad = int(np.flatnonzero(~np.isfinite(positions).all(axis=1))[0])
            raise ValueError(f"Calculator: non-finite position at atom {bad}")
        pos = torch.as_tensor(positions, device=self.device).to(self.dtype)
        numbers = np.asarray(atoms.numbers, dtype=np.int64)
        if self._graph is None or self._graph_numbers is None or not np.array_equal(numbers, self._graph_numbers):
            z = torch.as_tensor(numbers, device=self.device)
            self._graph, self._graph_numbers = GraphedPotential(self.model, z, pos=pos), numbers.copy()
        out = self._graph(pos)
        try:
            self._graph.check()
        except RuntimeError:  # more edges than slots: rebuild with room for the current graph
            z = torch.as_tensor(numbers, device=self.device)
            self._graph = GraphedPotential(self.model, z, pos=pos)
            out = self._graph(pos)
        energy = float(out["energy"][0])
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": out["forces"].detach().to(torch.float64).cpu().numpy()}
