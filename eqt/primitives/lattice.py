"""The periodic L×L square lattice of the spin models: sites, bonds, neighbour shells, spin checks.

Layout: a spin configuration is a ``(B, L, L, 3)`` float tensor, ``spins[b, x, y]`` the unit spin of
site ``(x, y)`` in configuration ``b``. Flattened site index ``i = x * L + y``. Distances use the
minimum image with periodic boundaries: ``dx = min(|x_i - x_j| mod L, L - |x_i - x_j| mod L)``.

Neighbour shell ``n`` (1-based) is the set of unordered site pairs ``{i, j}`` whose minimum-image
squared distance ``dx² + dy²`` is the ``n``-th smallest non-zero value present on the lattice
(shell 1: nearest neighbours, d² = 1; shell 2: diagonal, d² = 2; shell 3: d² = 4; ...). Each pair
is counted once, also where ``dx = L/2`` makes the two images equally near.

The tables are small integer tensors computed once per ``L`` and cached (they are constants).
"""

from __future__ import annotations

import functools

import torch

__all__ = [
    "check_lattice_size",
    "check_spins",
    "nearest_neighbour_bonds",
    "num_shells_available",
    "shell_distances",
    "shell_index",
    "shell_pairs",
    "shell_masks",
    "shell_correlations",
    "site_coordinates",
]

MIN_L = 2
UNIT_LENGTH_ATOL = 1e-6


def check_lattice_size(L: int) -> None:
    """Raise a one-line ``ValueError`` unless ``L`` is an even integer >= 2.

    Odd ``L`` is rejected: the lattice is then not bipartite, so the Néel state and the ordering
    wave vector (π, π) are not commensurate with it.
    """
    if not isinstance(L, int) or isinstance(L, bool):
        raise ValueError(f"lattice size L must be an integer, got {L!r}")
    if L < MIN_L:
        raise ValueError(f"lattice size L must be >= {MIN_L}, got {L}")
    if L % 2:
        raise ValueError(f"lattice size L must be even (odd L breaks the (π, π) sublattice structure), got {L}")


@functools.lru_cache(maxsize=None)
def _coordinates(L: int) -> torch.Tensor:
    x, y = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)  # (N, 2)


def site_coordinates(L: int) -> torch.Tensor:
    """``(N, 2)`` int64 coordinates ``(x, y)`` of site ``i = x * L + y``, ``N = L²``."""
    check_lattice_size(L)
    return _coordinates(L).clone()


@functools.lru_cache(maxsize=None)
def _bonds(L: int) -> torch.Tensor:
    xy = _coordinates(L)
    i = xy[:, 0] * L + xy[:, 1]
    right = xy[:, 0] * L + (xy[:, 1] + 1) % L
    down = ((xy[:, 0] + 1) % L) * L + xy[:, 1]
    return torch.cat([torch.stack([i, right], -1), torch.stack([i, down], -1)])  # (2N, 2)


def nearest_neighbour_bonds(L: int) -> torch.Tensor:
    """``(2N, 2)`` int64 directed bonds ``(i, i + ŷ)`` then ``(i, i + x̂)``, one pair per site each.

    Summing a hopping ``-t (c†_i c_j + h.c.)`` over these bonds gives the tight-binding band
    ``-2t (cos kx + cos ky)`` on every even ``L``; for ``L = 2`` the two bonds from ``i`` to its
    neighbour along an axis are both present (the hopping between them is ``-2t``).
    """
    check_lattice_size(L)
    return _bonds(L).clone()


@functools.lru_cache(maxsize=None)
def _shells(L: int) -> tuple[tuple[int, ...], torch.Tensor]:
    xy = _coordinates(L)
    d = (xy[:, None, :] - xy[None, :, :]).abs() % L  # (N, N, 2)
    d = torch.minimum(d, L - d)
    d2 = (d**2).sum(-1)  # (N, N)
    values = tuple(int(v) for v in torch.unique(d2) if v > 0)
    index = torch.searchsorted(torch.tensor((0,) + values), d2)  # 0 on the diagonal, n for shell n
    return values, index


def shell_distances(L: int) -> tuple[int, ...]:
    """Minimum-image squared distances of the shells present on the lattice, ascending.

    Example: ``L = 6`` gives ``(1, 2, 4, 5, 8, 9, 10, 13, 18)``.
    """
    check_lattice_size(L)
    return _shells(L)[0]


def num_shells_available(L: int) -> int:
    """Number of distinct neighbour shells on the periodic ``L×L`` lattice (``L = 2``: 2, ``L = 4``: 5)."""
    return len(shell_distances(L))


def shell_index(L: int) -> torch.Tensor:
    """``(N, N)`` int64: shell number of each site pair (0 on the diagonal, 1 for nearest neighbours)."""
    check_lattice_size(L)
    return _shells(L)[1].clone()


