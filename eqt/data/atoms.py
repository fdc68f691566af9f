"""Batched atomic systems (molecules and periodic cells), collation and input validation.

A batch of ``B`` systems with ``N`` atoms in total is stored flat: atom-wise tensors have a
leading dimension ``N`` and ``batch`` (N,) maps each atom to its system ``0..B-1`` (sorted).
Cells follow the ASE convention (rows of ``cell[b]`` are the lattice vectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    import ase

__all__ = ["AtomicSystems", "collate", "validate_systems"]


@dataclass
class AtomicSystems:
    """A batch of molecules and/or periodic systems.

    Attributes:
        z: (N,) int64 atomic numbers.
        pos: (N, 3) float positions.
        batch: (N,) int64 system index of each atom, sorted, covering 0..B-1.
        num_systems: number of systems ``B``.
        cell: (B, 3, 3) cells (rows are lattice vectors) or None if no system is periodic.
        pbc: (B, 3) bool periodic flags or None if no system is periodic.
    """

    z: Tensor
    pos: Tensor
    batch: Tensor
    num_systems: int
    cell: Tensor | None = None
    pbc: Tensor | None = None

    @property
    def num_atoms(self) -> int:
        """Total number of atoms ``N``."""
        return int(self.pos.shape[0])

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> AtomicSystems:
        """Move to ``device`` and/or cast the floating-point tensors (pos, cell) to ``dtype``.

        Args:
            device: target device, or None to keep the current one.
            dtype: floating dtype for ``pos`` and ``cell``, or None to keep it. Integer and
                boolean tensors keep their dtype.

        Returns:
            A new :class:`AtomicSystems` (tensors are shared when nothing changes).

        Raises:
            ValueError: if ``dtype`` is not a floating-point dtype.
        """
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"AtomicSystems.to: dtype must be floating point, got {dtype}")
        return AtomicSystems(
            z=self.z.to(device=device),
            pos=self.pos.to(device=device, dtype=dtype),
            batch=self.batch.to(device=device),
            num_systems=self.num_systems,
            cell=None if self.cell is None else self.cell.to(device=device, dtype=dtype),
            pbc=None if self.pbc is None else self.pbc.to(device=device),
        )

    def validate(self, *, max_z: int | None = None, min_distance: float = 0.1) -> None:
        """Run :func:`validate_systems` on this batch.

        Args:
            max_z: exclusive upper bound on atomic numbers accepted by the model, or None.
            min_distance: minimal allowed interatomic distance (0 disables the check).

        Raises:
            ValueError: describing the first problem found.
        """
        validate_systems(
            self.z, self.pos, self.batch, self.cell, self.pbc,
            max_z=max_z, min_distance=min_distance,
        )
        if self.num_systems != int(self.batch[-1]) + 1:
            raise ValueError(
                f"num_systems={self.num_systems} but batch covers {int(self.batch[-1]) + 1} systems"
            )

    @classmethod
    def from_ase(
        cls, atoms_or_list: "ase.Atoms | Sequence[ase.Atoms]", dtype: torch.dtype = torch.float64
    ) -> AtomicSystems:
        """Build a batch from one ``ase.Atoms`` or a list of them.

        Args:
            atoms_or_list: a single ``ase.Atoms`` or a non-empty sequence of them.
            dtype: floating dtype of ``pos`` (N, 3) and ``cell`` (B, 3, 3).

        Returns:
            An :class:`AtomicSystems` on CPU. ``cell`` (B, 3, 3) and ``pbc`` (B, 3) are set only
            if some system has a periodic direction; otherwise both are None.

        Raises:
            ValueError: if the list is empty.
        """
        frames = [atoms_or_list] if hasattr(atoms_or_list, "get_positions") else list(atoms_or_list)
        if not frames:
            raise ValueError("from_ase: empty list of structures")
        import numpy as np

        numbers = np.concatenate([np.asarray(a.numbers, dtype=np.int64) for a in frames])
        positions = np.concatenate([np.asarray(a.positions, dtype=np.float64) for a in frames])
        sizes = torch.tensor([len(a) for a in frames], dtype=torch.long)
        z = torch.from_numpy(numbers)
        pos = torch.from_numpy(positions).to(dtype)
        batch = torch.repeat_interleave(torch.arange(len(frames)), sizes)
        cell = pbc = None
        if any(bool(np.any(a.pbc)) for a in frames):
            cells = np.stack([np.asarray(a.cell.array, dtype=np.float64) for a in frames])
            cell = torch.from_numpy(cells).to(dtype)
            pbc = torch.from_numpy(np.stack([np.asarray(a.pbc, dtype=bool) for a in frames]))
        return cls(z=z, pos=pos, batch=batch, num_systems=len(frames), cell=cell, pbc=pbc)


def collate(systems: list[AtomicSystems]) -> AtomicSystems:
    """Concatenate batches into one batch (systems keep their order).

    Systems without a cell get a zero cell and ``pbc = False`` when some other system is
    periodic.

    Args:
        systems: non-empty list of batches; all on the same device with the same ``pos`` dtype.

    Returns:
        An :class:`AtomicSystems` with ``N = sum N_k`` atoms and ``B = sum B_k`` systems:
        z (N,), pos (N, 3), batch (N,), cell (B, 3, 3) or None, pbc (B, 3) or None.

    Raises:
        ValueError: on an empty list or mismatched dtypes/devices.
    """
    if not systems:
        raise ValueError("collate: empty list of systems")
    first = systems[0]
    for k, s in enumerate(systems):
        if s.pos.dtype != first.pos.dtype:
            raise ValueError(
                f"collate: pos dtype {s.pos.dtype} of item {k} differs from {first.pos.dtype}"
            )
        if s.pos.device != first.pos.device:
            raise ValueError(
                f"collate: item {k} is on {s.pos.device}, item 0 on {first.pos.device}"
            )
    offsets = [0]
    for s in systems[:-1]:
        offsets.append(offsets[-1] + s.num_systems)
    z = torch.cat([s.z for s in systems])
    pos = torch.cat([s.pos for s in systems])
    batch = torch.cat([s.batch + off for s, off in zip(systems, offsets)])
    num_systems = offsets[-1] + systems[-1].num_systems
    cell = pbc = None
    if any(s.cell is not None for s in systems):
        cells, pbcs = [], []
        for s in systems:
            if s.cell is not None:
                cells.append(s.cell.to(pos.dtype))
                pbcs.append(
                    s.pbc.to(torch.bool)
                    if s.pbc is not None
                    else torch.ones(s.num_systems, 3, dtype=torch.bool, device=pos.device)
                )
            else:
                cells.append(pos.new_zeros(s.num_systems, 3, 3))
                pbcs.append(torch.zeros(s.num_systems, 3, dtype=torch.bool, device=pos.device))
        cell, pbc = torch.cat(cells), torch.cat(pbcs)
    return AtomicSystems(z=z, pos=pos, batch=batch, num_systems=num_systems, cell=cell, pbc=pbc)


def _first_true(mask: Tensor) -> int:
    """Index of the first True entry of a 1-D bool tensor (which must have one)."""
    return int(mask.nonzero()[0, 0])


def validate_systems(
    z: Tensor,
    pos: Tensor,
    batch: Tensor | None = None,
    cell: Tensor | None = None,
    pbc: Tensor | None = None,
    *,
    max_z: int | None = None,
    min_distance: float = 0.1,
) -> None:
    """Check model inputs and raise a one-line ``ValueError`` naming the first problem.

    Checks, in order: pos is a floating (N, 3) tensor; N > 0; z is a 1-D int64 tensor of length
    N; batch is a 1-D int64 tensor of length N, non-negative, sorted and covering ``0..B-1``
    without empty systems; positions are finite; atomic numbers are ``>= 1`` and ``< max_z``
    (when given); cell has pos's dtype, shape (B, 3, 3) and finite entries; pbc is a (B, 3) bool
    tensor (only with a cell); periodic cell vectors are not degenerate; no two atoms of the
    same system (including periodic images) are closer than ``min_distance``.

    Args:
        z: (N,) int64 atomic numbers.
        pos: (N, 3) float positions.
        batch: (N,) int64 sorted system index, or None for a single system.
        cell: (B, 3, 3) cells (rows are lattice vectors) or None.
        pbc: (B, 3) bool periodic flags or None (None with a cell means fully periodic).
        max_z: exclusive upper bound on atomic numbers (a model with an embedding table of
            size ``max_z`` accepts ``1..max_z-1``), or None.
        min_distance: minimal allowed distance between two atoms; ``<= 0`` disables the check.

    Raises:
        ValueError: with a one-line message naming the problem and the offending index.
    """
    # --- pos ------------------------------------------------------------------------------
    if not isinstance(pos, Tensor):
        raise ValueError(f"pos must be a torch.Tensor, got {type(pos).__name__}")
    if pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos must have shape (N, 3), got {tuple(pos.shape)}")
    if not pos.is_floating_point():
        raise ValueError(f"pos must be a floating-point tensor, got dtype {pos.dtype}")
    n = pos.shape[0]
    if n == 0:
        raise ValueError("empty input: no atoms")
    # --- z --------------------------------------------------------------------------------
    if not isinstance(z, Tensor):
        raise ValueError(f"z must be a torch.Tensor, got {type(z).__name__}")
    if z.dim() != 1 or z.dtype != torch.int64 or z.shape[0] != n:
        raise ValueError(
            f"z must be a 1-D int64 tensor of length {n} (number of atoms), "
            f"got shape {tuple(z.shape)} and dtype {z.dtype}"
        )
    if z.device != pos.device:
        raise ValueError(f"z is on {z.device} but pos is on {pos.device}")
    # --- batch ----------------------------------------------------------------------------
    if batch is None:
        num_systems = 1
    else:
        if not isinstance(batch, Tensor):
            raise ValueError(f"batch must be a torch.Tensor, got {type(batch).__name__}")
        if batch.dim() != 1 or batch.dtype != torch.int64 or batch.shape[0] != n:
            raise ValueError(
                f"batch must be a 1-D int64 tensor of length {n} (number of atoms), "
                f"got shape {tuple(batch.shape)} and dtype {batch.dtype}"
            )
        if batch.device != pos.device:
            raise ValueError(f"batch is on {batch.device} but pos is on {pos.device}")
        step = batch[1:] - batch[:-1]
        if bool((step < 0).any()):
            k = _first_true(step < 0) + 1
            raise ValueError(
                f"batch is not sorted: it decreases at atom {k} "
                f"(batch[{k - 1}]={int(batch[k - 1])}, batch[{k}]={int(batch[k])})"
            )
        first = int(batch[0])
        if first < 0:
            raise ValueError(f"batch has a negative system index {first} at atom 0")
        if first > 0:
            raise ValueError(f"system 0 has no atoms (batch starts at {first} at atom 0)")
        if bool((step > 1).any()):
            k = _first_true(step > 1) + 1
            raise ValueError(
                f"system {int(batch[k - 1]) + 1} has no atoms "
                f"(batch jumps from {int(batch[k - 1])} to {int(batch[k])} at atom {k})"
            )
        num_systems = int(batch[-1]) + 1
    # --- finiteness -----------------------------------------------------------------------
    finite = torch.isfinite(pos).all(dim=1)
    if not bool(finite.all()):
        k = _first_true(~finite)
        raise ValueError(f"non-finite position at atom {k}: {pos[k].tolist()}")
    # --- atomic numbers -------------------------------------------------------------------
    bad = z < 1
    if max_z is not None:
        bad = bad | (z >= max_z)
    if bool(bad.any()):
        k = _first_true(bad)
        if max_z is not None:
            raise ValueError(
                f"atomic number {int(z[k])} at atom {k} is outside the model's range 1..{max_z - 1}"
            )
        raise ValueError(f"atomic number {int(z[k])} at atom {k} is invalid (must be >= 1)")
    # --- cell / pbc -----------------------------------------------------------------------
    if cell is None:
        if pbc is not None and bool(torch.as_tensor(pbc).any()):
            raise ValueError("pbc marks periodic directions but no cell was given")
        pbc = None
    else:
        if not isinstance(cell, Tensor):
            raise ValueError(f"cell must be a torch.Tensor, got {type(cell).__name__}")
        if cell.dtype != pos.dtype:
            raise ValueError(f"dtype mismatch: pos is {pos.dtype} but cell is {cell.dtype}")
        if tuple(cell.shape) != (num_systems, 3, 3):
            raise ValueError(
                f"cell must have shape (B, 3, 3) = ({num_systems}, 3, 3), got {tuple(cell.shape)}"
            )
        if cell.device != pos.device:
            raise ValueError(f"cell is on {cell.device} but pos is on {pos.device}")
        cell_finite = torch.isfinite(cell).flatten(1).all(dim=1)
        if not bool(cell_finite.all()):
            raise ValueError(f"non-finite cell for system {_first_true(~cell_finite)}")
        if pbc is None:
            pbc = torch.ones(num_systems, 3, dtype=torch.bool, device=pos.device)
        else:
            if not isinstance(pbc, Tensor) or pbc.dtype != torch.bool:
                got = getattr(pbc, "dtype", type(pbc))
                raise ValueError(f"pbc must be a bool tensor, got {got}")
            if tuple(pbc.shape) != (num_systems, 3):
                raise ValueError(
                    f"pbc must have shape (B, 3) = ({num_systems}, 3), got {tuple(pbc.shape)}"
                )
            pbc = pbc.to(pos.device)
        # Gram determinant of the periodic rows (non-periodic rows replaced by unit vectors).
        c64 = cell.detach().to(torch.float64)
        gram = c64 @ c64.transpose(1, 2)
        keep = (pbc.unsqueeze(2) & pbc.unsqueeze(1)).to(torch.float64)
        eye = torch.eye(3, dtype=torch.float64, device=pos.device)
        gram = gram * keep + eye * (~pbc).to(torch.float64).unsqueeze(2)
        diag = torch.diagonal(gram, dim1=1, dim2=2)
        sq_norms = torch.where(pbc, diag, torch.ones_like(diag))
        degenerate = pbc.any(dim=1) & ~(torch.linalg.det(gram) > 1e-12 * sq_norms.prod(dim=1))
        if bool(degenerate.any()):
            b = _first_true(degenerate)
            raise ValueError(
                f"periodic cell of system {b} is degenerate "
                f"(lattice vectors linearly dependent or zero): "
                f"{cell[b].tolist()}"
            )
        if not bool(pbc.any()):
            cell, pbc = None, None
    # --- close contacts -------------------------------------------------------------------
    if min_distance > 0:
        from eqt.primitives.neighbors import edge_vectors, radius_graph

        edge_index, shifts = radius_graph(pos, min_distance, batch, cell, pbc)
        if edge_index.shape[1] > 0:
            j, i = int(edge_index[0, 0]), int(edge_index[1, 0])
            s = shifts[:1]
            first_edge = edge_index[:, :1]
            vec = edge_vectors(pos.detach(), first_edge, s if cell is not None else None, cell, batch)
            dist = float(vec.norm())
            system = int(batch[i]) if batch is not None else 0
            shift = [int(x) for x in s[0].tolist()]
            if i == j:
                raise ValueError(
                    f"atom {i} (system {system}) is {dist:.4g} from its own periodic image "
                    f"{shift}, "
                    f"closer than min_distance={min_distance} (cell too small?)"
                )
            where = "" if not any(shift) else f" (periodic image {shift} of atom {j})"
            raise ValueError(
                f"atoms {i} and {j} (system {system}) are {dist:.4g} apart{where}, "
                f"closer than min_distance={min_distance}"
            )
