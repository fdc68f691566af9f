"""Checkpoints: ``state_dict`` + config + eqt version + conventions, never pickled modules.

A checkpoint file is a ``torch.save`` of a plain dictionary::

    {"format": "eqt-checkpoint", "format_version": 1, "eqt_version": "0.1.0",
     "model": "ET", "config": {...}, "state_dict": {...},
     "conventions": {"units": "eV, Å", ...}, "extra": {...}}

and loads with ``weights_only=True``. :func:`load_model` rebuilds the model from its registered
class and config, so renaming a Python module never breaks a checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

import eqt

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "load_energy_model", "energy_model_names",
           "CheckpointError"]

FORMAT, FORMAT_VERSION = "eqt-checkpoint", 1
CONVENTIONS = {"units": "energy eV, length Å, forces eV/Å, stress eV/Å^3",
               "edges": "edge_index[0]=source j, edge_index[1]=target i, r_ij = r_j - r_i"}


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt or incompatible."""


def _models() -> dict[str, Any]:
    from eqt.models.equiformer import Equiformer, EquiformerConfig
    from eqt.models.et import ET, ETConfig
    from eqt.models.gatr import GATr, GATrConfig
    from eqt.models.nbody import NBodyModel, NBodyModelConfig
    from eqt.models.rays import RayModelConfig, RayOccupancyModel
    from eqt.models.rigid import RigidBodyModel, RigidModelConfig
    from eqt.models.spin_transformer import SpinTransformer, SpinTransformerConfig
    from eqt.models.transformer import Transformer, TransformerConfig

    return {"ET": (ET, ETConfig), "GATr": (GATr, GATrConfig), "Transformer": (Transformer, TransformerConfig),
            "NBodyModel": (NBodyModel, NBodyModelConfig), "Equiformer": (Equiformer, EquiformerConfig),
            "SpinTransformer": (SpinTransformer, SpinTransformerConfig),
            "RigidBodyModel": (RigidBodyModel, RigidModelConfig),
            "RayOccupancyModel": (RayOccupancyModel, RayModelConfig)}


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, extra: dict[str, Any] | None = None) -> Path:
    """Write a model checkpoint atomically (a temporary file renamed into place).

    Args:
        path: destination file.
        model: a registered eqt model with a ``config``.
        extra: JSON-like metadata (training state, metrics, element list, ...).

    Returns:
        The path written.
    """
    name = type(model).__name__
    if name not in _models():
        raise CheckpointError(f"model class {name} is not registered in eqt.checkpoint")
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "eqt_version": eqt.__version__,
               "model": name, "config": model.config.to_dict(), "state_dict": model.state_dict(),
               "conventions": CONVENTIONS, "extra": extra or {}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint dictionary.

    Raises:
        CheckpointError: missing file, empty file, truncated or corrupt file (torch's own error,
            e.g. ``OSError: Invalid argument`` for half a zip, is reduced to one line naming the
            file), not an eqt checkpoint, or from an incompatible format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}" if not path.exists() else
                              f"checkpoint {path} is a folder, not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted copy or save? "
                              f"Copy it again or pick another checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types (EOFError, OSError, RuntimeError, ...) for bad files
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({size} bytes; torch.load: {detail}): "
                              f"copy it again or pick another checkpoint") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an eqt checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {payload.get('format_version')}, this eqt reads "
                              f"format {FORMAT_VERSION} (written by eqt {payload.get('eqt_version')})")
    return payload


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a model from a checkpoint (in eval mode).

    Raises:
        CheckpointError: as :func:`load_checkpoint`, or the weights do not fit the config.
    """
    return _build(path, load_checkpoint(path, map_location), map_location)


def _build(path: str | os.PathLike, payload: dict[str, Any], map_location: str | torch.device) -> torch.nn.Module:
    """The model of a checked checkpoint ``payload`` (read from ``path``), in eval mode."""
    models = _models()
    if payload["model"] not in models:
        raise CheckpointError(f"{path}: unknown model '{payload['model']}' (known: {', '.join(models)})")
    cls, config_cls = models[payload["model"]]
    model = cls(config_cls.from_dict(payload["config"]))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the config: {str(err).splitlines()[0]}") from None
    return model.to(map_location).eval()


def energy_model_names() -> list[str]:
    """Registered model classes that are energy models (usable by ``eqt test``, ``eqt md``, the ASE
    calculator): subclasses of :class:`eqt.models.base.EnergyModel`."""
    from eqt.models.base import EnergyModel

    return [name for name, (cls, _) in _models().items() if issubclass(cls, EnergyModel)]


def load_energy_model(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                      user: str = "this command", payload: dict[str, Any] | None = None) -> torch.nn.Module:
    """:func:`load_model`, refusing a checkpoint of a model that is not an energy model.

    The model class is checked before the model is built, so a GATr (or rigid-body, n-body, ...)
    checkpoint gives one line instead of a failure deep inside the first forward pass.

    Args:
        path: the checkpoint.
        map_location: where the weights are loaded.
        user: what needs the energy model, for the message (``"eqt md"``).
        payload: the checkpoint dictionary when already read by :func:`load_checkpoint` (saves a
            second read of a large file).

    Raises:
        CheckpointError: as :func:`load_model`, or the file holds another kind of model.
    """
    if payload is None:
        payload = load_checkpoint(path, map_location)
    names = energy_model_names()
    if payload.get("model") in _models() and payload["model"] not in names:
        raise CheckpointError(f"{path} holds a {payload['model']} model, but {user} needs an energy model "
                              f"({', '.join(names)})")
    return _build(path, payload, map_location)
