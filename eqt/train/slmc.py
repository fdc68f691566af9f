"""Self-learning Monte Carlo with equivariant transformers: acceptance vs depth (Nagai & Tomiya).

``eqt slmc configs/slmc.yaml`` (or :func:`run_study`) does, under ``out_dir``:

1. **Exact data.** Metropolis with the exact fermion free energy (batched ED,
   :mod:`eqt.physics.spin_fermion`) on ``chains`` independent chains; configurations every
   ``sample_interval`` sweeps. Chains are split into training, validation and test chains (whole
   chains, so no test configuration is correlated with a training one). Cached in ``data.pt``.
2. **Linear model** (``num_layers = 0``): least squares on the training configurations.
3. **Transformers** of ``layers`` depths (and the ``widths`` channel counts): each starts exactly at
   the linear model (:meth:`SpinTransformer.from_linear`) and is trained on the MSE of energies with
   :func:`eqt.train.steps.fit` (Adam; resumable; best validation checkpoint).
4. **SLMC** with each effective model: ``updates_per_step`` local moves under the model per global
   step, one exact accept/reject (:func:`eqt.physics.monte_carlo.run_slmc`), from the thermalised
   end of the exact chains; the global acceptance with an autocorrelation-aware error bar.
5. **Table and fits**: ``results.json``, ``results.md`` (test MSE, acceptance per model) and
   ``acceptance.png``; a power law ``loss = a * params^b`` fitted to the transformers with at
   least 2 layers (the paper's fit excludes the linear and one-layer models).

Every stage is cached or resumable: a rerun skips what is done.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from eqt.checkpoint import load_model
from eqt.config import Config
from eqt.models.spin_transformer import SpinTransformer, SpinTransformerConfig
from eqt.physics.linear_model import LinearSpinModel, fit_linear_model
from eqt.physics.mc_statistics import estimate
from eqt.physics.monte_carlo import MCConfig, random_spins, run_metropolis, run_slmc
from eqt.physics.spin_fermion import SpinFermionConfig, free_energy
from eqt.train.steps import StepConfig, fit

__all__ = ["SLMCStudyConfig", "run_study", "load_study_config", "power_law_fit", "main"]


@dataclasses.dataclass(frozen=True)
class SLMCStudyConfig(Config):
    """The acceptance-vs-depth study (defaults: 6x6, the parameters of ``docs/slmc.md``)."""

    model: dict = dataclasses.field(default_factory=lambda: dict(L=6, t=1.0, J=8.0, mu=-3.0, temperature=0.035))
    chains: int = 32
    val_chains: int = 3
    test_chains: int = 3
    thermalize_sweeps: int = 30
    sample_sweeps: int = 120
    sample_interval: int = 2
    move: str = "rotation"
    step_size: float = 0.5
    readout_shells: int = 5
    layers: tuple = (0, 1, 2, 3, 4)
    widths: tuple = (4,)
    heads: int = 2
    head_channels: int = 4
    qkv_shells: int = 3
    train_steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    slmc_steps: int = 300
    updates_per_step: int | None = None
    self_learning_rounds: int = 0
    self_learning_steps: int | None = None
    seed: int = 0
    out_dir: str = "runs/slmc"

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(v) for v in self.layers))
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        SpinFermionConfig.from_dict(self.model)
        if self.chains - self.val_chains - self.test_chains < 1 or self.val_chains < 1 or self.test_chains < 1:
            raise ValueError(f"need >= 1 training, validation and test chain; got chains={self.chains}, "
                             f"val_chains={self.val_chains}, test_chains={self.test_chains}")
        if any(v < 0 for v in self.layers) or not self.layers or not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"layers must be >= 0 and widths >= 1, got layers={self.layers}, widths={self.widths}")
        if self.sample_sweeps < 2 * self.sample_interval or self.sample_interval < 1:
            raise ValueError("sample_sweeps must hold at least two samples of sample_interval >= 1 sweeps")
        if not isinstance(self.self_learning_rounds, int) or self.self_learning_rounds < 0:
            raise ValueError(f"self_learning_rounds must be an int >= 0, got {self.self_learning_rounds!r}")
        if self.self_learning_steps is not None and self.self_learning_steps < 1:
            raise ValueError(f"self_learning_steps must be >= 1 or null, got {self.self_learning_steps!r}")

    @property
    def physics(self) -> SpinFermionConfig:
        return SpinFermionConfig.from_dict(self.model)


def load_study_config(path: str | Path | None, overrides: list[str] = ()) -> SLMCStudyConfig:
    """YAML file + ``key=value`` overrides (``model.J=6`` reaches into ``model``) -> config."""
    from eqt.train.config import apply_overrides, read_yaml

    values = read_yaml(path)
    values = apply_overrides({**values, "model": dict(values.get("model", SLMCStudyConfig().model))}, list(overrides))
    return SLMCStudyConfig.from_dict(values)


def _exact_data(c: SLMCStudyConfig, out: Path, log) -> dict[str, torch.Tensor]:
    path = out / "data.pt"
    key = {k: v for k, v in c.to_dict().items() if k in ("model", "chains", "thermalize_sweeps", "sample_sweeps",
                                                          "sample_interval", "move", "step_size", "seed")}
    if path.exists():
        data = torch.load(path, weights_only=True)
        if data.get("key") == json.dumps(key, sort_keys=True):
            log(f"exact data: cached in {path}")
            return data
    phys = c.physics
    energy = functools.partial(free_energy, config=phys)
    spins0 = random_spins(c.chains, phys.L, torch.Generator().manual_seed(c.seed))
    mc = MCConfig(num_steps=c.sample_sweeps, num_thermalize=c.thermalize_sweeps, move=c.move,
                  step_size=c.step_size, sample_interval=c.sample_interval, seed=c.seed)
    t0 = time.perf_counter()
    run = run_metropolis(energy, spins0, phys.temperature, mc)
    log(f"exact data: {run.samples.shape[0]} x {c.chains} configurations in {time.perf_counter() - t0:.0f} s, "
        f"local acceptance {float(run.acceptance.mean()):.2f}")
    data = {"samples": run.samples, "energies": run.sample_energies, "final": run.spins,
            "exact_energy_series": run.energy, "key": json.dumps(key, sort_keys=True),
            "seconds": time.perf_counter() - t0}
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("data.pt.tmp")
    torch.save(data, tmp)
    tmp.replace(path)
    return data


def _split(data: dict, c: SLMCStudyConfig) -> dict[str, dict[str, torch.Tensor]]:
    s, e = data["samples"], data["energies"]  # (T', B, L, L, 3), (T', B)
    n_train = c.chains - c.val_chains - c.test_chains
    parts = {"train": slice(0, n_train), "val": slice(n_train, n_train + c.val_chains),
             "test": slice(n_train + c.val_chains, c.chains)}
    L = s.shape[-2]
    return {k: {"spins": s[:, sl].reshape(-1, L, L, 3), "energy": e[:, sl].reshape(-1)} for k, sl in parts.items()}


def _split_chains(samples: torch.Tensor, energies: torch.Tensor, c: SLMCStudyConfig) -> dict[str, dict]:
    """``(T', B, L, L, 3)`` samples of the ``B = chains`` chains -> train / val / test by whole chains."""
    return _split({"samples": samples, "energies": energies}, c)


def _join(*parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _mse_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]):
    err = model(batch["spins"]) - batch["energy"].to(model.readout.e0.dtype)
    mse = err.square().mean()
    return mse, {"mse": mse.detach()}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def power_law_fit(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least squares of ``log y = log a + b log x``; returns ``a``, ``b`` and the standard error of ``b``."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if len(lx) < 2:
        return {"a": float("nan"), "b": float("nan"), "b_err": float("nan")}
    design = np.stack([np.ones_like(lx), lx], axis=1)
    coef, res, *_ = np.linalg.lstsq(design, ly, rcond=None)
    dof = len(lx) - 2
    sigma2 = float(((ly - design @ coef) ** 2).sum() / dof) if dof > 0 else float("nan")
    cov = sigma2 * np.linalg.inv(design.T @ design) if dof > 0 else np.full((2, 2), np.nan)
    return {"a": float(np.exp(coef[0])), "b": float(coef[1]), "b_err": float(np.sqrt(cov[1, 1]))}


def _train(model: torch.nn.Module, train: dict, val: dict, steps: int, c: SLMCStudyConfig, out: Path) -> torch.nn.Module:
    """Adam on the MSE from ``model``'s current weights; returns the best-validation checkpoint."""
    cfg = StepConfig(steps=steps, batch_size=c.batch_size, lr=c.lr, lr_decay=0.05, grad_clip=10.0,
                     val_every=max(steps // 20, 1), checkpoint_every=max(steps // 20, 1), val_batch_size=4096,
                     seed=c.seed)
    fit(model, _mse_loss, train, val, cfg, out, log=None)
    return load_model(out / "best.pt").double()


def _slmc(model: torch.nn.Module, exact_fn, start: torch.Tensor, c: SLMCStudyConfig, seed: int):
    """SLMC from ``start`` with ``model`` as the effective energy, keeping every proposal."""
    cfg = MCConfig(num_steps=c.slmc_steps, num_thermalize=10, updates_per_step=c.updates_per_step, move=c.move,
                   step_size=c.step_size, sample_interval=1, sample_proposals=True, seed=seed)
    with torch.no_grad():
        return run_slmc(exact_fn, model, start, c.physics.temperature, cfg)


def run_study(c: SLMCStudyConfig, log=print) -> dict:
    """Run (or resume) the whole study; returns the results dictionary also written to ``results.json``."""
    out = Path(c.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(c.to_dict(), indent=2) + "\n")
    phys = c.physics
    data = _exact_data(c, out, log)
    splits = _split(data, c)
    linear = fit_linear_model(splits["train"]["spins"], splits["train"]["energy"], c.readout_shells)
    exact_fn = functools.partial(free_energy, config=phys)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    rounds = c.self_learning_rounds
    runs = [(0, 1)] + [(n, w) for n in c.layers if n > 0 for w in c.widths] if 0 in c.layers else \
        [(n, w) for n in c.layers for w in c.widths]
    for layers, width in runs:
        name = "linear" if layers == 0 else f"L{layers}-C{width}"
        r_ = results.get(name, {})
        if r_.get("slmc_steps") == c.slmc_steps and r_.get("train_steps") == (c.train_steps if layers else 0) and \
                len(r_.get("rounds", [])) == rounds:
            log(f"{name}: done already")
            continue
        cfg = SpinTransformerConfig(L=phys.L, num_layers=layers, channels=width, heads=c.heads,
                                    head_channels=c.head_channels, qkv_shells=c.qkv_shells,
                                    readout_shells=c.readout_shells)
        torch.manual_seed(c.seed)
        model = SpinTransformer.from_linear(cfg, linear.e0, linear.couplings).double()
        train_seconds = 0.0
        if layers:
            t0 = time.perf_counter()
            model = _train(model, splits["train"], splits["val"], c.train_steps, c, out / name)
            train_seconds = time.perf_counter() - t0
        model = model.eval()
        with torch.no_grad():
            mse = {k: float(_mse_loss(model, v)[0]) for k, v in splits.items()}
        t0 = time.perf_counter()
        run = _slmc(model, exact_fn, data["final"], c, seed=c.seed + 1)
        slmc_seconds = time.perf_counter() - t0
        acc = estimate(run.acceptance)
        results[name] = {"layers": layers, "channels": width, "params": n_params(model) if layers else
                         1 + c.readout_shells, "train_steps": c.train_steps if layers else 0,
                         "train_seconds": train_seconds, "mse": mse, "slmc_steps": c.slmc_steps,
                         "acceptance": [acc.mean, acc.error], "acceptance_tau": acc.tau,
                         "local_acceptance": float(run.local_acceptance.mean()),
                         "slmc_seconds": slmc_seconds,
                         "observables": {k: [v.mean, v.error] for k, v in run.summary().items()}, "rounds": []}
        log(f"{name}: params {results[name]['params']}, test MSE {mse['test']:.3g}, "
            f"acceptance {acc.mean:.3f} ± {acc.error:.3f}")
        # the self-learning loop: add the SLMC proposals (exact energies known) to the data, refit, rerun
        seen = _split_chains(run.samples, run.sample_energies, c)
        train, val = splits["train"], splits["val"]
        for k in range(1, rounds + 1):
            train, val = _join(train, seen["train"]), _join(val, seen["val"])
            t0 = time.perf_counter()
            if layers:
                model = _train(model, train, val, c.self_learning_steps or c.train_steps, c, out / name / f"round{k}")
            else:
                refit = fit_linear_model(train["spins"], train["energy"], c.readout_shells)
                model = SpinTransformer.from_linear(cfg, refit.e0, refit.couplings).double()
            model = model.eval()
            seconds = time.perf_counter() - t0
            with torch.no_grad():
                mse_k = {"test": float(_mse_loss(model, splits["test"])[0]),
                         "proposals_test": float(_mse_loss(model, seen["test"])[0])}
            t0 = time.perf_counter()
            run = _slmc(model, exact_fn, data["final"], c, seed=c.seed + 1 + k)
            acc = estimate(run.acceptance)
            results[name]["rounds"].append({
                "round": k, "train_configurations": int(train["energy"].numel()), "mse": mse_k,
                "acceptance": [acc.mean, acc.error], "train_seconds": seconds,
                "slmc_seconds": time.perf_counter() - t0,
                "observables": {k_: [v.mean, v.error] for k_, v in run.summary().items()}})
            log(f"{name} round {k}: {train['energy'].numel()} training configurations, test MSE {mse_k['test']:.3g} "
                f"(on last proposals {mse_k['proposals_test']:.3g}), acceptance {acc.mean:.3f} ± {acc.error:.3f}")
            seen = _split_chains(run.samples, run.sample_energies, c)
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    results["_fit"] = _fits(results)
    results["_exact"] = {"observables": {k: [v.mean, v.error] for k, v in _exact_summary(data).items()}}
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(table(results) + "\n")
    _plot(results, out / "acceptance.png")
    return results


def _exact_summary(data: dict) -> dict:
    return {"energy": estimate(data["exact_energy_series"])}


def _fits(results: dict) -> dict:
    rows = [r for k, r in results.items() if not k.startswith("_") and r["layers"] >= 2]
    fit_loss = power_law_fit([r["params"] for r in rows], [r["mse"]["test"] for r in rows])
    fit_rej = power_law_fit([r["params"] for r in rows], [max(1 - r["acceptance"][0], 1e-6) for r in rows])
    return {"loss_vs_params": fit_loss, "rejection_vs_params": fit_rej, "points": len(rows)}


def table(results: dict) -> str:
    """Markdown table: model, parameters, test MSE, SLMC acceptance (and after each self-learning round)."""
    rows = {k: r for k, r in results.items() if not k.startswith("_")}
    rounds = max((len(r.get("rounds", [])) for r in rows.values()), default=0)
    extra = "".join(f" round {k}: test MSE / acceptance |" for k in range(1, rounds + 1))
    lines = ["| model | layers | channels | params | test MSE | SLMC acceptance |" + extra + " CPU s (train + SLMC) |",
             "|---|---|---|---|---|---|" + "---|" * rounds + "---|"]
    for name, r in rows.items():
        cells = "".join(f" {q['mse']['test']:.3g} / {q['acceptance'][0]:.3f} ± {q['acceptance'][1]:.3f} |"
                        for q in r.get("rounds", []))
        cells += " – |" * (rounds - len(r.get("rounds", [])))
        seconds = r["train_seconds"] + r["slmc_seconds"] + sum(q["train_seconds"] + q["slmc_seconds"]
                                                               for q in r.get("rounds", []))
        lines.append(f"| {name} | {r['layers']} | {r['channels']} | {r['params']} | {r['mse']['test']:.3g} | "
                     f"{r['acceptance'][0]:.3f} ± {r['acceptance'][1]:.3f} |{cells} {seconds:.0f} |")
    f = results.get("_fit")
    if f and f["points"] >= 2:
        lf, rf = f["loss_vs_params"], f["rejection_vs_params"]
        lines.append("")
        lines.append(f"Power laws over {f['points']} models with >= 2 layers: test MSE = {lf['a']:.3g} "
                     f"params^({lf['b']:.2f} ± {lf['b_err']:.2f}); 1 - acceptance = {rf['a']:.3g} "
                     f"params^({rf['b']:.2f} ± {rf['b_err']:.2f}).")
    return "\n".join(lines)


def _plot(results: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is an optional extra
        return
    rows = [r for k, r in results.items() if not k.startswith("_")]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for w in sorted({r["channels"] for r in rows if r["layers"]}):
        sel = sorted([r for r in rows if r["layers"] == 0 or r["channels"] == w], key=lambda r: r["layers"])
        line = axes[0].errorbar([r["layers"] for r in sel], [r["acceptance"][0] for r in sel],
                                yerr=[r["acceptance"][1] for r in sel], marker="o", capsize=3, label=f"{w} channels")
        last = [(r["layers"], r["rounds"][-1]["acceptance"]) for r in sel if r.get("rounds")]
        if last:
            axes[0].errorbar([x for x, _ in last], [a[0] for _, a in last], yerr=[a[1] for _, a in last],
                             marker="s", mfc="none", ls="--", capsize=3, color=line[0].get_color(),
                             label=f"{w} channels, after {len(sel[-1].get('rounds', []))} self-learning rounds")
        axes[1].loglog([r["params"] for r in sel], [r["mse"]["test"] for r in sel], "o-", label=f"{w} channels")
    fit_ = results.get("_fit", {}).get("loss_vs_params")
    if fit_ and math.isfinite(fit_["b"]):
        xs = np.array(sorted(r["params"] for r in rows if r["layers"] >= 2))
        axes[1].loglog(xs, fit_["a"] * xs ** fit_["b"], "k--", label=f"fit: b = {fit_['b']:.2f}")
    axes[0].set(xlabel="attention layers (0 = linear model)", ylabel="SLMC acceptance", ylim=(0, 1))
    axes[1].set(xlabel="parameters", ylabel="test MSE of E_eff")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``eqt slmc`` / ``python -m eqt.train.slmc``."""
    p.add_argument("config", nargs="?", help="YAML file (see configs/slmc.yaml); defaults otherwise")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key (repeatable)")
    p.add_argument("--out", help="output directory (overrides out_dir)")
    p.add_argument("--threads", type=int, default=1)
    return p


def run_from_args(a: argparse.Namespace) -> dict:
    torch.set_num_threads(a.threads)
    overrides = list(a.set or []) + ([f"out_dir={a.out}"] if a.out else [])
    results = run_study(load_study_config(a.config, overrides))
    print(table(results))
    return results


def main(argv: list[str] | None = None) -> int:
    run_from_args(add_arguments(argparse.ArgumentParser(prog="python -m eqt.train.slmc")).parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
