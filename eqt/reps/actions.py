"""Representation types ("reps"): slow, obvious reference actions of group elements.

Each rep says how an :class:`~eqt.reps.groups.Element` acts on one tensor. The
actions are deliberately simple (float64 numpy, plain einsum over the spatial
index) and independent of any model code, so they can serve as ground truth in
equivariance tests. Results are detached and keep the dtype/device of the input.

Permutation convention: ``x_new = x[perm]`` along ``atom_axis``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import itertools

import numpy as np
import torch

from eqt.reps.groups import Element

if TYPE_CHECKING:
    import e3nn.o3

__all__ = [
    "Rep",
    "Invariant",
    "Vector",
    "Position",
    "Irreps",
    "AtomIndex",
    "Fixed",
    "Cell",
    "Stress",
]


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().to(torch.float64).numpy()


def _like(a: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype=x.dtype, device=x.device)


class Rep:
    """Base class: how a group element acts on one tensor.

    Args:
        atom_axis: the axis permuted by ``Element.permutation``; None = not permuted.
    """

    def __init__(self, atom_axis: int | None = None) -> None:
        self.atom_axis = atom_axis

    def act(self, g: Element, x: torch.Tensor) -> torch.Tensor:
        """Apply ``g`` to ``x``.

        Args:
            g: group element.
            x: tensor of any shape accepted by the rep.

        Returns:
            Detached tensor of the same shape, dtype and device as ``x``.
        """
        return self._permute(g, self._act_spatial(g, x.detach()))

    def _act_spatial(self, g: Element, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    def _permute(self, g: Element, x: torch.Tensor) -> torch.Tensor:
        if g.permutation is None or self.atom_axis is None:
            return x
        n = x.shape[self.atom_axis]
        if len(g.permutation) != n:
            raise ValueError(
                f"permutation of {len(g.permutation)} items applied to axis "
                f"{self.atom_axis} of size {n}"
            )
        index = torch.as_tensor(g.permutation, device=x.device)
        return x.index_select(self.atom_axis, index)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Invariant(Rep):
    """Scalars: rotations and translations do nothing; permutations permute ``atom_axis``.

    Use ``Invariant(atom_axis=0)`` for per-atom scalars (N, ...) such as atomic
    numbers, and ``Invariant()`` for per-system quantities such as an energy.

    Args:
        atom_axis: permuted axis, or None.
    """


class Vector(Rep):
    """Cartesian 3-vectors along ``spatial_axis``: ``v -> R v`` (``det R * R v`` if pseudo).

    Translations do nothing. Forces (N, 3): ``Vector()``; vector features
    (N, 3, F): ``Vector(spatial_axis=1)``.

    Args:
        spatial_axis: axis of size 3 holding the Cartesian components.
        atom_axis: permuted axis, or None.
        pseudo: if True, also multiply by ``det R`` (axial vector, e.g. a cross product).
    """

    def __init__(self, spatial_axis: int = -1, atom_axis: int | None = 0, pseudo: bool = False) -> None:
        super().__init__(atom_axis)
        self.spatial_axis = spatial_axis
        self.pseudo = pseudo

    def _rotate(self, g: Element, x: torch.Tensor) -> np.ndarray:
        if x.shape[self.spatial_axis] != 3:
            raise ValueError(f"axis {self.spatial_axis} of shape {tuple(x.shape)} is not of size 3")
        v = np.moveaxis(_to_numpy(x), self.spatial_axis, -1)  # (..., 3)
        if g.rotation is not None:
            r = g.rotation
            v = np.einsum("ij,...j->...i", r, v)
            if self.pseudo:
                v = np.linalg.det(r) * v
        return v

    def _act_spatial(self, g: Element, x: torch.Tensor) -> torch.Tensor:
        return _like(np.moveaxis(self._rotate(g, x), -1, self.spatial_axis), x)


class Position(Vector):
    """Positions: like :class:`Vector` (never pseudo) but also ``r -> R r + t``.

    Args:
        spatial_axis: axis of size 3 holding the Cartesian components.
        atom_axis: permuted axis, or None.
    """

    def __init__(self, spatial_axis: int = -1, atom_axis: int | None = 0) -> None:
        super().__init__(spatial_axis=spatial_axis, atom_axis=atom_axis, pseudo=False)

    def _act_spatial(self, g: Element, x: torch.Tensor) -> torch.Tensor:
        v = self._rotate(g, x)
        if g.translation is not None:
            v = v + g.translation
        return _like(np.moveaxis(v, -1, self.spatial_axis), x)


class Irreps(Rep):
    """Features in e3nn layout: last dim is ``irreps.dim``; acts as ``x -> x @ D(R).T``.

    ``D`` is ``e3nn.o3.Irreps(irreps).D_from_matrix(R)``, which handles parity
    and e3nn's basis ordering. e3nn builds its Lie-algebra generators in the
    torch default dtype, so ``D`` is computed with the default dtype set to
    float64 (restored afterwards); otherwise it is only accurate to ~1e-7.
    Translations do nothing.

    Args:
        irreps: e3nn irreps, e.g. ``"8x0e+4x1o"``.
        atom_axis: permuted axis, or None.
    """

    def __init__(self, irreps: str | e3nn.o3.Irreps, atom_axis: int | None = 0) -> None:
        from e3nn import o3

        super().__init__(atom_axis)
        self.irreps = o3.Irreps(irreps)

    def _act_spatial(self, g: Element, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.irreps.dim:
            raise ValueError(f"last dim {x.shape[-1]} != irreps dim {self.irreps.dim} ({self.irreps})")
        if g.rotation is None:
            return x.clone()
        old_default = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            d = self.irreps.D_from_matrix(torch.from_numpy(g.rotation)).numpy()  # (dim, dim)
        finally:
            torch.set_default_dtype(old_default)
        return _like(np.einsum("ij,...j->...i", d, _to_numpy(x)), x)


class AtomIndex(Rep):
    """Integer tensors whose VALUES are atom indices (e.g. ``edge_index`` (2, E)).

    Under ``perm`` (``new[i] = old[perm[i]]``) old atom ``j`` becomes new atom
    ``inv[j]`` with ``inv = argsort(perm)``, so ``x -> inv[x]``. The order of the
    entries is unchanged; rotations and translations do nothing.
    """

    def __init__(self) -> None:
        super().__init__(None)

    def act(self, g: Element, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        if g.permutation is None:
            return x.clone()
        inv = torch.as_tensor(np.argsort(g.permutation), device=x.device)
        if x.numel() and int(x.max()) >= len(inv):
            raise ValueError(f"index {int(x.max())} out of range for {len(inv)} atoms")
        return inv[x.long()].to(x.dtype)


class Fixed(Rep):
    """Nothing acts (e.g. a sorted ``batch`` vector under within-block permutations, a flag)."""

    def __init__(self) -> None:
        super().__init__(None)


class Cell(Rep):
    """Cell (..., 3, 3) whose ROWS are lattice vectors: ``cell -> cell @ R.T``.

    Translations do nothing; permutations act only if ``atom_axis`` is given.

    Args:
        atom_axis: permuted axis, or None (default: cells are per system).
    """

    def __init__(self, atom_axis: int | None = None) -> None:
        super().__init__(atom_axis)

    def _act_spatial(self, g: Element, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (3, 3):
            raise ValueError(f"cell must be (..., 3, 3), got {tuple(x.shape)}")
        if g.rotation is None:
            return x.clone()
        return _like(np.einsum("...aj,ij->...ai", _to_numpy(x), g.rotation), x)


class Stress(Rep):
    """Rank-2 Cartesian tensor (..., 3, 3): ``S -> R S R.T``.

    Translations do nothing; permutations act only if ``atom_axis`` is given
    (e.g. per-atom virials (N, 3, 3) with ``atom_axis=0``).

    Args:
        atom_axis: permuted axis, or None (default: stress is per system).
    """

    def __init__(self, atom_axis: int | None = None) -> None:
        super().__init__(atom_axis)

    def _act_spatial(self, g: Element, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (3, 3):
            raise ValueError(f"stress must be (..., 3, 3), got {tuple(x.shape)}")
        if g.rotation is None:
            return x.clone()
        r = g.rotation
        return _like(np.einsum("ij,...jk,lk->...il", r, _to_numpy(x), r), x)


class Multivector(Rep):
    """Multivectors of the Clifford algebra G(p, q, r), last axis ``2**n`` in eqt's blade order.

    Reference action, independent of the Cayley tables: a Pin element is an orthogonal map ``M`` of
    the basis vectors (``Element.vector_action``), and it acts on blades by its outermorphism,
    ``e_A -> M e_a1 ∧ ... ∧ M e_ak``, whose coefficient on ``e_B`` is the minor ``det M[B, A]``.
    This equals the (twisted) versor sandwich of :func:`eqt.primitives.clifford.sandwich`.

    Args:
        p, q, r: the signature.
        atom_axis: the axis permuted by ``Element.permutation``.
    """

    def __init__(self, p: int, q: int = 0, r: int = 0, atom_axis: int | None = None) -> None:
        super().__init__(atom_axis)
        self.p, self.q, self.r = p, q, r
        n = p + q + r
        self.blades = [b for k in range(n + 1) for b in itertools.combinations(range(n), k)]

    def matrix(self, m: np.ndarray) -> np.ndarray:
        """The ``(2**n, 2**n)`` outermorphism of the vector map ``m``, minor by minor."""
        dim = len(self.blades)
        rho = np.zeros((dim, dim))
        for j, a in enumerate(self.blades):
            for i, b in enumerate(self.blades):
                if len(a) == len(b):
                    rho[i, j] = 1.0 if not a else np.linalg.det(m[np.ix_(b, a)])
        return rho

    def _act_spatial(self, g: Element, x: torch.Tensor) -> torch.Tensor:
        if g.vector_action is None:
            return x.clone()
        if x.shape[-1] != len(self.blades):
            raise ValueError(f"multivectors of G({self.p},{self.q},{self.r}) need last axis {len(self.blades)}, "
                             f"got {x.shape[-1]}")
        return _like(_to_numpy(x) @ self.matrix(g.vector_action).T, x)
