"""Throughput of the ray-space layers and of the reconstruction models, forward and forward + backward.

Counts are interacting pairs per second: rays x points for the ray→point layers (each point with its
``K`` rays), rays x rays for the ray→ray layers (sets of ``N`` rays, ``N^2`` pairs each), and query
points per second for the whole models at the experiment's size (8 views of 32 x 32 rays, one or
two nearest rays per view per point, neighbour search included). Features ``32x0+8x1`` (the
model's default), float32, random rays through random points. Each case is timed ``--repeats``
times after ``--warmup`` calls; the table shows the median of the process CPU time per call on
CPU (with one thread this is the compute time even when other jobs share the machine) and of the
wall time on GPU. Time with one thread:

    OMP_NUM_THREADS=1 python benchmarks/bench_rays_speed.py [--device cuda]

Results go to ``benchmarks/results/rays_speed_<device>.json``.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eqt.layers.rays import (  # noqa: E402
    RayToPointAttention,
    RayToPointConv,
    RayToRayAttention,
    RayToRayConv,
    SO2Rep,
)
from eqt.models.rays import RayModelConfig, RayOccupancyModel  # noqa: E402
from eqt.primitives.rays import rays_from_points  # noqa: E402

REP = SO2Rep("32x0+8x1")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rays_on(shape: tuple[int, ...], device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(*shape, 3, generator=g)
    rays = rays_from_points(o, torch.randn(*shape, 3, generator=g))
    return rays.to(device), (o + torch.randn(*shape, 1, generator=g) * rays[..., :3]).to(device)


def timeit(fn, warmup: int, repeats: int, device: str) -> float:
    """Median seconds per call: process CPU time on CPU (robust to other jobs on a shared machine), wall on GPU."""
    clock = time.process_time if device == "cpu" else time.perf_counter
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        sync(device)
        times.append(clock() - t)
    return statistics.median(times)


def modes(module: torch.nn.Module, call, params: list[torch.Tensor]):
    """``fwd`` under no_grad and ``fwd+bwd`` (sum of squares of the outputs) callables."""
    def fwd():
        with torch.no_grad():
            call()

    def fwd_bwd():
        out = call()
        loss = sum((o.float() ** 2).sum() for o in (out if isinstance(out, tuple) else (out,)))
        loss.backward()
        module.zero_grad(set_to_none=True)

    return {"fwd": fwd, "fwd+bwd": fwd_bwd}


def cases(device: str):
    """``(name, pairs, module, call)`` for each benchmark case."""
    out = []
    for groups, n in ((1024, 8), (256, 16), (4, 256)):
        rays, anchors = rays_on((groups, n), device)
        x = REP.randn(groups, n).to(device)
        for cls, kw in ((RayToRayAttention, dict(heads=4, head_scalars=8, head_vectors=2, hidden=32)),
                        (RayToRayConv, dict(channels=32, vectors=8, hidden=32))):
            layer = cls(REP, **kw).to(device)
            out.append((f"{cls.__name__} {groups} sets x {n} rays", groups * n * n, layer,
                        lambda layer=layer, x=x, rays=rays, anchors=anchors: layer(x, rays, anchors)))
    for b, r, q, k in ((1, 8192, 1024, 8), (1, 8192, 1024, 16), (1, 256, 256, None)):
        rays, anchors = rays_on((b, r), device)
        x = REP.randn(b, r).to(device)
        points = torch.randn(b, q, 3).to(device)
        nb = None if k is None else torch.randint(0, r, (b, q, k)).to(device)
        kk = r if k is None else k
        for cls, kw in ((RayToPointAttention, dict(scalars=32, vectors=32, heads=4, key_channels=8, hidden=32)),
                        (RayToPointConv, dict(scalars=32, vectors=32, hidden=32))):
            layer = cls(REP, **kw).to(device)
            what = "all rays" if k is None else f"{k} rays each"
            out.append((f"{cls.__name__} {q} points x {what} (of {r})", b * q * kk, layer,
                        lambda layer=layer, x=x, rays=rays, anchors=anchors, points=points, nb=nb:
                        layer(x, rays, anchors, None, points, nb)))
    return out


def model_cases(device: str):
    """Whole models at the experiment's size: (name, points, module, call)."""
    out = []
    g = torch.Generator().manual_seed(0)
    b, v, p, q = 4, 8, 1024, 128
    centres = 3 * torch.nn.functional.normalize(torch.randn(b, v, 3, generator=g), dim=-1)
    dirs = -centres.unsqueeze(2) + 0.35 * torch.randn(b, v, p, 3, generator=g)
    rays = rays_from_points(centres.unsqueeze(2).expand(b, v, p, 3), dirs)
    inputs = [t.to(device) for t in (rays, centres, 1 + 3 * torch.rand(b, v, p, generator=g),
                                     torch.rand(b, v, p, generator=g) < 0.3, torch.rand(b, v, p, 3, generator=g),
                                     torch.randn(b, q, 3, generator=g))]
    for variant in ("equivariant", "transformer"):
        for k in (1, 2):
            torch.manual_seed(0)
            model = RayOccupancyModel(RayModelConfig(variant=variant, rays_per_view=k)).to(device)
            out.append((f"{variant} model, {b} scenes x {q} points, {v} views x {p} rays, {k}/view", b * q, model,
                        lambda model=model: model(*inputs)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = []
    print("| case | mode | ms | pairs (or points) / s |\n|---|---|---|---|")
    for group, unit in ((cases(a.device), "pairs"), (model_cases(a.device), "points")):
        for name, count, module, call in group:
            for mode, fn in modes(module, call, list(module.parameters())).items():
                sec = timeit(fn, a.warmup, a.repeats, a.device)
                rows.append({"case": name, "mode": mode, "ms": 1e3 * sec, "count": count, "unit": unit,
                             "per_second": count / sec})
                print(f"| {name} | {mode} | {1e3 * sec:.1f} | {count / sec:.3g} {unit}/s |", flush=True)
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"rays_speed_{a.device.split(':')[0]}.json"
    out.write_text(json.dumps({"device": a.device, "threads": a.threads, "torch": torch.__version__,
                               "machine": platform.processor() or platform.machine(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
