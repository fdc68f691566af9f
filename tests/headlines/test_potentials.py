"""Headlines of ET and Equiformer as a user sees them: a trained potential's raw energy error is its
offset-removed one (no constant bias), and its force error falls with training.

Guards ``docs/benchmarks.md`` "Equal epochs, after the energy-offset refit": at 105 epochs on rMD17
ethanol eqt's ET has energy MAE 4.64 meV raw / 4.61 meV offset-removed (torchmd-net 10.98 / 5.52),
forces 20.04 meV/Å (full-budget command:
``OMP_NUM_THREADS=1 python benchmarks/bench_et_accuracy.py --task ethanol --epochs 105``). The
mechanism (the constant energy offset is refitted by least squares after training,
``docs/training.md``) is model-agnostic, so Equiformer is held to it too.

Tiny budget: 40 rMD17 ethanol frames (32 train / 8 validation), small models, 20 epochs.
Measured on the training frames, seeds 3 / 4 / 5 (``EQT_HEADLINE_SEED``; the test runs seed 3):
raw and offset-removed energy MAE equal to 0.1 meV (ET 137.6 / 115.5 / 116.7 meV, Equiformer
130.8 / 107.8 / 122.0 meV); force MAE over that of predicting zero forces ET 0.53 / 0.56 / 0.55,
Equiformer 0.48 / 0.48 / 0.34. Asserted: raw <= 1.02 x offset-removed (without the refit this
budget leaves offsets of the size of the MAE, tests/train/test_train.py), force ratio <= 0.7.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("lightning", reason="training needs the 'train' extra: pip install eqt[train]")

SEED, EPOCHS = int(os.environ.get("EQT_HEADLINE_SEED", 3)), 20

MODELS = {
    "ET": {"hidden_channels": 16, "num_layers": 2, "num_heads": 2, "num_rbf": 8, "cutoff_upper": 4.0},
    "Equiformer": {"irreps_node": "8x0e+4x1o+2x2e", "l_max": 2, "num_layers": 2, "num_heads": 2, "num_basis": 8,
                   "irreps_feature": "16x0e", "radial_hidden": [8], "cutoff": 4.0, "avg_degree": 8.0},
}


@pytest.fixture(scope="module")
def ethanol40(shared_data, tmp_path_factory):
    import ase.io

    path = tmp_path_factory.mktemp("data") / "ethanol40.xyz"
    ase.io.write(path, ase.io.read(shared_data / "rmd17" / "ethanol_train.xyz", ":40"), format="extxyz")
    return path


@pytest.mark.parametrize("model_name", list(MODELS))
def test_trained_potential_has_no_energy_bias_and_learns_forces(model_name, ethanol40, tmp_path):
    from eqt.checkpoint import load_model
    from eqt.data.dataset import load_splits
    from eqt.data.readers import read_frames
    from eqt.train.config import TrainConfig
    from eqt.train.evaluate import evaluate
    from eqt.train.run import train

    cfg = TrainConfig(data=str(ethanol40), train_size=32, val_size=8, test_size=None, seed=SEED, model_name=model_name,
                      model=MODELS[model_name], batch_size=8, inference_batch_size=16, max_epochs=EPOCHS, lr=2e-3,
                      lr_warmup_steps=5, loss_ema_alpha_energy=0.05, out_dir=str(tmp_path / "run"),
                      progress_bar=False)
    res = train(cfg)
    frames = read_frames(str(ethanol40)).subset(load_splits(tmp_path / "run" / "splits.npz")["train"])
    trained = evaluate(load_model(res["model_path"]), frames)
    err = 1e3 * (trained["energy_pred"] - trained["energy_ref"])
    raw, centred = float(np.abs(err).mean()), float(np.abs(err - err.mean()).mean())
    # against predicting zero forces: the force MAE of a model that learned nothing is mean |F|
    ratio = trained["forces_mae"] / (1e3 * float(np.abs(trained["forces_ref"]).mean()))
    print(f"{model_name}: energy MAE raw {raw:.1f} / offset-removed {centred:.1f} meV, force MAE ratio {ratio:.2f}")
    assert raw <= 1.02 * centred, f"{model_name}: raw energy MAE {raw:.1f} meV vs {centred:.1f} offset-removed"
    assert ratio <= 0.7, f"{model_name}: force MAE only fell to {ratio:.2f} of its initial value"
