"""Fits and report of a scaling sweep (:mod:`eqt.train.scaling`): power laws, L(N, D), allocation, findings.

Everything works on the rows of ``results.json`` (:func:`eqt.train.scaling.collect`). Functions return
plain dictionaries; :func:`report` turns :func:`analyze`'s dictionary into markdown and, given a
folder, draws the three figures (matplotlib, Agg backend, imported lazily).

Choices (documented in ``docs/scaling.md``, "Fits"):

- **Loss**: ``best_test_loss`` by default, the test loss of the best-validation checkpoint (GATr's
  early stopping: a run's loss does not get worse with more steps on a small data set). The plain
  transformer's in-distribution test set is in the canonical frame (floor ``z = 0``), so
  ``best_test_e3_loss`` (test scenes moved by random E(3) elements) is reported next to it.
- **Compute**: ``train_flops_true``, FLOPs per step with the sparse products at their true cost x
  steps (:func:`eqt.train.scaling.corrected_flops`); the counted FLOPs are fitted too, for comparison.
- **Loss vs compute**: the compute-efficient frontier of each family (runs with a lower loss than
  every run of that family with less compute) fitted by a pure power law
  ``L = a C^-b``, least squares in log-log space. The irreducible term of ``a C^-b + c``
  (:func:`fit_power_law` with ``offset=True``) is not identifiable from about two decades of
  compute, so it is not the default.
- **L(N, D)** (Hoffmann et al.'s form): ``L = E + A / N^alpha + B / D^beta`` with ``N`` trainable
  parameters and ``D`` training samples seen (steps x batch size), fitted on the runs with the
  largest data set (the least data-limited ones) by minimising the Huber loss (delta 1e-3) of
  ``log L_pred - log L`` (``scipy.optimize.least_squares``, ``loss="huber"``), parametrised by
  ``log E, log A, log B, alpha, beta`` with the exponents in ``[0, 4]``: plain least squares from a
  grid of 27 starts, then the Huber loss from the two best solutions.
- **Uncertainty**: nonparametric bootstrap over runs (resample a family's runs with replacement,
  refit; frontiers are recomputed per resample); 95 % percentile intervals.
- **Compute-optimal allocation**: with ``F(N) = k N^gamma`` the (true) FLOPs per training sample
  (fitted over the family's sizes) the budget is ``C = F(N) D``; minimising the fitted ``L(N, D)``
  at fixed ``C`` gives ``N_opt = G C^a``, ``D_opt = C / F(N_opt)`` with
  ``a = beta / (alpha + gamma beta)``, ``b = alpha / (alpha + gamma beta)`` (``gamma = 1``,
  ``F = 6 N`` is Chinchilla's case).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LOSS", "COMPUTE", "frontier", "fit_power_law", "fit_chinchilla", "bootstrap", "compute_fit",
           "chinchilla_fit", "flops_law", "allocation", "data_efficiency", "compare_frontiers", "findings",
           "analyze", "plot_compute", "plot_data", "plot_allocation", "report"]

LOSS = "best_test_loss"
COMPUTE = "train_flops_true"
_ORDER = ("gatr", "transformer", "transformer+aug")
_COLOURS = {"gatr": "tab:red", "transformer": "tab:blue", "transformer+aug": "tab:green"}
_LABELS = {"gatr": "GATr", "transformer": "Transformer", "transformer+aug": "Transformer + aug."}


def _families(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    have = {r["family"] for r in rows}
    return [f for f in _ORDER if f in have] + sorted(have - set(_ORDER))


def _of(rows: Sequence[Mapping[str, Any]], family: str) -> list[Mapping[str, Any]]:
    return [r for r in rows if r["family"] == family]


# --------------------------------------------------------------------------------------------
# Elementary fits
# --------------------------------------------------------------------------------------------
def frontier(compute: Sequence[float], loss: Sequence[float]) -> np.ndarray:
    """Indices of the compute-efficient runs: lower loss than every run with less (or equal) compute.

    Args: compute, loss: ``(n,)``. Returns: indices sorted by compute.
    """
    c, l_ = np.asarray(compute, float), np.asarray(loss, float)
    best, keep = math.inf, []
    for i in np.lexsort((l_, c)):  # by compute, ties by loss
        if l_[i] < best:
            keep.append(i)
            best = l_[i]
    return np.asarray(keep, dtype=int)


def fit_power_law(x: Sequence[float], y: Sequence[float], offset: bool = False) -> dict[str, float]:
    """``y = a x^-b`` (least squares of ``log y`` on ``log x``) or, with ``offset``, ``y = a x^-b + c``.

    The offset form minimises squared log residuals (``scipy.optimize.least_squares``) with ``c >= 0``.

    Returns:
        ``{"a", "b", "c", "rmse_log"}`` (``c = 0`` without offset; ``rmse_log`` of the log residuals);
        NaNs when fewer than two distinct ``x``.
    """
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if len(np.unique(lx)) < 2:
        return {"a": math.nan, "b": math.nan, "c": math.nan, "rmse_log": math.nan}
    slope, icpt = np.polyfit(lx, ly, 1)
    a, b, c = math.exp(icpt), -slope, 0.0
    if offset and len(lx) >= 3:
        from scipy.optimize import least_squares

        def resid(t: np.ndarray) -> np.ndarray:
            return np.logaddexp(t[0] - t[1] * lx, t[2]) - ly

        starts = [(icpt, b, math.log(f * math.exp(ly.min()))) for f in (1e-3, 0.5, 0.9)]
        fits = [least_squares(resid, s, bounds=([-np.inf, 0, -50], [np.inf, 5, np.inf])) for s in starts]
        best = min(fits, key=lambda f: f.cost)
        a, b, c = math.exp(best.x[0]), float(best.x[1]), math.exp(best.x[2])
    pred = np.log(a * np.exp(-b * lx) + c)
    return {"a": a, "b": b, "c": c, "rmse_log": float(np.sqrt(np.mean((pred - ly) ** 2)))}


def _chinchilla_resid(t: np.ndarray, ln: np.ndarray, ld: np.ndarray, ll: np.ndarray) -> np.ndarray:
    e, a, b, alpha, beta = t
    return np.logaddexp(np.logaddexp(a - alpha * ln, b - beta * ld), e) - ll


def _chinchilla_jac(t: np.ndarray, ln: np.ndarray, ld: np.ndarray, ll: np.ndarray) -> np.ndarray:
    e, a, b, alpha, beta = t
    u = np.stack([a - alpha * ln, b - beta * ld, np.full_like(ln, e)], axis=1)  # (m, 3)
    w = np.exp(u - u.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)  # d lse / d u
    return np.stack([w[:, 2], w[:, 0], w[:, 1], -w[:, 0] * ln, -w[:, 1] * ld], axis=1)


def _chinchilla_starts(ln: np.ndarray, ld: np.ndarray, ll: np.ndarray) -> list[np.ndarray]:
    lmin, lmax = float(np.exp(ll.min())), float(np.exp(ll.max()))
    starts = []
    for fe in (0.05, 0.5, 0.9):
        e = lmin * fe
        term = max(lmax - e, 1e-6) / 2
        for alpha in (0.1, 0.4, 1.0):
            for beta in (0.1, 0.4, 1.0):
                starts.append(np.array([math.log(e), math.log(term) + alpha * np.median(ln),
                                        math.log(term) + beta * np.median(ld), alpha, beta]))
    return starts


def fit_chinchilla(n: Sequence[float], d: Sequence[float], loss: Sequence[float], delta: float = 1e-3,
                   starts: Sequence[np.ndarray] | None = None) -> dict[str, float]:
    """Hoffmann et al.'s ``L = E + A / N^alpha + B / D^beta`` by a Huber fit of the log loss.

    Args:
        n, d, loss: ``(m,)`` parameters, samples seen, losses.
        delta: the Huber threshold on log residuals (Hoffmann et al.: 1e-3).
        starts: initial ``(log E, log A, log B, alpha, beta)`` (default: a grid of 27).

    Returns:
        ``{"E", "A", "B", "alpha", "beta", "rmse_log", "n_runs"}`` (NaNs with fewer than 5 runs or
        fewer than two distinct N or D).
    """
    from scipy.optimize import least_squares

    ln, ld, ll = (np.log(np.asarray(v, float)) for v in (n, d, loss))
    nan = dict.fromkeys(("E", "A", "B", "alpha", "beta", "rmse_log"), math.nan)
    if len(ll) < 5 or len(np.unique(ln)) < 2 or len(np.unique(ld)) < 2:
        return {**nan, "n_runs": len(ll)}
    bounds = ([-50, -50, -50, 0, 0], [50, 200, 200, 4, 4])
    fits = [least_squares(_chinchilla_resid, s, jac=_chinchilla_jac, args=(ln, ld, ll), bounds=bounds, max_nfev=500)
            for s in (starts if starts is not None else _chinchilla_starts(ln, ld, ll))]  # plain least squares first
    best = None
    for seed in sorted(fits, key=lambda f: f.cost)[:2]:  # then the Huber loss from the two best
        fit = least_squares(_chinchilla_resid, seed.x, jac=_chinchilla_jac, args=(ln, ld, ll), loss="huber",
                            f_scale=delta, bounds=bounds, max_nfev=1000)
        if best is None or fit.cost < best.cost:
            best = fit
    e, a, b, alpha, beta = best.x
    r = _chinchilla_resid(best.x, ln, ld, ll)
    return {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": float(alpha), "beta": float(beta),
            "rmse_log": float(np.sqrt(np.mean(r**2))), "n_runs": len(ll), "x": best.x.tolist()}


def bootstrap(rows: Sequence[Any], fn: Callable[[Sequence[Any]], Mapping[str, float]], n_boot: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """Nonparametric bootstrap over ``rows``: refit ``fn`` on resamples with replacement.

    Returns:
        ``{"samples": {key: array (n_boot,)}, "ci": {key: (2.5 %, 97.5 %)}}`` over the finite values of
        every numeric key of ``fn``'s result.
    """
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(n_boot):
        idx = rng.integers(0, len(rows), len(rows))
        out = fn([rows[i] for i in idx])
        for k, v in out.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                samples.setdefault(k, []).append(float(v))
    arrays = {k: np.asarray(v) for k, v in samples.items()}
    ci = {}
    for k, v in arrays.items():
        finite = v[np.isfinite(v)]
        ci[k] = (float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))) if len(finite) else (
            math.nan, math.nan)
    return {"samples": arrays, "ci": ci}


# --------------------------------------------------------------------------------------------
# Sweep-level fits
# --------------------------------------------------------------------------------------------
def _frontier_fit(rows: Sequence[Mapping[str, Any]], loss: str, compute: str) -> dict[str, float]:
    c = np.array([r[compute] for r in rows], float)
    l_ = np.array([r[loss] for r in rows], float)
    idx = frontier(c, l_)
    return fit_power_law(c[idx], l_[idx])


def compute_fit(rows: Sequence[Mapping[str, Any]], family: str, loss: str = LOSS, compute: str = COMPUTE,
                n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Loss vs compute of one family: the frontier's power law ``L = a C^-b`` with bootstrap intervals.

    Returns:
        ``{"family", "loss", "compute", "a", "b", "rmse_log", "ci": {"a", "b"}, "frontier": [run names],
        "frontier_compute", "frontier_loss", "range": (min C, max C), "n_runs"}``.
    """
    mine = _of(rows, family)
    c = np.array([r[compute] for r in mine], float)
    l_ = np.array([r[loss] for r in mine], float)
    idx = frontier(c, l_)
    fit = fit_power_law(c[idx], l_[idx])
    boot = bootstrap(mine, lambda s: _frontier_fit(s, loss, compute), n_boot, seed)
    return {"family": family, "loss": loss, "compute": compute, **fit, "ci": {k: boot["ci"][k] for k in ("a", "b")},
            "boot": {k: boot["samples"][k] for k in ("a", "b")}, "frontier": [mine[i]["name"] for i in idx],
            "frontier_compute": c[idx].tolist(), "frontier_loss": l_[idx].tolist(),
            "range": (float(c.min()), float(c.max())), "n_runs": len(mine)}


