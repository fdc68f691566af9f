"""Clifford (geometric) algebras G(p, q, r) with diagonal metrics, as dense tensor tables.

A multivector of ``Algebra(p, q, r)`` is a tensor ``(..., 2**n)`` with ``n = p + q + r``; the last
axis holds the coefficients of the basis blades in the order below. All functions here are pure
(no parameters) and work on any leading shape; the two operands of a binary product broadcast
against each other.

Conventions (one for all algebras):

* **Basis vectors.** The ``r`` null vectors come first, then the ``p`` vectors that square to
  ``+1``, then the ``q`` vectors that square to ``-1``; ``metric = (0,)*r + (1,)*p + (-1,)*q``.
  Internally a basis vector is its position ``0 .. n-1``. For printing, vectors are labelled from
  ``e0`` when ``r > 0`` and from ``e1`` otherwise (the ``clifford`` library's ``firstIdx``), so
  G(3,0,0) has ``e1, e2, e3``, G(3,0,1) has the null ``e0`` then ``e1, e2, e3``, and G(4,1,0) has
  ``e1 .. e4`` (square +1) and ``e5`` (square -1). This is also the ``clifford`` library's order
  for ``Cl(p, q, r)``.
* **Blades** are sorted index tuples, ordered by grade, then lexicographically. For G(3,0,1) this is
  exactly the reference GATr order
  ``1, e0, e1, e2, e3, e01, e02, e03, e12, e13, e23, e012, e013, e023, e123, e0123``.
* **Tables** are dense ``(dim, dim, dim)`` tensors indexed ``[out, left, right]``, meaning
  ``einsum("i j k, ... j, ... k -> ... i")``. They are built at run time from the metric (sign of
  the reordering times the squares of the repeated vectors), cached per algebra, and cached again
  per ``(dtype, device)``. Kinds: ``"geometric"``, ``"outer"`` (wedge) and ``"inner"``, which is
  the **left contraction** ``x ⌋ y`` (see :func:`left_contraction`). Products are evaluated from
  the table's ``P`` nonzero entries (192 of 4096 for the G(3,0,1) geometric product) as three
  matrix products ``((x @ L) * (y @ R)) @ S`` (unless every pair of blades contributes: full tables
  use the dense einsum), with ``L``/``R`` the ``(dim, P)`` signed selections of
  the left/right factor of each entry and ``S`` the ``(P, dim)`` sum into the output blades: dense
  GEMMs (also in the backward pass) without the ``dim²`` intermediate of the dense einsum.
* **Inner product** (:func:`inner_product`): the invariant bilinear form used for attention,
  ``<x, y> = <reverse(x) y>_0 = sum_A x_A y_A (e_A^~ e_A)``; blades that contain a null vector
  drop out, so for G(3,0,1) this is GATr's inner product over the 8 non-degenerate blades, and for
  Euclidean algebras it is the plain dot product of the coefficients.
* **Dual** (:func:`dual`): the right complement, ``e_A ∧ dual(e_A) = e_{0..n-1}`` (the
  pseudoscalar) for every blade; it is defined for degenerate metrics and for G(3,0,1) equals
  GATr's ``dual`` (Dorst's PGA4CS, Table 4). It is not equivariant on its own.
* **Sandwich** (:func:`sandwich`): the twisted adjoint action ``x -> V α(x) V^{-1}`` for an odd
  versor ``V`` (``α`` the grade involution) and ``x -> V x V^{-1}`` for an even one, so a unit
  vector acts on vectors as the reflection in its orthogonal hyperplane and every versor acts as an
  algebra automorphism that preserves grades.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Algebra",
    "TABLE_KINDS",
    "cayley_table",
    "cayley_indices",
    "geometric_product",
    "outer_product",
    "left_contraction",
    "inner_product",
    "reverse",
    "grade_involution",
    "grade_project",
    "dual",
    "join",
    "inverse",
    "sandwich",
    "squared_norm",
    "norm",
    "random_versor",
]

_MAX_N = 6
TABLE_KINDS = ("geometric", "outer", "inner")


@dataclass(frozen=True)
class Algebra:
    """The Clifford algebra G(p, q, r): ``p`` vectors square to +1, ``q`` to -1, ``r`` to 0.

    Basis order: null vectors first, then positive, then negative (see the module docstring);
    blades by grade, then lexicographically. Multivectors are tensors ``(..., dim)``.

    Args:
        p: number of basis vectors with square +1.
        q: number of basis vectors with square -1.
        r: number of null basis vectors (square 0).

    Raises:
        ValueError: if a count is negative or not an int, or if ``p + q + r > 6``.

    Example:
        >>> Algebra(3, 0, 1).blade_names[:5]
        ('1', 'e0', 'e1', 'e2', 'e3')
    """

    p: int
    q: int = 0
    r: int = 0

    def __post_init__(self) -> None:
        for name, value in (("p", self.p), ("q", self.q), ("r", self.r)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Algebra(p, q, r): {name} must be a non-negative int, got {value!r}")
        if self.p + self.q + self.r > _MAX_N:
            raise ValueError(
                f"Algebra(p={self.p}, q={self.q}, r={self.r}): p + q + r = {self.p + self.q + self.r} "
                f"basis vectors is more than the supported maximum of {_MAX_N}"
            )

    def __repr__(self) -> str:
        return f"Algebra({self.p}, {self.q}, {self.r})"

    @property
    def n(self) -> int:
        """Number of basis vectors ``p + q + r``."""
        return self.p + self.q + self.r

    @property
    def dim(self) -> int:
        """Number of basis blades ``2**n`` (size of a multivector's last axis)."""
        return 2**self.n

    @property
    def signature(self) -> tuple[int, ...]:
        """``(n,)`` squares of the basis vectors: ``(0,)*r + (1,)*p + (-1,)*q``."""
        return _signature(self)

    @property
    def metric(self) -> Tensor:
        """``(n,)`` float64 diagonal of the metric, same values as :attr:`signature`."""
        return torch.tensor(self.signature, dtype=torch.float64)

    @property
    def blades(self) -> tuple[tuple[int, ...], ...]:
        """``dim`` sorted tuples of basis-vector positions (``0 .. n-1``), in storage order."""
        return _blades(self)

    @property
    def blade_names(self) -> tuple[str, ...]:
        """``dim`` printable names, e.g. ``"1", "e0", "e12"`` (labels from 0 if ``r > 0``, else 1)."""
        first = 0 if self.r > 0 else 1
        return tuple("1" if not b else "e" + "".join(str(i + first) for i in b) for b in self.blades)

    @property
    def grades(self) -> Tensor:
        """``(dim,)`` int64 grade of each blade."""
        return torch.tensor([len(b) for b in self.blades], dtype=torch.int64)

    def blade_index(self, blade: Iterable[int]) -> int:
        """Storage index of a blade given as basis-vector positions (any order, no repeats).

        Args:
            blade: positions ``0 .. n-1``, e.g. ``(0, 1)`` for ``e01`` in G(3,0,1).

        Returns:
            Index into the last axis of a multivector (the sign of the reordering is ignored).
        """
        return _blade_lookup(self)[tuple(sorted(blade))]


# ---------------------------------------------------------------------------------------------
# Constant tables (computed once per algebra, then once per dtype/device).


@functools.lru_cache(maxsize=None)
def _signature(alg: Algebra) -> tuple[int, ...]:
    return (0,) * alg.r + (1,) * alg.p + (-1,) * alg.q


@functools.lru_cache(maxsize=None)
def _blades(alg: Algebra) -> tuple[tuple[int, ...], ...]:
    return tuple(b for k in range(alg.n + 1) for b in itertools.combinations(range(alg.n), k))


@functools.lru_cache(maxsize=None)
def _blade_lookup(alg: Algebra) -> dict[tuple[int, ...], int]:
    return {b: i for i, b in enumerate(_blades(alg))}


def _blade_product(a: tuple[int, ...], b: tuple[int, ...], sig: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """Geometric product of two sorted blades: ``(coefficient, result blade)``."""
    swaps = sum(1 for i in a for j in b if i > j)  # moves of each b vector past larger a vectors
    coeff = -1 if swaps % 2 else 1
    for i in set(a) & set(b):
        coeff *= sig[i]
    return coeff, tuple(sorted(set(a) ^ set(b)))


@functools.lru_cache(maxsize=None)
def _table_numpy(alg: Algebra, kind: str) -> np.ndarray:
    if kind not in TABLE_KINDS:
        raise ValueError(f"unknown Cayley table kind {kind!r}; expected one of {TABLE_KINDS}")
    blades, lookup, sig = _blades(alg), _blade_lookup(alg), _signature(alg)
    table = np.zeros((alg.dim, alg.dim, alg.dim), dtype=np.float64)
    for j, a in enumerate(blades):
        for k, b in enumerate(blades):
            coeff, out = _blade_product(a, b, sig)
            if kind == "outer" and len(out) != len(a) + len(b):
                continue
            if kind == "inner" and not (set(a) <= set(b) and len(out) == len(b) - len(a)):
                continue
            if coeff:
                table[lookup[out], j, k] = coeff
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=None)
def _join_table_numpy(alg: Algebra) -> np.ndarray:
    """Table of the join ``dual(dual(x) ∧ dual(y))``: the dual matrix composed with the outer table."""
    perm = _dual_perm(alg)
    d = np.zeros((alg.dim, alg.dim))
    d[np.arange(alg.dim), perm] = _diag_numpy(alg, "dual_sign")[list(perm)]  # dual(x) = d @ x
    table = np.einsum("im,mpq,pj,qk->ijk", d, _table_numpy(alg, "outer"), d, d)
    table.setflags(write=False)
    return table


def _table_for(alg: Algebra, kind: str) -> np.ndarray:
    return _join_table_numpy(alg) if kind == "join" else _table_numpy(alg, kind)


@functools.lru_cache(maxsize=None)
def _table_torch(alg: Algebra, kind: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.as_tensor(_table_for(alg, kind).copy(), dtype=dtype, device=device)


def cayley_table(alg: Algebra, kind: str = "geometric", dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> Tensor:
    """Dense multiplication table of a bilinear product, cached per algebra, dtype and device.

    Args:
        alg: the algebra.
        kind: ``"geometric"``, ``"outer"`` (wedge) or ``"inner"`` (left contraction).
        dtype: dtype of the returned table.
        device: device of the returned table (default CPU).

    Returns:
        ``(dim, dim, dim)`` table ``T[out, left, right]`` with entries in {-1, 0, 1}, such that
        ``product(x, y)[..., i] = sum_jk T[i, j, k] x[..., j] y[..., k]``. Do not modify it in
        place (it is shared).

    Raises:
        ValueError: for an unknown ``kind``.
    """
    _table_numpy(alg, kind)  # validates the kind
    return _table_torch(alg, kind, dtype, torch.device(device if device is not None else "cpu"))


@functools.lru_cache(maxsize=None)
def _indices_numpy(alg: Algebra, kind: str) -> tuple[np.ndarray, np.ndarray]:
    table = _table_numpy(alg, kind)
    out = np.abs(table).argmax(axis=0)  # (dim, dim): the single blade each product lands on
    sign = np.take_along_axis(table, out[None], axis=0)[0]
    return out, sign


def cayley_indices(alg: Algebra, kind: str = "geometric") -> tuple[Tensor, Tensor]:
    """Sparse form of a table: each product of two blades is a signed single blade.

    Args:
        alg: the algebra.
        kind: ``"geometric"``, ``"outer"`` or ``"inner"`` (left contraction).

    Returns:
        ``(out, sign)``, both ``(dim, dim)`` indexed ``[left, right]``: ``out`` int64 is the index
        of the result blade, ``sign`` float64 in {-1, 0, 1} its coefficient (0 where the product
        vanishes; ``out`` is then 0).
    """
    out, sign = _indices_numpy(alg, kind)
    return torch.as_tensor(out, dtype=torch.int64), torch.as_tensor(sign, dtype=torch.float64)


@functools.lru_cache(maxsize=None)
def _diag_numpy(alg: Algebra, kind: str) -> np.ndarray:
    grades = np.array([len(b) for b in _blades(alg)])
    if kind == "reverse":
        return np.where((grades * (grades - 1) // 2) % 2 == 1, -1.0, 1.0)
    if kind == "involution":
        return np.where(grades % 2 == 1, -1.0, 1.0)
    if kind == "inner":  # e_A^~ e_A = product of the squares of the vectors of A
        sig = _signature(alg)
        return np.array([float(np.prod([sig[i] for i in b])) if b else 1.0 for b in _blades(alg)])
    if kind == "dual_sign":  # sign s_A with e_A ∧ (s_A e_complement(A)) = e_{0..n-1}
        full = tuple(range(alg.n))
        signs = []
        for b in _blades(alg):
            comp = tuple(i for i in full if i not in b)
            signs.append(-1.0 if sum(1 for i in b for j in comp if i > j) % 2 else 1.0)
        return np.array(signs)
    raise ValueError(kind)


@functools.lru_cache(maxsize=None)
def _diag_torch(alg: Algebra, kind: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.as_tensor(_diag_numpy(alg, kind), dtype=dtype, device=device)


@functools.lru_cache(maxsize=None)
def _dual_perm(alg: Algebra) -> tuple[int, ...]:
    """``perm[i]``: input blade whose complement is output blade ``i``."""
    lookup, full = _blade_lookup(alg), range(alg.n)
    perm = [0] * alg.dim
    for j, b in enumerate(_blades(alg)):
        perm[lookup[tuple(i for i in full if i not in b)]] = j
    return tuple(perm)


# ---------------------------------------------------------------------------------------------
# Functions on multivectors.


def _check(alg: Algebra, x: Tensor, name: str = "x") -> None:
    if not isinstance(alg, Algebra):
        raise TypeError(f"expected an Algebra, got {type(alg).__name__}")
    if x.dim() == 0 or x.shape[-1] != alg.dim:
        last = x.shape[-1] if x.dim() else "none (0-d tensor)"
        raise ValueError(
            f"{name} must be a multivector of {alg!r} with last dimension alg.dim = {alg.dim}, "
            f"got shape {tuple(x.shape)} (last dimension {last})"
        )


@functools.lru_cache(maxsize=None)
def _sparse_bilinear(alg: Algebra, kind: str, dtype: torch.dtype,
                     device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """``(L, R, S)`` of a table's nonzero entries ``T[i, j, k]`` (see the module docstring).

    ``L (dim, P)`` holds the entry's sign at row ``j``, ``R (dim, P)`` a one at row ``k`` and
    ``S (P, dim)`` a one at column ``i``, so ``product(x, y) = ((x @ L) * (y @ R)) @ S``.
    """
    table = _table_for(alg, kind)
    out, left, right = np.nonzero(table)
    cols = np.arange(len(out))
    sel_left, sel_right = np.zeros((alg.dim, len(out))), np.zeros((alg.dim, len(out)))
    reduce = np.zeros((len(out), alg.dim))
    sel_left[left, cols] = table[out, left, right]
    sel_right[right, cols] = 1.0
    reduce[cols, out] = 1.0
    return tuple(torch.as_tensor(a, dtype=dtype, device=device) for a in (sel_left, sel_right, reduce))


@functools.lru_cache(maxsize=None)
def _is_sparse(alg: Algebra, kind: str) -> bool:
    """Whether some (left, right) blade pairs of the table vanish, so the sparse form is used.

    Measured on CPU (forward + backward): the sparse form is 2x faster for the G(3,0,1) geometric
    product (192 of 256 pairs) and 4x for the G(4,1,0) outer product; for a full table (the
    geometric product of a non-degenerate algebra) the dense einsum is as fast (G(3,0,0)) or 1.5x
    faster (G(4,1,0)).
    """
    return np.count_nonzero(_table_for(alg, kind)) < alg.dim**2


#: rows of a (rows, P) temporary of the sparse form, times P: 2**17 floats (512 KiB) stay in a core's L2 cache
_CHUNK_ELEMENTS = 2**17


class _SparseBilinear(torch.autograd.Function):
    """``((x @ L) * (y @ R)) @ S`` over row blocks of ``x, y (N, dim)``, recomputed in the backward pass.

    On CPU the ``(N, P)`` temporaries (25 MB each for 2048 tokens of 16 channels in G(3,0,1)) make the
    unblocked form memory-bound; blocks of ``_CHUNK_ELEMENTS / P`` rows stay in cache, and only
    ``x, y`` are saved for the backward pass (which is itself differentiable: double backward works).
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, sel_left: Tensor, sel_right: Tensor, reduce: Tensor) -> Tensor:
        ctx.save_for_backward(x, y, sel_left, sel_right, reduce)
        return torch.cat([((xc @ sel_left) * (yc @ sel_right)) @ reduce for xc, yc in _row_blocks(reduce, x, y)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, y, sel_left, sel_right, reduce = ctx.saved_tensors
        grad = grad.to(x.dtype)  # under autocast the output (hence grad) can be of lower precision
        need_x, need_y = ctx.needs_input_grad[:2]
        gx, gy = [], []
        for xc, yc, gc in _row_blocks(reduce, x, y, grad):
            g_pairs = gc @ reduce.T
            if need_x:
                gx.append((g_pairs * (yc @ sel_right)) @ sel_left.T)
            if need_y:
                gy.append((g_pairs * (xc @ sel_left)) @ sel_right.T)
        return torch.cat(gx) if need_x else None, torch.cat(gy) if need_y else None, None, None, None


def _row_blocks(reduce: Tensor, *tensors: Tensor):
    """Row blocks of ``(N, ·)`` tensors sized for the cache (one block on GPUs and under ``torch.compile``)."""
    n = tensors[0].shape[0]
    rows = n if tensors[0].device.type != "cpu" or torch.compiler.is_compiling() else max(
        1, _CHUNK_ELEMENTS // reduce.shape[0])
    return zip(*(t.split(rows) for t in tensors))


def _bilinear(alg: Algebra, kind: str, x: Tensor, y: Tensor) -> Tensor:
    _check(alg, x, "x")
    _check(alg, y, "y")
    if not _is_sparse(alg, kind):
        return torch.einsum("ijk,...j,...k->...i", _table_torch(alg, kind, x.dtype, x.device), x, y)
    x, y = torch.broadcast_tensors(x, y)
    shape = x.shape
    x, y = x.reshape(-1, alg.dim).contiguous(), y.reshape(-1, alg.dim).contiguous()
    return _SparseBilinear.apply(x, y, *_sparse_bilinear(alg, kind, x.dtype, x.device)).view(shape)


def _diag(alg: Algebra, kind: str, x: Tensor) -> Tensor:
    return _diag_torch(alg, kind, x.dtype, x.device)


def geometric_product(alg: Algebra, x: Tensor, y: Tensor) -> Tensor:
    """Geometric product ``x y``.

    Args:
        alg: the algebra.
        x: ``(..., dim)`` left multivectors.
        y: ``(..., dim)`` right multivectors (broadcast against ``x``).

    Returns:
        ``(..., dim)`` products.
    """
    return _bilinear(alg, "geometric", x, y)


def outer_product(alg: Algebra, x: Tensor, y: Tensor) -> Tensor:
    """Outer (wedge) product ``x ∧ y``: the grade ``k + l`` part of the product of grades k, l.

    Args:
        alg: the algebra.
        x: ``(..., dim)`` left multivectors.
        y: ``(..., dim)`` right multivectors (broadcast against ``x``).

    Returns:
        ``(..., dim)`` products.
    """
    return _bilinear(alg, "outer", x, y)


def left_contraction(alg: Algebra, x: Tensor, y: Tensor) -> Tensor:
    """Left contraction ``x ⌋ y``: the grade ``l - k`` part of the product of grades k <= l.

    This is the ``"inner"`` Cayley table (``clifford``'s ``MultiVector.lc``).

    Args:
        alg: the algebra.
        x: ``(..., dim)`` left multivectors.
        y: ``(..., dim)`` right multivectors (broadcast against ``x``).

    Returns:
        ``(..., dim)`` contractions.
    """
    return _bilinear(alg, "inner", x, y)


def inner_product(alg: Algebra, x: Tensor, y: Tensor) -> Tensor:
    """Invariant bilinear form ``<x, y> = <reverse(x) y>_0`` (GATr's attention inner product).

    Equal to ``sum_A x_A y_A (e_A^~ e_A)``: blades with a null vector drop out; for Euclidean
    algebras it is the coefficient dot product; for G(4,1,0) blades containing the negative
    vector count with sign -1. Invariant under :func:`sandwich` by any unit versor.

    Args:
        alg: the algebra.
        x: ``(..., dim)`` multivectors.
        y: ``(..., dim)`` multivectors (broadcast against ``x``).

    Returns:
        ``(..., 1)`` inner products.
    """
    _check(alg, x, "x")
    _check(alg, y, "y")
    return (x * _diag(alg, "inner", x) * y).sum(dim=-1, keepdim=True)


def reverse(alg: Algebra, x: Tensor) -> Tensor:
    """Reversion ``x~``: grade ``k`` is multiplied by ``(-1)**(k (k-1) / 2)``.

    Args:
        alg: the algebra.
        x: ``(..., dim)`` multivectors.

    Returns:
        ``(..., dim)`` reversed multivectors (an anti-automorphism: ``(x y)~ = y~ x~``).
    """
    _check(alg, x)
    return x * _diag(alg, "reverse", x)


def grade_involution(alg: Algebra, x: Tensor) -> Tensor:
    """Grade involution ``α(x)``: grade ``k`` is multiplied by ``(-1)**k``.

    Args:
        alg: the algebra.
        x: ``(..., dim)`` multivectors.

    Returns:
        ``(..., dim)`` multivectors (an automorphism: ``α(x y) = α(x) α(y)``).
    """
    _check(alg, x)
    return x * _diag(alg, "involution", x)


def grade_project(alg: Algebra, x: Tensor, k: int | Iterable[int]) -> Tensor:
    """Keep only the blades of grade ``k`` (or of any grade in ``k``), zero the rest.

    Args:
        alg: the algebra.
        x: ``(..., dim)`` multivectors.
        k: a grade ``0 .. n`` or an iterable of grades.

    Returns:
        ``(..., dim)`` projected multivectors.

    Raises:
        ValueError: if a grade is outside ``0 .. n``.
    """
    _check(alg, x)
    ks = {int(k)} if isinstance(k, (int, np.integer)) else {int(g) for g in k}
    bad = sorted(g for g in ks if not 0 <= g <= alg.n)
    if bad:
        raise ValueError(f"grades {bad} are outside 0..{alg.n} for {alg!r}")
    mask = torch.tensor([len(b) in ks for b in alg.blades], dtype=x.dtype, device=x.device)
    return x * mask


def dual(alg: Algebra, x: Tensor) -> Tensor:
    """Right-complement dual: ``e_A -> s_A e_{complement(A)}`` with ``e_A ∧ s_A e_comp = e_{0..n-1}``.

    Works for degenerate metrics (it never divides by the pseudoscalar). For G(3,0,1) it is
    GATr's ``dual``: ``x[..., 15 - i] * [1,-1,1,-1,1,1,-1,1,1,-1,1,-1,1,-1,1,1][i]``.

    Args:
        alg: the algebra.
        x: ``(..., dim)`` multivectors.

    Returns:
        ``(..., dim)`` duals.
    """
    _check(alg, x)
    perm = torch.tensor(_dual_perm(alg), dtype=torch.int64, device=x.device)
    signs = _diag(alg, "dual_sign", x)[perm]  # sign of the input blade, moved to the output slot
    return x[..., perm] * signs


def join(alg: Algebra, x: Tensor, y: Tensor, reference: Tensor | None = None) -> Tensor:
    """Regressive product (join) ``dual(dual(x) ∧ dual(y))``, optionally made Pin-equivariant.

    With a ``reference``, the result is multiplied by the reference's coefficient on the blade of
    all non-null vectors (``e123`` at index 14 for G(3,0,1); the pseudoscalar when ``r = 0``),
    which flips sign under reflections exactly as the plain join does; this is GATr's
    ``equivariant_join``.

    Args:
        alg: the algebra.
        x: ``(..., dim)`` multivectors.
        y: ``(..., dim)`` multivectors (broadcast against ``x``).
        reference: optional ``(..., dim)`` reference multivectors (broadcast against the result).

    Returns:
        ``(..., dim)`` joins.
    """
    out = _bilinear(alg, "join", x, y)  # one precomputed table: dual, wedge, dual
    if reference is not None:
        _check(alg, reference, "reference")
        idx = alg.blade_index(range(alg.r, alg.n))
        out = out * reference[..., idx : idx + 1]
    return out


def inverse(alg: Algebra, versor: Tensor) -> Tensor:
    """Inverse of a versor, ``V~ / <V V~>_0`` (valid for versors, whose ``V V~`` is a scalar).

    Args:
        alg: the algebra.
        versor: ``(..., dim)`` versors (products of non-null vectors, or e.g. translators).

    Returns:
        ``(..., dim)`` inverses.
    """
    rev = reverse(alg, versor)
    scale = geometric_product(alg, versor, rev)[..., :1]  # (..., 1) scalar part
    return rev / scale


def sandwich(alg: Algebra, versor: Tensor, x: Tensor) -> Tensor:
    """Twisted adjoint action ``V α(x) V^{-1}`` (odd ``V``) or ``V x V^{-1}`` (even ``V``).

    A unit vector ``v`` maps a vector ``x`` to its reflection ``x - 2 (x·v) v / v²``; every versor
    acts as a grade-preserving algebra automorphism. The parity of each versor is read from which
    of its even and odd parts is larger (a versor is homogeneous).

    Args:
        alg: the algebra.
        versor: ``(..., dim)`` versors (broadcast against ``x``).
        x: ``(..., dim)`` multivectors.

    Returns:
        ``(..., dim)`` transformed multivectors (broadcast shape).
    """
    _check(alg, versor, "versor")
    _check(alg, x, "x")
    inv = _diag(alg, "involution", versor)
    odd = (versor * (inv < 0)).abs().sum(-1, keepdim=True) > (versor * (inv > 0)).abs().sum(-1, keepdim=True)
    x_twisted = torch.where(odd, x * inv, x)
    return geometric_product(alg, geometric_product(alg, versor, x_twisted), inverse(alg, versor))


def _safe_sqrt(sq: Tensor) -> Tensor:
    positive = sq > 0
    return torch.where(positive, torch.where(positive, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


def squared_norm(alg: Algebra, x: Tensor, absolute: bool = False) -> Tensor:
    """Squared norm ``<x, x>`` (see :func:`inner_product`), or its per-grade absolute version.

    For an indefinite metric (G(4,1,0)) ``<x, x>`` can be negative; ``absolute=True`` returns the
    non-negative surrogate ``sum_k |<x_k, x_k>|`` over grades ``k`` (lgatr's ``abs_squared_norm``),
    still invariant under versors. For positive semi-definite metrics both agree.

    Args:
        alg: the algebra.
        x: ``(..., dim)`` multivectors.
        absolute: sum absolute values of the per-grade squared norms.

    Returns:
        ``(..., 1)`` squared norms.
    """
    _check(alg, x)
    terms = x * x * _diag(alg, "inner", x)  # (..., dim)
    if not absolute:
        return terms.sum(dim=-1, keepdim=True)
    grades = _grade_onehot(alg, x.dtype, x.device)  # (dim, n + 1)
    return (terms @ grades).abs().sum(dim=-1, keepdim=True)


@functools.lru_cache(maxsize=None)
def _grade_onehot(alg: Algebra, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.nn.functional.one_hot(alg.grades, alg.n + 1).to(dtype=dtype, device=device)


def norm(alg: Algebra, x: Tensor, absolute: bool = False) -> Tensor:
    """Norm ``sqrt(max(<x, x>, 0))`` (or of the per-grade absolute squared norm).

    NaN-safe: the value and gradient are zero where the squared norm is ``<= 0``.

    Args:
        alg: the algebra.
        x: ``(..., dim)`` multivectors.
        absolute: use ``sum_k |<x_k, x_k>|`` (see :func:`squared_norm`); advisable for G(4,1,0).

    Returns:
        ``(..., 1)`` norms.
    """
    return _safe_sqrt(squared_norm(alg, x, absolute=absolute))


def random_versor(alg: Algebra, n_reflections: int, shape: tuple[int, ...] = (),
                  generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """Product of ``n_reflections`` random unit (non-null) vectors, for tests.

    Each vector has standard normal coefficients (null components included) and is rescaled so that
    ``v² = ±1``; vectors with ``|v²| < 0.1`` before rescaling are redrawn. The result is even for an
    even count, odd otherwise.

    Args:
        alg: the algebra (needs ``p + q > 0`` when ``n_reflections > 0``).
        n_reflections: number of vector factors (0 gives the scalar 1).
        shape: batch shape.
        generator: optional random generator.
        dtype: floating dtype of the result.

    Returns:
        ``(*shape, dim)`` versors.

    Raises:
        ValueError: if ``n_reflections < 0`` or the algebra has only null vectors.
    """
    if n_reflections < 0:
        raise ValueError(f"n_reflections must be >= 0, got {n_reflections}")
    if n_reflections > 0 and alg.p + alg.q == 0:
        raise ValueError(f"{alg!r} has no non-null vectors to reflect in")
    sig = torch.tensor(alg.signature, dtype=torch.float64)
    vec_idx = [alg.blade_index((i,)) for i in range(alg.n)]
    numel = math.prod(shape)
    out = torch.zeros(numel, alg.dim, dtype=torch.float64)
    out[:, 0] = 1.0
    for _ in range(n_reflections):
        v = torch.randn(numel, alg.n, dtype=torch.float64, generator=generator)
        sq = (v * v * sig).sum(-1)
        while bool((sq.abs() < 0.1).any()):
            bad = sq.abs() < 0.1
            v[bad] = torch.randn(int(bad.sum()), alg.n, dtype=torch.float64, generator=generator)
            sq = (v * v * sig).sum(-1)
        v = v / sq.abs().sqrt()[:, None]
        mv = torch.zeros(numel, alg.dim, dtype=torch.float64)
        mv[:, vec_idx] = v
        out = geometric_product(alg, out, mv)
    return out.reshape(*shape, alg.dim).to(dtype)
