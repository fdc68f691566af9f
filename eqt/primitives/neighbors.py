"""Radius graphs (neighbour lists) for batches of molecules and periodic systems.

Edge convention
---------------
An edge ``e`` goes from a *source* (neighbour) atom ``j`` to a *target* (centre) atom ``i``::

    edge_index[0, e] = j      # source / neighbour
    edge_index[1, e] = i      # target / centre, the index messages are aggregated on
    r_ij = pos[j] - pos[i] + shifts[e] @ cell[batch[i]]

``shifts`` holds *integer* cell offsets ``S_e`` (stored in ``pos.dtype``; all zeros for
non-periodic systems). Cells follow the ASE convention: the rows of ``cell[b]`` are the lattice
vectors ``a, b, c``. This is the same convention as ``ase.neighborlist.neighbor_list("ijS")``
and ``vesin`` (their ``i`` is our target, their ``j`` our source).

:func:`radius_graph` returns every ordered pair with ``|r_ij| < cutoff``, in both directions,
never crossing systems, excluding only the trivial self pair ``(i -> i, S = 0)`` (unless
``self_loops=True``, which adds exactly one such edge per atom). Periodic images of an atom
itself (``i -> i`` with ``S != 0``) are included when they lie within the cutoff. Two distinct
atoms at identical positions give a zero-length edge (as in ASE and vesin); use
:func:`eqt.data.atoms.validate_systems` to reject such inputs. Edges are sorted by target ``i``,
then source ``j``, then shift (lexicographically), so the output is deterministic and identical
across backends.

The graph is computed without autograd (it only produces indices); use :func:`edge_vectors` to
get differentiable edge vectors (gradients flow to ``pos`` and ``cell``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = ["radius_graph", "edge_vectors", "candidate_pairs", "fixed_radius_graph"]

Backend = Literal["auto", "torch", "vesin"]

# Maximum number of pair distances materialised at once by the dense torch kernels.
_CHUNK_ELEMENTS = 1 << 22
# Padded (B, n_max, n_max) batched kernel for non-periodic systems is used up to this size.
_PADDED_MAX_ELEMENTS = 1 << 24
# "auto" uses vesin for systems with more atoms than this.
_AUTO_VESIN_MIN_ATOMS = 200


def _vesin_available() -> bool:
    try:
        import vesin  # noqa: F401
    except ImportError:
        return False
    return True


def _work_dtype(device: torch.device) -> torch.dtype:
    """Float dtype used for the distance computations (float64 where supported)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _normalise_inputs(
    pos: Tensor,
    cutoff: float,
    batch: Tensor | None,
    cell: Tensor | None,
    pbc: Tensor | None,
) -> tuple[Tensor, Tensor, int, Tensor | None, Tensor | None]:
    """Check shapes and bring batch/cell/pbc to canonical (N,), (B,3,3), (B,3) form."""
    if pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos must have shape (N, 3), got {tuple(pos.shape)}")
    if not pos.is_floating_point():
        raise ValueError(f"pos must be a floating-point tensor, got {pos.dtype}")
    if not math.isfinite(float(cutoff)) or float(cutoff) <= 0.0:
        raise ValueError(f"cutoff must be a positive finite number, got {cutoff}")
    n = pos.shape[0]
    device = pos.device
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=device)
        num_systems = 1
    else:
        if batch.dim() != 1 or batch.shape[0] != n:
            raise ValueError(f"batch must have shape ({n},), got {tuple(batch.shape)}")
        batch = batch.to(device=device, dtype=torch.long)
        if n > 0 and bool((batch[1:] < batch[:-1]).any()):
            raise ValueError("batch must be sorted in non-decreasing order")
        if n > 0 and int(batch[0]) < 0:
            raise ValueError("batch indices must be non-negative")
        num_systems = int(batch[-1]) + 1 if n > 0 else 0
    if cell is not None:
        if cell.dim() == 2:
            cell = cell.unsqueeze(0)
        if cell.dim() != 3 or cell.shape[1:] != (3, 3):
            raise ValueError(f"cell must have shape (B, 3, 3), got {tuple(cell.shape)}")
        if num_systems > 0 and cell.shape[0] == 1 and num_systems > 1:
            cell = cell.expand(num_systems, 3, 3)
        if cell.shape[0] < num_systems:
            raise ValueError(
                f"cell has {cell.shape[0]} entries but batch refers to {num_systems} systems"
            )
        if pbc is None:
            pbc = torch.ones(cell.shape[0], 3, dtype=torch.bool, device=device)
        else:
            pbc = pbc.to(device=device, dtype=torch.bool)
            if pbc.dim() == 1:
                pbc = pbc.unsqueeze(0)
            if pbc.dim() != 2 or pbc.shape[1] != 3:
                raise ValueError(f"pbc must have shape (B, 3), got {tuple(pbc.shape)}")
            if pbc.shape[0] == 1 and cell.shape[0] > 1:
                pbc = pbc.expand(cell.shape[0], 3)
            if pbc.shape[0] != cell.shape[0]:
                raise ValueError(
                    f"pbc has {pbc.shape[0]} entries but cell has {cell.shape[0]}"
                )
    elif pbc is not None and bool(torch.as_tensor(pbc).any()):
        raise ValueError("pbc is set to periodic but no cell was given")
    else:
        pbc = None
    return pos, batch, num_systems, cell, pbc


