"""Training: a killed run resumes and ends where an uninterrupted run ends; configs reject typos."""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytest.importorskip("lightning", reason="training needs the 'train' extra: pip install eqt[train]")

import lightning as L  # noqa: E402

from eqt.checkpoint import load_model  # noqa: E402
from eqt.train.config import TrainConfig, load_config  # noqa: E402
from eqt.train.run import train  # noqa: E402


class Crash(L.Callback):
    """Simulates a killed job at the start of an epoch (after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated kill")


@pytest.fixture(scope="module")
def ethanol_small(shared_data, tmp_path_factory):
    import ase.io

    frames = ase.io.read(shared_data / "rmd17" / "ethanol_train.xyz", ":48")
    path = tmp_path_factory.mktemp("data") / "ethanol48.xyz"
    ase.io.write(path, frames, format="extxyz")
    return path


def _config(data, out, **kw):
    base = dict(data=str(data), train_size=32, val_size=8, test_size=None, seed=3,
                model={"hidden_channels": 16, "num_layers": 2, "num_heads": 2, "num_rbf": 8, "cutoff_upper": 4.0},
                batch_size=8, inference_batch_size=16, max_epochs=4, lr=1e-3, lr_warmup_steps=5, ema_decay=0.9,
                checkpoint_every_n_steps=1000, out_dir=str(out), progress_bar=False, log_every_n_steps=1,
                loss_ema_alpha_energy=0.05)
    return TrainConfig(**{**base, **kw})


def test_killed_run_resumes_to_the_same_result(ethanol_small, tmp_path):
    full = train(_config(ethanol_small, tmp_path / "full"))
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(_config(ethanol_small, tmp_path / "killed"), callbacks=[Crash(epoch=2)])
    assert (tmp_path / "killed" / "checkpoints" / "last.ckpt").exists()
    resumed = train(_config(ethanol_small, tmp_path / "killed"))
    for key in ("val_energy_mae", "val_forces_mae", "val_loss"):
        assert resumed["val"][key] == pytest.approx(full["val"][key], rel=1e-6), key
    a, b = load_model(full["model_path"]).state_dict(), load_model(resumed["model_path"]).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_training_reduces_the_force_error(ethanol_small, tmp_path):
    from eqt.train.curves import read_curve

    res = train(_config(ethanol_small, tmp_path / "run", max_epochs=15, lr=5e-3, ema_decay=0.0))
    val = [r["val_forces_mae"] for r in read_curve(tmp_path / "run" / "metrics.csv")]
    assert len(val) == 15, "one validation per epoch expected"
    assert val[-1] < 0.7 * val[0], f"validation force MAE did not drop: {val}"
    assert res["model_path"].exists() and (tmp_path / "run" / "splits.npz").exists()
    if importlib.util.find_spec("tensorboard") is not None:
        assert list((tmp_path / "run" / "logs" / "version_0").glob("events.out.tfevents*")), "no TensorBoard log"


def test_config_typo_names_the_nearest_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: x.xyz\nbatch_sise: 4\n")
    with pytest.raises(ValueError, match="did you mean 'batch_size'"):
        load_config(path)
    with pytest.raises(ValueError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    assert load_config(None, ["batch_size=4", "model.hidden_channels=32"]).model == {"hidden_channels": 32}


def test_energy_only_training_on_qm9_without_forces(shared_data, tmp_path):
    """A scalar-property smoke run: QM9's U0 (Ha in the db, eV inside), no forces in the data."""
    cfg = _config(shared_data / "qm9" / "test_qm9.db", tmp_path / "qm9", train_size=14, val_size=6, test_size=0,
                  energy_key="energy_U0", forces_weight=0.0, energy_weight=1.0, max_epochs=2, ema_decay=0.0)
    res = train(cfg)
    assert res["model_path"].exists() and "val_energy_mae" in res["val"] and "val_forces_mae" not in res["val"]
    with pytest.raises(ValueError, match="no forces"):
        train(_config(shared_data / "qm9" / "test_qm9.db", tmp_path / "qm9f", train_size=14, val_size=6, test_size=0,
                      energy_key="energy_U0", max_epochs=1))


