"""Acceptance of SLMC with the linear effective model: exact MC -> least-squares fit -> SLMC.

``python -m eqt.physics.slmc_study`` runs :func:`linear_acceptance_study` with the defaults below
(about 1–2 minutes on one CPU thread) and prints the fit and the acceptance with its error bar.

Default parameters (see ``docs/slmc.md``): ``t = 1``, ``J = 8``, ``μ = -3``, ``T = 0.035`` on 6×6,
grand canonical. This is the strong-coupling double-exchange regime between the ferromagnet
(``μ ≲ -3.5``) and the Néel antiferromagnet (``μ ≳ -2.5``): the fitted nearest-neighbour coupling
nearly cancels and the energy is dominated by non-bilinear (multi-spin) terms, so the linear model
is poor (global acceptance about 20 % with one sweep of local moves per global step).
"""

from __future__ import annotations

import dataclasses
import functools
import time

import torch

from eqt.physics.linear_model import LinearSpinModel, fit_linear_model
from eqt.physics.mc_statistics import Estimate, estimate
from eqt.physics.monte_carlo import MCConfig, MCResult, random_spins, run_metropolis, run_slmc
from eqt.physics.spin_fermion import SpinFermionConfig, free_energy

__all__ = ["DEFAULT_EXACT", "DEFAULT_MODEL", "DEFAULT_SLMC", "LinearStudy", "linear_acceptance_study"]

DEFAULT_MODEL = SpinFermionConfig(L=6, t=1.0, J=8.0, mu=-3.0, temperature=0.035)
# exact MC: 30 sweeps of thermalisation, 20 recorded, every 2nd kept: 32 chains x 10 = 320 configurations
DEFAULT_EXACT = MCConfig(num_steps=20, num_thermalize=30, move="rotation", step_size=0.5, sample_interval=2, seed=0)
# SLMC: one sweep (L² = 36 local moves under the linear model) per global step
DEFAULT_SLMC = MCConfig(num_steps=300, num_thermalize=10, updates_per_step=None, move="rotation", step_size=0.5,
                        seed=1)


@dataclasses.dataclass
class LinearStudy:
    """Outcome of :func:`linear_acceptance_study`.

    Attributes:
        model: the fitted linear model.
        train_rms: RMS residual ``E - E_eff`` on the training configurations.
        exact: the exact Metropolis run that produced the training data.
        slmc: the SLMC run with the fitted model.
        acceptance: global SLMC acceptance with its autocorrelation-aware error.
        seconds: wall time of the exact run, of the fit and of the SLMC run.
    """

    model: LinearSpinModel
    train_rms: float
    exact: MCResult
    slmc: MCResult
    acceptance: Estimate
    seconds: dict[str, float]


def linear_acceptance_study(model: SpinFermionConfig = DEFAULT_MODEL, exact: MCConfig = DEFAULT_EXACT,
                            slmc: MCConfig = DEFAULT_SLMC, chains: int = 32, num_shells: int = 5) -> LinearStudy:
    """Fit the linear model on exact-MC samples, then measure its SLMC acceptance.

    The SLMC chains start from the final configurations of the exact run (already thermalised).

    Args:
        model: the double-exchange model (its ``temperature`` is also the Monte Carlo temperature).
        exact: settings of the exact Metropolis run (``sample_interval`` > 0 selects training data).
        slmc: settings of the SLMC run.
        chains: number of independent chains ``B``.
        num_shells: neighbour shells of the linear model.

    Returns:
        The :class:`LinearStudy`.

    Raises:
        ValueError: ``exact.sample_interval`` is 0 (no training data), or bad parameters.
    """
    if exact.sample_interval == 0:
        raise ValueError("exact.sample_interval must be > 0: the exact run provides the training configurations")
    energy = functools.partial(free_energy, config=model)
    seconds = {}
    start = time.perf_counter()
    spins0 = random_spins(chains, model.L, torch.Generator().manual_seed(exact.seed))
    exact_run = run_metropolis(energy, spins0, model.temperature, exact)
    seconds["exact"] = time.perf_counter() - start
    start = time.perf_counter()
    configs = exact_run.samples.reshape(-1, model.L, model.L, 3)  # (M, L, L, 3)
    energies = exact_run.sample_energies.reshape(-1)  # (M,)
    linear = fit_linear_model(configs, energies, num_shells)
    rms = float((energies - linear(configs)).square().mean().sqrt())
    seconds["fit"] = time.perf_counter() - start
    start = time.perf_counter()
    slmc_run = run_slmc(energy, linear, exact_run.spins, model.temperature, slmc)
    seconds["slmc"] = time.perf_counter() - start
    return LinearStudy(model=linear, train_rms=rms, exact=exact_run, slmc=slmc_run,
                       acceptance=estimate(slmc_run.acceptance), seconds=seconds)


def _main() -> None:
    torch.set_num_threads(1)
    study = linear_acceptance_study()
    print(f"model: {DEFAULT_MODEL}")
    print(f"training configurations: {study.exact.samples.shape[0] * study.exact.samples.shape[1]}, "
          f"exact local acceptance {study.exact.acceptance.mean():.2f}")
    print(f"linear model: E0 = {study.model.e0:.4f}, J_n = {[round(j, 5) for j in study.model.couplings]}, "
          f"train RMS residual {study.train_rms:.4f} (beta * rms = {study.train_rms / DEFAULT_MODEL.temperature:.2f})")
    exact = study.exact.summary()
    for name, est in study.slmc.summary().items():
        print(f"{name}: slmc {est} | exact MC {exact[name]}")
    print(f"SLMC global acceptance: {study.acceptance}")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in study.seconds.items()))


if __name__ == "__main__":
    _main()
