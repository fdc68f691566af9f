"""Metropolis and SLMC: exactness against analytic and independent references, and bad input.

References:
* spins in a field, ``E = -h Σ S_z``: ``<S_z> = coth(h/T) - T/h`` and the density of ``S_z`` is
  ``∝ exp(h z / T)`` on [-1, 1];
* the double-exchange model on 2×2: independent uniform configurations reweighted by
  ``exp(-F/T)`` (no Markov chain, so no shared failure mode with the samplers).
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from eqt.physics.linear_model import LinearSpinModel
from eqt.physics.mc_statistics import estimate
from eqt.physics.monte_carlo import (
    MCConfig,
    local_metropolis,
    observables,
    propose_spins,
    random_spins,
    run_metropolis,
    run_slmc,
)
from eqt.physics.spin_fermion import SpinFermionConfig, free_energy

H, T_FIELD = 1.5, 1.0
DE = SpinFermionConfig(L=2, J=4.0, temperature=0.25, mu=-1.0)  # strongly non-uniform weight, ESS ~ 40 %
OBS = ("energy", "magnetisation", "structure_pi")


def field_energy(spins: torch.Tensor) -> torch.Tensor:
    return -H * spins[..., 2].sum(dim=(1, 2))


def zero_energy(spins: torch.Tensor) -> torch.Tensor:
    return torch.zeros(spins.shape[0], dtype=torch.float64)


def start(batch: int, L: int = 2, seed: int = 0) -> torch.Tensor:
    return random_spins(batch, L, torch.Generator().manual_seed(seed))


def assert_agrees(est, mean: float, error: float = 0.0, sigmas: float = 4.0) -> None:
    combined = math.sqrt(est.error**2 + error**2)
    assert abs(est.mean - mean) < sigmas * combined, f"{est} vs {mean:.6g} ± {error:.2g}"


def langevin(x: float) -> float:
    return 1 / math.tanh(x) - 1 / x


@pytest.mark.parametrize("move", ["sphere", "rotation"])
def test_metropolis_spins_in_a_field(move):
    config = MCConfig(num_steps=150, num_thermalize=10, move=move, step_size=0.8)
    result = run_metropolis(field_energy, start(64), T_FIELD, config)
    assert_agrees(result.summary()["energy"], -4 * H * langevin(H / T_FIELD))
    assert 0.1 < result.acceptance.mean() < 0.95


@pytest.mark.parametrize("effective", [zero_energy, lambda s: -0.4 * field_energy(s).float()], ids=["zero", "wrong"])
def test_slmc_spins_in_a_field_histogram(effective):
    """Stationary law of S_z under SLMC with a poor model = the exact density, bin by bin."""
    config = MCConfig(num_steps=200, num_thermalize=10, updates_per_step=6, sample_interval=1)
    result = run_slmc(field_energy, effective, start(64), T_FIELD, config)
    x = H / T_FIELD
    assert_agrees(result.summary()["energy"], -4 * H * langevin(x))
    assert 0.05 < result.acceptance.mean() < 0.9
    sz = result.samples[..., 2].reshape(*result.samples.shape[:2], -1)  # (T, B, N)
    edges = torch.linspace(-1, 1, 6, dtype=torch.float64)
    cdf = (torch.exp(x * edges) - math.exp(-x)) / (2 * math.sinh(x))
    for k in range(5):
        fraction = ((sz >= edges[k]) & (sz < edges[k + 1])).to(torch.float64).mean(-1)  # (T, B)
        assert_agrees(estimate(fraction), float(cdf[k + 1] - cdf[k]))


def test_slmc_with_the_exact_model_accepts_everything():
    result = run_slmc(field_energy, field_energy, start(16), T_FIELD, MCConfig(num_steps=20, num_thermalize=0))
    assert result.acceptance.min() == 1.0
    de = functools.partial(free_energy, config=DE)
    result = run_slmc(de, de, start(8), DE.temperature, MCConfig(num_steps=5, num_thermalize=0))
    assert result.acceptance.min() == 1.0


def test_slmc_sample_proposals_keeps_trials_with_exact_energies():
    """With sample_proposals the samples are the global proposals: exact energies match, and the
    rejected ones differ from the chain states (the chain keeps its old state)."""
    config = MCConfig(num_steps=30, num_thermalize=0, updates_per_step=6, sample_interval=1, sample_proposals=True)
    wrong = lambda s: -0.4 * field_energy(s)  # noqa: E731 - a poor model, so some proposals are rejected
    result = run_slmc(field_energy, wrong, start(16), T_FIELD, config)
    flat = result.samples.reshape(-1, *result.samples.shape[2:])
    assert torch.allclose(field_energy(flat), result.sample_energies.reshape(-1), atol=1e-12)
    chain = run_slmc(field_energy, wrong, start(16), T_FIELD, config.replace(sample_proposals=False))
    accepted = result.acceptance.bool()
    assert 0 < accepted.sum() < accepted.numel()
    same = (result.samples == chain.samples).flatten(2).all(-1)  # (T, B)
    assert torch.equal(same, accepted)  # accepted proposal == the new state; rejected ones differ
    with pytest.raises(ValueError, match="sample_proposals"):
        MCConfig(sample_proposals=1)


@pytest.fixture(scope="module")
def reference() -> dict[str, tuple[float, float]]:
    """Reweighted independent uniform samples on 2×2: (mean, standard error) per observable."""
    s = start(40000, seed=123)
    e = free_energy(s, DE)
    w = torch.exp(-(e - e.min()) / DE.temperature)
    out = {}
    for name, v in {"energy": e, **observables(s)}.items():
        m = (w * v).sum() / w.sum()
        out[name] = (float(m), float((w**2 * (v - m) ** 2).sum().sqrt() / w.sum()))
    return out


def test_exact_metropolis_double_exchange(reference):
    run = run_metropolis(functools.partial(free_energy, config=DE), start(64, seed=1), DE.temperature,
                         MCConfig(num_steps=150, num_thermalize=10, move="rotation", step_size=1.0, seed=1))
    summary = run.summary()
    for name in OBS:
        assert_agrees(summary[name], *reference[name])


@pytest.mark.parametrize("couplings", [(0.0,), (0.3, -0.1)], ids=["zero", "wrong-sign"])
def test_slmc_with_poor_model_is_unbiased(reference, couplings):
    poor = LinearSpinModel(L=2, e0=0.0, couplings=couplings)
    run = run_slmc(functools.partial(free_energy, config=DE), poor, start(64, seed=2), DE.temperature,
                   MCConfig(num_steps=400, num_thermalize=10, updates_per_step=4, seed=2))
    summary = run.summary()
    assert summary["acceptance"].mean < 0.7  # the global correction does real work
    for name in OBS:
        assert_agrees(summary[name], *reference[name])
    # negative control: the inner chain alone samples the poor model and misses the exact structure factor
    inner = run_metropolis(poor, start(64, seed=3), DE.temperature, MCConfig(num_steps=100, num_thermalize=10))
    pi = inner.summary()["structure_pi"]
    assert abs(pi.mean - reference["structure_pi"][0]) > 10 * pi.error


def test_observables_of_ordered_states():
    L = 4
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    x = torch.arange(L)
    sign = (1 - 2 * ((x[:, None] + x[None, :]) % 2)).to(torch.float64)
    spins = torch.stack([up.expand(L, L, 3), sign[:, :, None] * up])
    obs = observables(spins)
    torch.testing.assert_close(obs["magnetisation"], torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(obs["structure_zero"], torch.tensor([16.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(obs["structure_pi"], torch.tensor([0.0, 16.0], dtype=torch.float64))


def test_proposals_and_local_moves():
    gen = torch.Generator().manual_seed(0)
    old = random_spins(500, 2, gen).reshape(-1, 3)
    for move in ("sphere", "rotation"):
        new = propose_spins(old, move, 0.05, gen)
        torch.testing.assert_close(new.norm(dim=-1), torch.ones(len(old), dtype=torch.float64))
    small = propose_spins(old, "rotation", 0.05, gen)
    assert (old * small).sum(-1).min() > 0.9
    sphere = propose_spins(old, "sphere", 0.05, gen)
    assert abs(float((old * sphere).sum(-1).mean())) < 0.1  # independent of the old spin
    spins = start(8)
    e = field_energy(spins)
    spins2, e2, acc = local_metropolis(spins, e, field_energy, 1e6, 10, generator=gen)
    torch.testing.assert_close(e2, field_energy(spins2))
    assert acc.min() >= 9  # infinite temperature: (almost) everything accepted


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"move": "flip"}, "move must be one of"),
        ({"num_steps": 1}, "num_steps must be >= 2"),
        ({"updates_per_step": 0}, "positive integer or None"),
        ({"step_size": 0.0}, "step_size must be a number > 0"),
        ({"seed": -1}, "non-negative integer"),
        ({"n_local": 3}, "unknown key 'n_local'"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        MCConfig.from_dict(kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: run_metropolis(field_energy, start(2), 0.0, MCConfig()), "temperature must be"),
        (lambda: run_metropolis(field_energy, start(2, L=4)[:, :3], 1.0, MCConfig()), "even"),
        (lambda: run_metropolis(field_energy, 2 * start(2), 1.0, MCConfig()), "unit vectors"),
        (lambda: run_metropolis(lambda s: s.sum(), start(2), 1.0, MCConfig()), r"shape \(2,\)"),
        (lambda: run_slmc(field_energy, lambda s: s[..., 0], start(2), 1.0, MCConfig()), r"shape \(2,\)"),
        (lambda: random_spins(1, 1), ">= 2"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
