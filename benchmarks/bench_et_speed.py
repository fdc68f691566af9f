"""Speed of eqt's ET against torchmd-net 3.1.0's ET, side by side in one process.

Identical weights (eqt's model is made with ``from_torchmdnet``) and the ET-MD17 size (128 dim,
6 layers, 8 heads, 32 RBF, 5 Å cutoff, ``vector_cutoff``), float32, rMD17 aspirin frames. For each
batch size and mode (energy only; energy + forces) the two codes are called alternately, ``--repeats``
rounds of ``--calls`` calls each; the table reports the median time per call and the ratio of the
medians (torchmd-net / eqt: > 1 means eqt is faster).

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
from common import load_batch, sync  # benchmarks/common.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eqt.models.et import from_torchmdnet, torchmdnet_args  # noqa: E402
from eqt.physics.potential import Potential  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "rmd17" / "aspirin_test.xyz"
ARGS = torchmdnet_args()  # the ET-MD17 size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table of eqt's E+F call")
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

    rows = []
    for n in a.batches:
        z, pos, batch = load_batch(DATA, n, a.device)
        for forces in (False, True):
            # same answer first
            y_r, f_r = ref_call(z, pos.clone(), batch, forces)
            y_o, f_o = our_call(z, pos, batch, forces)
            err = ((y_o - y_r.squeeze(-1)).abs().max() / y_r.abs().max()).item()
            times = {"torchmd-net": [], "eqt": []}
            calls = {"torchmd-net": ref_call, "eqt": our_call}
            for _ in range(2):  # warm-up (warp kernels compile on first use)
                for fn in calls.values():
                    fn(z, pos.clone(), batch, forces)
            for r in range(a.repeats):
                order = list(calls) if r % 2 == 0 else list(calls)[::-1]
                for name in order:
                    sync(a.device)
                    t0 = time.perf_counter()
                    for _ in range(a.calls):
                        calls[name](z, pos.clone(), batch, forces)
                    sync(a.device)
                    times[name].append((time.perf_counter() - t0) / a.calls)
            t_ref, t_our = statistics.median(times["torchmd-net"]), statistics.median(times["eqt"])
            rows.append(dict(batch=n, mode="E+F" if forces else "E", ref_ms=1e3 * t_ref, eqt_ms=1e3 * t_our,
                             ratio=t_ref / t_our, eqt_mol_s=n / t_our, ref_mol_s=n / t_ref, rel_err=err))
            r_ = rows[-1]
            print(f"batch {n:3d} {r_['mode']:3s}  torchmd-net {r_['ref_ms']:8.2f} ms  eqt {r_['eqt_ms']:8.2f} ms  "
                  f"ratio {r_['ratio']:5.2f}x  eqt {r_['eqt_mol_s']:8.0f} mol/s  (|dE|/|E| {err:.1e})", flush=True)

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
