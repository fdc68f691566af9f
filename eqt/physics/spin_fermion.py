"""Exact fermion free energy of the double-exchange (spin-fermion) model by diagonalisation.

The model on the periodic L×L square lattice (``N = L²`` sites, classical unit spins ``S_i``)::

    H(S) = -t Σ_{⟨ij⟩, α} (c†_{iα} c_{jα} + h.c.)  +  (J/2) Σ_i S_i · (c†_{iα} σ_{αβ} c_{iβ})

Its single-particle matrix ``h(S)`` is ``2N × 2N``, basis index ``2 i + α`` (site ``i = x L + y``,
spin ``α = ↑, ↓``). With eigenvalues ``ε_n(S)`` the weight of a spin configuration is
``exp(-F(S) / T)`` with

* ``ensemble="grand_canonical"`` (default): the grand potential at chemical potential ``μ`` and
  temperature ``T``, ``F(S) = -T Σ_n ln(1 + exp(-(ε_n - μ) / T))``;
* ``ensemble="ground_state"``: the ground-state energy of ``n_electrons`` fermions,
  ``F(S) = Σ_{n < n_electrons} ε_n`` (the T → 0 canonical limit; ``T`` then enters only the
  Monte Carlo weight).

Units: energies and temperatures in units of the hopping (set ``t = 1``), ``k_B = 1``. ``J > 0``
couples the electron spin antiparallel to ``S``; the statistics of ``S`` do not depend on the sign
of ``J`` (``F(-S) = F(S)`` and ``σ → -σ`` is a unitary change of basis together with ``S → -S``).
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch

from eqt.config import Config
from eqt.primitives.lattice import check_lattice_size, check_spins, nearest_neighbour_bonds

__all__ = [
    "ENSEMBLES",
    "SpinFermionConfig",
    "benchmark_free_energy",
    "free_energy",
    "hamiltonian",
    "hopping_matrix",
    "single_particle_energies",
    "tight_binding_free_energy",
]

ENSEMBLES = ("grand_canonical", "ground_state")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class SpinFermionConfig(Config):
    """Parameters of the double-exchange model and of the fermion free energy.

    Attributes:
        L: linear lattice size (even, >= 2); ``N = L²`` sites, ``2N`` fermion orbitals.
        t: nearest-neighbour hopping (the energy unit).
        J: spin-fermion coupling, entering as ``(J/2) S_i · σ``.
        temperature: ``T`` (> 0), both of the fermions (grand canonical) and of the spin Monte Carlo.
        mu: chemical potential ``μ`` (grand canonical only; ``μ = 0`` is half filling by
            particle-hole symmetry).
        ensemble: ``"grand_canonical"`` or ``"ground_state"`` (see the module docstring).
        n_electrons: number of fermions, ``0 <= n_electrons <= 2N``; required for
            ``"ground_state"`` and not allowed for ``"grand_canonical"``.
    """

    L: int = 6
    t: float = 1.0
    J: float = 1.0
    temperature: float = 0.1
    mu: float = 0.0
    ensemble: str = "grand_canonical"
    n_electrons: int | None = None

    def __post_init__(self) -> None:
        check_lattice_size(self.L)
        for name in ("t", "J", "temperature", "mu"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value):
                raise ValueError(f"SpinFermionConfig.{name} must be a finite number, got {value!r}")
        if not self.temperature > 0:
            raise ValueError(f"SpinFermionConfig.temperature must be > 0, got {self.temperature}")
        if self.ensemble not in ENSEMBLES:
            raise ValueError(f"SpinFermionConfig.ensemble must be one of {', '.join(ENSEMBLES)}, got {self.ensemble!r}")
        if self.ensemble == "grand_canonical":
            if self.n_electrons is not None:
                raise ValueError("SpinFermionConfig.n_electrons is only used with ensemble='ground_state'; "
                                 "the grand-canonical filling is set by mu")
        else:
            n, orbitals = self.n_electrons, 2 * self.L**2
            if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= orbitals:
                raise ValueError(f"SpinFermionConfig.n_electrons must be an integer in [0, {orbitals}] "
                                 f"(2 L² orbitals) for ensemble='ground_state', got {n!r}")

    @property
    def num_sites(self) -> int:
        """``N = L²``."""
        return self.L**2


def hopping_matrix(L: int, t: float = 1.0) -> torch.Tensor:
    """``(N, N)`` float64 spinless hopping matrix ``-t Σ_bonds (|i⟩⟨j| + |j⟩⟨i|)``, periodic boundaries."""
    bonds = nearest_neighbour_bonds(L)
    n = L * L
    k = torch.zeros(n, n, dtype=torch.float64)
    k.index_put_((bonds[:, 0], bonds[:, 1]), torch.full((len(bonds),), -float(t), dtype=torch.float64), accumulate=True)
    return k + k.T


def hamiltonian(spins: torch.Tensor, config: SpinFermionConfig) -> torch.Tensor:
    """Single-particle Hamiltonians ``h(S)``.

    Args:
        spins: ``(B, L, L, 3)`` unit spins.
        config: model parameters.

    Returns:
        ``(B, 2N, 2N)`` complex128 Hermitian matrices, basis index ``2 i + α``.

    Raises:
        ValueError: spins of the wrong shape or not of unit length.
    """
    spins = check_spins(spins, config.L)
    b, n = spins.shape[0], config.num_sites
    s = spins.reshape(b, n, 3)  # (B, N, 3)
    sx, sy, sz = s.unbind(-1)
    half = 0.5 * config.J
    # (J/2) S·σ per site: [[Sz, Sx - i Sy], [Sx + i Sy, -Sz]]
    onsite = torch.stack([
        torch.stack([torch.complex(sz, torch.zeros_like(sz)), torch.complex(sx, -sy)], -1),
        torch.stack([torch.complex(sx, sy), torch.complex(-sz, torch.zeros_like(sz))], -1),
    ], -2) * half  # (B, N, 2, 2)
    kin = hopping_matrix(config.L, config.t).to(device=spins.device, dtype=torch.complex128)  # (N, N)
    h = torch.zeros(b, n, 2, n, 2, dtype=torch.complex128, device=spins.device)
    h[:, :, 0, :, 0] = kin
    h[:, :, 1, :, 1] = kin
    site = torch.arange(n, device=spins.device)
    h[:, site, :, site, :] += onsite.transpose(0, 1)  # advanced indices first: (N, B, 2, 2)
    return h.reshape(b, 2 * n, 2 * n)


def single_particle_energies(spins: torch.Tensor, config: SpinFermionConfig) -> torch.Tensor:
    """``(B, 2N)`` float64 eigenvalues of :func:`hamiltonian`, ascending (``torch.linalg.eigvalsh``)."""
    return torch.linalg.eigvalsh(hamiltonian(spins, config))


def _free_energy_from_levels(eps: torch.Tensor, config: SpinFermionConfig) -> torch.Tensor:
    """``(..., M)`` levels -> ``(...,)`` free energy of the configured ensemble."""
    if config.ensemble == "ground_state":
        return eps[..., : config.n_electrons].sum(-1)
    x = -(eps - config.mu) / config.temperature
    return -config.temperature * torch.logaddexp(torch.zeros_like(x), x).sum(-1)


def free_energy(spins: torch.Tensor, config: SpinFermionConfig) -> torch.Tensor:
    """Exact fermion free energy ``F(S)`` of each configuration (the Monte Carlo energy).

    Args:
        spins: ``(B, L, L, 3)`` unit spins (any floating dtype; computed in float64).
        config: model parameters (``ensemble`` picks grand potential or ground-state energy).

    Returns:
        ``(B,)`` float64, differentiable: ``torch.autograd.grad`` gives the local exchange fields
        ``∂F/∂S_i`` (the grand potential is smooth in ``S``; the ground-state energy only where the
        level ``n_electrons`` is not degenerate).

    Raises:
        ValueError: spins of the wrong shape or not of unit length.
    """
    return _free_energy_from_levels(single_particle_energies(spins, config), config)


def tight_binding_free_energy(config: SpinFermionConfig) -> float:
    """Analytic ``J``-independent reference for ``J = 0``: free spin-½ fermions on the periodic lattice.

    Uses the band ``ε_k = -2t (cos kx + cos ky)``, ``k = 2π (m1, m2) / L``, twofold spin degenerate.

    Returns:
        The free energy of the configured ensemble at ``J = 0`` (float).
    """
    k = 2 * math.pi * torch.arange(config.L, dtype=torch.float64) / config.L
    band = (-2 * config.t * (torch.cos(k)[:, None] + torch.cos(k)[None, :])).reshape(-1)
    levels = torch.sort(torch.cat([band, band])).values
    return float(_free_energy_from_levels(levels, config))


def benchmark_free_energy(L: int = 6, batch_sizes: tuple[int, ...] = (1, 16, 64), min_time: float = 1.0,
                          seed: int = 0, device: str | torch.device = "cpu") -> dict[int, float]:
    """Throughput of :func:`free_energy` (exact diagonalisation) on the current torch thread setting.

    Not a test. Each batch size is timed for at least ``min_time`` seconds after one warm-up call.

    Args:
        L: lattice size.
        batch_sizes: configurations per call.
        min_time: seconds of timing per batch size.
        seed: seed of the random configurations.
        device: where to diagonalise (``"cuda"``: the timing waits for the GPU after each batch size).

    Returns:
        Batch size -> configurations (free energies) per second.
    """
    config = SpinFermionConfig(L=L, J=4.0, temperature=0.1)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for b in batch_sizes:
        s = torch.randn(b, L, L, 3, generator=gen, dtype=torch.float64)
        s = (s / s.norm(dim=-1, keepdim=True)).to(device)
        cuda = s.device.type == "cuda"
        free_energy(s, config)
        if cuda:
            torch.cuda.synchronize(s.device)
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_time or calls == 0:
            free_energy(s, config)
            calls += 1
            if cuda:
                torch.cuda.synchronize(s.device)
        out[b] = calls * b / elapsed
    return out
