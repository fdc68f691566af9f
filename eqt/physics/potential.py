"""Energy, forces and stress from any :class:`eqt.models.base.EnergyModel`, by autograd.

Forces are ``F = -dE/dpos``. Stress follows from a symmetric strain ``eps`` applied to positions
and cell (``pos -> pos (1 + eps)``, ``cell -> cell (1 + eps)``): ``sigma = (1/V) dE/d eps`` in eV/Å³,
ASE's sign convention (positive under tension). One wrapper serves every potential of eqt, the
ASE calculator and MD.

Inputs: numpy arrays and Python lists are accepted and converted (``z`` to int64, ``pos``/``cell``
to the model's floating dtype, on the model's device); tensors of another floating dtype are cast to
the model's dtype (float64 positions into a float32 model are rounded, as the model would compute
in float32 anyway). Tensors on another device than the model are refused with a one-line
``ValueError``: a silent copy would hide a host transfer in every call.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from eqt.primitives.segment import segment_sum

__all__ = ["Potential"]


class Potential(nn.Module):
    """Wrap an energy model into energy + forces (+ stress).

    Args:
        model: an :class:`~eqt.models.base.EnergyModel`.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z: Tensor, pos: Tensor, batch: Tensor | None = None, *, cell: Tensor | None = None,
                pbc: Tensor | None = None, num_systems: int | None = None, forces: bool = True,
                stress: bool = False, create_graph: bool | None = None, validate: bool = True) -> dict[str, Tensor]:
        """Evaluate the potential.

        Args:
            z: ``(N,)`` atomic numbers.
            pos: ``(N, 3)`` positions in Å.
            batch: ``(N,)`` sorted system index (default: one system).
            cell: ``(B, 3, 3)`` lattice vectors as rows (periodic systems).
            pbc: ``(B, 3)`` periodic directions.
            num_systems: ``B`` (default from ``batch``).
            forces: compute forces.
            stress: compute stress (needs ``cell``).
            create_graph: keep the graph of the derivatives for training on forces
                (default: ``self.training``).
            validate: check inputs (see :func:`eqt.data.atoms.validate_systems`).

        Returns:
            ``energy (B,)`` eV, ``atom_energy (N,)``, and if asked ``forces (N, 3)`` eV/Å,
            ``stress (B, 3, 3)`` eV/Å³.
        """
        z, pos, batch, cell, pbc = self._inputs(z, pos, batch, cell, pbc)
        if batch is None:
            batch = torch.zeros_like(z)
        if num_systems is None:
            num_systems = int(batch[-1]) + 1 if batch.numel() else 0
        if stress and cell is None:
            raise ValueError("stress needs a periodic cell (cell is None)")
        if create_graph is None:
            create_graph = self.training
        inputs = []
        with torch.enable_grad():
            if forces:
                if not pos.requires_grad:
                    pos = pos.detach().requires_grad_(True)
                inputs.append(pos)
            if stress:
                eps = torch.zeros(num_systems, 3, 3, dtype=pos.dtype, device=pos.device, requires_grad=True)
                inputs.append(eps)
                sym = 0.5 * (eps + eps.transpose(1, 2))
                pos_in = pos + torch.einsum("ni,nij->nj", pos, sym.index_select(0, batch))
                cell_in = cell + torch.bmm(cell, sym)
            else:
                pos_in, cell_in = pos, cell
            e_atom = self.model.atomic_energies(z, pos_in, batch, cell=cell_in, pbc=pbc, num_systems=num_systems,
                                                validate=validate)
            energy = segment_sum(e_atom, batch, num_systems) + self.model.energy_shift
            out = {"energy": energy, "atom_energy": e_atom}
            if inputs:
                grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph, allow_unused=True)
                grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]
                if forces:
                    out["forces"] = -grads[0]
                if stress:
                    volume = torch.linalg.det(cell).abs()
                    out["stress"] = grads[-1] / volume.view(-1, 1, 1)
        return out

    def _inputs(self, z, pos, batch, cell, pbc):
        """Convert array-likes to tensors and cast floats to the model's dtype (see the module doc).

        Raises:
            ValueError: a tensor on another device than the model.
        """
        ref = next(iter(self.model.buffers()), None)
        if ref is None:  # pragma: no cover - every EnergyModel has buffers
            return z, pos, batch, cell, pbc
        dtype, device = ref.dtype, ref.device

        def convert(name, x, kind):
            if x is None:
                return None
            if not isinstance(x, torch.Tensor):
                try:
                    x = torch.as_tensor(x, device=device)
                except (TypeError, ValueError, RuntimeError) as err:
                    raise ValueError(f"Potential: {name} must be a tensor or an array, got {type(x).__name__} "
                                     f"({str(err).splitlines()[0]})") from None
            elif x.device != device:
                raise ValueError(f"Potential: {name} is on {x.device} but the model is on {device}; move the "
                                 f"inputs (or the model) with .to(device)")
            if kind == "float" and x.is_floating_point() and x.dtype != dtype:
                x = x.to(dtype)
            elif kind == "float" and not x.is_floating_point() and not x.dtype == torch.bool:
                x = x.to(dtype)
            elif kind == "int" and not x.is_floating_point() and x.dtype not in (torch.int64, torch.bool):
                x = x.long()
            return x

        return (convert("z", z, "int"), convert("pos", pos, "float"), convert("batch", batch, "int"),
                convert("cell", cell, "float"), convert("pbc", pbc, None))
