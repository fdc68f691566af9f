"""Speed of eqt's iP-GATr against the Qualcomm reference GATr, forward and forward + backward.

Size of ``../shared/specs/gatr.md`` §6: batch 64 x 32 tokens, 4 blocks, 16 hidden multivector and 32
hidden scalar channels, 4 heads, 1 multivector + 1 scalar channel in and out; inputs are embedded
random points (``embed_point``) plus one random scalar channel, float32. The reference is
``gatr.nets.GATr`` with ``SelfAttentionConfig(num_heads=4, multi_query=True, increase_hidden_channels=2)``
and ``MLPConfig()`` (the released GATr is the iP variant: join + distance-aware attention). eqt is
``GATr(GATrConfig(**VARIANTS["iP-GATr"], ...))`` with the reference's widths per head (8 mv and
16 s channels; eqt's attention is multi-head, so its keys and values are per head, not shared) and
16 channels per bilinear product (GP and join halves of 16, as the reference's 16 -> 32 bilinear).

Modes: ``fwd`` (under ``no_grad``), ``fwd+bwd`` (``(mv**2).sum() + (s**2).sum()``, backward, zero
grads), eqt under ``torch.autocast(dtype=bfloat16)`` and optionally ``torch.compile``d eqt (its
first calls, the compile warm-up, are timed separately). The implementations are called
alternately (the order flips every round), ``--warmup`` calls each first, then ``--repeats``
rounds; the table shows min and median ms per call and the ratio of the medians (ref / eqt: > 1
means eqt is faster; bf16 and compile rows against the reference's float32). Time with one thread:

    OMP_NUM_THREADS=1 python benchmarks/bench_gatr_speed.py --reference /work/ref/gatr \\
        --reference-deps /work/ref/deps --xformers-stub /work/ref/stubs [--compile] [--device cuda]

``--reference`` is a work tree of github.com/Qualcomm-AI-research/geometric-algebra-transformer
(kept outside this repository); ``--reference-deps`` a ``pip install --target`` folder with
``einops`` and ``opt_einsum``; ``--xformers-stub`` a folder with a stub ``xformers`` package
(``xformers.ops.AttentionBias``, ``memory_efficient_attention``; never called on these inputs).
Without ``--reference`` only eqt is timed. Results go to ``benchmarks/results/gatr_speed_<device>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eqt.models.gatr import VARIANTS, GATr, GATrConfig  # noqa: E402
from eqt.primitives.pga import embed_point  # noqa: E402

SIZE = dict(in_mv=1, in_s=1, out_mv=1, out_s=1, hidden_mv=16, hidden_s=32, num_blocks=4, heads=4)
#: the reference's widths: 2 * 16 / 4 = 8 mv and 2 * 32 / 4 = 16 s channels per head; GP and join 16 each
EQT_WIDTHS = dict(head_mv=8, head_s=16, bilinear_mv=16)


def reference_model(path: Path, deps: Path | None, stub: Path | None):
    """Import the reference from ``path`` (added to sys.path at run time) and build it at the benchmark size."""
    import numpy as np

    if not hasattr(np, "product"):  # numpy 2 removed it; the reference's utils still call it
        np.product = np.prod
    for p in (stub, deps, path):
        if p is not None:
            sys.path.insert(0, str(p))
    from gatr.interface import embed_point as ref_embed_point
    from gatr.layers.attention.config import SelfAttentionConfig
    from gatr.layers.mlp.config import MLPConfig
    from gatr.nets import GATr as RefGATr

    attention = SelfAttentionConfig(num_heads=SIZE["heads"], multi_query=True, increase_hidden_channels=2)
    model = RefGATr(in_mv_channels=SIZE["in_mv"], out_mv_channels=SIZE["out_mv"], hidden_mv_channels=SIZE["hidden_mv"],
                    in_s_channels=SIZE["in_s"], out_s_channels=SIZE["out_s"], hidden_s_channels=SIZE["hidden_s"],
                    attention=attention, mlp=MLPConfig(), num_blocks=SIZE["num_blocks"])
    return model, ref_embed_point


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_call(model: torch.nn.Module, mv: torch.Tensor, s: torch.Tensor, backward: bool, bf16: bool = False):
    """A closure running one forward (``no_grad``) or forward + backward of ``model`` on ``(mv, s)``."""
    autocast = (lambda: torch.autocast(mv.device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def call():
        if not backward:
            with torch.no_grad(), autocast():
                model(mv, s)
            return
        with autocast():
            out_mv, out_s = model(mv, s)
            loss = (out_mv.float() ** 2).sum() + (out_s.float() ** 2).sum()
        loss.backward()
        model.zero_grad(set_to_none=True)

    return call


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", type=Path, help="work tree of the Qualcomm GATr repository (outside this repo)")
    p.add_argument("--reference-deps", type=Path, help="folder with einops and opt_einsum (pip install --target)")
    p.add_argument("--xformers-stub", type=Path, help="folder holding a stub xformers package")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    p.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast rows")
    p.add_argument("--compile", action="store_true", help="also time torch.compile(eqt)")
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table of eqt's fwd+bwd")
    p.add_argument("--json", type=Path, help="results file (default benchmarks/results/gatr_speed_<device>.json)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dev = a.device

    torch.manual_seed(0)
    points = torch.randn(a.batch, a.tokens, 1, 3, device=dev)
    mv = embed_point(points)  # (B, T, 1, 16)
    s = torch.randn(a.batch, a.tokens, 1, device=dev)

    ours = GATr(GATrConfig(**VARIANTS["iP-GATr"], **SIZE, **EQT_WIDTHS)).to(dev)
    models, calls = {"eqt": ours}, {}
    if a.reference is not None:
        ref, ref_embed = reference_model(a.reference, a.reference_deps, a.xformers_stub)
        ref = ref.to(dev)
        models["reference"] = ref
        if not torch.equal(ref_embed(points), mv):
            sys.exit("the reference's embed_point differs from eqt's")
    params = {k: n_params(m) for k, m in models.items()}
    print(f"parameters: " + ", ".join(f"{k} {v:,}" for k, v in params.items()))
    if "reference" in params and params["eqt"] < params["reference"]:
        print("note: eqt has fewer parameters than the reference")

    for backward in (False, True):
        mode = "fwd+bwd" if backward else "fwd"
        for name, m in models.items():
            calls[(name, mode, "fp32")] = make_call(m, mv, s, backward)
        if not a.no_bf16:
            calls[("eqt", mode, "bf16")] = make_call(ours, mv, s, backward, bf16=True)

    compile_warmup = {}
    if a.compile:
        compiled = torch.compile(ours)
        for backward in (False, True):
            mode = "fwd+bwd" if backward else "fwd"
            call = make_call(compiled, mv, s, backward)
            times = []
            try:
                for _ in range(2):
                    sync(dev)
                    t0 = time.perf_counter()
                    call()
                    sync(dev)
                    times.append(time.perf_counter() - t0)
            except Exception as err:  # noqa: BLE001 - report and time the eager rows anyway
                print(f"torch.compile {mode} failed: {type(err).__name__}: {str(err).splitlines()[0]}", flush=True)
                break
            compile_warmup[mode] = times
            print(f"torch.compile warm-up {mode}: " + ", ".join(f"{t:.1f} s" for t in times), flush=True)
            calls[("eqt", mode, "compile")] = call

    for _ in range(a.warmup):
        for call in calls.values():
            call()
    times = {k: [] for k in calls}
    keys = list(calls)
    for r in range(a.repeats):
        for k in keys if r % 2 == 0 else keys[::-1]:
            sync(dev)
            t0 = time.perf_counter()
            calls[k]()
            sync(dev)
            times[k].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{a.repeats}", flush=True)

    rows = []
    for (name, mode, prec), ts in times.items():
        med = statistics.median(ts)
        ref_key = ("reference", mode, "fp32")
        ratio = statistics.median(times[ref_key]) / med if ref_key in times else None
        rows.append(dict(model=name, mode=mode, precision=prec, params=params[name], min_ms=1e3 * min(ts),
                         median_ms=1e3 * med, ratio=ratio, times_ms=[1e3 * t for t in ts]))
    rows.sort(key=lambda r: (r["mode"], r["model"] != "reference", r["precision"]))

    info = dict(device=dev if dev == "cpu" else torch.cuda.get_device_name(), torch=torch.__version__,
                threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine(), batch=a.batch,
                tokens=a.tokens, repeats=a.repeats, warmup=a.warmup, size=SIZE, eqt_widths=EQT_WIDTHS)
    print("\n| model | mode | precision | params | min ms | median ms | ref / eqt |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None and r["model"] != "reference" else ""
        print(f"| {r['model']} | {r['mode']} | {r['precision']} | {r['params']:,} | {r['min_ms']:.1f} | "
              f"{r['median_ms']:.1f} | {ratio} |")
    print(f"\n{info}")
    out = a.json or ROOT / "benchmarks" / "results" / f"gatr_speed_{dev.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(info=info, params=params, compile_warmup_s=compile_warmup, rows=rows), indent=1))
    print(f"wrote {out}")

    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.startswith("cuda") else [])
        call = calls[("eqt", "fwd+bwd", "fp32")]
        with profile(activities=acts) as prof:
            for _ in range(2):
                call()
        key = "cuda_time_total" if dev.startswith("cuda") else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=30))


if __name__ == "__main__":
    main()