def chinchilla_fit(rows: Sequence[Mapping[str, Any]], family: str, loss: str = LOSS, n_train: int | None = -1,
                   n_boot: int = 300, seed: int = 0) -> dict[str, Any]:
    """``L(N, D) = E + A / N^alpha + B / D^beta`` of one family with bootstrap intervals.

    Args:
        rows: the table.
        family: which family.
        loss: the loss column.
        n_train: fit the runs with this data-set size; -1 (default): the largest; None: all runs.
        n_boot: bootstrap resamples (each refit from the full fit and one grid start).
        seed: of the resampling.

    Returns:
        ``{"family", "n_train", "E", "A", "B", "alpha", "beta", "rmse_log", "n_runs", "ci": {...},
        "boot": {key: samples}}``.
    """
    mine = _of(rows, family)
    if n_train == -1:
        n_train = max(r["n_train"] for r in mine)
    if n_train is not None:
        mine = [r for r in mine if r["n_train"] == n_train]

    def fit(sample: Sequence[Mapping[str, Any]], starts=None) -> dict[str, float]:
        return fit_chinchilla([r["params"] for r in sample], [r["samples_seen"] for r in sample],
                              [r[loss] for r in sample], starts=starts)

    full = fit(mine)
    if math.isnan(full["alpha"]):
        return {"family": family, "n_train": n_train, **full, "ci": {}, "boot": {}}
    grid = _chinchilla_starts(np.log([r["params"] for r in mine]), np.log([r["samples_seen"] for r in mine]),
                              np.log([r[loss] for r in mine]))
    starts = [np.asarray(full["x"]), grid[13]]
    boot = bootstrap(mine, lambda s: fit(s, starts), n_boot, seed)
    keys = ("E", "A", "B", "alpha", "beta")
    return {"family": family, "n_train": n_train, **full, "ci": {k: boot["ci"][k] for k in keys},
            "boot": {k: boot["samples"][k] for k in keys}}


