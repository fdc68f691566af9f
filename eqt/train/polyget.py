"""PolyGET experiments (issue 8): force-only vs joint training, unseen families, long chains.

One study answers three of the issue's questions with two training runs of the same model, data and
budget, differing only in the objective (``objective: forces`` vs ``energy+forces``):

1. **force-only vs joint**: force (and energy) MAE per family on held-out frames of the training
   families;
2. **leave families out**: the same on families never seen in training (``unseen_families``);
3. **short → long chains**: the same on the long-chain file (``size_test``, e.g. 8–12 repeat units
   when training on 3–6).

Data: the extended XYZ written by ``eqt data polymers`` (each frame's ``info`` holds ``family`` and
``n_repeat``). The frames of ``unseen_families`` are moved to their own file before training; the
rest is split randomly into train / validation / test by ``TrainConfig`` (frames of one trajectory
are correlated, so the in-distribution test is optimistic; the unseen-family and long-chain tests
are not). Energies of the force-only model are defined up to per-element offsets fitted by least
squares on the training frames after training (:func:`eqt.train.run.fit_energy_offsets`).

    eqt polyget configs/polyget/study.yaml --out runs/polyget

Results: ``results.json`` and ``results.md`` (one table per test set: family, frames, force MAE
and energy MAE per objective) in ``out_dir``; each run in ``out_dir/<objective>``, resumable; a run
whose ``model.pt`` was exported with the same training config is not touched again (so the two
objectives can train in two processes, ``--set "objectives=[forces]"`` and
``"objectives=[energy+forces]"``, and a last call with both writes the joint table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from eqt.config import Config

__all__ = ["PolyGETConfig", "split_families", "per_family_errors", "run_study", "add_arguments", "run_from_args"]

OBJECTIVE_DIRS = {"forces": "force-only", "energy+forces": "joint"}


@dataclasses.dataclass(frozen=True)
class PolyGETConfig(Config):
    """The study.

    Attributes:
        data: polymer frames (``eqt data polymers`` output) of the training families.
        size_test: long-chain frames, or None.
        unseen_families: families held out of training and tested on.
        train: :class:`eqt.train.config.TrainConfig` keys shared by both runs (``model``,
            ``max_time``, ``batch_size``, ...); ``data``, ``objective``, the loss weights and
            ``out_dir`` are set per run.
        objectives: the runs, any of ``"forces"`` and ``"energy+forces"``.
        energy_weight: energy weight of the joint run (its force weight is ``1 - energy_weight``).
        out_dir: output folder.
    """

    data: str = "runs/polymers/train.xyz"
    size_test: str | None = "runs/polymers/size_test.xyz"
    unseen_families: tuple = ("PVDF", "PVA", "PLA")
    train: dict = dataclasses.field(default_factory=dict)
    objectives: tuple = ("forces", "energy+forces")
    energy_weight: float = 0.2
    out_dir: str = "runs/polyget"

    def __post_init__(self) -> None:
        object.__setattr__(self, "unseen_families", tuple(self.unseen_families))
        object.__setattr__(self, "objectives", tuple(self.objectives))
        bad = [o for o in self.objectives if o not in OBJECTIVE_DIRS]
        if bad or not self.objectives:
            raise ValueError(f"objectives must be a non-empty list of {', '.join(OBJECTIVE_DIRS)}, got {list(self.objectives)}")
        if not 0 < self.energy_weight < 1:
            raise ValueError(f"energy_weight must be in (0, 1), got {self.energy_weight}")
        for key in ("data", "objective", "energy_weight", "forces_weight", "out_dir"):
            if key in self.train:
                raise ValueError(f"train.{key} is set by the study; remove it from 'train'")


def _families(atoms_list) -> list[str]:
    out = []
    for k, a in enumerate(atoms_list):
        if "family" not in a.info:
            raise ValueError(f"frame {k} has no 'family' in its info (write the data with `eqt data polymers`)")
        out.append(str(a.info["family"]))
    return out


def split_families(path: str | Path, unseen: tuple[str, ...], out: str | Path) -> tuple[Path, Path | None]:
    """Write the frames of ``path`` whose family is not in ``unseen`` to ``out/seen.xyz``, the rest to
    ``out/unseen.xyz`` (None when there are none).

    Raises:
        FileNotFoundError: no such file. ValueError: a frame without ``family``, or an unseen
        family absent from the data (a typo, most likely).
    """
    import ase.io

    path, out = Path(path), Path(out)
    if not path.is_file():
        raise FileNotFoundError(f"polymer data {path} not found (make it with `eqt data polymers`)")
    frames = ase.io.read(path, ":")
    fams = _families(frames)
    missing = sorted(set(unseen) - set(fams))
    if missing:
        raise ValueError(f"unseen family(ies) {', '.join(missing)} not in {path} (it has {', '.join(sorted(set(fams)))})")
    out.mkdir(parents=True, exist_ok=True)
    seen = [a for a, f in zip(frames, fams) if f not in unseen]
    held = [a for a, f in zip(frames, fams) if f in unseen]
    if not seen:
        raise ValueError(f"every family of {path} is in unseen_families: nothing left to train on")
    ase.io.write(out / "seen.xyz", seen, format="extxyz")
    if held:
        ase.io.write(out / "unseen.xyz", held, format="extxyz")
    return out / "seen.xyz", (out / "unseen.xyz" if held else None)


def per_family_errors(model, path: str | Path, indices: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Force and energy MAE of ``model`` per family on the frames of ``path`` (optionally a subset).

    Returns:
        ``{family: {"frames", "forces_mae" (meV/Å), "energy_mae" (meV), "energy_mae_per_atom" (meV)}}``
        plus ``"all"``.
    """
    import ase.io

    from eqt.data.readers import read_frames
    from eqt.train.evaluate import evaluate

    frames = read_frames(str(path))
    fams = np.array(_families(ase.io.read(path, ":")))
    idx = np.arange(len(fams)) if indices is None else np.asarray(indices)
    out = {}
    for fam in [*sorted(set(fams[idx])), "all"]:
        sel = idx if fam == "all" else idx[fams[idx] == fam]
        res = evaluate(model, frames.subset(sel))
        out[fam] = {"frames": int(len(sel)), "forces_mae": float(res["forces_mae"]),
                    "energy_mae": float(res["energy_mae"]), "energy_mae_per_atom": float(res["energy_mae_per_atom"])}
    return out


