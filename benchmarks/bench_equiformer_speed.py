"""Speed of eqt's Equiformer against the reference (atomicarchitects/equiformer), energy + forces.

Model: the reference's MD17 L2 model ``graph_attention_transformer_nonlinear_exp_l2_md17`` (6 blocks,
``128x0e+64x1e+32x2e``, SH ``1x0e+1x1e+1x2e``, 4 heads, 32 ExpNormal, 5 Å; SE(3) labels) against
eqt's ``Equiformer(MD17_L2.replace(parity="se3"))`` (the same irreps: the fair comparison) and eqt's
default O(3) model ``Equiformer(MD17_L2)`` (``1o`` vectors: 11 instead of 15 paths per product).
Inputs: the first ``B`` frames of rMD17 aspirin (21 atoms), float32, eval mode; one call is energy
and conservative forces (``-dE/dpos`` by autograd, graph built inside the call for every model).
Random weights (no weight transfer: eqt drops the reference's dead edge-degree parameters and its
1/sqrt(18.03) energy scale, see docs/equiformer.md), so only the order of the energies is checked.
On CUDA, "graph" rows also time each eqt model as :class:`eqt.physics.graphed.GraphedPotential`
(fixed-capacity neighbour list, the whole E+F call replayed as one CUDA graph; ``--no-graphs`` skips).

The reference runs in a child process (its own ``sys.path``: the reference work tree, shims for
``torch_cluster`` / ``torch_scatter`` / ``ocpmodels`` and optionally e3nn 0.4.4, the version it pins),
driven one call at a time over a pipe, so the implementations' calls still alternate (the order flips
every round) and never overlap. ``--warmup`` calls each, then ``--repeats`` rounds; the table shows
min and median ms per call, molecules/s and the ratio of the medians (ref / eqt: > 1 means eqt is
faster). Time with one thread:

    OMP_NUM_THREADS=1 python benchmarks/bench_equiformer_speed.py --reference /work/ref/equiformer \\
        --reference-shims /work/ref/shims [--reference-e3nn /work/ref/deps_e3nn044] [--batches 1 8 64]

``--reference`` is a work tree of github.com/atomicarchitects/equiformer (kept outside this repo);
``--reference-shims`` a folder with pure-torch ``torch_cluster.radius_graph`` and
``torch_scatter.scatter`` and a stub ``ocpmodels.models.gemnet.layers.radial_basis`` (the reference
imports it at module top; only its Bessel models use it); ``torch_geometric`` (pure Python) must be
importable. ``--reference-e3nn`` is a ``pip install --target`` folder with ``e3nn==0.4.4`` placed
first on the child's path (default: the e3nn of this environment, 0.6.0, which runs the reference
unchanged). Without ``--reference`` only eqt is timed. Results go to
``benchmarks/results/equiformer_speed_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import DATA_ROOT, load_batch, sync  # benchmarks/common.py

ROOT = Path(__file__).resolve().parents[1]
DATA = DATA_ROOT / "rmd17" / "aspirin_train.xyz"
REF_MODEL = "graph_attention_transformer_nonlinear_exp_l2_md17"


# ---------------------------------------------------------------------------------------------------
# reference worker (child process): reads "B" lines, times one E+F call on B frames, answers JSON


def reference_worker(a: argparse.Namespace) -> None:
    import types

    for p in (a.reference, a.reference_shims, a.reference_e3nn):
        if p is not None:
            sys.path.insert(0, str(p))
    if a.reference_e3nn is not None:  # e3nn 0.4.4 torch.load()s its constants; torch >= 2.6 needs this
        torch.serialization.add_safe_globals([slice])
    torch.set_num_threads(a.threads)
    # import nets/ without running nets/__init__.py (it imports the OC20 models and hence ocpmodels)
    nets = types.ModuleType("nets")
    nets.__path__ = [str(a.reference / "nets")]
    sys.modules["nets"] = nets
    import e3nn
    from nets.graph_attention_transformer_md17 import graph_attention_transformer_nonlinear_exp_l2_md17 as build

    torch.manual_seed(0)
    model = build(irreps_in=None, radius=5.0, num_basis=32, task_mean=0.0, task_std=1.0).to(a.device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps(dict(ready=True, params=n_params, e3nn=e3nn.__version__)), flush=True)
    cache = {}
    for line in sys.stdin:
        n = int(line)
        if n not in cache:
            cache[n] = load_batch(a.data, n, a.device)
        z, pos, batch = cache[n]
        sync(a.device)
        t0 = time.perf_counter()
        energy, forces = model(z, pos.clone(), batch)
        energy, forces = energy.detach(), forces.detach()
        sync(a.device)
        dt = time.perf_counter() - t0
        print(json.dumps(dict(t=dt, energy=energy.view(-1).tolist(), fmax=forces.abs().max().item())), flush=True)


class Reference:
    """The reference model in a child process, called one E+F evaluation at a time."""

    def __init__(self, a: argparse.Namespace):
        args = [sys.executable, __file__, "--worker", "--reference", str(a.reference), "--device", a.device,
                "--threads", str(a.threads), "--data", str(a.data)]
        for flag in ("reference_shims", "reference_e3nn"):
            if getattr(a, flag) is not None:
                args += ["--" + flag.replace("_", "-"), str(getattr(a, flag))]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            sys.exit("the reference worker died (see its error above)")
        return json.loads(line)

    def __call__(self, n: int) -> dict:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


# ---------------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", type=Path, help="work tree of atomicarchitects/equiformer (outside this repo)")
    p.add_argument("--reference-shims", type=Path, help="folder with torch_cluster / torch_scatter / ocpmodels shims")
    p.add_argument("--reference-e3nn", type=Path, help="pip --target folder with e3nn==0.4.4 for the reference")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    p.add_argument("--no-o3", action="store_true", help="skip eqt's default O(3) model")
    p.add_argument("--no-graphs", action="store_true", help="on CUDA, skip the CUDA-graph rows")
    p.add_argument("--graphs-on-cpu", action="store_true", help=argparse.SUPPRESS)  # eager fixed-shape path
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table of eqt (se3) per batch")
    p.add_argument("--data", type=Path, default=DATA, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, help="results file (default benchmarks/results/equiformer_speed_<device>.json)")
    a = p.parse_args()
    if a.worker:
        reference_worker(a)
        return
    if not a.data.exists():
        sys.exit(f"rMD17 aspirin not found at {a.data}; the benchmark reads ../shared/data/rmd17/aspirin_train.xyz")
    torch.set_num_threads(a.threads)
    sys.path.insert(0, str(ROOT))
    from eqt.models.equiformer import MD17_L2, Equiformer
    from eqt.physics.graphed import GraphedPotential
    from eqt.physics.potential import Potential

    dev = a.device
    torch.manual_seed(0)
    models = {"eqt se3": Potential(Equiformer(MD17_L2.replace(parity="se3"))).to(dev).eval()}
    if not a.no_o3:
        models["eqt o3"] = Potential(Equiformer(MD17_L2)).to(dev).eval()
    params = {k: sum(q.numel() for q in m.parameters()) for k, m in models.items()}
    ref = Reference(a) if a.reference is not None else None
    if ref is not None:
        params["reference"] = ref.info["params"]
    print("parameters: " + ", ".join(f"{k} {v:,}" for k, v in params.items()), flush=True)

    def eqt_call(model, inputs):
        z, pos, batch = inputs
        sync(dev)
        t0 = time.perf_counter()
        out = model(z, pos, batch, validate=False)
        energy, forces = out["energy"].detach(), out["forces"].detach()
        sync(dev)
        return dict(t=time.perf_counter() - t0, energy=energy.view(-1).tolist(), fmax=forces.abs().max().item())

    def graph_call(g, pos):
        sync(dev)
        t0 = time.perf_counter()
        out = g(pos)
        sync(dev)
        return dict(t=time.perf_counter() - t0, energy=out["energy"].view(-1).tolist(),
                    fmax=out["forces"].abs().max().item())

    graphs = (dev.startswith("cuda") or a.graphs_on_cpu) and not a.no_graphs
    if graphs:
        params.update({f"{k} graph": v for k, v in list(params.items()) if k != "reference"})
    rows, checks = [], {}
    for n in a.batches:
        inputs = load_batch(a.data, n, dev)
        calls = {name: (lambda m=m: eqt_call(m, inputs)) for name, m in models.items()}
        if graphs:  # the whole E+F call as one CUDA graph (eqt.physics.graphed)
            for name, m in models.items():
                try:
                    g = GraphedPotential(m.model, inputs[0], inputs[2], pos=inputs[1])
                    calls[f"{name} graph"] = lambda g=g: graph_call(g, inputs[1])
                except Exception as exc:
                    print(f"batch {n}: {name} CUDA graph capture failed: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160]}", flush=True)
        if ref is not None:
            calls["reference"] = lambda: ref(n)
        first = {name: call() for name, call in calls.items()}  # also the first warm-up call
        checks[n] = {name: dict(energy=r["energy"][:4], fmax=r["fmax"]) for name, r in first.items()}
        for name, r in first.items():
            finite = all(map(lambda e: abs(e) < float("inf"), r["energy"]))
            print(f"batch {n}: {name:9s} E[:2] = {[round(e, 3) for e in r['energy'][:2]]}  max|F| = {r['fmax']:.3f}"
                  f"{'' if finite else '  NOT FINITE'}", flush=True)
        for _ in range(a.warmup - 1):
            for call in calls.values():
                call()
        times = {k: [] for k in calls}
        keys = list(calls)
        for r in range(a.repeats):
            for k in keys if r % 2 == 0 else keys[::-1]:
                times[k].append(calls[k]()["t"])
        for name, ts in times.items():
            med = statistics.median(ts)
            ratio = statistics.median(times["reference"]) / med if "reference" in times else None
            rows.append(dict(batch=n, model=name, params=params[name], min_ms=1e3 * min(ts), median_ms=1e3 * med,
                             mol_s=n / med, ratio=ratio, times_ms=[1e3 * t for t in ts]))
            r_ = rows[-1]
            print(f"batch {n:3d} {name:9s} min {r_['min_ms']:8.1f} ms  median {r_['median_ms']:8.1f} ms  "
                  f"{r_['mol_s']:7.1f} mol/s" + (f"  ref/eqt {ratio:5.2f}x" if ratio and name != "reference" else ""),
                  flush=True)
    if ref is not None:
        ref.close()

    info = dict(device=dev if dev == "cpu" else torch.cuda.get_device_name(), torch=torch.__version__,
                threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine(),
                reference_e3nn=ref.info["e3nn"] if ref is not None else None, repeats=a.repeats, warmup=a.warmup)
    print("\n| batch | model | params | min ms | median ms | molecules/s | ref / eqt (medians) |")
    print("|---|---|---|---|---|---|---|")
    for r_ in rows:
        ratio = f"{r_['ratio']:.2f}x" if r_["ratio"] is not None and r_["model"] != "reference" else ""
        print(f"| {r_['batch']} | {r_['model']} | {r_['params']:,} | {r_['min_ms']:.1f} | {r_['median_ms']:.1f} | "
              f"{r_['mol_s']:.1f} | {ratio} |")
    print(f"\n{info}")
    out = a.json or ROOT / "benchmarks" / "results" / f"equiformer_speed_{dev.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(info=info, params=params, checks=checks, rows=rows), indent=1))
    print(f"wrote {out}")

    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.startswith("cuda") else [])
        key = "cuda_time_total" if dev.startswith("cuda") else "self_cpu_time_total"
        for n in a.batches:
            inputs = load_batch(a.data, n, dev)
            with profile(activities=acts) as prof:
                for _ in range(2):
                    eqt_call(models["eqt se3"], inputs)
            print(f"\nprofile, eqt se3, batch {n}, 2 calls")
            print(prof.key_averages().table(sort_by=key, row_limit=20))


if __name__ == "__main__":
    main()
