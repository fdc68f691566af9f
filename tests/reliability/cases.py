"""The cases of the bad-input catalogue (see :mod:`tests.reliability.catalogue`).

Paths are relative to the case's copy of the workspace built by
:func:`tests.reliability.catalogue.build_workspace`:
``model.pt`` (tiny ET, elements H C O), ``gatr.pt``, ``zero.pt``, ``half.pt``, ``random.pt``,
``text.pt``, ``plain.pt``; ``data.xyz`` (10 ethanol frames, GFN2-xTB), ``other.xyz`` (methanol),
``chloro.xyz``, ``empty.xyz``, ``garbage.xyz``, ``truncated.xyz``, ``nan.xyz``, ``unlabelled.xyz``,
``z0.xyz``, ``overlap.xyz``, ``water.xyz``, ``single.xyz``, ``cl.xyz``, ``nanmol.xyz``;
``afile`` (a plain file), ``existing.xyz``, ``existing.png``, ``mdold/`` (an earlier MD run);
``tiny.yaml`` (a one-epoch training config into ``run/``), ``broken.yaml``, ``list.yaml``; ``run/``
(that training, finished).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.reliability.catalogue import Case

TRAIN = ("train", "tiny.yaml")
FAST_MD = ("--steps", "4", "--log-interval", "2")
FAST_SAMPLE = ("--frames", "2", "--interval", "1")


def _model(ws: Path):
    from eqt.checkpoint import load_model

    return load_model(ws / "model.pt").double()


def _water(dtype: str = "float64"):
    import torch
    from ase.build import molecule

    a = molecule("H2O")
    return torch.tensor(a.numbers), torch.tensor(a.positions, dtype=getattr(torch, dtype))


def _potential(ws: Path, z, pos, **kw):
    from eqt.physics.potential import Potential

    return Potential(_model(ws))(z, pos, **kw)


def _has_energy_and_forces(ws: Path, out) -> None:
    assert set(out) >= {"energy", "forces"}, f"missing outputs: {sorted(out)}"
    assert np.isfinite(out["energy"].detach().numpy()).all(), "energy not finite"
    assert tuple(out["forces"].shape) == (3, 3), f"forces shape {tuple(out['forces'].shape)}"


def _model_pt_exists(ws: Path, _) -> None:
    assert (ws / "run" / "model.pt").exists(), "no run/model.pt"


def _calc(ws: Path, path: str = "model.pt", atoms=None, **kw):
    from ase.build import molecule

    from eqt.physics.calculator import Calculator

    atoms = atoms if atoms is not None else molecule("H2O")
    atoms.calc = Calculator(str(ws / path), **kw)
    return atoms.get_forces()


def _read(ws: Path, name: str, **kw):
    from eqt.data.readers import read_frames

    return read_frames(ws / name, **kw)


def _live_lock(ws: Path) -> None:
    """A lock of a live process (this test process's parent) on run/."""
    import socket

    (ws / "run" / ".lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))


def _stale_lock(ws: Path) -> None:
    """A lock left by a process that no longer exists."""
    import socket

    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (ws / "run" / ".lock").write_text(json.dumps({"pid": int(p.stdout), "host": socket.gethostname()}))


def _failed_first_start(ws: Path) -> None:
    """finding 2: a first start refused for a bad model leaves nothing that a later run picks up."""
    import shutil

    from eqt.cli import main

    shutil.rmtree(ws / "run")
    main(["train", "tiny.yaml", "--set", "model.cutoff_upper=-1"])


def _no_stale_split(ws: Path, _) -> None:
    """After the refused start, a run with other split sizes uses its own split."""
    from eqt.data.dataset import load_splits

    splits = load_splits(ws / "run" / "splits.npz")
    assert len(splits["train"]) == 5 and len(splits["val"]) == 3, \
        f"stale split: {len(splits['train'])} train / {len(splits['val'])} val, asked 5 / 3"


def _data_unchanged(ws: Path, _) -> None:
    import ase.io

    frames = ase.io.read(ws / "labelled.xyz", ":")
    assert len(frames) == 1 and np.isfinite(frames[0].get_forces()).all()


def _all_finite_labels(name: str, n: int):
    def check(ws: Path, _) -> None:
        import ase.io

        frames = ase.io.read(ws / name, ":")
        assert len(frames) == n, f"{len(frames)} frames, expected {n}"
        for a in frames:
            assert np.isfinite(a.get_forces()).all() and np.isfinite(a.get_potential_energy())
    return check


def _md(ws: Path, structure: str, **kw):
    from ase.io import read

    from eqt.physics.calculator import Calculator
    from eqt.physics.md import MDConfig, run_md

    atoms = read(ws / structure)
    return run_md(atoms, Calculator(str(ws / "model.pt")), MDConfig(**kw))


def _train_config(**kw):
    from eqt.train.config import TrainConfig

    return TrainConfig.from_dict({"data": "data.xyz", **kw})


CASES: list[Case] = [
    # ---------------------------------------------------------------- the command line itself
    Case("cli-no-args", "cli", "no command", argv=(), match=r"usage: eqt|required"),
    Case("cli-unknown-cmd", "cli", "unknown command `eqt frobnicate`", argv=("frobnicate",), match=r"invalid choice"),
    Case("cli-version", "cli", "`eqt --version`", argv=("--version",), expect="accepted"),
    Case("cli-unknown-opt", "cli", "unknown option `eqt test --speed`", argv=("test", "model.pt", "data.xyz", "--speed"),
         match=r"unrecognized arguments: --speed"),
    Case("cli-train-no-config", "cli", "`eqt train` without a config", argv=("train",), match=r"config"),

    # ---------------------------------------------------------------- eqt train: the config
    Case("train-missing-config", "train", "config file missing", argv=("train", "nope.yaml"), match=r"nope\.yaml"),
    Case("train-broken-yaml", "train", "config is invalid YAML", argv=("train", "broken.yaml"),
         match=r"broken\.yaml.*YAML"),
    Case("train-list-yaml", "train", "config is a list, not a mapping", argv=("train", "list.yaml"),
         match=r"list\.yaml.*mapping"),
    Case("train-typo", "train", "misspelt key `batch_sise`", argv=TRAIN + ("--set", "batch_sise=4"),
         match=r"batch_sise.*batch_size"),
    Case("train-lr-text", "train", "`lr=fast`", argv=TRAIN + ("--set", "lr=fast"), match=r"\blr\b.*fast"),
    Case("train-seed-text", "train", "`seed=abc`", argv=TRAIN + ("--set", "seed=abc"), match=r"seed.*abc"),
    Case("train-maxtime-text", "train", "`max_time=abc`", argv=TRAIN + ("--set", "max_time=abc"),
         match=r"max_time.*abc"),
    Case("train-batch-zero", "train", "`batch_size=0`", argv=TRAIN + ("--set", "batch_size=0"), match=r"batch_size"),
    Case("train-batch-float", "train", "`batch_size=2.5`", argv=TRAIN + ("--set", "batch_size=2.5"),
         match=r"batch_size"),
    Case("train-negative-size", "train", "`train_size=-5`", argv=TRAIN + ("--set", "train_size=-5"),
         match=r"train_size"),
    Case("train-size-too-big", "train", "train + val sizes larger than the data",
         argv=TRAIN + ("--set", "train_size=50", "--out", "big"), match=r"(train_size|split|frames).*\d"),
    Case("train-val-zero", "train", "`val_size=0`", argv=TRAIN + ("--set", "val_size=0", "--out", "v0"),
         match=r"val_size"),
    Case("train-cutoff-negative", "train", "`model.cutoff_upper=-1`",
         argv=TRAIN + ("--set", "model.cutoff_upper=-1", "--out", "neg"), match=r"cutoff"),
    Case("train-model-key", "train", "unknown model key `model.hidden=8`",
         argv=TRAIN + ("--set", "model.hidden=8", "--out", "mk"), match=r"hidden"),
    Case("train-model-name", "train", "unknown `model_name=Foo`", argv=TRAIN + ("--set", "model_name=Foo", "--out", "mn"),
         match=r"Foo"),
    Case("train-gatr-model", "train", "`model_name=GATr` (not an energy model)",
         argv=TRAIN + ("--set", "model_name=GATr", "--set", "model={}", "--out", "gm"), match=r"GATr"),
    Case("train-precision", "train", "`precision=float16`", argv=TRAIN + ("--set", "precision=float16"),
         match=r"precision"),
    Case("train-objective", "train", "`objective=energy`", argv=TRAIN + ("--set", "objective=energy"),
         match=r"objective"),
    Case("train-weights-negative", "train", "`energy_weight=-1`", argv=TRAIN + ("--set", "energy_weight=-1"),
         match=r"energy_weight"),
    Case("train-forces-objective-weight", "train", "`objective=forces` with an energy weight",
         argv=TRAIN + ("--set", "objective=forces"), match=r"energy_weight"),
    Case("train-devices-text", "train", "`devices=foo`", argv=TRAIN + ("--set", "devices=foo", "--out", "dv"),
         match=r"devices"),
    Case("train-accelerator-gpu", "train", "`accelerator=gpu` on a machine without one",
         argv=TRAIN + ("--set", "accelerator=gpu", "--out", "gpu"), match=r"(GPU|CUDA|gpu)"),
    Case("train-override-no-eq", "train", "`--set lr` without `=`", argv=TRAIN + ("--set", "lr"), match=r"key=value"),
    Case("train-override-through-scalar", "train", "`--set seed.x=1` (seed is not a mapping)",
         argv=TRAIN + ("--set", "seed.x=1"), match=r"seed.*mapping"),
    Case("train-data-missing", "train", "data file missing", argv=TRAIN + ("--set", "data=nope.xyz", "--out", "dm"),
         match=r"nope\.xyz"),
    Case("train-data-garbage", "train", "data file is not XYZ", argv=TRAIN + ("--set", "data=garbage.xyz", "--out", "dg"),
         match=r"garbage\.xyz"),
    Case("train-data-empty", "train", "data file is empty", argv=TRAIN + ("--set", "data=empty.xyz", "--out", "de"),
         match=r"empty\.xyz"),
    Case("train-data-nan", "train", "data with a NaN position", argv=TRAIN + ("--set", "data=nan.xyz", "--out", "dn"),
         match=r"nan\.xyz.*(frame|NaN|finite)"),
    Case("train-data-unlabelled", "train", "data without energies or forces",
         argv=TRAIN + ("--set", "data=unlabelled.xyz", "--out", "du"), match=r"unlabelled\.xyz"),
    Case("train-out-file", "train", "`--out` is a file", argv=TRAIN + ("--out", "afile"), match=r"afile"),
    Case("train-out-below-file", "train", "`--out` below a file", argv=TRAIN + ("--out", "afile/run"), match=r"afile"),
    Case("train-out-unwritable", "train", "`--out` in a folder that cannot be written",
         argv=TRAIN + ("--out", "/sys/eqt_run"), match=r"/sys"),
    # ---------------------------------------------------------------- eqt train: the run directory
    Case("train-resume-other-data", "train", "rerun into a finished run with other data (finding 1)",
         argv=TRAIN + ("--set", "data=other.xyz"), match=r"run.*data"),
    Case("train-resume-other-model", "train", "rerun into a run with another model size",
         argv=TRAIN + ("--set", "model.hidden_channels=16"), match=r"run.*hidden_channels"),
    Case("train-resume-other-split", "train", "rerun into a run with other split sizes",
         argv=TRAIN + ("--set", "train_size=5"), match=r"run.*train_size"),
    Case("train-resume-other-seed", "train", "rerun into a run with another seed",
         argv=TRAIN + ("--set", "seed=7"), match=r"run.*seed"),
    Case("train-resume-other-lr", "train", "rerun into a run with another learning rate (finding 5)",
         argv=TRAIN + ("--set", "lr=0.1"), match=r"run.*\blr\b"),
    Case("train-resume-longer", "train", "rerun with more epochs (resume and extend)",
         argv=TRAIN + ("--set", "max_epochs=2"), expect="accepted", check=_model_pt_exists, writes=("run/*",)),
    Case("train-live-lock", "train", "a second training into a run directory in use (finding 5)",
         argv=TRAIN + ("--set", "max_epochs=2"), match=r"in use", setup=_live_lock),
    Case("train-stale-lock", "train", "a lock left by a killed process",
         argv=TRAIN, expect="accepted", setup=_stale_lock, check=_model_pt_exists, writes=("run/*",)),
    Case("train-after-failed-start", "train", "a run after a refused first start with other split sizes (finding 2)",
         argv=TRAIN + ("--set", "train_size=5", "--set", "val_size=3"), expect="accepted", setup=_failed_first_start,
         check=_no_stale_split),

    # ---------------------------------------------------------------- eqt test
    Case("test-ckpt-missing", "test", "checkpoint missing", argv=("test", "nope.pt", "data.xyz"), match=r"nope\.pt"),
    Case("test-ckpt-zero", "test", "zero-byte checkpoint", argv=("test", "zero.pt", "data.xyz"),
         match=r"zero\.pt.*(empty|truncated|corrupt)"),
    Case("test-ckpt-truncated", "test", "truncated checkpoint", argv=("test", "half.pt", "data.xyz"),
         match=r"half\.pt.*(truncated|corrupt)"),
    Case("test-ckpt-random", "test", "random bytes as a checkpoint", argv=("test", "random.pt", "data.xyz"),
         match=r"random\.pt"),
    Case("test-ckpt-text", "test", "a text file as a checkpoint", argv=("test", "text.pt", "data.xyz"),
         match=r"text\.pt"),
    Case("test-ckpt-plain", "test", "a torch file that is not an eqt checkpoint", argv=("test", "plain.pt", "data.xyz"),
         match=r"plain\.pt.*not an eqt checkpoint"),
    Case("test-ckpt-gatr", "test", "a GATr checkpoint", argv=("test", "gatr.pt", "data.xyz"),
         match=r"gatr\.pt.*GATr"),
    Case("test-ckpt-lightning", "test", "a Lightning training checkpoint (last.ckpt)",
         argv=("test", "run/checkpoints/last.ckpt", "data.xyz"), match=r"last\.ckpt"),
    Case("test-data-missing", "test", "data file missing", argv=("test", "model.pt", "nope.xyz"), match=r"nope\.xyz"),
    Case("test-data-garbage", "test", "data file not XYZ", argv=("test", "model.pt", "garbage.xyz"),
         match=r"garbage\.xyz"),
    Case("test-data-empty", "test", "empty data file", argv=("test", "model.pt", "empty.xyz"), match=r"empty\.xyz"),
    Case("test-data-truncated", "test", "truncated data file", argv=("test", "model.pt", "truncated.xyz"),
         match=r"truncated\.xyz"),
    Case("test-data-nan", "test", "data with a NaN position", argv=("test", "model.pt", "nan.xyz"),
         match=r"nan\.xyz.*frame"),
    Case("test-data-unlabelled", "test", "data without energies", argv=("test", "model.pt", "unlabelled.xyz"),
         match=r"unlabelled\.xyz.*energ"),
    Case("test-data-unseen-element", "test", "data with an element the model never saw (Cl)",
         argv=("test", "model.pt", "chloro.xyz"), match=r"Cl.*never saw"),
    Case("test-batch-zero", "test", "`--batch-size 0`", argv=("test", "model.pt", "data.xyz", "--batch-size", "0"),
         match=r"batch-size"),
    Case("test-batch-text", "test", "`--batch-size many`", argv=("test", "model.pt", "data.xyz", "--batch-size", "many"),
         match=r"batch-size"),
    Case("test-device-cuda", "test", "`--device cuda` without CUDA", argv=("test", "model.pt", "data.xyz", "--device",
                                                                          "cuda"), match=r"CUDA"),
    Case("test-device-bogus", "test", "`--device gpu0`", argv=("test", "model.pt", "data.xyz", "--device", "gpu0"),
         match=r"gpu0"),
    Case("test-units", "test", "`--units furlongs`", argv=("test", "model.pt", "data.xyz", "--units", "furlongs"),
         match=r"furlongs"),
    Case("test-report-units", "test", "`--report-units K`", argv=("test", "model.pt", "data.xyz", "--report-units",
                                                                  "K"), match=r"invalid choice"),
    Case("test-energy-key", "test", "`--energy-key` that is not in the file",
         argv=("test", "model.pt", "data.xyz", "--energy-key", "U0"), match=r"U0"),
    Case("test-plot-exists", "test", "`--plot` onto an existing file",
         argv=("test", "model.pt", "data.xyz", "--plot", "existing.png"), match=r"existing\.png.*--force"),
    Case("test-plot-below-file", "test", "`--plot` below a file",
         argv=("test", "model.pt", "data.xyz", "--plot", "afile/p.png"), match=r"afile"),
    Case("test-plot-force", "test", "`--plot` onto an existing file with `--force`",
         argv=("test", "model.pt", "data.xyz", "--plot", "existing.png", "--force"), expect="accepted",
         writes=("existing.png",)),
    Case("test-ok", "test", "a valid model and data set", argv=("test", "model.pt", "data.xyz"), expect="accepted",
         check=lambda ws, out: None if "forces" in out else (_ for _ in ()).throw(AssertionError("no table"))),

    # ---------------------------------------------------------------- eqt md
    Case("md-structure-unknown", "md", "structure neither a file nor a molecule name",
         argv=("md", "model.pt", "unobtainium") + FAST_MD + ("--out", "md1"), match=r"unobtainium"),
    Case("md-structure-garbage", "md", "structure file not readable", argv=("md", "model.pt", "garbage.xyz") + FAST_MD
         + ("--out", "md1"), match=r"garbage\.xyz"),
    Case("md-structure-empty", "md", "empty structure file", argv=("md", "model.pt", "empty.xyz") + FAST_MD
         + ("--out", "md1"), match=r"empty\.xyz"),
    Case("md-structure-nan", "md", "structure with a NaN position", argv=("md", "model.pt", "nanmol.xyz") + FAST_MD
         + ("--out", "md1"), match=r"(finite|NaN|nan)"),
    Case("md-structure-overlap", "md", "two atoms 0.01 Å apart", argv=("md", "model.pt", "overlap.xyz") + FAST_MD
         + ("--out", "md1"), match=r"(apart|close|distance)"),
    Case("md-unseen-element", "md", "an element the model never saw (Cl)", argv=("md", "model.pt", "cl.xyz")
         + FAST_MD + ("--out", "md1"), match=r"Cl"),
    Case("md-z0", "md", "an atom with Z = 0", argv=("md", "model.pt", "z0.xyz") + FAST_MD + ("--out", "md1"),
         match=r"(atomic number|element|Z ?= ?0|X)"),
    Case("md-steps-negative", "md", "`--steps -1`", argv=("md", "model.pt", "H2O", "--steps", "-1", "--out", "md1"),
         match=r"steps"),
    Case("md-timestep-negative", "md", "`--timestep -1`", argv=("md", "model.pt", "H2O", "--timestep", "-1")
         + FAST_MD + ("--out", "md1"), match=r"timestep"),
    Case("md-temperature-negative", "md", "`--temperature -5`", argv=("md", "model.pt", "H2O", "--temperature", "-5")
         + FAST_MD + ("--out", "md1"), match=r"temperature"),
    Case("md-log-interval-zero", "md", "`--log-interval 0`", argv=("md", "model.pt", "H2O", "--steps", "4",
                                                                   "--log-interval", "0", "--out", "md1"),
         match=r"log.interval"),
    Case("md-integrator", "md", "`--integrator leapfrog`", argv=("md", "model.pt", "H2O", "--integrator", "leapfrog"),
         match=r"invalid choice"),
    Case("md-device-cuda", "md", "`--device cuda` without CUDA", argv=("md", "model.pt", "H2O", "--device", "cuda")
         + FAST_MD + ("--out", "md1"), match=r"CUDA"),
    Case("md-ckpt-gatr", "md", "a GATr checkpoint", argv=("md", "gatr.pt", "H2O") + FAST_MD + ("--out", "md1"),
         match=r"gatr\.pt.*GATr"),
    Case("md-ckpt-truncated", "md", "a truncated checkpoint", argv=("md", "half.pt", "H2O") + FAST_MD
         + ("--out", "md1"), match=r"half\.pt.*(truncated|corrupt)"),
    Case("md-out-exists", "md", "`--out` holding an earlier run", argv=("md", "model.pt", "H2O") + FAST_MD
         + ("--out", "mdold"), match=r"mdold.*--force"),
    Case("md-out-file", "md", "`--out` is a file", argv=("md", "model.pt", "H2O") + FAST_MD + ("--out", "afile"),
         match=r"afile"),
    Case("md-ok", "md", "a short valid run", argv=("md", "model.pt", "H2O") + FAST_MD + ("--out", "md1"),
         expect="accepted", check=lambda ws, out: None if (ws / "md1" / "md.csv").exists()
         else (_ for _ in ()).throw(AssertionError("no md.csv"))),

    # ---------------------------------------------------------------- eqt data sample
    Case("sample-structure-unknown", "data sample", "structure neither file nor molecule name",
         argv=("data", "sample", "unobtainium", "s.xyz") + FAST_SAMPLE, match=r"unobtainium"),
    Case("sample-pyscf", "data sample", "`--method pyscf:PBE/def2-SVP` (MD runs on xTB only)",
         argv=("data", "sample", "H2O", "s.xyz", "--method", "pyscf:PBE/def2-SVP") + FAST_SAMPLE,
         match=r"data label"),
    Case("sample-method", "data sample", "unknown method", argv=("data", "sample", "H2O", "s.xyz", "--method", "DFTB9")
         + FAST_SAMPLE, match=r"DFTB9"),
    Case("sample-frames-zero", "data sample", "`--frames 0`", argv=("data", "sample", "H2O", "s.xyz", "--frames", "0"),
         match=r"frames"),
    Case("sample-interval-zero", "data sample", "`--interval 0`",
         argv=("data", "sample", "H2O", "s.xyz", "--frames", "2", "--interval", "0"), match=r"interval"),
    Case("sample-temperature-negative", "data sample", "`--temperature -1`",
         argv=("data", "sample", "H2O", "s.xyz", "--temperature", "-1") + FAST_SAMPLE, match=r"temperature"),
    Case("sample-output-exists", "data sample", "output exists (finding 4)",
         argv=("data", "sample", "H2O", "existing.xyz") + FAST_SAMPLE, match=r"existing\.xyz.*--force"),
    Case("sample-output-folder", "data sample", "output is a folder", argv=("data", "sample", "H2O", "mdold")
         + FAST_SAMPLE, match=r"mdold.*folder"),
    Case("sample-output-below-file", "data sample", "output below a file",
         argv=("data", "sample", "H2O", "afile/s.xyz") + FAST_SAMPLE, match=r"afile"),
    Case("sample-output-unwritable", "data sample", "output in a folder that cannot be written",
         argv=("data", "sample", "H2O", "/sys/s.xyz") + FAST_SAMPLE, match=r"/sys"),
    Case("sample-z0", "data sample", "a structure with Z = 0", argv=("data", "sample", "z0.xyz", "s.xyz") + FAST_SAMPLE,
         match=r"(atomic number|element|Z ?= ?0|X)"),
    Case("sample-single-atom", "data sample", "a single atom", argv=("data", "sample", "single.xyz", "s.xyz")
         + FAST_SAMPLE, match=r"atom"),
    Case("sample-overlap", "data sample", "two atoms 0.01 Å apart", argv=("data", "sample", "overlap.xyz", "s.xyz")
         + FAST_SAMPLE, match=r"(apart|close|distance|overlap)"),
    Case("sample-ok", "data sample", "a short valid run", argv=("data", "sample", "H2O", "s.xyz") + FAST_SAMPLE,
         expect="accepted", check=_all_finite_labels("s.xyz", 2)),

    # ---------------------------------------------------------------- eqt data label
    Case("label-input-missing", "data label", "input missing", argv=("data", "label", "nope.xyz", "l.xyz"),
         match=r"nope\.xyz"),
    Case("label-input-empty", "data label", "empty input", argv=("data", "label", "empty.xyz", "l.xyz"),
         match=r"empty\.xyz"),
    Case("label-input-garbage", "data label", "input not XYZ", argv=("data", "label", "garbage.xyz", "l.xyz"),
         match=r"garbage\.xyz"),
    Case("label-input-truncated", "data label", "truncated input", argv=("data", "label", "truncated.xyz", "l.xyz"),
         match=r"truncated\.xyz"),
    Case("label-input-nan", "data label", "input with a NaN position", argv=("data", "label", "nan.xyz", "l.xyz"),
         match=r"nan\.xyz.*frame 1"),
    Case("label-z0", "data label", "a frame with Z = 0 (finding 3)", argv=("data", "label", "z0.xyz", "l.xyz"),
         match=r"z0\.xyz.*frame 1"),
    Case("label-z0-skip", "data label", "a frame with Z = 0 and `--skip-failed`",
         argv=("data", "label", "z0.xyz", "l.xyz", "--skip-failed"), expect="accepted",
         check=_all_finite_labels("l.xyz", 1)),
    Case("label-overlap", "data label", "two atoms 0.01 Å apart", argv=("data", "label", "overlap.xyz", "l.xyz"),
         match=r"overlap\.xyz.*frame 0"),
    Case("label-output-exists", "data label", "output exists (finding 4)",
         argv=("data", "label", "water.xyz", "existing.xyz"), match=r"existing\.xyz.*--force"),
    Case("label-output-force", "data label", "output exists, with `--force`",
         argv=("data", "label", "water.xyz", "existing.xyz", "--force"), expect="accepted",
         writes=("existing.xyz",), check=_all_finite_labels("existing.xyz", 1)),
    Case("label-output-folder", "data label", "output is a folder", argv=("data", "label", "water.xyz", "mdold"),
         match=r"mdold.*folder"),
    Case("label-output-below-file", "data label", "output below a file",
         argv=("data", "label", "water.xyz", "afile/l.xyz"), match=r"afile"),
    Case("label-method", "data label", "unknown method", argv=("data", "label", "water.xyz", "l.xyz", "--method", "B3"),
         match=r"B3"),
    Case("label-pyscf-spec", "data label", "`--method pyscf:PBE` (no basis)",
         argv=("data", "label", "water.xyz", "l.xyz", "--method", "pyscf:PBE"), match=r"pyscf:<xc>/<basis>"),
    Case("label-ok", "data label", "a valid structure", argv=("data", "label", "water.xyz", "l.xyz"), expect="accepted",
         check=_all_finite_labels("l.xyz", 1)),

    # ---------------------------------------------------------------- the other data and experiment commands
    Case("polymers-output-exists", "data polymers", "output exists",
         argv=("data", "polymers", "existing.xyz", "--families", "PE", "--lengths", "1", "--temperatures", "300",
               "--frames", "1"), match=r"existing\.xyz.*--force"),
    Case("polymers-suffix", "data polymers", "output not an .xyz file", argv=("data", "polymers", "p.txt"),
         match=r"p\.txt.*xyz"),
    Case("polymers-family", "data polymers", "unknown polymer family", argv=("data", "polymers", "p.xyz", "--families",
                                                                           "FOO"), match=r"FOO"),
    Case("polymers-lengths", "data polymers", "`--lengths 6-3`", argv=("data", "polymers", "p.xyz", "--lengths", "6-3"),
         match=r"lengths"),
    Case("nbody-data-below-file", "data nbody", "output folder below a file", argv=("data", "nbody", "afile/nb"),
         match=r"afile"),
    Case("nbody-data-size", "data nbody", "`--size train=-1`", argv=("data", "nbody", "nb", "--size", "train=-1"),
         match=r"--size"),
    Case("exp-slmc-config", "experiments", "`eqt slmc` with a missing config", argv=("slmc", "nope.yaml"),
         match=r"nope\.yaml"),
    Case("exp-polyget-config", "experiments", "`eqt polyget` with a missing config", argv=("polyget", "nope.yaml"),
         match=r"nope\.yaml"),
    Case("exp-polyget-md-config", "experiments", "`eqt polyget-md` with a missing config",
         argv=("polyget-md", "nope.yaml"), match=r"nope\.yaml"),
    Case("exp-scaling-config", "experiments", "`eqt scaling` with a missing config", argv=("scaling", "nope.yaml"),
         match=r"nope\.yaml"),
    Case("exp-nbody-steps", "experiments", "`eqt nbody --steps 0`", argv=("nbody", "--steps", "0", "--out", "nb"),
         match=r"steps"),
    Case("exp-rigid-out-file", "experiments", "`eqt rigid --out` onto a file", argv=("rigid", "--out", "afile"),
         match=r"afile"),

    # ---------------------------------------------------------------- checkpoints (Python API)
    Case("ckpt-missing", "checkpoint", "`load_model` of a missing file",
         call=lambda ws: __import__("eqt.checkpoint").checkpoint.load_model(ws / "nope.pt"), match=r"nope\.pt"),
    Case("ckpt-zero", "checkpoint", "`load_model` of a zero-byte file",
         call=lambda ws: __import__("eqt.checkpoint").checkpoint.load_model(ws / "zero.pt"),
         match=r"zero\.pt.*(empty|truncated|corrupt)"),
    Case("ckpt-truncated", "checkpoint", "`load_model` of a truncated file",
         call=lambda ws: __import__("eqt.checkpoint").checkpoint.load_model(ws / "half.pt"),
         match=r"half\.pt.*(truncated|corrupt)"),
    Case("ckpt-plain", "checkpoint", "`load_model` of a torch file that is not an eqt checkpoint",
         call=lambda ws: __import__("eqt.checkpoint").checkpoint.load_model(ws / "plain.pt"),
         match=r"not an eqt checkpoint"),
    Case("ckpt-folder", "checkpoint", "`load_model` of a folder",
         call=lambda ws: __import__("eqt.checkpoint").checkpoint.load_model(ws / "run"), match=r"run"),

    # ---------------------------------------------------------------- configs (Python API)
    Case("cfg-unknown-key", "config", "`TrainConfig.from_dict` with an unknown key",
         call=lambda ws: _train_config(epochs=3), match=r"epochs.*max_epochs"),
    Case("cfg-lr-text", "config", "`TrainConfig(lr='fast')`", call=lambda ws: _train_config(lr="fast"),
         match=r"\blr\b"),
    Case("cfg-seed-float", "config", "`TrainConfig(seed=1.5)`", call=lambda ws: _train_config(seed=1.5),
         match=r"seed"),
    Case("cfg-bool-as-int", "config", "`TrainConfig(batch_size=True)`", call=lambda ws: _train_config(batch_size=True),
         match=r"batch_size"),
    Case("cfg-model-not-mapping", "config", "`TrainConfig(model=3)`", call=lambda ws: _train_config(model=3),
         match=r"model"),
    Case("cfg-lr-int", "config", "`TrainConfig(lr=1)` (an int where a float is expected)",
         call=lambda ws: _train_config(lr=1), expect="accepted"),
    Case("cfg-et-heads", "config", "`ETConfig(hidden_channels=10, num_heads=3)`",
         call=lambda ws: __import__("eqt.models.et").models.et.ETConfig(hidden_channels=10, num_heads=3),
         match=r"(heads|hidden_channels)"),
    Case("cfg-md-steps-float", "config", "`MDConfig(steps=1.5)`",
         call=lambda ws: __import__("eqt.physics.md").physics.md.MDConfig(steps=1.5), match=r"steps"),
    Case("cfg-md-integrator", "config", "`MDConfig(integrator='rk4')`",
         call=lambda ws: __import__("eqt.physics.md").physics.md.MDConfig(integrator="rk4"), match=r"integrator"),

    # ---------------------------------------------------------------- readers (Python API)
    Case("read-missing", "readers", "`read_frames` of a missing file", call=lambda ws: _read(ws, "nope.xyz"),
         match=r"nope\.xyz"),
    Case("read-empty", "readers", "`read_frames` of an empty file", call=lambda ws: _read(ws, "empty.xyz"),
         match=r"empty\.xyz"),
    Case("read-garbage", "readers", "`read_frames` of a non-XYZ file", call=lambda ws: _read(ws, "garbage.xyz"),
         match=r"garbage\.xyz"),
    Case("read-truncated", "readers", "`read_frames` of a truncated file", call=lambda ws: _read(ws, "truncated.xyz"),
         match=r"truncated\.xyz"),
    Case("read-nan", "readers", "`read_frames` with a NaN position", call=lambda ws: _read(ws, "nan.xyz"),
         match=r"nan\.xyz.*frame 1"),
    Case("read-no-forces", "readers", "`read_frames` without forces", call=lambda ws: _read(ws, "unlabelled.xyz"),
         match=r"unlabelled\.xyz.*forces"),
    Case("read-bad-key", "readers", "`read_frames(energy_key='U0')` not in the file",
         call=lambda ws: _read(ws, "data.xyz", energy_key="U0", require_energy=True), match=r"U0"),
    Case("read-bad-units", "readers", "`read_frames(units='furlongs')`",
         call=lambda ws: _read(ws, "data.xyz", units="furlongs"), match=r"furlongs"),
    Case("read-folder", "readers", "`read_frames` of a folder", call=lambda ws: _read(ws, "run"), match=r"run"),

    # ---------------------------------------------------------------- Potential (Python API)
    Case("pot-numpy", "Potential", "numpy arrays for z and pos (converted)",
         call=lambda ws: _potential(ws, np.array([8, 1, 1]), _water()[1].numpy()), expect="accepted",
         check=_has_energy_and_forces),
    Case("pot-float32-into-float64", "Potential", "float32 positions into a float64 model (converted)",
         call=lambda ws: _potential(ws, *_water("float32")), expect="accepted", check=_has_energy_and_forces),
    Case("pot-list", "Potential", "Python lists for z and pos (converted)",
         call=lambda ws: _potential(ws, [8, 1, 1], _water()[1].tolist()), expect="accepted",
         check=_has_energy_and_forces),
    Case("pot-shape", "Potential", "positions of shape (N, 2)",
         call=lambda ws: _potential(ws, _water()[0], _water()[1][:, :2]), match=r"pos.*\(N, 3\)"),
    Case("pot-length", "Potential", "z and pos of different lengths",
         call=lambda ws: _potential(ws, _water()[0][:2], _water()[1]), match=r"z"),
    Case("pot-nan", "Potential", "a NaN position",
         call=lambda ws: _potential(ws, _water()[0], _water()[1].index_fill(0, __import__("torch").tensor([1]),
                                                                            float("nan"))), match=r"finite"),
    Case("pot-empty", "Potential", "no atoms", call=lambda ws: _potential(ws, _water()[0][:0], _water()[1][:0]),
         match=r"(empty|no atoms|N > 0|zero atoms)"),
    Case("pot-z-zero", "Potential", "atomic number 0",
         call=lambda ws: _potential(ws, _water()[0] * 0, _water()[1]), match=r"atomic number"),
    Case("pot-z-large", "Potential", "atomic number 200",
         call=lambda ws: _potential(ws, _water()[0] + 199, _water()[1]), match=r"atomic number"),
    Case("pot-overlap", "Potential", "two atoms at the same place",
         call=lambda ws: _potential(ws, _water()[0], _water()[1][[0, 0, 1]]), match=r"(apart|close|distance)"),
    Case("pot-batch-unsorted", "Potential", "an unsorted batch vector",
         call=lambda ws: _potential(ws, _water()[0], _water()[1], batch=__import__("torch").tensor([1, 0, 0])),
         match=r"batch"),
    Case("pot-stress-no-cell", "Potential", "stress without a cell",
         call=lambda ws: _potential(ws, *_water(), stress=True), match=r"stress.*cell"),
    Case("pot-device", "Potential", "positions on a device that does not exist ('meta')",
         call=lambda ws: _potential(ws, _water()[0], _water()[1].to("meta")), match=r"(device|meta)"),

    # ---------------------------------------------------------------- Calculator (Python API)
    Case("calc-bogus-device", "Calculator", "`Calculator(path, device='gpu0')`",
         call=lambda ws: _calc(ws, device="gpu0"), match=r"gpu0"),
    Case("calc-cuda", "Calculator", "`Calculator(path, device='cuda')` without CUDA",
         call=lambda ws: _calc(ws, device="cuda"), match=r"CUDA"),
    Case("calc-dtype", "Calculator", "`Calculator(path, dtype=torch.int32)`",
         call=lambda ws: _calc(ws, dtype=__import__("torch").int32), match=r"dtype"),
    Case("calc-gatr", "Calculator", "`Calculator('gatr.pt')`", call=lambda ws: _calc(ws, "gatr.pt"),
         match=r"gatr\.pt.*GATr"),
    Case("calc-zero", "Calculator", "`Calculator('zero.pt')`", call=lambda ws: _calc(ws, "zero.pt"),
         match=r"zero\.pt"),
    Case("calc-unseen", "Calculator", "an element the model never saw (Cl)",
         call=lambda ws: _calc(ws, atoms=__import__("ase.build").build.molecule("CH3Cl")), match=r"Cl"),
    Case("calc-overlap", "Calculator", "two atoms at the same place",
         call=lambda ws: _calc(ws, atoms=__import__("ase.io").io.read(ws / "overlap.xyz")),
         match=r"(apart|close|distance)"),
    Case("calc-ok", "Calculator", "a valid molecule", call=lambda ws: _calc(ws), expect="accepted",
         check=lambda ws, f: None if np.isfinite(f).all() and f.shape == (3, 3)
         else (_ for _ in ()).throw(AssertionError(f"forces {f}"))),

    # ---------------------------------------------------------------- MD (Python API)
    Case("mdapi-no-calc", "MD API", "`run_md` without a calculator",
         call=lambda ws: __import__("eqt.physics.md").physics.md.run_md(
             __import__("ase.build").build.molecule("H2O"), None), match=r"calculator"),
    Case("mdapi-config-type", "MD API", "`run_md(config={'steps': 3})` (a dict, not an MDConfig)",
         call=lambda ws: __import__("eqt.physics.md").physics.md.run_md(
             __import__("ase.build").build.molecule("H2O"), None, {"steps": 3}), match=r"MDConfig",
         errors=(TypeError, ValueError)),
    Case("mdapi-overlap", "MD API", "`run_md` from overlapping atoms", call=lambda ws: _md(ws, "overlap.xyz", steps=2),
         match=r"(apart|close|distance)"),
    Case("mdapi-empty", "MD API", "`run_md` of an empty Atoms",
         call=lambda ws: __import__("eqt.physics.md").physics.md.run_md(
             __import__("ase").Atoms(), __import__("eqt.physics.calculator").physics.calculator.Calculator(
                 str(ws / "model.pt"))), match=r"empty"),
]