def _finished(model_path: Path, cfg) -> bool:
    """True when ``model_path`` was exported by a run with exactly this training config (re-scoring a
    finished study then does not touch its weights; a changed config, e.g. a longer ``max_time``,
    resumes training instead)."""
    from eqt.checkpoint import CheckpointError, load_checkpoint

    if not model_path.exists():
        return False
    try:
        saved = load_checkpoint(model_path)["extra"].get("train_config")
    except CheckpointError:
        return False

    def norm(d: Any) -> str:
        return json.dumps(d, sort_keys=True, default=str)

    return saved is not None and norm(saved) == norm(dataclasses.asdict(cfg))


def run_study(c: PolyGETConfig, log=print) -> dict[str, Any]:
    """Split, train each objective (resumable), evaluate per family; writes results.json / results.md."""
    from eqt.checkpoint import load_model
    from eqt.data.dataset import load_splits
    from eqt.train.config import TrainConfig
    from eqt.train.run import train

    out = Path(c.out_dir)
    seen, unseen = split_families(c.data, c.unseen_families, out / "data")
    tests: dict[str, tuple[Path, np.ndarray | None]] = {}
    results: dict[str, Any] = {"config": c.to_dict(), "runs": {}}
    for objective in c.objectives:
        name = OBJECTIVE_DIRS[objective]
        weights = (0.0, 1.0) if objective == "forces" else (c.energy_weight, 1.0 - c.energy_weight)
        cfg = TrainConfig.from_dict({**c.train, "data": str(seen), "objective": objective, "energy_weight": weights[0],
                                     "forces_weight": weights[1], "out_dir": str(out / name)})
        model_path = out / name / "model.pt"
        if _finished(model_path, cfg):
            log(f"{name}: finished with this config, reusing {model_path}")
        else:
            log(f"{name}: training ({cfg.max_time or 'no time limit'}, {cfg.max_epochs} epochs max)")
            model_path = train(cfg)["model_path"]
        model = load_model(model_path).double()
        split = load_splits(out / name / "splits.npz")
        tests = {"training families (test split)": (seen, split["test"])}
        if unseen is not None:
            tests["unseen families"] = (unseen, None)
        if c.size_test:
            tests["long chains"] = (Path(c.size_test), None)
        results["runs"][name] = {k: per_family_errors(model, p, i) for k, (p, i) in tests.items()}
        log(f"{name}: " + "; ".join(f"{k}: force MAE {v['all']['forces_mae']:.1f} meV/Å"
                                    for k, v in results["runs"][name].items()))
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(table(results) + "\n")
    return results


def table(results: dict[str, Any]) -> str:
    """One markdown table per test set: family, frames, force / energy MAE of each run."""
    runs = results["runs"]
    names = list(runs)
    lines = []
    for test in next(iter(runs.values())):
        lines += [f"**{test}**", "",
                  "| family | frames | " + " | ".join(f"{n}: F MAE (meV/Å) | {n}: E MAE (meV)" for n in names) + " |",
                  "|---|---|" + "---|---|" * len(names)]
        fams = runs[names[0]][test]
        for fam in fams:
            cells = " | ".join(f"{runs[n][test][fam]['forces_mae']:.1f} | {runs[n][test][fam]['energy_mae']:.1f}"
                               for n in names)
            lines.append(f"| {fam} | {fams[fam]['frames']} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``eqt polyget``."""
    p.add_argument("config", nargs="?", help="YAML (see configs/polyget/study.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key (train.max_time=00:00:20:00 reaches into train)")
    p.add_argument("--out", help="output directory (overrides out_dir)")
    return p


def run_from_args(a: argparse.Namespace) -> dict[str, Any]:
    from eqt.train.config import apply_overrides, read_yaml

    values = read_yaml(a.config)
    values = apply_overrides(values, list(a.set or []) + ([f"out_dir={a.out}"] if a.out else []))
    results = run_study(PolyGETConfig.from_dict(values))
    print(table(results))
    return results