def _relabelled(src, dst, energy):
    """Copy of an extxyz file with its energies replaced by ``energy(i, atoms)`` (None: dropped)."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = ase.io.read(src, ":")
    for i, a in enumerate(frames):
        forces = a.get_forces()
        a.calc = None
        a.info = {}
        a.arrays.pop("forces", None)
        e = energy(i, a)
        a.calc = SinglePointCalculator(a, forces=forces, **({} if e is None else {"energy": e}))
    ase.io.write(dst, frames, format="extxyz")
    return dst


def test_force_only_training_ignores_energies_and_fits_offsets(ethanol_small, tmp_path):
    """objective=forces: the weights do not depend on the energy labels at all (scrambled energies
    give the same network), energies are optional, and per-element offsets are fitted afterwards."""
    import numpy as np

    from eqt.data.dataset import load_splits
    from eqt.data.readers import read_frames
    from eqt.train.evaluate import evaluate

    kw = dict(objective="forces", energy_weight=0.0, forces_weight=1.0, ema_decay=0.0, max_epochs=2)
    res = train(_config(ethanol_small, tmp_path / "f", **kw))
    rng = np.random.default_rng(0)
    scrambled = _relabelled(ethanol_small, tmp_path / "scrambled.xyz", lambda i, a: float(rng.normal(0, 50)))
    res_s = train(_config(scrambled, tmp_path / "s", **kw))
    a, b = load_model(res["model_path"]).state_dict(), load_model(res_s["model_path"]).state_dict()
    for k in a:
        if k != "atomref":
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(a["atomref"], b["atomref"])  # only the fitted offsets see the energies
    # the offsets make the training-set energies right on average (one composition: exact in the mean)
    model = load_model(res["model_path"]).double()
    frames = read_frames(str(ethanol_small))
    train_idx = load_splits(tmp_path / "f" / "splits.npz")["train"]
    out = evaluate(model, frames.subset(train_idx), dtype=torch.float64)
    # (within float32 rounding of -4209 eV: the exported model is float32)
    assert abs(float(np.mean(out["energy_pred"] - out["energy_ref"]))) < 1e-3
    # no energies in the data: force-only still trains; no energy metrics
    no_e = _relabelled(ethanol_small, tmp_path / "noe.xyz", lambda i, a: None)
    res_n = train(_config(no_e, tmp_path / "n", **kw))
    assert "val_forces_mae" in res_n["val"] and "val_energy_mae" not in res_n["val"]
    with pytest.raises(ValueError, match="objective 'forces' trains on forces alone"):
        _config(ethanol_small, tmp_path / "x", objective="forces", energy_weight=0.2)
    with pytest.raises(ValueError, match="objective must be one of"):
        _config(ethanol_small, tmp_path / "x", objective="energy")


def test_trained_model_carries_no_constant_energy_offset(ethanol_small, tmp_path):
    """Issue 17's energy bias: forces do not see a constant energy and the recipe's energy term is
    weak (0.2, loss EMA 0.05), so the network's constant offset is left to SGD noise and the best
    checkpoint keeps whatever offset it had (ethanol, 105 epochs: +26.7 meV on its own training
    frames). The per-element offsets are refitted on the training frames after training, so the mean
    energy error on those frames is zero up to float32 rounding of -4209 eV energies (~0.5 meV per
    frame, averaging down): bound 10% of the energy MAE (the issue's criterion) and 2 meV. Without the
    refit (``refit_offsets: false``) this seed's bias is about the size of the MAE."""
    import numpy as np

    from eqt.data.dataset import load_splits
    from eqt.data.readers import read_frames
    from eqt.train.evaluate import evaluate

    res = train(_config(ethanol_small, tmp_path / "run", max_epochs=6, ema_decay=0.0, loss_ema_alpha_energy=0.05))
    frames = read_frames(str(ethanol_small))
    out = evaluate(load_model(res["model_path"]), frames.subset(load_splits(tmp_path / "run" / "splits.npz")["train"]))
    err = 1e3 * (out["energy_pred"] - out["energy_ref"])  # meV, the raw errors a user sees
    bias, mae = float(err.mean()), float(np.abs(err).mean())
    assert abs(bias) < min(0.1 * mae, 2.0), f"mean energy error {bias:+.2f} meV with MAE {mae:.2f} meV"


def test_isolated_atom_reference_energies(ethanol_small, tmp_path):
    """``atomrefs`` as E0s (a mapping or a file of single atoms): the model starts from them and,
    with ``refit_offsets: false``, keeps them exactly; an element without an E0 is named."""
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    e0s = {"H": -13.6, "C": -1029.8, "O": -2041.3}  # eV, order of magnitude of PBE isolated atoms
    atoms = []
    for symbol, energy in e0s.items():
        a = Atoms(symbol)
        a.calc = SinglePointCalculator(a, energy=energy)
        atoms.append(a)
    ase.io.write(tmp_path / "e0s.xyz", atoms, format="extxyz")
    for spec in (e0s, str(tmp_path / "e0s.xyz")):
        res = train(_config(ethanol_small, tmp_path / f"run{len(str(spec))}", max_epochs=1, atomrefs=spec,
                            refit_offsets=False, ema_decay=0.0))
        ref = load_model(res["model_path"]).atomref
        for z, symbol in ((1, "H"), (6, "C"), (8, "O")):
            assert float(ref[z]) == pytest.approx(e0s[symbol], abs=1e-3)
    with pytest.raises(ValueError, match="no energy for element.*O"):
        train(_config(ethanol_small, tmp_path / "missing", atomrefs={"H": -13.6, "C": -1029.8}))
    with pytest.raises(ValueError, match="atomrefs must map element symbols"):
        _config(ethanol_small, tmp_path / "bad", atomrefs={"Hx": 1.0})
    with pytest.raises(ValueError, match="atomrefs file"):
        train(_config(ethanol_small, tmp_path / "nofile", atomrefs=str(tmp_path / "none.xyz")))
    assert not (tmp_path / "missing").exists() and not (tmp_path / "nofile").exists()