@functools.lru_cache(maxsize=None)
def _pairs(L: int, num_shells: int) -> tuple[torch.Tensor, ...]:
    index = _shells(L)[1]
    upper = torch.triu(torch.ones_like(index, dtype=torch.bool), diagonal=1)
    return tuple(torch.nonzero(upper & (index == n)) for n in range(1, num_shells + 1))


def shell_pairs(L: int, num_shells: int) -> tuple[torch.Tensor, ...]:
    """Unordered site pairs of the first ``num_shells`` shells.

    Args:
        L: even lattice size >= 2.
        num_shells: number of shells, 1 <= num_shells <= :func:`num_shells_available`.

    Returns:
        One ``(P_n, 2)`` int64 tensor of pairs ``(i, j)`` with ``i < j`` per shell ``n``
        (``P_1 = 2N`` for ``L >= 4``).

    Raises:
        ValueError: ``L`` is not an even integer >= 2, or the lattice has fewer shells than asked.
    """
    check_lattice_size(L)
    if not isinstance(num_shells, int) or isinstance(num_shells, bool) or num_shells < 1:
        raise ValueError(f"num_shells must be a positive integer, got {num_shells!r}")
    available = num_shells_available(L)
    if num_shells > available:
        raise ValueError(
            f"the periodic {L}x{L} lattice has only {available} neighbour shells (squared distances "
            f"{shell_distances(L)}), {num_shells} requested; use a larger L or fewer shells"
        )
    return tuple(p.clone() for p in _pairs(L, num_shells))


def check_spins(spins: torch.Tensor, L: int, atol: float = UNIT_LENGTH_ATOL) -> torch.Tensor:
    """Validate a batch of spin configurations and return it as float64.

    Args:
        spins: ``(B, L, L, 3)`` real floating tensor of unit vectors, ``B >= 1``.
        L: the lattice size it must have.
        atol: tolerance on ``| |S_i| - 1 |``.

    Returns:
        ``(B, L, L, 3)`` float64 (the input itself when it already is float64).

    Raises:
        ValueError: not a floating tensor, wrong shape, non-finite entries or spins not of unit length.
    """
    if not isinstance(spins, torch.Tensor) or not spins.is_floating_point():
        got = f"tensor of dtype {spins.dtype}" if isinstance(spins, torch.Tensor) else type(spins).__name__
        raise ValueError(f"spins must be a real floating torch tensor of shape (B, {L}, {L}, 3), got {got}")
    if spins.dim() != 4 or tuple(spins.shape[1:]) != (L, L, 3) or spins.shape[0] < 1:
        raise ValueError(f"spins must have shape (B, {L}, {L}, 3) with B >= 1, got {tuple(spins.shape)}")
    spins = spins.to(torch.float64)
    if not torch.isfinite(spins).all():
        raise ValueError("spins contain non-finite values")
    err = (spins.norm(dim=-1) - 1).abs().max().item()
    if err > atol:
        raise ValueError(f"spins must be unit vectors: | |S| - 1 | reaches {err:.3g} (tolerance {atol:g})")
    return spins


@functools.lru_cache(maxsize=None)
def _masks(L: int, num_shells: int, include_self: bool) -> torch.Tensor:
    index = _shells(L)[1]
    first = 0 if include_self else 1
    masks = torch.stack([(index == n) for n in range(first, num_shells + 1)]).to(torch.float64)
    masks.requires_grad_(False)
    return masks


def shell_masks(L: int, num_shells: int, include_self: bool = False) -> torch.Tensor:
    """Indicator matrices of the shells: ``(S, N, N)`` float64, ``M[n, i, j] = 1`` if ``shell(i, j) = n``.

    Rows are shells ``1 .. num_shells`` (``0 .. num_shells`` with ``include_self``, shell 0 being the
    diagonal). Both orders of a pair are set. The tensor is a cached constant: do not modify it.

    Raises:
        ValueError: bad ``L`` or more shells than the lattice has.
    """
    check_lattice_size(L)
    available = num_shells_available(L)
    if not isinstance(num_shells, int) or not 1 <= num_shells <= available:
        raise ValueError(f"the periodic {L}x{L} lattice has {available} neighbour shells (squared distances "
                         f"{shell_distances(L)}); num_shells={num_shells!r} must be between 1 and {available}")
    return _masks(L, num_shells, include_self)


def shell_correlations(x: torch.Tensor, L: int, num_shells: int) -> torch.Tensor:
    """Shell sums of vector products ``C_nc = sum_{{i,j} in shell n} x_ic . x_jc`` (each pair once).

    Args:
        x: ``(B, N, C, 3)`` vector channels on the ``N = L * L`` sites.
        L: lattice size.
        num_shells: shells ``1 .. num_shells``.

    Returns:
        ``(B, num_shells, C)`` in the dtype of ``x``.
    """
    masks = shell_masks(L, num_shells).to(dtype=x.dtype, device=x.device)  # (S, N, N)
    gram = torch.einsum("bicx,bjcx->bcij", x, x)  # (B, C, N, N)
    return 0.5 * torch.einsum("bcij,nij->bnc", gram, masks)  # both orders of each pair: halve
