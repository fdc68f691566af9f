"""Square-lattice tables: bonds, minimum-image neighbour shells, and their error messages."""

from __future__ import annotations

import itertools

import pytest
import torch

from eqt.primitives.lattice import (
    check_lattice_size,
    nearest_neighbour_bonds,
    num_shells_available,
    shell_distances,
    shell_index,
    shell_pairs,
    site_coordinates,
)


def brute_force_d2(L: int) -> dict[tuple[int, int], int]:
    out = {}
    for (x1, y1), (x2, y2) in itertools.combinations(itertools.product(range(L), range(L)), 2):
        dx, dy = abs(x1 - x2), abs(y1 - y2)
        out[(x1 * L + y1, x2 * L + y2)] = min(dx, L - dx) ** 2 + min(dy, L - dy) ** 2
    return out


@pytest.mark.parametrize("L", [2, 4, 6])
def test_shells_match_brute_force(L):
    d2 = brute_force_d2(L)
    values = sorted(set(d2.values()))
    assert shell_distances(L) == tuple(values)
    assert num_shells_available(L) == len(values)
    pairs = shell_pairs(L, len(values))
    for n, p in enumerate(pairs):
        expected = sorted(k for k, v in d2.items() if v == values[n])
        assert sorted(map(tuple, p.tolist())) == expected
    index = shell_index(L)
    assert (index.diagonal() == 0).all() and (index == index.T).all()


def test_six_by_six_shells():
    assert shell_distances(6) == (1, 2, 4, 5, 8, 9, 10, 13, 18)
    counts = [len(p) for p in shell_pairs(6, 9)]
    assert counts == [72, 72, 72, 144, 72, 36, 72, 72, 18]
    assert sum(counts) == 36 * 35 // 2


def test_bonds_and_coordinates():
    L = 4
    xy = site_coordinates(L)
    assert xy.shape == (16, 2) and (xy[:, 0] * L + xy[:, 1] == torch.arange(16)).all()
    bonds = nearest_neighbour_bonds(L)
    assert bonds.shape == (32, 2)
    degree = torch.bincount(bonds.reshape(-1), minlength=16)
    assert (degree == 4).all()
    assert {tuple(sorted(b)) for b in bonds.tolist()} == {tuple(p) for p in shell_pairs(L, 1)[0].tolist()}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: check_lattice_size(3), "even"),
        (lambda: check_lattice_size(0), ">= 2"),
        (lambda: check_lattice_size(True), "integer"),
        (lambda: shell_pairs(4, 6), r"only 5 neighbour shells .* 6 requested"),
        (lambda: shell_pairs(2, 3), "only 2 neighbour shells"),
        (lambda: shell_pairs(4, 0), "positive integer"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