def flops_law(rows: Sequence[Mapping[str, Any]], family: str, column: str = "flops_per_step_true") -> dict[str, float]:
    """``F(N) = k N^gamma``: training FLOPs per sample (``column / batch_size``) vs parameters, over the sizes."""
    mine = _of(rows, family)
    sizes = {(r["params"], r[column] / r["batch_size"]) for r in mine}
    n, f = zip(*sorted(sizes))
    if len(set(n)) < 2:
        return {"k": f[0] / n[0], "gamma": 1.0}
    slope, icpt = np.polyfit(np.log(n), np.log(f), 1)
    return {"k": math.exp(icpt), "gamma": float(slope)}


def _allocation_terms(alpha: float, beta: float, a_: float, b_: float, k: float, gamma: float) -> tuple[float, ...]:
    denom = alpha + gamma * beta
    g = (alpha * a_ / (gamma * beta * b_ * k**beta)) ** (1 / denom) if alpha > 0 and beta > 0 else math.nan
    return beta / denom, alpha / denom, g


def allocation(chin: Mapping[str, Any], law: Mapping[str, float],
               budgets: Sequence[float] = (1e11, 1e12, 1e13, 1e14)) -> dict[str, Any]:
    """Compute-optimal ``N_opt(C) = G C^a`` and ``D_opt(C) = C / F(N_opt)`` from an L(N, D) fit and ``F(N)``.

    Returns:
        ``{"a", "b", "G", "k", "gamma", "ci": {"a", "b"}, "budgets": [...], "n_opt": [...], "d_opt": [...],
        "n_opt_ci": [(lo, hi), ...]}`` (intervals from the L(N, D) bootstrap samples, ``F`` held fixed).
    """
    k, gamma = law["k"], law["gamma"]
    a, b, g = _allocation_terms(chin["alpha"], chin["beta"], chin["A"], chin["B"], k, gamma)
    budgets = list(budgets)
    n_opt = [g * c**a for c in budgets]
    out = {"a": a, "b": b, "G": g, "k": k, "gamma": gamma, "budgets": budgets, "n_opt": n_opt,
           "d_opt": [c / (k * n**gamma) for c, n in zip(budgets, n_opt)], "ci": {}, "n_opt_ci": []}
    boot = chin.get("boot") or {}
    if boot:
        terms = np.array([_allocation_terms(al, be, aa, bb, k, gamma) for al, be, aa, bb in
                          zip(boot["alpha"], boot["beta"], boot["A"], boot["B"])])
        ok = np.all(np.isfinite(terms), axis=1)
        terms = terms[ok]
        out["ci"] = {"a": tuple(np.percentile(terms[:, 0], [2.5, 97.5]).tolist()),
                     "b": tuple(np.percentile(terms[:, 1], [2.5, 97.5]).tolist())}
        out["boot_a"] = terms[:, 0]
        with np.errstate(over="ignore", invalid="ignore"):
            ns = np.array([terms[:, 2] * c ** terms[:, 0] for c in budgets])  # (budgets, boot)
        out["n_opt_ci"] = [tuple(np.nanpercentile(row, [2.5, 97.5]).tolist()) for row in ns]
    return out


