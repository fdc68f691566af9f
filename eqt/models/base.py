"""The energy-model base shared by every potential in eqt (ET, Equiformer, PolyGET-trained ET).

An :class:`EnergyModel` maps atomic numbers and positions to per-atom energies. It builds the
radius graph itself (indices without gradient, edge vectors with gradient), so that forces and
stress follow by autograd in :class:`eqt.physics.Potential`. Subclasses implement only
:meth:`EnergyModel.atom_outputs`, the network from ``(z, edges)`` to one raw scalar per atom.

Energy of system ``b``::

    E_b = energy_shift + sum_{i in b} (energy_scale * out_i + atomref[z_i])

``atomref`` (per-element reference energies) and ``energy_scale`` keep the energy additive over
atoms, so far-apart fragments add up. ``energy_shift`` is a per-system constant, zero unless a
model is imported from a code that standardises per molecule (TorchMD-NET's ``mean``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from eqt.data.atoms import validate_systems
from eqt.primitives.neighbors import edge_vectors, radius_graph
from eqt.primitives.segment import segment_sum

__all__ = ["EnergyModel"]


class EnergyModel(nn.Module):
    """Base class of potentials: per-atom energies from a radius graph.

    Args:
        cutoff: graph cutoff radius in Å.
        max_z: atomic numbers ``1 .. max_z - 1`` are accepted.
    """

    def __init__(self, cutoff: float, max_z: int):
        super().__init__()
        self.cutoff, self.max_z = float(cutoff), int(max_z)
        self.register_buffer("atomref", torch.zeros(max_z))
        self.register_buffer("energy_scale", torch.tensor(1.0))
        self.register_buffer("energy_shift", torch.tensor(0.0))

    def atom_outputs(self, z: Tensor, edge_index: Tensor, edge_vec: Tensor, batch: Tensor, num_systems: int) -> Tensor:
        """The network: one raw scalar per atom.

        Args:
            z: ``(N,)`` atomic numbers.
            edge_index: ``(2, E)`` edges ``j -> i`` within the cutoff, no self-loops.
            edge_vec: ``(E, 3)`` ``r_j - r_i`` (differentiable).
            batch: ``(N,)`` system of each atom.
            num_systems: ``B``.

        Returns:
            ``(N,)`` raw outputs (before scale and reference energies).
        """
        raise NotImplementedError

    def graph(self, pos: Tensor, batch: Tensor, cell: Tensor | None = None, pbc: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Radius graph at this model's cutoff.

        Args:
            pos: ``(N, 3)``; batch ``(N,)``; cell ``(B, 3, 3)``; pbc ``(B, 3)``.

        Returns:
            ``edge_index (2, E)``, integer cell ``shifts (E, 3)``.
        """
        return radius_graph(pos.detach(), self.cutoff, batch, cell.detach() if cell is not None else None, pbc)

    def atomic_energies(self, z: Tensor, pos: Tensor, batch: Tensor | None = None, *, cell: Tensor | None = None,
                        pbc: Tensor | None = None, num_systems: int | None = None, edge_index: Tensor | None = None,
                        shifts: Tensor | None = None, validate: bool = True) -> Tensor:
        """Per-atom energies ``energy_scale * out_i + atomref[z_i]``.

        Args:
            z: ``(N,)`` int64 atomic numbers.
            pos: ``(N, 3)`` positions in Å.
            batch: ``(N,)`` sorted system index (default: one system).
            cell: ``(B, 3, 3)`` lattice vectors as rows, for periodic systems.
            pbc: ``(B, 3)`` periodic directions (default: all, when a cell is given).
            num_systems: ``B`` (default: ``batch[-1] + 1``, a host sync).
            edge_index, shifts: a precomputed graph (skips the neighbour search).
            validate: check the input and raise ``ValueError`` on bad values (costs host syncs).

        Returns:
            ``(N,)`` energies in eV.
        """
        if batch is None:
            batch = torch.zeros_like(z)
        if validate:
            validate_systems(z, pos, batch, cell, pbc, max_z=self.max_z)
        if num_systems is None:
            num_systems = int(batch[-1]) + 1 if batch.numel() else 0
        if edge_index is None:
            edge_index, shifts = self.graph(pos, batch, cell, pbc)
        vec = edge_vectors(pos, edge_index, shifts if cell is not None else None, cell, batch)
        out = self.atom_outputs(z, edge_index, vec, batch, num_systems)
        return out * self.energy_scale + self.atomref.index_select(0, z)

    def forward(self, z: Tensor, pos: Tensor, batch: Tensor | None = None, *, cell: Tensor | None = None,
                pbc: Tensor | None = None, num_systems: int | None = None, edge_index: Tensor | None = None,
                shifts: Tensor | None = None, validate: bool = True) -> Tensor:
        """Energy per system (arguments as in :meth:`atomic_energies`).

        Returns:
            ``(B,)`` energies in eV.
        """
        if batch is None:
            batch = torch.zeros_like(z)
        if num_systems is None:
            num_systems = int(batch[-1]) + 1 if batch.numel() else 0
        e_atom = self.atomic_energies(z, pos, batch, cell=cell, pbc=pbc, num_systems=num_systems,
                                      edge_index=edge_index, shifts=shifts, validate=validate)
        return segment_sum(e_atom, batch, num_systems) + self.energy_shift
