"""Linear (Heisenberg) effective model: shell sums, least-squares fit, RKKY limit, errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from eqt.primitives.lattice import shell_distances
from eqt.physics.linear_model import LinearSpinModel, fit_linear_model, shell_correlations
from eqt.physics.monte_carlo import random_spins
from eqt.physics.spin_fermion import SpinFermionConfig, free_energy
from eqt.reps.actions import Invariant, Vector
from eqt.reps.groups import O3
from eqt.testing import assert_equivariant


def spins(batch: int, L: int, seed: int = 0) -> torch.Tensor:
    return random_spins(batch, L, torch.Generator().manual_seed(seed))


def loop_correlations(s: torch.Tensor, num_shells: int) -> torch.Tensor:
    L = s.shape[1]
    d2 = shell_distances(L)
    out = torch.zeros(s.shape[0], num_shells, dtype=torch.float64)
    for (x1, y1), (x2, y2) in itertools.combinations(itertools.product(range(L), range(L)), 2):
        dx, dy = abs(x1 - x2), abs(y1 - y2)
        n = d2.index(min(dx, L - dx) ** 2 + min(dy, L - dy) ** 2)
        if n < num_shells:
            out[:, n] += (s[:, x1, y1] * s[:, x2, y2]).sum(-1)
    return out


def test_shell_correlations_match_loops():
    s = spins(3, 4)
    torch.testing.assert_close(shell_correlations(s, 5), loop_correlations(s, 5), rtol=0, atol=1e-12)
    fm = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(1, 6, 6, 3)
    assert shell_correlations(fm, 9)[0].tolist() == [72, 72, 72, 144, 72, 36, 72, 72, 18]


def test_fit_recovers_couplings_and_roundtrips():
    truth = LinearSpinModel(L=4, e0=-3.0, couplings=(0.7, -0.2, 0.05))
    s = spins(40, 4, seed=1)
    fitted = fit_linear_model(s, truth(s), 3)
    assert fitted.e0 == pytest.approx(-3.0, abs=1e-10)
    assert fitted.couplings == pytest.approx((0.7, -0.2, 0.05), abs=1e-10)
    assert LinearSpinModel.from_dict(fitted.to_dict()) == fitted
    assert_equivariant(truth, O3(), [(s[:2], Vector(spatial_axis=-1, atom_axis=None))], Invariant(), n_samples=4)
    torch.testing.assert_close(truth(torch.roll(s, (1, 2), dims=(1, 2))), truth(s))


def test_linear_model_is_exact_to_second_order_in_J():
    """Small J: the free energy is RKKY-like, bilinear in the spins up to relative O(J²) corrections."""
    s = spins(120, 4, seed=2)

    def relative_residual(J: float, mu: float) -> float:
        e = free_energy(s, SpinFermionConfig(L=4, J=J, temperature=0.2, mu=mu))
        model = fit_linear_model(s[:80], e[:80], 5)
        return float((e[80:] - model(s[80:])).std() / e.std())

    weak, weaker = relative_residual(0.5, -0.7), relative_residual(0.25, -0.7)
    assert weak < 0.02
    assert 3.0 < weak / weaker < 5.0  # residual / signal ~ J²
    assert relative_residual(8.0, -3.0) > 0.3  # the double-exchange regime is far from bilinear


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: LinearSpinModel(L=2, couplings=(1.0, 1.0, 1.0)), "only 2 neighbour shells"),
        (lambda: LinearSpinModel(L=3), "even"),
        (lambda: LinearSpinModel(L=4, couplings=(float("inf"),)), "finite"),
        (lambda: LinearSpinModel.from_dict({"L": 4, "J1": 1.0}), "unknown key 'J1'"),
        (lambda: fit_linear_model(spins(3, 4), torch.zeros(3), 3), "need more than 3 configurations"),
        (lambda: fit_linear_model(spins(5, 4), torch.zeros(4), 1), r"shape \(5,\)"),
        (lambda: shell_correlations(spins(2, 4)[0], 1), r"shape \(B, L, L, 3\)"),
        (lambda: LinearSpinModel(L=4)(spins(1, 6)), r"only 5 neighbour shells|shape"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
