"""Autocorrelation-aware error bars on series with known integrated autocorrelation time."""

from __future__ import annotations

import math

import pytest
import torch

from eqt.physics.mc_statistics import autocorrelation, estimate, integrated_autocorrelation_time


def ar1(rho: float, steps: int, chains: int, seed: int) -> torch.Tensor:
    """(steps, chains) stationary AR(1) with unit variance: τ_int = (1 + ρ) / (2 (1 - ρ))."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(steps, chains, generator=gen, dtype=torch.float64) * math.sqrt(1 - rho**2)
    x = torch.empty_like(noise)
    x[0] = torch.randn(chains, generator=gen, dtype=torch.float64)
    for t in range(1, steps):
        x[t] = rho * x[t - 1] + noise[t]
    return x


def test_independent_samples():
    x = torch.randn(4000, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    est = estimate(x)
    assert est.tau == pytest.approx(0.5, abs=0.08)
    assert est.error == pytest.approx(1 / math.sqrt(16000), rel=0.1)
    assert est.num_samples == 16000
    assert autocorrelation(x)[0] == 1.0


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_ar1_tau(rho):
    x = ar1(rho, 20000, 4, seed=1)
    tau = integrated_autocorrelation_time(x)
    assert tau == pytest.approx((1 + rho) / (2 * (1 - rho)), rel=0.12)
    assert autocorrelation(x)[1].item() == pytest.approx(rho, abs=0.02)


def test_error_bars_cover_the_true_mean():
    x = ar1(0.8, 2000, 300, seed=2)  # 300 independent runs of one chain each
    inside = sum(abs(e.mean) < 2 * e.error for e in (estimate(x[:, k]) for k in range(300)))
    assert 0.90 < inside / 300 < 0.99  # nominally 95.4 %
    naive = x.std(0) / math.sqrt(2000)
    assert estimate(x[:, 0]).error > 2 * naive[0]  # τ_int = 4.5: error 3x the naive one


def test_constant_series_and_errors():
    est = estimate(torch.ones(10, 3))
    assert (est.mean, est.error, est.tau) == (1.0, 0.0, 0.5)
    with pytest.raises(ValueError, match="shape"):
        estimate(torch.ones(1))
    with pytest.raises(ValueError, match="non-finite"):
        estimate(torch.tensor([1.0, float("nan")]))
