"""GATr's n-body experiment: train E-, P-, iP-, C-GATr and the baseline transformer, one table.

``python -m eqt.train.nbody --out runs/nbody`` generates the data (:mod:`eqt.data.nbody`, cached
under ``--data``), trains each model with :func:`eqt.train.steps.fit` at (about) the same
parameter count and the same step budget, evaluates the best-validation model on the ``eval``,
``e3_generalization`` (+200 shift) and ``object_generalization`` (6 bodies) sets, and writes
``results.json`` and ``results.md`` under ``--out``. Every run resumes from its checkpoint, and a
finished run is not redone.

Protocol (GATr reference, ``config/nbody.yaml``): batch 64, Adam lr 3e-4 decayed exponentially
to 1 %, gradient clipping at 10, loss ``MSE + 0.01 reg``, best validation checkpoint. The
reference trains 50k steps of a 10-block model; the CPU default here is 4 blocks, ``--steps``
(default 2000) and ``--train-size`` (default 1000 = the reference README's 1 % data point).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from eqt.checkpoint import load_model
from eqt.data import nbody as data
from eqt.models.nbody import MODEL_NAMES, NBodyModel, NBodyModelConfig
from eqt.train.steps import StepConfig, evaluate, fit

__all__ = ["loss_fn", "sized_config", "run", "collect", "table", "add_arguments", "run_from_args", "main"]

EVAL_SPLITS = ("eval", "e3_generalization", "object_generalization")
REG_WEIGHT = 0.01


def loss_fn(model: torch.nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """``MSE + 0.01 reg`` with MSE and MAE (per coordinate) as metrics."""
    pred, reg = model(batch["inputs"])
    err = pred - batch["targets"]
    mse = err.square().mean()
    return mse + REG_WEIGHT * reg.mean(), {"mse": mse.detach(), "mae": err.abs().mean().detach()}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def sized_config(variant: str, target: int, num_blocks: int = 4, centre: bool = False) -> NBodyModelConfig:
    """The config of ``variant`` with ``num_blocks`` blocks whose parameter count is closest to ``target``.

    GATr variants scale ``hidden_mv = w`` with ``hidden_s = 2w``, 4 heads of ``max(1, w//4)``
    multivector and ``w//2`` scalar channels, bilinear ``max(1, w//2)``; the Transformer scales
    ``hidden`` in steps of its 8 heads.
    """
    def make(w: int) -> NBodyModelConfig:
        if variant == "Transformer":
            return NBodyModelConfig(variant=variant, num_blocks=num_blocks, hidden=8 * w, centre=centre)
        return NBodyModelConfig(variant=variant, num_blocks=num_blocks, centre=centre, hidden_mv=w, hidden_s=2 * w, heads=4,
                                head_mv=max(1, w // 4), head_s=max(1, w // 2), bilinear_mv=max(1, w // 2))

    def count(w: int) -> int:
        return n_params(NBodyModel(make(w)))

    lo, hi = 1, 128  # the count grows with w: bisect for the first w at or above the target
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if count(mid) < target else (lo, mid)
    best = min((w for w in (lo - 1, lo) if w >= 1), key=lambda w: abs(count(w) - target))
    return make(best)


def _tensors(split: dict[str, np.ndarray], dtype: torch.dtype) -> dict[str, Tensor]:
    inputs, targets = data.inputs_targets(split)
    return {"inputs": torch.as_tensor(inputs, dtype=dtype), "targets": torch.as_tensor(targets, dtype=dtype)}


def run(out: str | Path, data_dir: str | Path, models: tuple[str, ...] = MODEL_NAMES, steps: int = 2000,
        train_size: int = 1000, eval_size: int = 5000, target_params: int = 130_000, num_blocks: int = 4,
        seed: int = 0, centre: bool = False, log=print) -> dict:
    """Train and evaluate each model; returns ``{model: {"params", "steps", "seconds", split: {mse, mae}}}``.

    ``centre=True`` trains the models on positions centred on their mean (run folders
    ``<model>-centred``). Each model's result goes to ``out/<model>/result.json``; ``out/results.{json,md}`` collect all
    models found under ``out`` (so several processes can train different models in parallel).
    """
    out, data_dir = Path(out), Path(data_dir)
    sizes = {"train": train_size, "val": min(eval_size, 5000), **{s: eval_size for s in EVAL_SPLITS}}
    data.generate(data_dir, sizes, seed=seed)
    splits = {s: _tensors(data.load(data_dir, s), torch.float32) for s in sizes}
    config = StepConfig(steps=steps, batch_size=64, lr=3e-4, lr_decay=0.01, grad_clip=10.0,
                        val_every=max(steps // 20, 1), checkpoint_every=max(steps // 20, 1), seed=seed)
    for variant in models:
        name = f"{variant}-centred" if centre and variant != "E-GATr" else variant
        run_dir = out / name
        result_path = run_dir / "result.json"
        done = json.loads(result_path.read_text()) if result_path.exists() else {}
        if done.get("steps") == steps and done.get("train_size") == train_size and done.get("finished"):
            log(f"{name}: done already ({result_path})")
            continue
        model_config = sized_config(variant, target_params, num_blocks, centre)
        torch.manual_seed(seed)
        model = NBodyModel(model_config)
        log(f"{name}: {n_params(model):,} parameters, {steps} steps on {train_size} samples")
        summary = fit(model, loss_fn, splits["train"], splits["val"], config, run_dir, log=log)
        best = load_model(run_dir / "best.pt")
        entry = {"params": n_params(model), "config": model_config.to_dict(), "steps": steps,
                 "train_size": train_size, "finished": summary["finished"], "seconds": summary["seconds"],
                 "best_step": summary["best_step"], "seed": seed}
        for split in EVAL_SPLITS:
            metrics = evaluate(best, loss_fn, splits[split])
            entry[split] = {"mse": metrics["mse"], "mae": metrics["mae"]}
        result_path.write_text(json.dumps(entry, indent=2) + "\n")
        log(table({name: entry}))
    results = collect(out)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(table(results) + "\n")
    return results


def collect(out: str | Path) -> dict:
    """``{model: result}`` from every ``out/<model>/result.json`` (runs may be made by parallel processes)."""
    found = {p.parent.name: json.loads(p.read_text()) for p in Path(out).glob("*/result.json")}
    order = [n for v in MODEL_NAMES for n in (v, f"{v}-centred")]
    return {name: found[name] for name in order if name in found}


def table(results: dict) -> str:
    """Markdown table of eval / E(3)-shifted / 6-body MSE per model."""
    lines = ["| model | params | steps | train samples | eval MSE | E(3)-shift MSE | 6-body MSE | CPU s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['params']:,} | {r['steps']} | {r['train_size']} | {r['eval']['mse']:.3g} | "
                     f"{r['e3_generalization']['mse']:.3g} | {r['object_generalization']['mse']:.3g} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The experiment's options (shared by ``python -m eqt.train.nbody`` and ``eqt nbody``)."""
    p.add_argument("--out", default="runs/nbody")
    p.add_argument("--data", default="runs/nbody_data", help="cache folder of the simulated splits")
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--train-size", type=int, default=1000)
    p.add_argument("--eval-size", type=int, default=5000)
    p.add_argument("--params", type=int, default=130_000, help="target parameter count of every model")
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--centre", action="store_true", help="centre positions on their mean (folders <model>-centred)")
    p.add_argument("--threads", type=int, default=1)
    return p


def run_from_args(a: argparse.Namespace) -> dict:
    """Run the experiment from parsed :func:`add_arguments` options and print the table."""
    torch.set_num_threads(a.threads)
    res = run(a.out, a.data, tuple(a.models), a.steps, a.train_size, a.eval_size, a.params, a.blocks, a.seed, a.centre)
    print(table(res))
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eqt.train.nbody", description=__doc__.splitlines()[0])
    run_from_args(add_arguments(parser).parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