def _augmented_cell(cell: Tensor, pbc: Tensor) -> Tensor:
    """Replace the rows of non-periodic directions by an orthonormal complement.

    Args:
        cell: (3, 3) cell in the working dtype, rows are lattice vectors.
        pbc: (3,) bool periodic flags (at least one True).

    Returns:
        (3, 3) invertible cell whose periodic rows equal those of ``cell``.

    Raises:
        ValueError: if the periodic lattice vectors are linearly dependent.
    """
    periodic = pbc.nonzero().flatten().tolist()
    rows = cell[periodic]
    # Gram determinant measures the k-volume spanned by the periodic vectors.
    gram_det = torch.linalg.det(rows @ rows.T)
    scale = float((rows * rows).sum(-1).prod())
    if not float(gram_det) > 1e-12 * scale or scale == 0.0:
        raise ValueError(
            f"periodic cell vectors are degenerate (linearly dependent): {cell.tolist()}"
        )
    if len(periodic) == 3:
        return cell
    _, _, vh = torch.linalg.svd(rows, full_matrices=True)
    complement = vh[len(periodic):]
    out = cell.clone()
    missing = [k for k in range(3) if k not in periodic]
    out[missing] = complement
    return out


def _image_shifts(cell_aug: Tensor, pbc: Tensor, cutoff: float) -> Tensor:
    """Integer image offsets covering the cutoff for positions wrapped into the cell.

    Args:
        cell_aug: (3, 3) invertible cell.
        pbc: (3,) bool periodic flags.
        cutoff: cutoff radius.

    Returns:
        (M, 3) int64 offsets in lexicographic order.
    """
    inv = torch.linalg.inv(cell_aug)
    # |column k of inv| = 1 / (height of the cell along direction k)
    inv_heights = inv.norm(dim=0)
    counts = []
    for k in range(3):
        if bool(pbc[k]):
            counts.append(int(math.ceil(cutoff * float(inv_heights[k]) * (1.0 + 1e-8))))
        else:
            counts.append(0)
    ranges = [torch.arange(-c, c + 1, device=cell_aug.device) for c in counts]
    grid = torch.cartesian_prod(*ranges)
    return grid.reshape(-1, 3).to(torch.long)


