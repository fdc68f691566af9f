"""The training configuration: one frozen dataclass, read from YAML with unknown keys rejected."""

from __future__ import annotations

import dataclasses
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
    ``ema_decay`` averages the weights (0 = off); ``loss_ema_alpha_*`` is TorchMD-NET's smoothing
    of the loss terms (``ema_alpha_y``/``ema_alpha_neg_dy``; 1 = off). Data keys are read by :func:`eqt.data.readers.read_frames`; ``model`` holds the model's own
    config keys (e.g. :class:`eqt.models.et.ETConfig`), validated when the model is built.
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
    atomrefs: bool = True
    checkpoint_every_n_steps: int = 500
    log_every_n_steps: int = 10
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    out_dir: str = "runs/et"
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.precision not in ("float32", "float64"):
            raise ValueError(f"precision must be float32 or float64, got '{self.precision}'")
        if self.energy_weight < 0 or self.forces_weight < 0 or self.energy_weight + self.forces_weight == 0:
            raise ValueError("energy_weight and forces_weight must be >= 0 and not both 0")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.objective == "forces" and (self.energy_weight != 0 or self.forces_weight <= 0):
            raise ValueError(f"objective 'forces' trains on forces alone: set energy_weight: 0 and forces_weight > 0 "
                             f"(got {self.energy_weight} and {self.forces_weight})")


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


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config, apply overrides and validate.

    Raises:
        ValueError: missing file, invalid YAML, unknown keys (named, with the nearest valid key).
    """
    return TrainConfig.from_dict(apply_overrides(read_yaml(path), list(overrides)))


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
