"""Scaling headline: on a tiny sweep, GATr is exactly unchanged by moving the scenes, the plain transformer is not.

Guards docs/scaling.md, "Results (CPU, 2026-11-27)" and "The three findings on these data":

- on the moved test scenes (``best_test_e3_loss``) GATr scores the same to 1e-6 (relative) and the
  plain transformer 14-39x its in-distribution loss;
- finding 2: loss is a power law in compute along each family's frontier (log RMS 0.04-0.05), and
  GATr is *not* ahead at every budget: on its canonical frame the plain transformer has
  0.38-0.44x GATr's loss at every budget where both have runs.

Not reproduced at this budget, so not asserted: GATr's steeper compute exponent (b = 0.19 against
0.13 for the transformer on the 90-run grid). On this 25-100-step sweep it is reversed in every
seed (GATr 0.17 / 0.15 / 0.07, transformer 0.37 / 0.39 / 0.28): the doc's "early training"
caveat (GATr starts slower and improves faster) means the transformer is still in its steep early
phase here, and the exponent comparison needs the 150-1,200-step grid (about an hour of CPU).
Full budget:

    .venv/bin/python -m eqt.data.rigid runs/scaling/data --n-train 4000 --n-val 250 --n-test 250 --seed 0
    nice -n 10 .venv/bin/python -m eqt.train.scaling configs/scaling.yaml --report docs/figures
"""

from __future__ import annotations

import pytest

from eqt.train import scaling_fit
from eqt.train.scaling import SweepConfig, load_results, run_sweep

STEPS = (25, 50, 100)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    pytest.importorskip("mujoco")
    from eqt.data.rigid import RigidConfig, generate

    root = tmp_path_factory.mktemp("scaling_headline")
    generate(root / "data", n_train=128, n_val=16, n_test=32, seed=0, config=RigidConfig(n_bodies=4))
    config = SweepConfig.from_dict(dict(
        data=str(root / "data"), out=str(root / "out"), families=["gatr", "transformer"],
        sizes={"gatr": [[1, 1]], "transformer": [[1, 1]]}, steps=list(STEPS), n_train=[128], seeds=[0],
        run={"batch_size": 16, "val_every": 12, "lr": 1e-3, "lr_decay": 0.01}, n_val=16, n_test=32))
    run_sweep(config, log=None)
    return load_results(root / "out")


def test_gatr_is_unchanged_on_moved_scenes_and_the_transformer_is_not(rows):
    """6 runs (GATr and transformer of width 1, depth 1 at 25, 50, 100 steps; 4 bodies, 128
    training scenes, batch 16); 5-8 s on one thread (data included), most of it GATr.

    Measured (seeds 0, 1, 2 of data and runs; best-validation test loss, moved scenes in brackets,
    at 25 / 50 / 100 steps):

    - GATr: s0 1.324 / 1.197 / 1.052, s1 1.095 / 1.001 / 0.888, s2 0.854 / 0.825 / 0.777, each
      equal to its moved-scene loss to the 4 digits printed;
    - transformer: s0 0.781 (2.71) / 0.627 (3.21) / 0.470 (5.14), s1 0.760 (3.61) / 0.607 (3.83)
      / 0.443 (5.80), s2 0.654 (2.67) / 0.538 (3.38) / 0.443 (5.53).

    Margins asserted: GATr's moved/in-distribution losses equal to 1e-4 relative; the
    transformer's moved loss >= 2.5x its own at every budget (seen 3.5-13x) and >= 1.5x GATr's
    moved loss (seen 2.0-7.1x).
    """
    by = {(r["family"], r["steps"]): r for r in rows}
    assert set(by) == {(f, s) for f in ("gatr", "transformer") for s in STEPS}
    for s in STEPS:
        g, t = by["gatr", s], by["transformer", s]
        values = (f"{s} steps: gatr {g['best_test_loss']:.6g} (moved {g['best_test_e3_loss']:.6g}), "
                  f"transformer {t['best_test_loss']:.4g} (moved {t['best_test_e3_loss']:.4g})")
        assert abs(g["best_test_e3_loss"] - g["best_test_loss"]) <= 1e-4 * g["best_test_loss"], values
        assert t["best_test_e3_loss"] >= 2.5 * t["best_test_loss"], values
        assert t["best_test_e3_loss"] >= 1.5 * g["best_test_e3_loss"], values


def test_loss_falls_as_a_power_law_in_compute_and_the_canonical_transformer_leads(rows):
    """Finding 2 on the same 6 runs: each family's frontier holds all three budgets and fits
    ``L = a C^-b`` with log RMS < 0.05 and b > 0.03 (seen: GATr b 0.17 / 0.15 / 0.07, log RMS
    <= 0.007; transformer b 0.37 / 0.39 / 0.28, log RMS <= 0.022); and the plain transformer, on
    its canonical frame, is ahead of GATr at every budget by >= 15 % (seen ratios 0.45-0.77;
    full budget 0.38-0.44).
    """
    by = {(r["family"], r["steps"]): r for r in rows}
    for family in ("gatr", "transformer"):
        fit = scaling_fit.compute_fit(rows, family, n_boot=20)
        msg = f"{family}: b {fit['b']:.3f}, log RMS {fit['rmse_log']:.3f}, frontier {fit['frontier']}"
        assert len(fit["frontier"]) == len(STEPS), msg
        assert fit["b"] > 0.03 and fit["rmse_log"] < 0.05, msg
    for s in STEPS:
        g, t = by["gatr", s]["best_test_loss"], by["transformer", s]["best_test_loss"]
        assert t <= 0.85 * g, f"{s} steps: transformer {t:.4f}, gatr {g:.4f}"
