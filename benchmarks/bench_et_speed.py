"""Speed of eqt's ET against torchmd-net 3.1.0's ET, side by side in one process.

Identical weights (eqt's model is made with ``from_torchmdnet``) and the ET-MD17 size (128 dim,
6 layers, 8 heads, 32 RBF, 5 Å cutoff, ``vector_cutoff``), float32, rMD17 aspirin frames. For each
batch size and mode (energy only; energy + forces) the two codes are called alternately, ``--repeats``
rounds of ``--calls`` calls each; the table reports the median time per call and the ratio of the
medians (torchmd-net / eqt: > 1 means eqt is faster). On CUDA, "E+F graph" rows time
:class:`eqt.physics.graphed.GraphedPotential` (fixed-capacity neighbour list, the whole E+F call
replayed as one CUDA graph) against torchmd-net in its ``static_shapes`` mode captured the same way,
or, where torchmd-net cannot be captured, against its eager E+F call (the row says which).

    python benchmarks/bench_et_speed.py [--device cuda] [--batches 1 8 64] [--profile]

Needs ``torchmd-net`` (``pip install -c constraints.txt -e '.[bench]'``) and ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from common import DATA_ROOT, load_batch, sync  # benchmarks/common.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eqt.models.et import from_torchmdnet, torchmdnet_args  # noqa: E402
from eqt.physics.graphed import GraphedPotential  # noqa: E402
from eqt.physics.potential import Potential  # noqa: E402

DATA = DATA_ROOT / "rmd17" / "aspirin_test.xyz"
ARGS = torchmdnet_args()  # the ET-MD17 size


def capture_torchmdnet(model, z, pos, batch, warmup: int = 3):
    """torchmd-net's E+F (``static_shapes=True``, ``check_errors=False``) captured in one CUDA graph.

    Returns a callable ``pos -> (energy, forces)`` that copies ``pos`` into the static input and
    replays the graph (the same recipe as :class:`eqt.physics.graphed.GraphedPotential`).
    """
    model.derivative = True
    static = pos.detach().clone().requires_grad_(True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            model(z, static, batch)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = model(z, static, batch)

    def call(p):
        with torch.no_grad():
            static.copy_(p)
        graph.replay()
        return out

    return call


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table of eqt's E+F call")
    p.add_argument("--no-graphs", action="store_true", help="on CUDA, skip the CUDA-graph rows")
    p.add_argument("--json", type=Path, help="write the results here")
    a = p.parse_args()
    if not DATA.exists():
        sys.exit(f"rMD17 aspirin not found at {DATA}; the benchmark reads ../shared/data")
    try:
        from torchmdnet.models.model import create_model
    except ImportError:
        sys.exit("torchmd-net is not installed: pip install -c constraints.txt -e '.[bench]'")

    torch.manual_seed(0)
    ref = create_model(ARGS, mean=torch.tensor(0.0), std=torch.tensor(1.0)).to(a.device).eval()
    ours = Potential(from_torchmdnet(ref)).to(a.device).eval()

    def ref_call(z, pos, batch, forces):
        ref.derivative = forces
        if forces:
            y, f = ref(z, pos, batch)
            return y.detach(), f.detach()
        with torch.no_grad():
            return ref(z, pos, batch)[0], None

    def our_call(z, pos, batch, forces):
        if forces:
            out = ours(z, pos, batch, validate=False)
            return out["energy"].detach(), out["forces"].detach()
        with torch.no_grad():
            return ours(z, pos, batch, forces=False, validate=False)["energy"], None

    def timed(calls: dict, args: tuple) -> dict:
        """Median seconds per call of each callable, called alternately (order flips every round)."""
        times = {name: [] for name in calls}
        for _ in range(2):  # warm-up (warp kernels compile on first use)
            for fn in calls.values():
                fn(*args)
        for r in range(a.repeats):
            order = list(calls) if r % 2 == 0 else list(calls)[::-1]
            for name in order:
                sync(a.device)
                t0 = time.perf_counter()
                for _ in range(a.calls):
                    calls[name](*args)
                sync(a.device)
                times[name].append((time.perf_counter() - t0) / a.calls)
        return {name: statistics.median(t) for name, t in times.items()}

    def add_row(n, mode, t, err):
        rows.append(dict(batch=n, mode=mode, ref_ms=1e3 * t["torchmd-net"], eqt_ms=1e3 * t["eqt"],
                         ratio=t["torchmd-net"] / t["eqt"], eqt_mol_s=n / t["eqt"], ref_mol_s=n / t["torchmd-net"],
                         rel_err=err))
        r_ = rows[-1]
        print(f"batch {n:3d} {r_['mode']:9s}  torchmd-net {r_['ref_ms']:8.2f} ms  eqt {r_['eqt_ms']:8.2f} ms  "
              f"ratio {r_['ratio']:5.2f}x  eqt {r_['eqt_mol_s']:8.0f} mol/s  (|dE|/|E| {err:.1e})", flush=True)

    rows = []
    graphs = a.device.startswith("cuda") and not a.no_graphs
    if graphs:  # torchmd-net's own capture-safe mode: static shapes, no error checks (same weights)
        ref_static = create_model({**ARGS, "static_shapes": True, "check_errors": False},
                                  mean=torch.tensor(0.0), std=torch.tensor(1.0)).to(a.device).eval()
        ref_static.load_state_dict(ref.state_dict())
    for n in a.batches:
        z, pos, batch = load_batch(DATA, n, a.device)
        for forces in (False, True):
            # same answer first
            y_r, f_r = ref_call(z, pos.clone(), batch, forces)
            y_o, f_o = our_call(z, pos, batch, forces)
            err = ((y_o - y_r.squeeze(-1)).abs().max() / y_r.abs().max()).item()
            t = timed({"torchmd-net": ref_call, "eqt": our_call}, (z, pos, batch, forces))
            add_row(n, "E+F" if forces else "E", t, err)
        if graphs:
            y_r, _ = ref_call(z, pos.clone(), batch, True)
            try:
                ours_g = GraphedPotential(ours.model, z, batch, pos=pos)
            except Exception as exc:  # report and go on: the eager rows stand
                print(f"batch {n}: eqt CUDA graph capture failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                continue
            y_o = ours_g(pos)["energy"]
            ours_g.check()
            err = ((y_o - y_r.squeeze(-1)).abs().max() / y_r.abs().max()).item()
            try:
                ref_g = capture_torchmdnet(ref_static, z, pos, batch)
                ref_fn, mode = (lambda p: ref_g(p)), "E+F graph"
            except Exception as exc:  # torchmd-net's ET is not capture-safe: compare with its eager call
                print(f"batch {n}: torchmd-net CUDA graph capture failed ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0][:120]}); its row is the eager E+F call")
                torch.cuda.synchronize()
                ref_fn, mode = (lambda p: ref_call(z, p.clone(), batch, True)), "E+F eqt graph / ref eager"
            t = timed({"torchmd-net": ref_fn, "eqt": lambda p: ours_g(p)}, (pos,))
            add_row(n, mode, t, err)

    info = dict(device=a.device if a.device == "cpu" else torch.cuda.get_device_name(), torch=torch.__version__,
                threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine())
    print("\n| batch | mode | torchmd-net ms | eqt ms | ratio | eqt mol/s |")
    print("|---|---|---|---|---|---|")
    for r_ in rows:
        print(f"| {r_['batch']} | {r_['mode']} | {r_['ref_ms']:.2f} | {r_['eqt_ms']:.2f} | {r_['ratio']:.2f}x | "
              f"{r_['eqt_mol_s']:.0f} |")
    print(f"\n{info}")
    if a.json:
        a.json.write_text(json.dumps(dict(info=info, rows=rows), indent=1))

    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        z, pos, batch = load_batch(DATA, a.batches[-1], a.device)
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device.startswith("cuda") else [])
        with profile(activities=acts) as prof:
            for _ in range(3):
                our_call(z, pos, batch, True)
        key = "cuda_time_total" if a.device.startswith("cuda") else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=25))


if __name__ == "__main__":
    main()
