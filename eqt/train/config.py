"""The training configuration: one frozen dataclass, read from YAML with unknown keys rejected."""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from pathlib import Path
from typing import Any

from eqt.config import Config

__all__ = ["TrainConfig", "load_config", "apply_overrides", "OBJECTIVES"]

#: Training objectives: joint energy + force regression, or forces alone (PolyGET).
OBJECTIVES = ("energy+forces", "forces")


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """Everything a training run needs (defaults: TorchMD-NET's ``ET-MD17.yaml`` recipe).

    ``objective``: ``"energy+forces"`` (loss ``energy_weight MSE(E) + forces_weight MSE(F)``) or
    ``"forces"`` (PolyGET's force-only training: ``energy_weight`` must be 0, energies are not needed
    in the data; when they are there, per-element energy offsets are fitted by least squares after
    training so that the model still reports energies, defined up to those offsets).
    ``atomrefs``: per-element reference energies subtracted before the network learns: ``true``
    (least squares on the training frames), ``false`` (none), isolated-atom energies (E0s, as MACE's
    ``--E0s``) as a mapping ``{H: -10.7, C: -48.8, ...}`` (eV) or the path of an extended-XYZ file of
    single atoms with energies. ``refit_offsets``: after training, refit per-element offsets by least
    squares on the training frames' residual energies (forces unchanged), removing the constant
    energy offset that forces cannot see and the weak energy loss leaves to SGD noise (on by default;
    off keeps E0s exactly). ``ema_decay`` averages the weights (0 = off); ``loss_ema_alpha_*`` is TorchMD-NET's smoothing
    of the loss terms (``ema_alpha_y``/``ema_alpha_neg_dy``; 1 = off). Data keys are read by
    :func:`eqt.data.readers.read_frames`; ``model`` holds the model's own config keys (e.g.
    :class:`eqt.models.et.ETConfig`), validated when the model is built.

    Construction checks the type and range of every field (one-line ``ValueError`` naming the
    key); an int given for a float field is stored as float. ``max_time`` is Lightning's
    ``DD:HH:MM:SS``; ``devices`` a count, -1, ``"auto"`` or ids such as ``"0,1"``.
    """

    data: str = ""
    energy_key: str | None = None
    forces_key: str | None = None
    units: str | None = None
    train_size: int | float = 950
    val_size: int | float = 50
    test_size: int | float | None = None
    seed: int = 1
    model_name: str = "ET"
    model: dict = dataclasses.field(default_factory=dict)
    objective: str = "energy+forces"
    energy_weight: float = 0.2
    forces_weight: float = 0.8
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_warmup_steps: int = 1000
    lr_factor: float = 0.8
    lr_patience: int = 30
    lr_min: float = 1e-7
    batch_size: int = 8
    inference_batch_size: int = 64
    max_epochs: int = 3000
    max_steps: int = -1
    max_time: str | None = None
    early_stopping_patience: int = 300
    gradient_clip: float = 0.0
    ema_decay: float = 0.0
    loss_ema_alpha_energy: float = 1.0
    loss_ema_alpha_forces: float = 1.0
    precision: str = "float32"
    standardize: bool = True
    atomrefs: bool | str | dict = True
    refit_offsets: bool = True
    checkpoint_every_n_steps: int = 500
    log_every_n_steps: int = 10
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    out_dir: str = "runs/et"
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.max_time, int) and not isinstance(self.max_time, bool):
            raise ValueError(f"max_time must be a quoted string such as '10:00:00:00' (DD:HH:MM:SS); YAML reads it "
                             f"unquoted as the number {self.max_time}")
        _check_types(self)
        _check_values(self)
        if self.objective == "forces" and (self.energy_weight != 0 or self.forces_weight <= 0):
            raise ValueError(f"objective 'forces' trains on forces alone: set energy_weight: 0 and forces_weight > 0 "
                             f"(got {self.energy_weight} and {self.forces_weight})")


#: Python types named in the field annotations of :class:`TrainConfig`.
_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict, "None": type(None)}


