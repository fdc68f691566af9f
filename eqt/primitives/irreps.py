"""Irreps bookkeeping and constant tables for e3nn-layout features (tier 1: no parameters).

Features of O(3) irreps live in e3nn's layout: a tensor ``(..., irreps.dim)`` whose last axis is
the concatenation, over the slots ``(mul, ir)`` of the irreps, of ``mul`` copies of the ``2l + 1``
components of ``ir`` (multiplicity-major: ``x[..., slot].view(..., mul, 2l + 1)``).

This module holds what the irreps layers of :mod:`eqt.layers.irreps` need and that is not a module:
parsing with one-line errors, the "even first" sort of Equiformer, component-normalised
Clebsch-Gordan tables (computed once in float64, cached), spherical harmonics of edge vectors,
the head split of a feature vector, and second-moment normalisation constants of activations.

Inside a layer, features may also travel as *blocks*: a list with one ``(n, 2l + 1, mul)`` tensor
per slot (component-major, cuEquivariance's ``ir_mul``). In that layout an equivariant linear map
of a slot is one plain matrix product ``(n * (2l + 1), mul_in) @ (mul_in, mul_out)`` and a
channel-wise tensor product is a batched matrix product, with no transposing copies; the e3nn
layout is only used at layer boundaries (:func:`to_blocks`, :func:`from_blocks`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from e3nn import o3
from torch import Tensor

__all__ = [
    "MAX_SH_L",
    "parse_irreps",
    "with_parity",
    "sort_even_first",
    "is_even_first",
    "scalar_mul",
    "divide_irreps",
    "clebsch_gordan",
    "spherical_harmonics",
    "sh_irreps",
    "head_permutation",
    "to_blocks",
    "from_blocks",
    "flat_blocks_to_e3nn",
    "second_moment_constant",
    "smooth_leaky_relu",
]

#: highest degree that ``e3nn.o3.spherical_harmonics`` implements
MAX_SH_L = 12

_SCALAR = o3.Irrep(0, 1)


def parse_irreps(value: str | o3.Irreps, name: str = "irreps") -> o3.Irreps:
    """Parse an irreps string with a one-line error.

    Args:
        value: e.g. ``"128x0e+64x1o+32x2e"`` or an ``o3.Irreps``.
        name: what the value is (for the error message).

    Returns:
        The irreps.

    Raises:
        ValueError: the string does not parse, or it is empty.
    """
    try:
        irreps = o3.Irreps(value)
    except (ValueError, TypeError, AssertionError):
        raise ValueError(f"{name}: cannot parse {value!r} as irreps (expected e.g. '128x0e+64x1o+32x2e')") from None
    if irreps.dim == 0:
        raise ValueError(f"{name}: {value!r} is empty")
    return irreps


def with_parity(irreps: o3.Irreps, parity: str) -> o3.Irreps:
    """Apply a parity convention to irreps labels.

    Args:
        irreps: the irreps as written.
        parity: ``"o3"`` keeps the labels (true O(3): vectors are ``1o``); ``"se3"`` relabels every
            irrep as even, which is Equiformer's reference labelling (``1e`` vectors) and makes a
            model SE(3)- but not reflection-equivariant.

    Returns:
        The relabelled irreps.
    """
    if parity == "o3":
        return irreps
    if parity == "se3":
        return o3.Irreps([(mul, (ir.l, 1)) for mul, ir in irreps])
    raise ValueError(f"parity must be 'o3' or 'se3', got {parity!r}")


def sort_even_first(irreps: o3.Irreps) -> tuple[o3.Irreps, tuple[int, ...]]:
    """Sort irreps by ``l``, even before odd at equal ``l``, stable (Equiformer's ``sort_irreps_even_first``).

    Args:
        irreps: the irreps to sort (not simplified).

    Returns:
        ``(sorted irreps, perm)`` where slot ``i`` of the input is slot ``perm[i]`` of the output.
    """
    keys = sorted((ir.l, -ir.p, i) for i, (_, ir) in enumerate(irreps))
    order = [i for _, _, i in keys]
    perm = [0] * len(order)
    for new, old in enumerate(order):
        perm[old] = new
    return o3.Irreps([irreps[i] for i in order]), tuple(perm)


def is_even_first(irreps: o3.Irreps) -> bool:
    """Whether ``irreps`` is sorted even-first and simplified (no two slots of the same irrep)."""
    return sort_even_first(irreps)[0].simplify() == irreps and len(set(ir for _, ir in irreps)) == len(irreps)


def scalar_mul(irreps: o3.Irreps) -> int:
    """Number of ``0e`` channels."""
    return sum(mul for mul, ir in irreps if ir == _SCALAR)


def divide_irreps(irreps: o3.Irreps, parts: int, name: str = "irreps") -> o3.Irreps:
    """Irreps with every multiplicity divided by ``parts`` (one attention head).

    Raises:
        ValueError: ``parts`` does not divide some multiplicity.
    """
    for mul, ir in irreps:
        if mul % parts:
            raise ValueError(f"num_heads={parts} does not divide the multiplicity {mul} of {ir} in {name} '{irreps}'")
    return o3.Irreps([(mul // parts, ir) for mul, ir in irreps])


@functools.lru_cache(maxsize=None)
def _cg64(l1: int, l2: int, l3: int) -> Tensor:
    return o3.wigner_3j(l1, l2, l3, dtype=torch.float64) * math.sqrt(2 * l3 + 1)


def clebsch_gordan(l1: int, l2: int, l3: int) -> Tensor:
    """Component-normalised coupling coefficients ``C[a, b, c]`` of ``l1 x l2 -> l3`` (float64).

    ``sqrt(2 l3 + 1) * wigner_3j(l1, l2, l3)`` in e3nn's real basis: if the inputs have unit
    variance per component, so has ``sum_ab C[a, b, c] x_a y_b`` (e3nn's ``irrep_normalization=
    'component'`` with ``path_normalization='none'``, as Equiformer's ``TensorProductRescale``).

    Returns:
        ``(2 l1 + 1, 2 l2 + 1, 2 l3 + 1)`` float64 (a cached table; do not modify in place).
    """
    return _cg64(l1, l2, l3)


def sh_irreps(l_max: int, parity: str = "o3") -> o3.Irreps:
    """Irreps of the spherical harmonics ``Y_0 .. Y_lmax`` of a polar vector under a parity convention.

    ``"o3"``: ``0e+1o+2e+3o...`` (``p = (-1)^l``); ``"se3"``: ``0e+1e+2e+3e...`` (Equiformer's labels).
    """
    if not 0 <= l_max <= MAX_SH_L:
        raise ValueError(f"l_max={l_max} is outside the spherical harmonics' range 0..{MAX_SH_L}")
    return with_parity(o3.Irreps.spherical_harmonics(l_max), parity)


def spherical_harmonics(l_max: int, vec: Tensor) -> Tensor:
    """Spherical harmonics of the directions of ``vec``, component-normalised (``|Y_l|^2 = 2l + 1``).

    Args:
        l_max: highest degree (at most :data:`MAX_SH_L`).
        vec: ``(E, 3)`` vectors (any length; zero vectors give ``Y_l = 0`` for ``l > 0``).

    Returns:
        ``(E, (l_max + 1)^2)`` in e3nn order.
    """
    if not 0 <= l_max <= MAX_SH_L:
        raise ValueError(f"l_max={l_max} is outside the spherical harmonics' range 0..{MAX_SH_L}")
    return o3.spherical_harmonics(list(range(l_max + 1)), vec, normalize=True, normalization="component")


def head_permutation(irreps: o3.Irreps, num_heads: int) -> Tensor:
    """Index that splits a feature vector into heads: ``x[..., idx].view(..., H, dim // H)``.

    Slot ``(mul, ir)`` gives channels ``h * mul/H .. (h+1) * mul/H`` to head ``h``; a head's vector
    is the concatenation of its share of every slot, i.e. it is laid out as ``irreps / H``
    (Equiformer's ``Vec2AttnHeads``). ``argsort(idx)`` undoes it.

    Returns:
        ``(irreps.dim,)`` int64.
    """
    per_head: list[list[Tensor]] = [[] for _ in range(num_heads)]
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        block = torch.arange(sl.start, sl.stop).view(num_heads, (mul // num_heads) * ir.dim)
        for h in range(num_heads):
            per_head[h].append(block[h])
    return torch.cat([torch.cat(parts) for parts in per_head])


def to_blocks(x: Tensor, irreps: o3.Irreps) -> list[Tensor]:
    """Split an e3nn-layout feature into per-slot blocks (views, no copy).

    Args:
        x: ``(n, irreps.dim)``.
        irreps: its irreps.

    Returns:
        One ``(n, 2l + 1, mul)`` view per slot (the transpose of e3nn's ``(n, mul, 2l + 1)``).
    """
    n = x.shape[0]
    parts = x.split([mul * ir.dim for mul, ir in irreps], dim=-1)
    return [b.view(n, mul, ir.dim).transpose(1, 2) for b, (mul, ir) in zip(parts, irreps)]


def from_blocks(blocks: list[Tensor]) -> Tensor:
    """Inverse of :func:`to_blocks`: per-slot ``(n, 2l + 1, mul)`` blocks -> ``(n, dim)`` in e3nn layout."""
    n = blocks[0].shape[0]
    return torch.cat([b.transpose(1, 2).reshape(n, b.shape[1] * b.shape[2]) for b in blocks], dim=-1)


def flat_blocks_to_e3nn(x: Tensor, irreps: o3.Irreps) -> Tensor:
    """Concatenated flattened blocks ``(n, sum_slots (2l+1) * mul)`` (component-major) -> e3nn layout ``(n, dim)``."""
    n = x.shape[0]
    parts = x.split([mul * ir.dim for mul, ir in irreps], dim=-1)
    return torch.cat([b.view(n, ir.dim, mul).transpose(1, 2).reshape(n, mul * ir.dim)
                      for b, (mul, ir) in zip(parts, irreps)], dim=-1)


@functools.lru_cache(maxsize=None)
def _gauss_hermite(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite.hermgauss(n)
    return math.sqrt(2.0) * x, w / math.sqrt(math.pi)


def second_moment_constant(fn: Callable[[Tensor], Tensor]) -> float:
    """``1 / sqrt(E[fn(z)^2])`` for ``z ~ N(0, 1)`` (e3nn's ``normalize2mom``, by Gauss-Hermite quadrature).

    Multiplying an activation by this constant keeps unit second moments through it, which is how
    e3nn's ``Activation`` and ``Gate`` (and hence Equiformer) scale every non-linearity.
    """
    x, w = _gauss_hermite()
    y = fn(torch.as_tensor(x, dtype=torch.float64)).numpy()
    return float(1.0 / math.sqrt(float(np.sum(w * y * y))))


def smooth_leaky_relu(x: Tensor, negative_slope: float = 0.2) -> Tensor:
    """Equiformer's smooth leaky ReLU ``(1+a)/2 x + (1-a)/2 x (2 sigmoid(x) - 1)``; shape preserved."""
    a = negative_slope
    return 0.5 * (1 + a) * x + 0.5 * (1 - a) * x * (2 * torch.sigmoid(x) - 1)
