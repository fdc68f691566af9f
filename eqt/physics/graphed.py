"""Energy + forces of a fixed set of molecules as one replayable CUDA graph.

On a GPU a potential like ET is bound by overhead, not arithmetic: hundreds of small kernels per
energy + force call, each launched from Python, and host synchronisations in the neighbour search
(sizes that depend on the data). For a fixed topology (the same atoms, as in MD or a batch of
conformers of one molecule) :class:`GraphedPotential` removes both:

* the neighbour list has a **fixed capacity** (:func:`eqt.primitives.neighbors.fixed_radius_graph`):
  unused slots hold an edge between two **ghost atoms** appended after the real ones, in a system of
  their own that no real atom is connected to, so padding cannot change any real atom's output,
  whatever the model (no model needs a mask);
* the whole call, neighbour search, energy and ``-dE/dpos`` by autograd, is captured once in a
  ``torch.cuda.CUDAGraph`` and replayed: one launch per call, no synchronisation.

On the CPU (or with ``cuda_graph=False``) the same fixed-shape computation runs eagerly; the tests
check it against :class:`eqt.physics.potential.Potential` on CPU, so the captured computation is
the tested one.

Limits (the choice made here): non-periodic systems only; the candidate pairs are all same-system
pairs, measured every call (``O(sum n_b^2)``); the capacity is fixed at construction (default:
1.25x the edges of the first positions) and :meth:`GraphedPotential.check` (one host sync) raises if a
later call needed more, so a caller checks it every few steps of MD and rebuilds. The returned
tensors are the graph's own output buffers: the next call overwrites them (``clone()`` to keep).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from eqt.primitives.neighbors import candidate_pairs, fixed_radius_graph

__all__ = ["GraphedPotential"]


class GraphedPotential:
    """Energy and forces of fixed molecules ``(z, batch)`` at changing positions, one graph replay each.

    Args:
        model: an :class:`~eqt.models.base.EnergyModel` (put in eval mode; its weights are read at
            every replay, so later in-place weight updates are seen, replaced tensors are not).
        z: ``(N,)`` atomic numbers.
        batch: ``(N,)`` sorted system index (default: one system).
        pos: ``(N, 3)`` first positions: sets the device, dtype and default capacity.
        capacity: edge slots (default ``ceil(1.25 x`` the edges at ``pos``) + 16).
        cuda_graph: capture a CUDA graph (default: when ``pos`` is on a CUDA device).
        warmup: eager calls on a side stream before the capture.

    Call with ``pos (N, 3)``; returns ``{"energy": (B,), "forces": (N, 3)}``.
    """

    def __init__(self, model: nn.Module, z: Tensor, batch: Tensor | None = None, *, pos: Tensor,
                 capacity: int | None = None, cuda_graph: bool | None = None, warmup: int = 3):
        if z.dim() != 1 or pos.shape != (z.shape[0], 3):
            raise ValueError(f"GraphedPotential: expected z (N,) and pos (N, 3), got {tuple(z.shape)} "
                             f"and {tuple(pos.shape)}")
        if z.numel() == 0:
            raise ValueError("GraphedPotential: no atoms")
        if not torch.isfinite(pos).all():
            raise ValueError("GraphedPotential: positions contain NaN or inf")
        device, dtype = pos.device, pos.dtype
        self.model = model.eval()
        n = z.shape[0]
        batch = torch.zeros_like(z) if batch is None else batch.to(device)
        self.num_systems = int(batch[-1]) + 1
        self.n = n
        self.cutoff = float(model.cutoff)
        self._pairs = candidate_pairs(batch)
        # two ghosts, half a cutoff apart, in system B: the padding edges join them
        ghost_z = z[:1].expand(2)
        self._z = torch.cat([z, ghost_z]).to(device)
        self._batch = torch.cat([batch, batch.new_full((2,), self.num_systems)])
        self._ghost_pos = torch.tensor([[0.0, 0.0, 0.0], [0.5 * self.cutoff, 0.0, 0.0]], device=device, dtype=dtype)
        self._fill = (n, n + 1)
        if capacity is None:
            d = pos[self._pairs[0]] - pos[self._pairs[1]]
            found = int(((d * d).sum(-1) < self.cutoff ** 2).sum())
            capacity = int(math.ceil(1.25 * found)) + 16
        self.capacity = int(capacity)
        self._pos = torch.zeros(n, 3, device=device, dtype=dtype, requires_grad=True)
        with torch.no_grad():
            self._pos.copy_(pos)
        self.cuda_graph = pos.is_cuda if cuda_graph is None else bool(cuda_graph)
        self._graph = None
        self._out: dict[str, Tensor] = {}
        if self.cuda_graph:
            self._capture(warmup)

    def _compute(self) -> dict[str, Tensor]:
        all_pos = torch.cat([self._pos, self._ghost_pos])
        edge_index, count = fixed_radius_graph(all_pos, self._pairs, self.cutoff, self.capacity, self._fill)
        energy = self.model(self._z, all_pos, self._batch, num_systems=self.num_systems + 1,
                            edge_index=edge_index, validate=False)[: self.num_systems]
        (grad,) = torch.autograd.grad(energy.sum(), self._pos)
        return {"energy": energy.detach(), "forces": -grad, "count": count}

    def _capture(self, warmup: int) -> None:
        stream = torch.cuda.Stream(self._pos.device)
        stream.wait_stream(torch.cuda.current_stream(self._pos.device))
        with torch.cuda.stream(stream):
            for _ in range(max(warmup, 1)):
                self._compute()
        torch.cuda.current_stream(self._pos.device).wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._out = self._compute()

    def __call__(self, pos: Tensor) -> dict[str, Tensor]:
        if pos.shape != (self.n, 3):
            raise ValueError(f"GraphedPotential: expected pos ({self.n}, 3), got {tuple(pos.shape)}")
        with torch.no_grad():
            self._pos.copy_(pos)
        if self._graph is not None:
            self._graph.replay()
        else:
            self._out = self._compute()
        return {"energy": self._out["energy"], "forces": self._out["forces"]}

    def check(self) -> None:
        """Raise if the last call found more edges than the capacity (one host sync)."""
        count = int(self._out["count"]) if self._out else 0
        if count > self.capacity:
            raise RuntimeError(f"GraphedPotential: {count} edges within the cutoff but capacity {self.capacity}; "
                               f"rebuild with capacity >= {count}")