def _check_types(config: TrainConfig) -> None:
    """One-line ``ValueError`` naming the key whose value has the wrong type.

    ``bool`` is not accepted where an int or float is meant (YAML's ``yes``); an int is accepted
    (and stored as float) where a float is meant (YAML reads ``lr: 1`` as an int).
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        allowed = [_TYPES[t.strip()] for t in str(f.type).split("|")]
        if isinstance(value, bool):
            ok = bool in allowed
        elif isinstance(value, int) and float in allowed and int not in allowed:
            object.__setattr__(config, f.name, float(value))
            ok = True
        else:
            ok = isinstance(value, tuple(t for t in allowed if t is not bool))
        if not ok:
            raise ValueError(f"{f.name} must be {' or '.join(_TYPE_NAMES[t] for t in allowed)}, got {value!r}")


_TYPE_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
               dict: "a mapping", type(None): "null"}

#: Accelerators Lightning knows by name (``gpu`` and ``cuda`` need an NVIDIA GPU).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def _check_values(c: TrainConfig) -> None:
    """One-line ``ValueError`` naming the key whose value is out of range (types already checked)."""
    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ValueError(f"{key} must be {what}, got {getattr(c, key)!r}")

    for key in ("train_size", "val_size", "test_size"):
        size = getattr(c, key)
        if isinstance(size, float):
            need(0 <= size <= 1, key, "a count >= 0 or a fraction in [0, 1]")
        elif size is not None:
            need(size >= 0, key, "a count >= 0 or a fraction in [0, 1]")
    need(c.train_size > 0, "train_size", "> 0")
    need(c.val_size > 0, "val_size", "> 0 (validation drives the learning-rate schedule, "
         "early stopping and the best checkpoint)")
    need(c.seed >= 0, "seed", ">= 0")
    need(c.precision in ("float32", "float64"), "precision", "float32 or float64")
    need(c.objective in OBJECTIVES, "objective", f"one of {', '.join(OBJECTIVES)}")
    if c.energy_weight < 0 or c.forces_weight < 0 or c.energy_weight + c.forces_weight == 0:
        raise ValueError("energy_weight and forces_weight must be >= 0 and not both 0")
    need(c.lr > 0, "lr", "> 0")
    need(c.lr_min >= 0, "lr_min", ">= 0")
    need(0 < c.lr_factor < 1, "lr_factor", "in (0, 1)")
    need(0 <= c.ema_decay < 1, "ema_decay", "in [0, 1) (0 = off)")
    for key in ("loss_ema_alpha_energy", "loss_ema_alpha_forces"):
        need(0 < getattr(c, key) <= 1, key, "in (0, 1] (1 = off)")
    for key in ("weight_decay", "gradient_clip", "lr_warmup_steps", "lr_patience", "early_stopping_patience"):
        need(getattr(c, key) >= 0, key, ">= 0")
    for key in ("batch_size", "inference_batch_size", "checkpoint_every_n_steps", "log_every_n_steps", "num_nodes"):
        need(getattr(c, key) >= 1, key, ">= 1")
    need(c.max_epochs == -1 or c.max_epochs >= 1, "max_epochs", ">= 1 (or -1: no limit)")
    need(c.max_steps == -1 or c.max_steps >= 1, "max_steps", ">= 1 (or -1: no limit)")
    need(c.max_time is None or parse_max_time(c.max_time) is not None, "max_time",
         "a duration DD:HH:MM:SS such as 00:12:00:00 (12 hours), or null")
    need(c.accelerator in ACCELERATORS, "accelerator", f"one of {', '.join(ACCELERATORS)}")
    need(c.devices == "auto" or (isinstance(c.devices, int) and (c.devices >= 1 or c.devices == -1))
         or (isinstance(c.devices, str) and re.fullmatch(r"-1|\d+(,\d+)*,?", c.devices) is not None), "devices",
         "a count >= 1, -1 (all), 'auto' or a list of device ids such as '0,1'")
    need(bool(c.out_dir), "out_dir", "a folder")
    need(bool(c.model_name), "model_name", "a model name")
    if isinstance(c.atomrefs, str):
        need(bool(c.atomrefs), "atomrefs", "true, false, a mapping of element to energy, or an E0s file")
    if isinstance(c.atomrefs, dict):
        from ase.data import atomic_numbers

        for k, v in c.atomrefs.items():
            if k not in atomic_numbers or isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"atomrefs must map element symbols to energies in eV (E0s), got {k!r}: {v!r}")


def parse_max_time(text: str) -> datetime.timedelta | None:
    """Lightning's ``max_time`` string ``DD:HH:MM:SS`` as a duration > 0 (None when malformed)."""
    parts = text.strip().split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return None
    days, hours, minutes, seconds = map(int, parts)
    duration = datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    return duration if duration.total_seconds() > 0 else None


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides; dotted keys reach into mappings (``model.hidden_channels=64``,
    ``train.model.num_layers=4``), creating them when absent. ``values`` is not modified.

    Raises:
        ValueError: an override without ``=``, or a dotted key through a value that is not a mapping.
    """
    import copy

    values = copy.deepcopy(dict(values))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override '{item}' is not of the form key=value")
        key, text = item.split("=", 1)
        *path, last = key.split(".")
        target = values
        for i, part in enumerate(path):
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ValueError(f"override '{item}': {'.'.join(path[:i + 1])} is not a mapping")
        target[last] = _parse_value(text)
    return values


#: Config keys that are paths: relative ones in a config file are relative to that file
#: (``atomrefs`` only when it is a string: the path of an E0s file).
PATH_KEYS = ("data", "out_dir", "atomrefs")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config, apply overrides and validate.

    Relative paths (:data:`PATH_KEYS`) written in the file are relative to the file's folder; those
    given as overrides (``--set data=...``, ``--out``) and the defaults are relative to the working
    directory. All come back absolute, so a config written into a run directory means the same
    files wherever it is read from.

    Raises:
        ValueError: missing file, invalid YAML, unknown keys (named, with the nearest valid key),
            a value of the wrong type or out of range (named).
    """
    values = read_yaml(path)
    if path is not None:
        values = {k: _absolute(v, Path(path).parent) if k in PATH_KEYS else v for k, v in values.items()}
    values = apply_overrides(values, list(overrides))
    values = {k: _absolute(v, Path.cwd()) if k in PATH_KEYS else v for k, v in values.items()}
    config = TrainConfig.from_dict(values)
    return config if "out_dir" in values else config.replace(out_dir=_absolute(config.out_dir, Path.cwd()))


def _absolute(value: Any, folder: Path) -> Any:
    """``value`` as an absolute path against ``folder`` (``~`` expanded); non-paths unchanged."""
    if not isinstance(value, str) or not value:
        return value
    return os.path.normpath(Path(folder).absolute() / os.path.expanduser(value))


def read_yaml(path: str | Path | None) -> dict[str, Any]:
    """The mapping in a YAML config file (``{}`` for None).

    Raises:
        ValueError: missing file, invalid YAML, or not a mapping (one line, naming the file).
    """
    import yaml

    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of keys to values")
    return values
