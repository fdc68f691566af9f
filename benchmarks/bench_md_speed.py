"""MD speed of an eqt potential through the ASE calculator: calls and MD steps per second, memory.

Systems: an all-trans polyethylene chain H-(CH2)n-H built here (no RDKit: straight zigzag backbone,
C-C 1.54 Å, C-C-C 112°, C-H 1.09 Å; a ~1,000-atom chain is n = 333) at each ``--atoms`` size, and
optionally one extxyz structure (``--structure``). For each: energy+force calls per second and
velocity-Verlet MD steps per second through :func:`eqt.physics.md.run_md` (its per-step safety
checks included), with the plain calculator (linear-cost neighbour list: vesin on CPU for large
systems, the torch kernels on GPU) and, on CUDA, ``Calculator(graphed=True)`` (one CUDA graph per
step, :mod:`eqt.physics.graphed`). Memory: peak resident set of the process and, on CUDA, the peak
allocated GPU memory.

    python benchmarks/bench_md_speed.py MODEL.pt [--device cuda] [--atoms 302 1001 3002] [--steps 100]

Any checkpoint works for timing (the forces need not be physical for a chain the model never saw;
an MD stopped by a safety check reports the steps it made).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eqt.physics.calculator import Calculator  # noqa: E402
from eqt.physics.md import MDConfig, MDInstabilityError, run_md  # noqa: E402


def polyethylene(n: int) -> Atoms:
    """All-trans H-(CH2)_n-H along x: ``3 n + 2`` atoms."""
    cc, half = 1.54, math.radians(112.0) / 2
    dx, dy = cc * math.sin(half), cc * math.cos(half) / 2
    symbols, pos = [], []
    for i in range(n):
        s = 1.0 if i % 2 == 0 else -1.0
        c = np.array([i * dx, s * dy, 0.0])
        symbols.append("C")
        pos.append(c)
        for sz in (1.0, -1.0):  # two H per carbon, out of the backbone plane, away from the chain axis
            symbols.append("H")
            pos.append(c + 1.09 * np.array([0.0, s * math.cos(math.radians(54.75)), sz * math.sin(math.radians(54.75))]))
    for end, sign in ((np.array([0.0, dy, 0.0]), -1.0), (np.array([(n - 1) * dx, (1.0 if (n - 1) % 2 == 0 else -1.0) * dy,
                                                                     0.0]), 1.0)):
        symbols.append("H")
        pos.append(end + np.array([sign * 1.09, 0.0, 0.0]))
    return Atoms(symbols, positions=np.array(pos))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(atoms: Atoms, model: str, device: str, graphed: bool, calls: int, steps: int) -> dict:
    atoms = atoms.copy()
    atoms.calc = Calculator(model, device=device, dtype=torch.float32, graphed=graphed)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    atoms.get_forces()  # build (and capture) first
    t0 = time.perf_counter()
    for k in range(calls):
        atoms.positions[0, 0] += 1e-4 * (-1) ** k  # a new geometry every call
        atoms.get_forces()
    per_call = (time.perf_counter() - t0) / calls
    cfg = MDConfig(integrator="verlet", timestep_fs=0.5, temperature_K=300.0, steps=steps, log_interval=steps,
                   seed=0, max_force=1e4, min_distance=0.3)
    t0 = time.perf_counter()
    try:
        res = run_md(atoms, atoms.calc, cfg)
        done, note = res.steps_done, ""
    except MDInstabilityError as exc:
        done, note = exc.step, f"stopped by the {exc.check} check"
    md_s = time.perf_counter() - t0
    out = dict(atoms=len(atoms), graphed=graphed, calls_per_s=1.0 / per_call, md_steps=done,
               md_steps_per_s=done / md_s if done else 0.0, note=note, peak_rss_mb=peak_rss_mb())
    if device.startswith("cuda"):
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="an eqt checkpoint (e.g. from eqt train)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--atoms", type=int, nargs="+", default=[302, 1001], help="chain sizes (3 n + 2 atoms)")
    p.add_argument("--structure", help="also time this structure file")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    systems = {f"polyethylene {n}": polyethylene((n - 2) // 3) for n in a.atoms}
    if a.structure:
        import ase.io

        systems[Path(a.structure).name] = ase.io.read(a.structure, 0)
    rows = []
    for name, atoms in systems.items():
        for graphed in ([False, True] if a.device.startswith("cuda") else [False]):
            r = measure(atoms, a.model, a.device, graphed, a.calls, a.steps)
            r["system"] = name
            rows.append(r)
            print(f"{name:22s} {'graphed' if graphed else 'plain  '} {r['calls_per_s']:8.1f} E+F/s  "
                  f"{r['md_steps_per_s']:8.1f} MD steps/s ({r['md_steps']} steps{', ' + r['note'] if r['note'] else ''})"
                  f"  RSS {r['peak_rss_mb']:.0f} MB" + (f"  GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""),
                  flush=True)
    info = dict(device=a.device if a.device == "cpu" else torch.cuda.get_device_name(), torch=torch.__version__,
                threads=torch.get_num_threads())
    print(f"\n{info}")
    if a.json:
        a.json.write_text(json.dumps(dict(info=info, rows=rows), indent=1))


if __name__ == "__main__":
    main()