def data_efficiency(rows: Sequence[Mapping[str, Any]], family: str, loss: str = LOSS) -> dict[str, Any]:
    """Best loss at each data-set size (over sizes and steps), and at each (n_train, steps); power law in n.

    Returns:
        ``{"family", "n_train": [...], "best": [...], "best_e3": [...], "by_steps": {(n, steps): loss},
        "a", "b"}`` with ``best ~ a n^-b``.
    """
    mine = _of(rows, family)
    ns = sorted({r["n_train"] for r in mine})
    best = [min(r[loss] for r in mine if r["n_train"] == n) for n in ns]
    e3 = loss.replace("test_loss", "test_e3_loss")
    best_e3 = [min(r[e3] for r in mine if r["n_train"] == n) for n in ns] if e3 in mine[0] else []
    by_steps = {}
    for r in mine:
        key = (r["n_train"], r["steps"])
        by_steps[key] = min(by_steps.get(key, math.inf), r[loss])
    fit = fit_power_law(ns, best)
    return {"family": family, "n_train": ns, "best": best, "best_e3": best_e3, "by_steps": by_steps,
            "a": fit["a"], "b": fit["b"]}


def compare_frontiers(rows: Sequence[Mapping[str, Any]], fits: Mapping[str, Mapping[str, Any]], reference: str,
                      other: str, loss: str = LOSS, compute: str = COMPUTE, points: int = 5) -> dict[str, Any]:
    """Where both families have runs: ``L_other / L_reference`` of the fitted frontiers (bootstrap CI) and of
    the measured best-so-far losses at every run's budget.

    Returns:
        ``{"budgets", "ratio", "ratio_ci", "empirical": [(C, best_ref, best_other)], "reference_ahead":
        share of budgets where the reference's best-so-far loss is lower}``; empty lists without overlap.
    """
    fa, fb = fits[reference], fits[other]
    lo, hi = max(fa["range"][0], fb["range"][0]), min(fa["range"][1], fb["range"][1])
    out: dict[str, Any] = {"reference": reference, "other": other, "budgets": [], "ratio": [], "ratio_ci": [],
                           "empirical": [], "reference_ahead": math.nan, "overlap": (lo, hi)}
    if lo >= hi:
        return out
    budgets = np.exp(np.linspace(math.log(lo), math.log(hi), points))
    ratio = fb["a"] * budgets ** -fb["b"] / (fa["a"] * budgets ** -fa["b"])
    boots = [fb["boot"]["a"][:, None] * budgets ** -fb["boot"]["b"][:, None]
             / (fa["boot"]["a"][:, None] * budgets ** -fa["boot"]["b"][:, None])]
    ci = np.nanpercentile(boots[0], [2.5, 97.5], axis=0).T
    ra, rb = _of(rows, reference), _of(rows, other)
    emp = []
    for c in sorted({r[compute] for r in ra + rb if lo <= r[compute] <= hi}):
        la = [r[loss] for r in ra if r[compute] <= c]
        lb = [r[loss] for r in rb if r[compute] <= c]
        if la and lb:
            emp.append((float(c), min(la), min(lb)))
    ahead = float(np.mean([a < b for _, a, b in emp])) if emp else math.nan
    out.update(budgets=budgets.tolist(), ratio=ratio.tolist(), ratio_ci=[tuple(x) for x in ci.tolist()],
               empirical=emp, reference_ahead=ahead)
    out.update(_crossover(fa, fb))
    return out


