"""GATr n-body headline: iP-GATr beats the plain transformer at equal budget, and moving the data costs it nothing.

Guards docs/gatr.md, "The n-body experiment", the results table and "What this shows": iP-GATr
(eval MSE 0.00074, rerun 0.00083) against the transformer (0.011) after 5,000 steps at about 130k
parameters each, and on the E(3)-shifted set (+200 in x) iP-GATr unchanged (0.00068) while the
transformer fails (MSE 91). Full budget:

    eqt nbody --out runs/nbody --data runs/nbody_data --steps 5000 --train-size 1000
    eqt nbody --models iP-GATr --steps 5000          # the rerun with the final code
"""

from __future__ import annotations

from eqt.train.nbody import run


def test_ipgatr_beats_transformer_and_is_unchanged_by_the_shift(tmp_path):
    """200 steps, 512 training samples, one block of about 10k parameters each (iP-GATr 9,610,
    transformer 8,899), 256 samples per evaluation set; about 10 s on one thread.

    Measured (seeds 0, 1, 2; MSE):

    ===========================  ========  ========  ========
    quantity                      s0        s1        s2
    ===========================  ========  ========  ========
    iP-GATr eval                 0.0082    0.0175    0.0060
    iP-GATr E(3)-shift           0.0070    0.0165    0.0049
    transformer eval             274       314       309
    transformer E(3)-shift       9,537     12,220    12,990
    ===========================  ========  ========  ========

    Which claim holds at this budget: the in-distribution ordering (GATr ahead of the
    transformer) and the E(3)-shift behaviour. The gap is far larger than the published 15x: at
    200 steps of lr 3e-4 the transformer has not yet learnt to carry the input position (N(0, 20²)
    translations) to the output, so its MSE is far above even the "no motion" baseline (0.016);
    iP-GATr gets the identity for free from the point embedding. That iP-GATr *learns the
    interactions* (below free flight, 0.0059) does not hold here: it needs ~1,000+ steps to
    leave the 0.0043 plateau (see the doc's caveat), so it is not asserted.

    Margins asserted: transformer eval MSE >= 100x iP-GATr's (seen 18,000-52,000x); iP-GATr's
    E(3)-shift MSE within a factor 2 of its eval MSE (seen 0.82-0.94; a different draw of
    samples, so not equal); the transformer's shift MSE >= 10x its eval MSE (seen 35-42x).
    """
    res = run(tmp_path / "out", tmp_path / "data", models=("iP-GATr", "Transformer"), steps=200, train_size=512,
              eval_size=256, target_params=10_000, num_blocks=1, seed=0, log=lambda _: None)
    gatr, tr = res["iP-GATr"], res["Transformer"]
    g_eval, g_shift = gatr["eval"]["mse"], gatr["e3_generalization"]["mse"]
    t_eval, t_shift = tr["eval"]["mse"], tr["e3_generalization"]["mse"]
    values = f"iP-GATr eval {g_eval:.4g} shift {g_shift:.4g}; transformer eval {t_eval:.4g} shift {t_shift:.4g}"
    assert t_eval > 100 * g_eval, values
    assert 0.5 < g_shift / g_eval < 2.0, values
    assert t_shift > 10 * t_eval, values
