"""Metropolis and self-learning Monte Carlo (SLMC) for classical unit spins on the L×L lattice.

Energies are callables ``energy(spins (B, L, L, 3)) -> (B,)`` (the exact
:func:`eqt.physics.spin_fermion.free_energy` bound to its config, a fitted
:class:`eqt.physics.linear_model.LinearSpinModel`, later a transformer). ``B`` independent chains
run in lock step; every energy call is batched over them.

**Local move.** Each chain picks a site uniformly at random and proposes a new spin there:

* ``move="sphere"``: a fresh direction uniform on the sphere (independent of the old spin);
* ``move="rotation"``: ``S' = (S + step_size · g) / |S + step_size · g|`` with ``g`` a standard
  Gaussian 3-vector, a small random rotation whose proposal density depends only on the angle
  between ``S`` and ``S'``.

Both proposals are symmetric, so ``min(1, exp(-ΔE / T))`` gives detailed balance.

**SLMC step** (cumulative update; Liu, Qi, Meng, Fu, PRB 95, 041101 (2017)). From ``S`` run
``updates_per_step`` local Metropolis moves under ``E_eff`` only, reaching ``S'``, then accept
``S'`` with ``min(1, exp(-[(E(S') - E_eff(S')) - (E(S) - E_eff(S))] / T))``. The inner chain is
reversible for ``exp(-E_eff / T)``, so the composite step is reversible for ``exp(-E / T)``
whatever ``E_eff`` is: a poor model only lowers the acceptance. One exact energy per step.

**Observables** per configuration (``N = L²``, ``r_i = (x, y)``):
``magnetisation = |Σ_i S_i| / N``, structure factor ``S(q) = |Σ_i S_i e^{i q·r_i}|² / N`` at
``q = (π, π)`` (``structure_pi``) and ``q = (0, 0)`` (``structure_zero = N m²``), and the exact
energy. Error bars: :mod:`eqt.physics.mc_statistics`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from eqt.config import Config
from eqt.primitives.lattice import check_lattice_size, check_spins
from eqt.physics.mc_statistics import Estimate, estimate

__all__ = [
    "MOVES",
    "EnergyFn",
    "MCConfig",
    "MCResult",
    "local_metropolis",
    "observables",
    "propose_spins",
    "random_spins",
    "run_metropolis",
    "run_slmc",
    "slmc_step",
]

EnergyFn = Callable[[torch.Tensor], torch.Tensor]
MOVES = ("sphere", "rotation")
OBSERVABLES = ("energy", "magnetisation", "structure_pi", "structure_zero")


@dataclasses.dataclass(frozen=True)
class MCConfig(Config):
    """Settings of :func:`run_metropolis` and :func:`run_slmc`.

    Attributes:
        num_steps: recorded steps (Metropolis: blocks of local moves; SLMC: global steps).
        num_thermalize: steps run and discarded before recording.
        updates_per_step: local moves per step, per chain; None = one sweep (``L²``).
            For SLMC these are the moves under the effective model between global decisions.
        move: ``"sphere"`` (uniform new direction) or ``"rotation"`` (Gaussian kick, see module doc).
        step_size: size of the Gaussian kick of ``"rotation"`` (ignored by ``"sphere"``).
        sample_interval: keep every ``sample_interval``-th recorded configuration in
            :attr:`MCResult.samples`; 0 keeps none.
        sample_proposals: SLMC only: the kept samples are the global *proposals* (the trial
            configurations after the effective-model updates, accepted or not, with their exact
            energies) instead of the chain states: the configurations on which the effective model
            decides the acceptance, the training data of the self-learning loop.
        seed: seed of the ``torch.Generator`` driving the chains.
    """

    num_steps: int = 100
    num_thermalize: int = 10
    updates_per_step: int | None = None
    move: str = "sphere"
    step_size: float = 0.5
    sample_interval: int = 0
    sample_proposals: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.sample_proposals, bool):
            raise ValueError(f"MCConfig.sample_proposals must be true or false, got {self.sample_proposals!r}")
        for name in ("num_steps", "num_thermalize", "sample_interval", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"MCConfig.{name} must be a non-negative integer, got {value!r}")
        if self.num_steps < 2:
            raise ValueError(f"MCConfig.num_steps must be >= 2 (error bars need a time series), got {self.num_steps}")
        u = self.updates_per_step
        if u is not None and (not isinstance(u, int) or isinstance(u, bool) or u < 1):
            raise ValueError(f"MCConfig.updates_per_step must be a positive integer or None, got {u!r}")
        if self.move not in MOVES:
            raise ValueError(f"MCConfig.move must be one of {', '.join(MOVES)}, got {self.move!r}")
        if isinstance(self.step_size, bool) or not isinstance(self.step_size, (int, float)) or not self.step_size > 0:
            raise ValueError(f"MCConfig.step_size must be a number > 0, got {self.step_size!r}")


@dataclasses.dataclass
class MCResult:
    """Time series of a run: ``T = num_steps`` recorded steps of ``B`` chains.

    Attributes:
        energy: ``(T, B)`` exact energy.
        magnetisation: ``(T, B)`` ``|m|``.
        structure_pi: ``(T, B)`` ``S(π, π)``.
        structure_zero: ``(T, B)`` ``S(0, 0)``.
        acceptance: ``(T, B)``: Metropolis, fraction of the step's local moves accepted; SLMC,
            1.0 or 0.0 for the global decision.
        local_acceptance: ``(T, B)`` fraction of local moves accepted (SLMC: under ``E_eff``).
        spins: ``(B, L, L, 3)`` final configurations.
        samples: ``(T', B, L, L, 3)`` kept configurations (``sample_interval``; the SLMC proposals
            with ``sample_proposals``), else ``(0, B, L, L, 3)``.
        sample_energies: ``(T', B)`` exact energies of ``samples``.
    """

    energy: torch.Tensor
    magnetisation: torch.Tensor
    structure_pi: torch.Tensor
    structure_zero: torch.Tensor
    acceptance: torch.Tensor
    local_acceptance: torch.Tensor
    spins: torch.Tensor
    samples: torch.Tensor
    sample_energies: torch.Tensor

    def summary(self) -> dict[str, Estimate]:
        """Autocorrelation-aware :class:`Estimate` of each observable and of the acceptance."""
        names = OBSERVABLES + ("acceptance", "local_acceptance")
        return {name: estimate(getattr(self, name)) for name in names}


def random_spins(batch: int, L: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(batch, L, L, 3)`` float64 spins uniform on the sphere (infinite temperature)."""
    check_lattice_size(L)
    s = torch.randn(batch, L, L, 3, generator=generator, dtype=torch.float64)
    return s / s.norm(dim=-1, keepdim=True)


def propose_spins(old: torch.Tensor, move: str, step_size: float, generator: torch.Generator | None) -> torch.Tensor:
    """Symmetric single-spin proposals.

    Args:
        old: ``(B, 3)`` current unit spins.
        move: ``"sphere"`` or ``"rotation"``.
        step_size: Gaussian kick size of ``"rotation"``.
        generator: random generator.

    Returns:
        ``(B, 3)`` proposed unit spins.
    """
    g = torch.randn(old.shape, generator=generator, dtype=old.dtype)
    if move == "sphere":
        new = g
    elif move == "rotation":
        new = old + step_size * g
    else:
        raise ValueError(f"move must be one of {', '.join(MOVES)}, got {move!r}")
    return new / new.norm(dim=-1, keepdim=True).clamp_min(1e-300)


def _energies(energy_fn: EnergyFn, spins: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        e = energy_fn(spins)
    if not isinstance(e, torch.Tensor) or e.shape != (spins.shape[0],):
        raise ValueError(f"energy function must return a tensor of shape ({spins.shape[0]},), "
                         f"got {tuple(getattr(e, 'shape', ())) or type(e).__name__}")
    return e.detach().to(torch.float64)


def _accept(log_ratio: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``(B,)`` bool: Metropolis decisions ``u < exp(log_ratio)``."""
    u = torch.rand(log_ratio.shape, generator=generator, dtype=torch.float64)
    return torch.log(u) < log_ratio


def local_metropolis(spins: torch.Tensor, energies: torch.Tensor, energy_fn: EnergyFn, temperature: float,
                     num_updates: int, move: str = "sphere", step_size: float = 0.5,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Single-spin Metropolis moves at random sites, all chains at once.

    Args:
        spins: ``(B, L, L, 3)`` current configurations.
        energies: ``(B,)`` ``energy_fn(spins)``.
        energy_fn: ``(B, L, L, 3) -> (B,)``.
        temperature: ``T`` of the weight ``exp(-E / T)``.
        num_updates: moves per chain.
        move: proposal, see :func:`propose_spins`.
        step_size: kick size of ``"rotation"``.
        generator: random generator.

    Returns:
        ``(spins (B, L, L, 3), energies (B,), accepted (B,))``, ``accepted`` the number of accepted
        moves per chain (float64).
    """
    b, L = spins.shape[0], spins.shape[1]
    n = L * L
    rows = torch.arange(b)
    accepted = torch.zeros(b, dtype=torch.float64)
    for _ in range(num_updates):
        site = torch.randint(n, (b,), generator=generator)
        flat = spins.reshape(b, n, 3)
        trial = flat.clone()
        trial[rows, site] = propose_spins(flat[rows, site], move, step_size, generator)
        trial = trial.reshape(spins.shape)
        e_trial = _energies(energy_fn, trial)
        ok = _accept(-(e_trial - energies) / temperature, generator)
        spins = torch.where(ok[:, None, None, None], trial, spins)
        energies = torch.where(ok, e_trial, energies)
        accepted += ok
    return spins, energies, accepted


def slmc_step(spins: torch.Tensor, exact: torch.Tensor, effective: torch.Tensor, exact_fn: EnergyFn,
              effective_fn: EnergyFn, temperature: float, num_local: int, move: str = "sphere",
              step_size: float = 0.5, generator: torch.Generator | None = None, *, with_trial: bool = False
              ) -> tuple[torch.Tensor, ...]:
    """One cumulative SLMC update of every chain.

    Args:
        spins: ``(B, L, L, 3)`` current configurations.
        exact: ``(B,)`` ``exact_fn(spins)``.
        effective: ``(B,)`` ``effective_fn(spins)``.
        exact_fn: exact energy ``(B, L, L, 3) -> (B,)``.
        effective_fn: effective energy ``(B, L, L, 3) -> (B,)``.
        temperature: ``T``.
        num_local: local moves under ``effective_fn`` before the global decision.
        move: local proposal, see :func:`propose_spins`.
        step_size: kick size of ``"rotation"``.
        generator: random generator.
        with_trial: also return the proposal ``trial (B, L, L, 3)`` and its ``exact_trial (B,)``.

    Returns:
        ``(spins, exact, effective, accepted, local_accepted)``: the new state (``(B, L, L, 3)``,
        ``(B,)``, ``(B,)``), ``(B,)`` bool global decisions, ``(B,)`` accepted local moves; then
        ``trial, exact_trial`` with ``with_trial``.
    """
    trial, eff_trial, local = local_metropolis(spins, effective, effective_fn, temperature, num_local, move,
                                               step_size, generator)
    exact_trial = _energies(exact_fn, trial)
    log_ratio = -((exact_trial - eff_trial) - (exact - effective)) / temperature
    ok = _accept(log_ratio, generator)
    new = torch.where(ok[:, None, None, None], trial, spins)
    out = (new, torch.where(ok, exact_trial, exact), torch.where(ok, eff_trial, effective), ok, local)
    return out + (trial, exact_trial) if with_trial else out


def observables(spins: torch.Tensor) -> dict[str, torch.Tensor]:
    """Magnetisation and structure factors of each configuration.

    Args:
        spins: ``(B, L, L, 3)`` unit spins.

    Returns:
        ``{"magnetisation", "structure_pi", "structure_zero"}``, each ``(B,)`` float64.
    """
    L = spins.shape[1]
    n = L * L
    total = spins.sum(dim=(1, 2))  # (B, 3)
    x = torch.arange(L)
    sign = (1 - 2 * ((x[:, None] + x[None, :]) % 2)).to(spins.dtype)  # (L, L): e^{i(π,π)·r}
    staggered = (spins * sign[None, :, :, None]).sum(dim=(1, 2))  # (B, 3)
    return {
        "magnetisation": total.norm(dim=-1) / n,
        "structure_pi": (staggered**2).sum(-1) / n,
        "structure_zero": (total**2).sum(-1) / n,
    }


def _check_run(spins: torch.Tensor, temperature: float) -> torch.Tensor:
    if not isinstance(spins, torch.Tensor) or spins.dim() != 4:
        raise ValueError(f"spins must have shape (B, L, L, 3), got {tuple(getattr(spins, 'shape', ()))}")
    check_lattice_size(spins.shape[1])
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return check_spins(spins, spins.shape[1]).clone()


class _Recorder:
    """Collects the per-step series of a run."""

    def __init__(self, config: MCConfig) -> None:
        self.config = config
        self.series: dict[str, list[torch.Tensor]] = {k: [] for k in OBSERVABLES + ("acceptance", "local_acceptance")}
        self.samples: list[torch.Tensor] = []
        self.sample_energies: list[torch.Tensor] = []

    def record(self, step: int, spins: torch.Tensor, energy: torch.Tensor, acceptance: torch.Tensor,
               local: torch.Tensor, keep: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        values = {"energy": energy, "acceptance": acceptance, "local_acceptance": local, **observables(spins)}
        for k, v in values.items():
            self.series[k].append(v.to(torch.float64))
        k = self.config.sample_interval
        if k and step % k == 0:
            kept, kept_energy = keep if keep is not None else (spins, energy)
            self.samples.append(kept.clone())
            self.sample_energies.append(kept_energy.clone())

    def result(self, spins: torch.Tensor) -> MCResult:
        series = {k: torch.stack(v) for k, v in self.series.items()}
        empty = spins.new_zeros((0,) + tuple(spins.shape))
        samples = torch.stack(self.samples) if self.samples else empty
        energies = torch.stack(self.sample_energies) if self.sample_energies else spins.new_zeros(0, spins.shape[0])
        return MCResult(spins=spins, samples=samples, sample_energies=energies, **series)


def run_metropolis(energy_fn: EnergyFn, spins: torch.Tensor, temperature: float, config: MCConfig) -> MCResult:
    """Plain Metropolis with the energy ``energy_fn`` (exact Monte Carlo when it is the exact one).

    Args:
        energy_fn: ``(B, L, L, 3) -> (B,)``.
        spins: ``(B, L, L, 3)`` initial configurations (``B`` chains).
        temperature: ``T`` of the weight ``exp(-E / T)``.
        config: run settings; a step is ``updates_per_step`` local moves (default one sweep).

    Returns:
        The :class:`MCResult`; ``energy`` is ``energy_fn`` of the recorded configurations.

    Raises:
        ValueError: bad spins, lattice or temperature, or an energy of the wrong shape.
    """
    spins = _check_run(spins, temperature)
    gen = torch.Generator().manual_seed(config.seed)
    per_step = config.updates_per_step or spins.shape[1] ** 2
    energies = _energies(energy_fn, spins)
    rec = _Recorder(config)
    for step in range(config.num_thermalize + config.num_steps):
        spins, energies, acc = local_metropolis(spins, energies, energy_fn, temperature, per_step, config.move,
                                                config.step_size, gen)
        if step >= config.num_thermalize:
            rate = acc / per_step
            rec.record(step - config.num_thermalize, spins, energies, rate, rate)
    return rec.result(spins)


def run_slmc(exact_fn: EnergyFn, effective_fn: EnergyFn, spins: torch.Tensor, temperature: float,
             config: MCConfig) -> MCResult:
    """Self-learning Monte Carlo: cumulative updates under ``effective_fn``, exact global decision.

    Args:
        exact_fn: exact energy ``(B, L, L, 3) -> (B,)``; called once per global step.
        effective_fn: effective energy ``(B, L, L, 3) -> (B,)``; called once per local move.
        spins: ``(B, L, L, 3)`` initial configurations (``B`` chains).
        temperature: ``T``.
        config: run settings; ``updates_per_step`` local moves per global step (default one sweep).

    Returns:
        The :class:`MCResult`; ``acceptance`` holds the global decisions (1.0 / 0.0).

    Raises:
        ValueError: bad spins, lattice or temperature, or an energy of the wrong shape.
    """
    spins = _check_run(spins, temperature)
    gen = torch.Generator().manual_seed(config.seed)
    per_step = config.updates_per_step or spins.shape[1] ** 2
    exact, effective = _energies(exact_fn, spins), _energies(effective_fn, spins)
    rec = _Recorder(config)
    for step in range(config.num_thermalize + config.num_steps):
        spins, exact, effective, ok, local, trial, exact_trial = slmc_step(
            spins, exact, effective, exact_fn, effective_fn, temperature, per_step, config.move, config.step_size,
            gen, with_trial=True)
        if step >= config.num_thermalize:
            rec.record(step - config.num_thermalize, spins, exact, ok.to(torch.float64), local / per_step,
                       keep=(trial, exact_trial) if config.sample_proposals else None)
    return rec.result(spins)