def _crossover(fa: Mapping[str, Any], fb: Mapping[str, Any]) -> dict[str, Any]:
    """Compute where the fitted frontiers ``a C^-b`` cross, ``(a_b / a_a)^(1 / (b_b - b_a))``, with a bootstrap CI."""
    def cross(aa, ba, ab, bb):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.exp(np.log(np.asarray(ab) / np.asarray(aa)) / (np.asarray(bb) - np.asarray(ba)))

    point = float(cross(fa["a"], fa["b"], fb["a"], fb["b"]))
    boot = cross(fa["boot"]["a"], fa["boot"]["b"], fb["boot"]["a"], fb["boot"]["b"])
    boot = boot[np.isfinite(boot) & (boot > 0)]
    ci = tuple(np.percentile(boot, [2.5, 97.5]).tolist()) if len(boot) else (math.nan, math.nan)
    return {"crossover": point, "crossover_ci": ci}


# --------------------------------------------------------------------------------------------
# Findings and the whole analysis
# --------------------------------------------------------------------------------------------
def _gap_table(data: Mapping[str, Mapping[str, Any]], num: str, den: str) -> list[tuple[int, int, float]]:
    """``[(n_train, steps, L_num / L_den)]`` of the best losses over sizes at each (n_train, steps)."""
    a, b = data[num]["by_steps"], data[den]["by_steps"]
    return [(n, s, a[(n, s)] / b[(n, s)]) for (n, s) in sorted(a) if (n, s) in b]


def _verdict(parts: Sequence[bool]) -> str:
    return "supported" if all(parts) else ("not supported" if not any(parts) else "partly supported")


def findings(analysis: Mapping[str, Any], tolerance: float = 0.05) -> dict[str, dict[str, Any]]:
    """The paper's three findings judged on the sweep, each ``{"verdict", "criteria", "evidence"}``.

    Each finding is split into criteria (``{name: bool}``); the verdict is ``"supported"`` when all
    hold, ``"not supported"`` when none does, ``"partly supported"`` otherwise, and ``"not
    resolved"`` when the data cannot decide (``tolerance`` = 5 %):

    1. *Equivariance improves data efficiency; augmentation closes the gap given enough epochs.*
       Not resolved when no family is data-limited (best loss over sizes and steps at the smallest
       data set within ``tolerance`` of that at the largest). Criteria: (a) GATr loses less than
       the plain transformer when the data shrink from the largest to the smallest set (relative
       increase smaller by more than ``tolerance``); (b) GATr's best loss at the smallest set is
       lower than the plain transformer's; (c) the augmented transformer is within ``tolerance`` of
       GATr (or better) at the most epochs of the grid and no further behind than at the fewest.
    2. *Loss is a power law in compute; GATr is ahead at every budget.* (a) Every family's frontier
       fits ``a C^-b`` with log residual RMS below 0.1; (b) GATr's best-so-far loss is lower than
       both transformers' at every measured budget where they overlap.
    3. *The compute-optimal split differs.* Supported when the 95 % bootstrap interval of
       ``a_gatr - a_transformer`` (``N_opt ~ C^a``) excludes 0, not resolved otherwise.
    """
    out: dict[str, dict[str, Any]] = {}
    data = analysis["data"]
    fams = set(data)
    if {"gatr", "transformer"} <= fams:
        small = data["gatr"]["n_train"][0]
        sens = {f: d["best"][0] / d["best"][-1] - 1 for f, d in data.items()}
        la, lb = data["gatr"]["best"][0], data["transformer"]["best"][0]
        crit = {"GATr less data-hungry than the transformer": sens["gatr"] < sens["transformer"] - tolerance,
                "GATr ahead of the transformer at the smallest data set": la < lb}
        ev = ["best loss at the smallest over the largest data set - 1: " +
              ", ".join(f"{f} {100 * v:+.1f}%" for f, v in sens.items()),
              f"smallest data set ({small}): GATr {la:.4g} vs transformer {lb:.4g}"]
        if "transformer+aug" in fams:
            gaps = _gap_table(data, "transformer+aug", "gatr")
            if gaps:
                epochs = {(n, s): s * analysis["batch_size"] / n for n, s, _ in gaps}
                most = max(gaps, key=lambda g: epochs[(g[0], g[1])])
                fewest = min(gaps, key=lambda g: epochs[(g[0], g[1])])
                crit["augmentation closes the gap to GATr with epochs"] = (most[2] <= 1 + tolerance
                                                                          and most[2] <= fewest[2])
                ev.append(f"transformer+aug / GATr: {fewest[2]:.3f} at the fewest epochs "
                          f"({epochs[(fewest[0], fewest[1])]:.1f}), {most[2]:.3f} at the most "
                          f"({epochs[(most[0], most[1])]:.0f}: n={most[0]}, {most[1]} steps)")
        if max(sens.values()) < tolerance:
            verdict = "not resolved"
            ev.insert(0, f"no family is data-limited on this grid (less than {100 * tolerance:.0f}% between the "
                         f"smallest and largest data set)")
        else:
            verdict = _verdict(list(crit.values()))
        out["data_efficiency"] = {"verdict": verdict, "criteria": crit, "evidence": ev}
    comp = analysis["compute"]
    if "gatr" in comp and len(comp) > 1:
        fit_ok = all(f["rmse_log"] < 0.1 for f in comp.values() if not math.isnan(f["rmse_log"]))
        ev = [f"{f}: L = {c['a']:.3g} C^-{c['b']:.3f} (b 95% CI {c['ci']['b'][0]:.3f}..{c['ci']['b'][1]:.3f}), "
              f"log RMS {c['rmse_log']:.3f} on {len(c['frontier'])} frontier runs" for f, c in comp.items()]
        ahead = []
        for cmp in analysis["comparisons"]:
            if not cmp["empirical"]:
                ev.append(f"no compute overlap between GATr and {cmp['other']}")
                continue
            ahead.append(cmp["reference_ahead"] == 1.0)
            ev.append(f"GATr ahead of {cmp['other']} at {100 * cmp['reference_ahead']:.0f}% of "
                      f"{len(cmp['empirical'])} budgets in the overlap; fitted L_{cmp['other']} / L_gatr "
                      f"{min(cmp['ratio']):.2f}..{max(cmp['ratio']):.2f}")
            c, (lo, hi) = cmp["crossover"], cmp["crossover_ci"]
            top = cmp["overlap"][1]
            if cmp["reference_ahead"] < 1.0 and math.isfinite(c) and c > cmp["overlap"][0] and \
                    comp["gatr"]["b"] > comp[cmp["other"]]["b"]:
                ev.append(f"the fitted frontiers cross at {c:.2g} FLOPs (95% CI {lo:.2g}..{hi:.2g}), "
                          f"{c / top:.2g}x the largest budget where both have runs")
        crit = {"power laws fit (log RMS < 0.1)": fit_ok,
                "GATr ahead at every overlapping budget": bool(ahead) and all(ahead)}
        out["compute"] = {"verdict": _verdict(list(crit.values())) if ahead else "not resolved", "criteria": crit,
                          "evidence": ev}
    alloc = analysis["allocation"]
    if "gatr" in alloc and "transformer" in alloc and "boot_a" in alloc["gatr"] and "boot_a" in alloc["transformer"]:
        rng = np.random.default_rng(0)
        ga, ta = alloc["gatr"]["boot_a"], alloc["transformer"]["boot_a"]
        m = min(len(ga), len(ta))
        diff = rng.permutation(ga)[:m] - rng.permutation(ta)[:m]
        lo, hi = np.percentile(diff, [2.5, 97.5])
        differs = bool(lo > 0 or hi < 0)
        ev = [f"{f}: N_opt ~ C^{a['a']:.2f} (95% CI {a['ci']['a'][0]:.2f}..{a['ci']['a'][1]:.2f}), "
              f"D_opt ~ C^{a['b']:.2f}" for f, a in alloc.items() if a.get("ci")]
        ev.append(f"a_gatr - a_transformer: {alloc['gatr']['a'] - alloc['transformer']['a']:+.2f} "
                  f"(95% CI {lo:+.2f}..{hi:+.2f})")
        out["allocation"] = {"verdict": "supported" if differs else "not resolved",
                             "criteria": {"allocation exponents differ (95%)": differs}, "evidence": ev}
    return out


