"""Exact fermion free energy of the double-exchange model: slow reference, analytic limits, symmetries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eqt.physics.spin_fermion import (
    SpinFermionConfig,
    benchmark_free_energy,
    free_energy,
    hamiltonian,
    single_particle_energies,
    tight_binding_free_energy,
)
from eqt.reps.actions import Invariant, Vector
from eqt.reps.groups import O3
from eqt.testing import assert_equivariant

PAULI = [np.array([[0, 1], [1, 0]], complex), np.array([[0, -1j], [1j, 0]]), np.array([[1, 0], [0, -1]], complex)]


def random_unit(shape, seed=0) -> torch.Tensor:
    s = torch.randn(*shape, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return s / s.norm(dim=-1, keepdim=True)


def loop_hamiltonian(spins: np.ndarray, t: float, J: float) -> np.ndarray:
    """Independent slow construction: explicit loops over sites, the two forward bonds and spins."""
    L = spins.shape[0]
    h = np.zeros((2 * L * L, 2 * L * L), complex)
    for x in range(L):
        for y in range(L):
            i = x * L + y
            for j in (((x + 1) % L) * L + y, x * L + (y + 1) % L):
                for a in range(2):
                    h[2 * i + a, 2 * j + a] += -t
                    h[2 * j + a, 2 * i + a] += -t
            onsite = 0.5 * J * sum(spins[x, y, k] * PAULI[k] for k in range(3))
            h[2 * i:2 * i + 2, 2 * i:2 * i + 2] += onsite
    return h


def loop_free_energy(levels: np.ndarray, mu: float, T: float) -> float:
    total = 0.0
    for e in levels:
        x = -(e - mu) / T
        total += x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))
    return -T * total


def band(L: int, t: float = 1.0) -> np.ndarray:
    k = 2 * np.pi * np.arange(L) / L
    return (-2 * t * (np.cos(k)[:, None] + np.cos(k)[None, :])).reshape(-1)


@pytest.mark.parametrize("L", [2, 4])
def test_matches_slow_reference(L):
    config = SpinFermionConfig(L=L, t=0.7, J=3.0, temperature=0.3, mu=-0.4)
    spins = random_unit((3, L, L), seed=L)
    h = hamiltonian(spins, config)
    f = free_energy(spins, config)
    ground = free_energy(spins, config.replace(ensemble="ground_state", n_electrons=L * L - 1))
    for b in range(3):
        ref = loop_hamiltonian(spins[b].numpy(), config.t, config.J)
        np.testing.assert_allclose(h[b].numpy(), ref, atol=1e-14)
        levels = np.linalg.eigvalsh(ref)
        assert f[b].item() == pytest.approx(loop_free_energy(levels, config.mu, config.temperature), abs=1e-10)
        assert ground[b].item() == pytest.approx(np.sort(levels)[: L * L - 1].sum(), abs=1e-10)


@pytest.mark.parametrize("L", [2, 4, 6])
@pytest.mark.parametrize("ensemble", ["grand_canonical", "ground_state"])
def test_free_fermions_at_zero_coupling(L, ensemble):
    n_e = L * L + 3 if ensemble == "ground_state" else None
    config = SpinFermionConfig(L=L, J=0.0, temperature=0.2, mu=-0.8, ensemble=ensemble, n_electrons=n_e)
    f = free_energy(random_unit((4, L, L), seed=1), config)
    levels = np.sort(np.concatenate([band(L), band(L)]))
    expected = levels[:n_e].sum() if n_e else loop_free_energy(levels, config.mu, config.temperature)
    np.testing.assert_allclose(f.numpy(), expected, atol=1e-10)
    assert tight_binding_free_energy(config) == pytest.approx(expected, abs=1e-10)


def test_ferromagnet_and_neel_spectra_are_exact():
    L, J = 4, 2.5
    config = SpinFermionConfig(L=L, J=J)
    n = random_unit((1,), seed=3)[0]
    x = torch.arange(L)
    sign = (1 - 2 * ((x[:, None] + x[None, :]) % 2)).to(torch.float64)
    fm = n.expand(1, L, L, 3)
    neel = sign[None, :, :, None] * n
    eps = band(L)
    got = single_particle_energies(torch.cat([fm, neel]), config).numpy()
    np.testing.assert_allclose(got[0], np.sort(np.concatenate([eps - J / 2, eps + J / 2])), atol=1e-12)
    e_neel = np.sqrt(eps**2 + J**2 / 4)
    np.testing.assert_allclose(got[1], np.sort(np.concatenate([-e_neel, e_neel])), atol=1e-12)


def test_strong_coupling_gives_double_exchange_band():
    """J >> t: the lower N levels -> -J/2 + spectrum of the hopping -t <χ_i|χ_j>, errors O(t²/J)."""
    L = 4
    spins = random_unit((1, L, L), seed=5)
    s = spins[0].reshape(-1, 3).numpy()
    chi = []
    for v in s:
        w, u = np.linalg.eigh(sum(v[k] * PAULI[k] for k in range(3)))
        chi.append(u[:, 0])  # eigenvalue -1: electron spin antiparallel to S_i, energy -J/2
    chi = np.array(chi)
    spinful = loop_hamiltonian(np.zeros((L, L, 3)), 1.0, 0.0)[::2, ::2].real  # spinless hopping
    t_eff = spinful * (chi.conj() @ chi.T)
    de = np.linalg.eigvalsh(t_eff)
    errors = []
    for J in (100.0, 200.0):
        got = single_particle_energies(spins, SpinFermionConfig(L=L, J=J))[0, : L * L].numpy()
        errors.append(np.abs(got - (de - J / 2)).max())
    assert errors[1] < 0.1
    assert 1.7 < errors[0] / errors[1] < 2.3  # first-order convergence in t/J


def test_sum_rules_and_batch_independence():
    L = 4
    config = SpinFermionConfig(L=L, J=3.0, temperature=0.1, mu=0.3)
    spins = random_unit((5, L, L), seed=7)
    full = free_energy(spins, config.replace(ensemble="ground_state", n_electrons=2 * L * L))
    np.testing.assert_allclose(full.numpy(), 0.0, atol=1e-10)  # trace of h(S) is zero
    empty = free_energy(spins, config.replace(mu=-50.0))
    np.testing.assert_allclose(empty.numpy(), 0.0, atol=1e-40)
    batched = free_energy(spins, config)
    single = torch.cat([free_energy(spins[i:i + 1], config) for i in range(5)])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-11)
    assert free_energy(spins.float(), config).dtype == torch.float64


def test_local_fields_by_autograd_match_finite_differences():
    config = SpinFermionConfig(L=4, J=3.0, temperature=0.2, mu=-0.5)
    spins = random_unit((2, 4, 4), seed=9).requires_grad_(True)
    (grad,) = torch.autograd.grad(free_energy(spins, config).sum(), spins)
    v = torch.randn(spins.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v = v - (v * spins.detach()).sum(-1, keepdim=True) * spins.detach()  # tangent to the spheres
    eps = 1e-5

    def moved(sign: float) -> torch.Tensor:
        s = spins.detach() + sign * eps * v
        return free_energy(s / s.norm(dim=-1, keepdim=True), config)

    numeric = (moved(1.0) - moved(-1.0)) / (2 * eps)
    torch.testing.assert_close((grad * v).sum(dim=(1, 2, 3)), numeric, rtol=1e-6, atol=1e-8)


def test_spin_and_lattice_symmetries():
    L = 4
    config = SpinFermionConfig(L=L, J=2.0, temperature=0.25, mu=-0.5)
    spins = random_unit((2, L, L), seed=11)
    f = free_energy(spins, config)
    # O(3) acting on the spin components, inversion S -> -S and mirrors included
    assert_equivariant(lambda s: free_energy(s, config), O3(), [(spins, Vector(spatial_axis=-1, atom_axis=None))],
                       Invariant(), n_samples=6, rtol=1e-12)
    # translations and the C4v point group act on the lattice positions only
    images = [torch.roll(spins, (1, 3), dims=(1, 2)), torch.rot90(spins, 1, dims=(1, 2)),
              spins.transpose(1, 2), torch.flip(spins, dims=(1,))]
    for image in images:
        torch.testing.assert_close(free_energy(image, config), f, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"L": 5}, "even"),
        ({"L": 0}, ">= 2"),
        ({"L": 4.0}, "integer"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"J": float("nan")}, "finite"),
        ({"ensemble": "canonical"}, "ensemble must be one of"),
        ({"n_electrons": 3}, "only used with ensemble='ground_state'"),
        ({"ensemble": "ground_state"}, r"n_electrons must be an integer in \[0, 32\]"),
        ({"ensemble": "ground_state", "n_electrons": 33}, r"\[0, 32\]"),
        ({"ensemble": "ground_state", "n_electrons": -1}, r"\[0, 32\]"),
        ({"Lx": 4}, "unknown key 'Lx'"),
    ],
)
def test_bad_config(kwargs, match):
    base = {"L": 4}
    with pytest.raises(ValueError, match=match) as info:
        SpinFermionConfig.from_dict({**base, **kwargs})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("spins", "match"),
    [
        (random_unit((4, 4)), r"shape \(B, 4, 4, 3\)"),
        (random_unit((1, 2, 2)), r"shape \(B, 4, 4, 3\)"),
        (2 * random_unit((1, 4, 4)), "unit vectors"),
        (torch.full((1, 4, 4, 3), float("nan")), "non-finite"),
        (torch.ones(1, 4, 4, 3, dtype=torch.int64), "floating"),
    ],
)
def test_bad_spins(spins, match):
    with pytest.raises(ValueError, match=match) as info:
        free_energy(spins, SpinFermionConfig(L=4))
    assert "\n" not in str(info.value)


def test_benchmark_reports_rates():
    rates = benchmark_free_energy(L=2, batch_sizes=(1, 4), min_time=0.01)
    assert set(rates) == {1, 4} and all(r > 0 for r in rates.values())
