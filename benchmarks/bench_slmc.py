"""SLMC speed: exact-ED energies/s, effective-model energies/s, and cost per independent sample.

    OMP_NUM_THREADS=1 python benchmarks/bench_slmc.py --study runs/slmc [--steps 100]

Parts (CPU, the current thread setting):

1. Exact free energies per second (batched ``eigvalsh`` of the 72x72 Hamiltonian on 6x6) at batch
   1, 16, 64.
2. Effective-model energies per second: the linear model and the transformers trained by
   ``eqt slmc`` (their ``best.pt`` under ``--study``), at batch 1 and 32.
3. Cost per independent sample at equal statistical error of the energy: exact Metropolis (one
   sweep of exact local moves per step) against SLMC with each effective model (one sweep of local
   moves under the model, one exact decision per step). Cost = CPU seconds per step x integrated
   autocorrelation time of the energy (in steps), from runs of ``--steps`` steps on 32 chains started
   from the thermalised exact chains of the study. Speed-up = exact cost / SLMC cost.

The study directory must exist (``eqt slmc configs/slmc.yaml --out runs/slmc``); results go to
``benchmarks/results/slmc_speed.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eqt.checkpoint import load_model  # noqa: E402
from eqt.physics.linear_model import fit_linear_model  # noqa: E402
from eqt.physics.mc_statistics import estimate  # noqa: E402
from eqt.physics.monte_carlo import MCConfig, run_metropolis, run_slmc  # noqa: E402
from eqt.physics.spin_fermion import benchmark_free_energy, free_energy  # noqa: E402
from eqt.train.slmc import SLMCStudyConfig, _split  # noqa: E402


def per_second(fn, spins: torch.Tensor, min_time: float = 1.0) -> float:
    fn(spins)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_time or calls == 0:
        fn(spins)
        calls += 1
    return calls * spins.shape[0] / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default="runs/slmc", help="output folder of `eqt slmc`")
    p.add_argument("--steps", type=int, default=100, help="recorded steps of each cost run")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    study = Path(a.study)
    if not (study / "data.pt").exists():
        sys.exit(f"no study in {study}: run `eqt slmc configs/slmc.yaml --out {study}` first")
    c = SLMCStudyConfig.from_dict(json.loads((study / "config.json").read_text()))
    phys = c.physics
    data = torch.load(study / "data.pt", weights_only=True)
    exact_fn = functools.partial(free_energy, config=phys)
    train = _split(data, c)["train"]
    models = {"linear": fit_linear_model(train["spins"], train["energy"], c.readout_shells)}
    for ckpt in sorted(study.glob("L*-C*/best.pt")):
        model = load_model(ckpt).double().eval()
        models[ckpt.parent.name] = lambda s, m=model: m(s)
    out: dict = {"threads": a.threads, "ed_per_s": benchmark_free_energy(phys.L), "effective_per_s": {}, "cost": {}}
    spins = data["final"]  # (32, L, L, 3) thermalised
    with torch.no_grad():
        for name, fn in models.items():
            out["effective_per_s"][name] = {b: per_second(fn, spins[:b]) for b in (1, 32)}
        mc = MCConfig(num_steps=a.steps, num_thermalize=5, move=c.move, step_size=c.step_size, seed=11)
        t0 = time.perf_counter()
        run = run_metropolis(exact_fn, spins, phys.temperature, mc)
        t_step = (time.perf_counter() - t0) / (a.steps + 5)
        tau = estimate(run.energy).tau
        out["cost"]["exact"] = {"s_per_step": t_step, "tau": tau, "s_per_independent": t_step * 2 * tau}
        for name, fn in models.items():
            t0 = time.perf_counter()
            run = run_slmc(exact_fn, fn, spins, phys.temperature, mc)
            t_step = (time.perf_counter() - t0) / (a.steps + 5)
            tau = estimate(run.energy).tau
            out["cost"][name] = {"s_per_step": t_step, "tau": tau, "s_per_independent": t_step * 2 * tau,
                                 "acceptance": float(run.acceptance.mean())}
    exact_cost = out["cost"]["exact"]["s_per_independent"]
    print(f"exact ED energies/s: {', '.join(f'batch {b}: {v:.0f}' for b, v in out['ed_per_s'].items())}")
    print("| sampler | eff. energies/s (b1, b32) | s/step (32 chains) | tau_int (steps) | s per independent sample "
          "| speed-up vs exact |")
    print("|---|---|---|---|---|---|")
    for name, r in out["cost"].items():
        eff = out["effective_per_s"].get(name)
        eff_s = f"{eff[1]:.0f}, {eff[32]:.0f}" if eff else "–"
        print(f"| {name} | {eff_s} | {r['s_per_step']:.3f} | {r['tau']:.2f} | {r['s_per_independent']:.3f} | "
              f"{exact_cost / r['s_per_independent']:.2f}x |")
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "slmc_speed.json").write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