def analyze(rows: Sequence[Mapping[str, Any]], loss: str = LOSS, n_boot: int = 1000, n_boot_chinchilla: int = 300,
            seed: int = 0) -> dict[str, Any]:
    """All fits of a sweep: compute power laws (true and counted FLOPs), L(N, D), allocation, data efficiency,
    frontier comparisons and :func:`findings`.

    Returns:
        ``{"families", "loss", "batch_size", "compute": {family: compute_fit}, "compute_counted": {...},
        "chinchilla": {family: chinchilla_fit}, "flops": {family: flops_law}, "allocation": {family: ...},
        "data": {family: data_efficiency}, "comparisons": [...], "findings": {...}}``.
    """
    if not rows:
        raise ValueError("no finished runs to analyse")
    fams = _families(rows)
    out: dict[str, Any] = {"families": fams, "loss": loss, "batch_size": rows[0]["batch_size"], "n_runs": len(rows)}
    out["compute"] = {f: compute_fit(rows, f, loss, COMPUTE, n_boot, seed) for f in fams}
    out["compute_counted"] = {f: compute_fit(rows, f, loss, "train_flops", n_boot, seed) for f in fams}
    out["chinchilla"] = {f: chinchilla_fit(rows, f, loss, -1, n_boot_chinchilla, seed) for f in fams}
    out["flops"] = {f: flops_law(rows, f) for f in fams}
    out["allocation"] = {f: allocation(out["chinchilla"][f], out["flops"][f]) for f in fams
                         if not math.isnan(out["chinchilla"][f]["alpha"])}
    out["data"] = {f: data_efficiency(rows, f, loss) for f in fams}
    out["comparisons"] = [compare_frontiers(rows, out["compute"], "gatr", f, loss) for f in fams
                          if "gatr" in fams and f != "gatr"]
    out["findings"] = findings(out)
    return out


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_compute(rows: Sequence[Mapping[str, Any]], analysis: Mapping[str, Any], path: str | Path) -> Path:
    """Loss vs training compute per family (true FLOPs left, counted right), frontier and fitted power law."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    loss = analysis["loss"]
    panels = (("compute", COMPUTE, "FLOPs, sparse products at true cost"),
              ("compute_counted", "train_flops", "FLOPs as counted (FlopCounterMode)"))
    for ax, (key, column, title) in zip(axes, panels):
        for fam in analysis["families"]:
            mine, fit, colour = _of(rows, fam), analysis[key][fam], _COLOURS.get(fam, "k")
            ax.scatter([r[column] for r in mine], [r[loss] for r in mine], s=12, alpha=0.35, color=colour)
            ax.plot(fit["frontier_compute"], fit["frontier_loss"], "o", color=colour, ms=5)
            c = np.geomspace(*fit["range"], 50)
            ax.plot(c, fit["a"] * c ** -fit["b"], "-", color=colour,
                    label=f"{_LABELS.get(fam, fam)}: $C^{{-{fit['b']:.2f}}}$")
        ax.set(xscale="log", yscale="log", xlabel=f"training {title}", title=title)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(f"test loss ({loss})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def plot_data(rows: Sequence[Mapping[str, Any]], analysis: Mapping[str, Any], path: str | Path) -> Path:
    """Left: best test loss (solid) and on moved scenes (dashed) vs data-set size. Right: loss vs epochs."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for fam in analysis["families"]:
        d, colour = analysis["data"][fam], _COLOURS.get(fam, "k")
        axes[0].plot(d["n_train"], d["best"], "o-", color=colour, label=f"{_LABELS.get(fam, fam)} (test)")
        if d["best_e3"]:
            axes[0].plot(d["n_train"], d["best_e3"], "x--", color=colour, alpha=0.6, label=f"{_LABELS.get(fam, fam)} "
                         "(test, moved)")
        for n in d["n_train"]:
            pts = sorted((s, v) for (nn, s), v in d["by_steps"].items() if nn == n)
            epochs = [s * analysis["batch_size"] / n for s, _ in pts]
            axes[1].plot(epochs, [v for _, v in pts], "o-", color=colour, alpha=0.4 + 0.6 * n / max(d["n_train"]),
                         ms=3)
        axes[1].plot([], [], "-", color=colour, label=_LABELS.get(fam, fam))
    axes[0].set(xscale="log", yscale="log", xlabel="training samples", ylabel="best test loss over sizes and steps",
                title="data efficiency")
    ns = sorted({n for d in analysis["data"].values() for n in d["n_train"]})
    axes[0].set_xticks(ns, [str(n) for n in ns])
    axes[0].set_xticks([], minor=True)
    axes[1].set(xscale="log", yscale="log", xlabel="epochs", ylabel="best test loss over sizes",
                title="one line per data-set size (darker: more data)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def plot_allocation(rows: Sequence[Mapping[str, Any]], analysis: Mapping[str, Any], path: str | Path) -> Path:
    """Compute-optimal parameters vs compute from the L(N, D) fits (band: 95 % bootstrap), frontier runs as dots."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for fam in analysis["families"]:
        colour = _COLOURS.get(fam, "k")
        fit = analysis["compute"][fam]
        by_name = {r["name"]: r for r in rows}
        ax.plot(fit["frontier_compute"], [by_name[n]["params"] for n in fit["frontier"]], "o", color=colour, ms=4)
        if fam not in analysis["allocation"]:
            continue
        a = analysis["allocation"][fam]
        c = np.geomspace(*fit["range"], 40)
        ax.plot(c, a["G"] * c ** a["a"], "-", color=colour, label=f"{_LABELS.get(fam, fam)}: $N_{{opt}} \\propto "
                f"C^{{{a['a']:.2f}}}$")
        chin = analysis["chinchilla"][fam]
        if chin.get("boot"):
            b = chin["boot"]
            law = analysis["flops"][fam]
            terms = np.array([_allocation_terms(al, be, aa, bb, law["k"], law["gamma"])
                              for al, be, aa, bb in zip(b["alpha"], b["beta"], b["A"], b["B"])])
            terms = terms[np.all(np.isfinite(terms), axis=1)]
            with np.errstate(over="ignore", invalid="ignore"):
                ns = terms[:, 2][None, :] * c[:, None] ** terms[:, 0][None, :]
            lo, hi = np.nanpercentile(ns, [2.5, 97.5], axis=1)
            ax.fill_between(c, lo, hi, color=colour, alpha=0.15)
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs (true)", ylabel="parameters",
           title="compute-optimal model size (lines) and frontier runs (dots)")
    ax.title.set_fontsize(9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def _ci(ci: Sequence[float] | None, fmt: str = ".3f") -> str:
    return f"[{ci[0]:{fmt}}, {ci[1]:{fmt}}]" if ci else "n/a"


def report(rows: Sequence[Mapping[str, Any]], figures: str | Path | None = None, loss: str = LOSS,
           n_boot: int = 1000, n_boot_chinchilla: int = 300, seed: int = 0, prefix: str = "scaling_",
           analysis: Mapping[str, Any] | None = None) -> str:
    """Markdown: the runs table, the fits with 95 % intervals, the allocation, the findings' verdicts.

    Args:
        rows: the table (``results.json`` rows).
        figures: folder for ``{prefix}compute.png``, ``{prefix}data.png``, ``{prefix}allocation.png``
            (None: no figures).
        loss, n_boot, n_boot_chinchilla, seed: as :func:`analyze`.
        analysis: a precomputed :func:`analyze` result.
    """
    a = analysis or analyze(rows, loss, n_boot, n_boot_chinchilla, seed)
    lines = [f"Runs: {a['n_runs']} ({', '.join(f'{f}: {len(_of(rows, f))}' for f in a['families'])}); loss "
             f"`{a['loss']}`; compute `train_flops_true` (counted FLOPs in brackets).", ""]
    lines += ["| family | width | depth | params | FLOPs/sample (true) | counted | steps | " +
              " | ".join(f"n={n}" for n in sorted({r["n_train"] for r in rows})) + " |"]
    ns = sorted({r["n_train"] for r in rows})
    lines += ["|" + "---|" * (7 + len(ns))]
    for fam in a["families"]:
        mine = _of(rows, fam)
        for key in sorted({(r["width"], r["depth"], r["params"], r["steps"]) for r in mine}):
            w, dp, p, s = key
            r0 = next(r for r in mine if (r["width"], r["depth"], r["steps"]) == (w, dp, s))
            cells = []
            for n in ns:
                hit = [r for r in mine if (r["width"], r["depth"], r["steps"], r["n_train"]) == (w, dp, s, n)]
                cells.append(f"{hit[0][a['loss']]:.4f}" if hit else "")
            lines.append(f"| {fam} | {w} | {dp} | {p:,} | {r0['flops_per_step_true'] / r0['batch_size']:.3g} | "
                         f"{r0['flops_per_step'] / r0['batch_size']:.3g} | {s} | " + " | ".join(cells) + " |")
    lines += ["", "**Loss vs compute** (frontier power law `L = a C^-b`, 95 % bootstrap CI):", "",
              "| family | b (true FLOPs) | 95 % CI | b (counted FLOPs) | 95 % CI | log RMS | frontier runs |",
              "|---|---|---|---|---|---|---|"]
    for fam in a["families"]:
        c, cc = a["compute"][fam], a["compute_counted"][fam]
        lines.append(f"| {fam} | {c['b']:.3f} | {_ci(c['ci']['b'])} | {cc['b']:.3f} | {_ci(cc['ci']['b'])} | "
                     f"{c['rmse_log']:.3f} | {len(c['frontier'])} |")
    lines += ["", "**L(N, D) = E + A/N^α + B/D^β** (D = samples seen; runs at the largest data set; 95 % CI):", "",
              "| family | runs | E | α | 95 % CI | β | 95 % CI | log RMS |", "|---|---|---|---|---|---|---|---|"]
    for fam in a["families"]:
        ch = a["chinchilla"][fam]
        ci = ch.get("ci", {})
        lines.append(f"| {fam} | {ch['n_runs']} | {ch['E']:.3g} {_ci(ci.get('E'), '.3g')} | {ch['alpha']:.3f} | "
                     f"{_ci(ci.get('alpha'))} | {ch['beta']:.3f} | {_ci(ci.get('beta'))} | {ch['rmse_log']:.3f} |")
    lines += ["", "**Compute-optimal allocation** (`F(N) = k N^γ` FLOPs per sample; `N_opt ∝ C^a`, "
              "`D_opt ∝ C^b`):", "", "| family | γ | a | 95 % CI | b | 95 % CI | N_opt at " +
              " / ".join(f"{c:.0e}" for c in (1e11, 1e12, 1e13, 1e14)) + " FLOPs |", "|---|---|---|---|---|---|---|"]
    for fam, al in a["allocation"].items():
        lines.append(f"| {fam} | {al['gamma']:.2f} | {al['a']:.2f} | {_ci(al['ci'].get('a'), '.2f')} | {al['b']:.2f} | "
                     f"{_ci(al['ci'].get('b'), '.2f')} | " + " / ".join(f"{n:.2g}" for n in al["n_opt"]) + " |")
    lines += ["", "**Data efficiency** (best loss over sizes and steps; on moved test scenes in brackets):", "",
              "| family | " + " | ".join(f"n={n}" for n in ns) + " | exponent in n |", "|---|" + "---|" * (len(ns) + 1)]
    for fam in a["families"]:
        d = a["data"][fam]
        cells = [f"{b:.4f}" + (f" ({e:.3g})" if d["best_e3"] else "") for b, e in
                 zip(d["best"], d["best_e3"] or d["best"])]
        lines.append(f"| {fam} | " + " | ".join(cells) + f" | {d['b']:.3f} |")
    lines += ["", "**Findings**:", ""]
    names = {"data_efficiency": "1. Equivariance improves data efficiency; augmentation closes the gap with enough "
                                "epochs", "compute": "2. Power law in compute, GATr ahead at every budget",
             "allocation": "3. The compute-optimal split between size and steps differs"}
    for key, f in a["findings"].items():
        crit = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in f["criteria"].items())
        lines.append(f"- {names[key]}: **{f['verdict']}** ({crit}). " + "; ".join(f["evidence"]) + ".")
    if figures is not None:
        folder = Path(figures)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [plot_compute(rows, a, folder / f"{prefix}compute.png"),
                 plot_data(rows, a, folder / f"{prefix}data.png"),
                 plot_allocation(rows, a, folder / f"{prefix}allocation.png")]
        lines += ["", *(f"![{p.stem}]({p.name})" for p in paths)]
    return "\n".join(lines) + "\n"
