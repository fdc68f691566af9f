"""Rays headline: the equivariant ray model keeps its IoU on moved scenes; the transformer loses it.

Guards docs/rays.md, "Reconstruction experiment: `eqt.train.rays`", the results table: trained in
the canonical frame and tested on SE(3)-moved scenes (I/SO3), the equivariant model scores as on
canonical scenes (0.934 / 0.934) while the transformer on raw Plücker coordinates drops
(0.678 -> 0.277). Full budget (about 28 min of CPU):

    OMP_NUM_THREADS=1 .venv/bin/python -m eqt.train.rays --out runs/rays --data runs/rays_data
"""

from __future__ import annotations

from eqt.data.scenes import SceneConfig
from eqt.models.rays import RayModelConfig
from eqt.train.rays import ExperimentConfig, run

# 32 training scenes of 4 views of 12 x 12 pixels, 400 steps, small models (equivariant 3,266
# parameters, transformer 9,281): about 18 s on one thread.
SCENE = SceneConfig(n_views=4, height=12, width=12, n_points=256)
MODEL = RayModelConfig(scalars=8, vectors=4, heads=2, head_scalars=4, head_vectors=2, point_channels=8, point_blocks=1,
                       hidden=16, transformer_hidden=32, transformer_blocks=1, transformer_heads=2)
TINY = ExperimentConfig(n_train=32, n_val=4, n_test=8, steps=400, batch_size=4, points_per_scene=64, train_points=256,
                        val_points=64, val_every=200, seed=0)


def test_equivariant_keeps_iou_on_moved_scenes_and_beats_the_transformer(tmp_path):
    """I/I and I/SO3 test IoU of both models after the same 400 steps in the canonical frame.

    Measured (seeds 0, 1, 2 of ``ExperimentConfig.seed``; IoU over 8 test scenes x 256 points):

    ==========================  =====  =====  =====
    run                          s0     s1     s2
    ==========================  =====  =====  =====
    equivariant I/I             0.764  0.752  0.675
    equivariant I/SO3           0.764  0.752  0.675
    transformer I/I             0.509  0.491  0.470
    transformer I/SO3           0.112  0.070  0.110
    ==========================  =====  =====  =====

    Margins asserted: equivariant I/SO3 above transformer I/SO3 by >= 0.4 (seen 0.57-0.68);
    equivariant I/SO3 within 0.01 of its I/I (seen equal to 3 decimals: the pipeline is
    invariant up to float32 round-off flipping a few points at the threshold); the transformer
    loses >= 0.2 IoU when the scenes move (seen 0.36-0.42); and even in its own frame it is
    behind the equivariant model by >= 0.1 (seen 0.21-0.26; at full budget 0.934 vs 0.678).
    """
    res = run(tmp_path / "out", tmp_path / "data", TINY, SCENE, MODEL, augmentations=("I",), figure=False,
              log=lambda _: None)
    eq, tr = res["equivariant-I"], res["transformer-I"]
    eq_ii, eq_iso3 = eq["test_I"]["iou"], eq["test_SO3"]["iou"]
    tr_ii, tr_iso3 = tr["test_I"]["iou"], tr["test_SO3"]["iou"]
    values = f"equivariant I/I {eq_ii:.3f} I/SO3 {eq_iso3:.3f}; transformer I/I {tr_ii:.3f} I/SO3 {tr_iso3:.3f}"
    assert eq_iso3 > tr_iso3 + 0.4, values
    assert abs(eq_iso3 - eq_ii) <= 0.01, values
    assert tr_ii - tr_iso3 >= 0.2, values
    assert eq_ii > tr_ii + 0.1, values
