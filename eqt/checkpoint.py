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

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "CheckpointError"]

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
        CheckpointError: missing file, not a checkpoint, corrupt, or from an incompatible format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {str(err).splitlines()[0]}") from None
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
    payload = load_checkpoint(path, map_location)
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