def _dense_pairs(
    pos: Tensor, shift_vecs: Tensor, cutoff: float, zero_shift: int, self_loops: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """All (i, j, m) with |pos[j] - pos[i] + shift_vecs[m]| < cutoff, chunked.

    Args:
        pos: (n, 3) positions (working dtype).
        shift_vecs: (M, 3) Cartesian image shifts.
        cutoff: cutoff radius.
        zero_shift: index m of the zero shift (used to drop the trivial self pair).
        self_loops: keep the trivial self pair instead of dropping it.

    Returns:
        Tuple of three (E,) int64 tensors ``(i, j, m)`` sorted by (i, j, m).
    """
    n = pos.shape[0]
    m_total = shift_vecs.shape[0]
    cutoff_sq = cutoff * cutoff
    per_row = max(1, n * m_total)
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // per_row)
    out_i, out_j, out_m = [], [], []
    idx = torch.arange(n, device=pos.device)
    for start in range(0, n, rows_per_chunk):
        stop = min(n, start + rows_per_chunk)
        centre = pos[start:stop]  # (r, 3)
        # (r, n, 3) differences pos[j] - pos[i]
        diff = pos.unsqueeze(0) - centre.unsqueeze(1)
        # (r, n, M) squared distances, accumulated per coordinate to limit memory
        d2 = torch.zeros(stop - start, n, m_total, dtype=pos.dtype, device=pos.device)
        for k in range(3):
            d2 += (diff[..., k : k + 1] + shift_vecs[:, k]) ** 2
        mask = d2 < cutoff_sq
        local = idx[start:stop]
        mask[local - start, local, zero_shift] = self_loops
        i, j, m = mask.nonzero(as_tuple=True)  # row-major: sorted by (i, j, m)
        out_i.append(i + start)
        out_j.append(j)
        out_m.append(m)
    if not out_i:
        empty = torch.zeros(0, dtype=torch.long, device=pos.device)
        return empty, empty, empty
    return torch.cat(out_i), torch.cat(out_j), torch.cat(out_m)


def _torch_nonperiodic_padded(
    pos: Tensor, batch: Tensor, counts: Tensor, offsets: Tensor, cutoff: float, self_loops: bool
) -> tuple[Tensor, Tensor]:
    """Batched non-periodic radius graph on a padded (B, n_max, n_max) grid.

    Args:
        pos: (N, 3) positions of the selected systems (working dtype).
        batch: (N,) local system index 0..B-1, sorted.
        counts: (B,) atoms per system (all > 0).
        offsets: (B,) index of the first atom of each system in ``pos``.
        cutoff: cutoff radius.
        self_loops: include (i -> i) edges.

    Returns:
        Tuple ``(i, j)`` of (E,) int64 target and source indices into ``pos``, sorted.
    """
    num = counts.shape[0]
    n_max = int(counts.max())
    local = torch.arange(pos.shape[0], device=pos.device) - offsets[batch]
    padded = pos.new_zeros(num, n_max, 3)
    padded[batch, local] = pos
    valid = torch.zeros(num, n_max, dtype=torch.bool, device=pos.device)
    valid[batch, local] = True
    d2 = torch.zeros(num, n_max, n_max, dtype=pos.dtype, device=pos.device)
    for k in range(3):
        c = padded[..., k]
        d2 += (c.unsqueeze(1) - c.unsqueeze(2)) ** 2  # [b, i, j] = (x_j - x_i)^2
    mask = (d2 < cutoff * cutoff) & valid.unsqueeze(1) & valid.unsqueeze(2)
    eye = torch.eye(n_max, dtype=torch.bool, device=pos.device).unsqueeze(0)
    if self_loops:
        mask |= eye & valid.unsqueeze(2)
    else:
        mask &= ~eye
    b, i, j = mask.nonzero(as_tuple=True)  # sorted by (b, i, j)
    return i + offsets[b], j + offsets[b]


def _torch_system(
    pos: Tensor, cell: Tensor | None, pbc: Tensor | None, cutoff: float, self_loops: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Radius graph of one system with the pure-torch O(n^2 M) kernel.

    Args:
        pos: (n, 3) positions (working dtype).
        cell: (3, 3) cell or None.
        pbc: (3,) bool or None.
        cutoff: cutoff radius.
        self_loops: include (i -> i, S = 0) edges.

    Returns:
        ``(i, j, S)``: (E,) targets, (E,) sources (local indices) and (E, 3) int64 shifts,
        sorted by (i, j, S).
    """
    if cell is None or pbc is None or not bool(pbc.any()):
        zero = torch.zeros(1, 3, dtype=pos.dtype, device=pos.device)
        i, j, _ = _dense_pairs(pos, zero, cutoff, 0, self_loops)
        return i, j, torch.zeros(i.shape[0], 3, dtype=torch.long, device=pos.device)
    cell_aug = _augmented_cell(cell, pbc)
    frac = torch.linalg.solve(cell_aug.T, pos.T).T  # pos = frac @ cell_aug
    wrap = torch.where(pbc, torch.floor(frac), torch.zeros_like(frac))
    pos_w = pos - wrap @ cell_aug
    shifts = _image_shifts(cell_aug, pbc, cutoff)
    zero_shift = int(((shifts == 0).all(dim=1)).nonzero()[0, 0])
    shift_vecs = shifts.to(pos.dtype) @ cell_aug
    i, j, m = _dense_pairs(pos_w, shift_vecs, cutoff, zero_shift, self_loops)
    # pos_w = pos - wrap @ cell  =>  S = S_w - wrap[j] + wrap[i]
    wrap_l = wrap.to(torch.long)
    s = shifts[m] - wrap_l[j] + wrap_l[i]
    # For fixed (i, j), S differs from shifts[m] by a constant, so (i, j, m) order is
    # already (i, j, S) order.
    return i, j, s


def _radius_graph_torch(
    pos: Tensor,
    batch: Tensor,
    num_systems: int,
    cell: Tensor | None,
    pbc: Tensor | None,
    cutoff: float,
    self_loops: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Pure-torch backend; returns sorted (E,) targets, (E,) sources, (E, 3) int64 shifts."""
    device = pos.device
    counts = torch.bincount(batch, minlength=num_systems)
    offsets = torch.cumsum(counts, 0) - counts
    periodic = pbc[:num_systems].any(dim=1).tolist() if pbc is not None else [False] * num_systems
    counts_l = counts.tolist()
    offsets_l = offsets.tolist()

    pieces: list[tuple[Tensor, Tensor, Tensor]] = []
    nonper = [b for b in range(num_systems) if counts_l[b] > 0 and not periodic[b]]
    per = [b for b in range(num_systems) if counts_l[b] > 0 and periodic[b]]

    if nonper:
        n_max = max(counts_l[b] for b in nonper)
        if len(nonper) * n_max * n_max <= _PADDED_MAX_ELEMENTS:
            if len(nonper) == num_systems:
                sel_pos, sel_batch = pos, batch
                sel_counts, sel_offsets = counts, offsets
                atom_map = None
            else:
                sys_idx = torch.tensor(nonper, device=device)
                remap = torch.full((num_systems,), -1, dtype=torch.long, device=device)
                remap[sys_idx] = torch.arange(len(nonper), device=device)
                atom_mask = remap[batch] >= 0
                atom_map = atom_mask.nonzero().flatten()
                sel_pos, sel_batch = pos[atom_map], remap[batch[atom_map]]
                sel_counts = counts[sys_idx]
                sel_offsets = torch.cumsum(sel_counts, 0) - sel_counts
            i, j = _torch_nonperiodic_padded(
                sel_pos, sel_batch, sel_counts, sel_offsets, cutoff, self_loops
            )
            if atom_map is not None:
                i, j = atom_map[i], atom_map[j]
            pieces.append((i, j, torch.zeros(i.shape[0], 3, dtype=torch.long, device=device)))
        else:
            per = per + nonper  # handled by the per-system loop below
    for b in per:
        lo, n = offsets_l[b], counts_l[b]
        sys_cell = cell[b] if cell is not None else None
        sys_pbc = pbc[b] if pbc is not None else None
        i, j, s = _torch_system(pos[lo : lo + n], sys_cell, sys_pbc, cutoff, self_loops)
        pieces.append((i + lo, j + lo, s))
    return _merge_pieces(pieces, device)


def _merge_pieces(
    pieces: list[tuple[Tensor, Tensor, Tensor]], device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Concatenate per-system sorted pieces and order them by target (stable)."""
    if not pieces:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, torch.zeros(0, 3, dtype=torch.long, device=device)
    i = torch.cat([p[0] for p in pieces])
    j = torch.cat([p[1] for p in pieces])
    s = torch.cat([p[2] for p in pieces])
    if len(pieces) > 1:
        # Each target belongs to exactly one piece and pieces are internally sorted,
        # so a stable sort on the target gives the global (i, j, S) order.
        order = torch.sort(i, stable=True).indices
        i, j, s = i[order], j[order], s[order]
    return i, j, s


def _radius_graph_vesin(
    pos: Tensor,
    batch: Tensor,
    num_systems: int,
    cell: Tensor | None,
    pbc: Tensor | None,
    cutoff: float,
    self_loops: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """vesin backend; returns sorted (E,) targets, (E,) sources, (E, 3) int64 shifts."""
    import numpy as np
    import vesin

    device = pos.device
    pos_np = pos.detach().to("cpu", torch.float64).numpy()
    counts = torch.bincount(batch, minlength=num_systems).tolist()
    cell_np = cell.detach().to("cpu", torch.float64).numpy() if cell is not None else None
    pbc_np = pbc.detach().cpu().numpy() if pbc is not None else None
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    out_i, out_j, out_s = [], [], []
    lo = 0
    for b in range(num_systems):
        n = counts[b]
        if n == 0:
            continue
        points = np.ascontiguousarray(pos_np[lo : lo + n])
        if cell_np is not None and pbc_np is not None and bool(pbc_np[b].any()):
            box = np.ascontiguousarray(cell_np[b])
            periodic = [bool(x) for x in pbc_np[b]]
            if not all(periodic):
                # Only periodic rows matter; make the box well conditioned.
                box = _augmented_cell(torch.from_numpy(box), torch.from_numpy(pbc_np[b])).numpy()
            else:
                # raises on a degenerate cell
                _augmented_cell(torch.from_numpy(box), torch.from_numpy(pbc_np[b]))
        else:
            box = np.zeros((3, 3))
            periodic = False
        # vesin: D = points[j] - points[i] + S @ box, i.e. i = our target, j = our source.
        vi, vj, vs = nl.compute(points, box, periodic, quantities="ijS", copy=True)
        vi = vi.astype(np.int64)
        vj = vj.astype(np.int64)
        vs = vs.astype(np.int64).reshape(-1, 3)
        if self_loops:
            ar = np.arange(n, dtype=np.int64)
            vi = np.concatenate([vi, ar])
            vj = np.concatenate([vj, ar])
            vs = np.concatenate([vs, np.zeros((n, 3), dtype=np.int64)])
        order = np.lexsort((vs[:, 2], vs[:, 1], vs[:, 0], vj, vi))
        out_i.append(vi[order] + lo)
        out_j.append(vj[order] + lo)
        out_s.append(vs[order])
        lo += n
    if not out_i:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, torch.zeros(0, 3, dtype=torch.long, device=device)
    i = torch.from_numpy(np.concatenate(out_i)).to(device)
    j = torch.from_numpy(np.concatenate(out_j)).to(device)
    s = torch.from_numpy(np.concatenate(out_s)).to(device)
    return i, j, s


@torch.no_grad()
def radius_graph(
    pos: Tensor,
    cutoff: float,
    batch: Tensor | None = None,
    cell: Tensor | None = None,
    pbc: Tensor | None = None,
    *,
    self_loops: bool = False,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """Radius graph of a batch of molecules and/or periodic systems.

    See the module docstring for the edge convention. Computed without autograd; use
    :func:`edge_vectors` for differentiable edge vectors.

    Args:
        pos: (N, 3) float atom positions.
        cutoff: cutoff radius (same unit as ``pos``); pairs with ``|r_ij| < cutoff`` are edges.
        batch: (N,) int64 system index, sorted non-decreasing; None means one system.
        cell: (B, 3, 3) cells, rows are lattice vectors (ASE convention), or None for
            non-periodic input. A (3, 3) cell is accepted for a single system / shared cell.
        pbc: (B, 3) bool periodic flags per cell direction. None with a cell means fully
            periodic; ignored (must be falsy) without a cell.
        self_loops: add one ``(i -> i, S = 0)`` edge per atom.
        backend: ``"torch"`` (pure torch, O(n^2) per system, images enumerated from the cell
            heights so any cutoff/cell ratio works), ``"vesin"`` (cell lists, requires the
            optional ``vesin`` package; runs on CPU in float64) or ``"auto"`` (vesin when it is
            importable and some system is periodic or has more than 200 atoms, else torch).
            All backends return identical graphs.

    Returns:
        Tuple ``(edge_index, shifts)``: ``edge_index`` is a (2, E) int64 tensor with
        ``edge_index[0] = j`` (source) and ``edge_index[1] = i`` (target); ``shifts`` is an
        (E, 3) tensor in ``pos.dtype`` holding integer cell offsets ``S_e``.

    Raises:
        ValueError: on malformed shapes, an unsorted batch, a non-positive cutoff, a
            degenerate periodic cell, or an unknown backend.
        ImportError: if ``backend="vesin"`` and vesin is not installed.
    """
    pos, batch, num_systems, cell, pbc = _normalise_inputs(pos, cutoff, batch, cell, pbc)
    cutoff = float(cutoff)
    device = pos.device
    if pos.shape[0] == 0:
        return (
            torch.zeros(2, 0, dtype=torch.long, device=device),
            torch.zeros(0, 3, dtype=pos.dtype, device=device),
        )
    if pbc is not None and not bool(pbc[:num_systems].any()):
        cell, pbc = None, None
    if backend == "auto":
        use_vesin = False
        if pbc is not None or pos.shape[0] > _AUTO_VESIN_MIN_ATOMS:
            large = pbc is not None or int(torch.bincount(batch).max()) > _AUTO_VESIN_MIN_ATOMS
            use_vesin = large and _vesin_available()
        backend = "vesin" if use_vesin else "torch"
    if backend == "torch":
        work = _work_dtype(device)
        i, j, s = _radius_graph_torch(
            pos.detach().to(work),
            batch,
            num_systems,
            cell.detach().to(work) if cell is not None else None,
            pbc,
            cutoff,
            self_loops,
        )
    elif backend == "vesin":
        try:
            import vesin  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("backend='vesin' requires the optional 'vesin' package") from exc
        i, j, s = _radius_graph_vesin(pos, batch, num_systems, cell, pbc, cutoff, self_loops)
    else:
        raise ValueError(f"unknown backend {backend!r}; expected 'auto', 'torch' or 'vesin'")
    edge_index = torch.stack([j, i])
    return edge_index, s.to(pos.dtype)


def edge_vectors(
    pos: Tensor,
    edge_index: Tensor,
    shifts: Tensor | None = None,
    cell: Tensor | None = None,
    batch: Tensor | None = None,
) -> Tensor:
    """Differentiable edge vectors ``r_ij = pos[j] - pos[i] + S_e @ cell[batch[i]]``.

    Args:
        pos: (N, 3) float positions.
        edge_index: (2, E) int64, ``edge_index[0] = j`` (source), ``edge_index[1] = i`` (target).
        shifts: (E, 3) integer cell offsets (any dtype), or None for non-periodic edges.
        cell: (B, 3, 3) cells (rows are lattice vectors) or a (3, 3) shared cell; needed when
            ``shifts`` is given.
        batch: (N,) int64 system index; None means one system.

    Returns:
        (E, 3) edge vectors in ``pos.dtype``; gradients flow to ``pos`` and ``cell``.

    Raises:
        ValueError: if ``shifts`` is given without ``cell``.
    """
    j, i = edge_index[0], edge_index[1]
    vec = pos[j] - pos[i]
    if shifts is None:
        return vec
    if cell is None:
        raise ValueError("edge_vectors: shifts given but no cell")
    shifts = shifts.to(pos.dtype)
    cell = cell.to(pos.dtype)
    if cell.dim() == 2:
        return vec + shifts @ cell
    if batch is None or cell.shape[0] == 1:
        return vec + shifts @ cell[0]
    edge_cell = cell[batch[i]]  # (E, 3, 3)
    return vec + torch.bmm(shifts.unsqueeze(1), edge_cell).squeeze(1)


# ---------------------------------------------------------------------------------------------------
# Fixed-capacity graphs for CUDA-graph capture (no host synchronisation)


def candidate_pairs(batch: Tensor) -> Tensor:
    """Every ordered pair of distinct atoms of the same system, for :func:`fixed_radius_graph`.

    Computed once per topology (it syncs: it reads the system sizes).

    Args:
        batch: ``(N,)`` sorted system index.

    Returns:
        ``(2, C)`` int64 ``[source j, target i]``, ``C = sum_b n_b (n_b - 1)``, sorted by target then
        source within each system.
    """
    if batch.dim() != 1:
        raise ValueError(f"candidate_pairs: batch must be (N,), got shape {tuple(batch.shape)}")
    if batch.numel() and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("candidate_pairs: batch must be sorted (atoms of one system contiguous)")
    counts = torch.unique_consecutive(batch, return_counts=True)[1].tolist() if batch.numel() else []
    pieces, start = [], 0
    for n in counts:
        i, j = torch.meshgrid(torch.arange(n, device=batch.device), torch.arange(n, device=batch.device),
                              indexing="ij")
        keep = i != j
        pieces.append(torch.stack([j[keep], i[keep]]) + start)
        start += n
    if not pieces:
        return torch.zeros(2, 0, dtype=torch.long, device=batch.device)
    return torch.cat(pieces, dim=1)


def fixed_radius_graph(pos: Tensor, pairs: Tensor, cutoff: float, capacity: int,
                       fill: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Non-periodic radius graph with a fixed number of edge slots, without host synchronisation.

    The pairs of ``pairs`` closer than ``cutoff`` fill the first slots in their order (so the edges
    are those of :func:`radius_graph`, same order when ``pairs`` comes from
    :func:`candidate_pairs`); the remaining slots hold the edge ``fill`` (meant to join two
    *ghost* atoms that no real atom is connected to, so padding never changes a real atom's
    output). Because shapes never depend on the data, the call can be captured in a CUDA graph.
    The cost is ``O(C)`` per call: all candidate pairs are measured (fine up to ~10^4 atoms per
    system on a GPU; larger systems need a cell list).

    Args:
        pos: ``(N', 3)`` positions (``N' >= N``; ghosts may follow the real atoms).
        pairs: ``(2, C)`` candidate ``[source, target]`` pairs, e.g. from :func:`candidate_pairs`.
        cutoff: radius in the units of ``pos``.
        capacity: number of edge slots ``E``.
        fill: ``(source, target)`` of the padding edge.

    Returns:
        ``edge_index (2, E)`` int64 and ``count`` (0-dim int64 tensor, on the device): the number of
        pairs within the cutoff. ``count > capacity`` means edges were dropped: check it (one sync)
        and rebuild with a larger capacity.
    """
    if capacity < 1:
        raise ValueError(f"fixed_radius_graph: capacity must be >= 1, got {capacity}")
    with torch.no_grad():
        d = pos[pairs[0]] - pos[pairs[1]]
        inside = (d * d).sum(-1) < cutoff * cutoff  # (C,)
        slot = torch.cumsum(inside, 0) - 1
        slot = torch.where(inside & (slot < capacity), slot, capacity)  # overflow and outside -> trash slot
        which = torch.full((capacity + 1,), -1, dtype=torch.long, device=pos.device)
        which.scatter_(0, slot, torch.arange(pairs.shape[1], device=pos.device))
        which = which[:capacity]
        used = which >= 0
        safe = which.clamp(min=0)
        src = torch.where(used, pairs[0, safe], fill[0])
        dst = torch.where(used, pairs[1, safe], fill[1])
        return torch.stack([src, dst]), inside.sum()
