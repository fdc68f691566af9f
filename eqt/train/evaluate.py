"""Evaluate a potential on labelled frames: error table, per-element force errors, parity plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import units as ase_units
from ase.data import chemical_symbols

from eqt.physics.potential import Potential

__all__ = ["evaluate", "format_table", "parity_plot"]


def evaluate(model: torch.nn.Module, frames, batch_size: int = 64, dtype: torch.dtype = torch.float32,
             device: str | torch.device = "cpu", progress: bool = False) -> dict[str, Any]:
    """Energies and forces of ``model`` against the labels of ``frames``.

    Args:
        model: an energy model.
        frames: :class:`eqt.data.readers.Frames` with energies (and forces).
        batch_size: frames per call (>= 1).
        dtype: evaluation dtype.
        device: where the model runs (the metrics are computed on the host); checked by
            :func:`eqt.physics.calculator.check_device` (``ValueError`` when this machine lacks it).
        progress: a progress line on stderr (frames done/total, frames/s, ETA;
            :class:`eqt.progress.Progress`). Off by default for the Python API, on in ``eqt test``
            (1,800 ethanol frames take about a minute on one CPU core).

    Returns:
        Metrics in meV and meV/Å: ``energy_mae``, ``energy_rmse``, ``energy_mae_per_atom``,
        ``forces_mae``, ``forces_rmse``, ``forces_mae_by_element`` (symbol -> meV/Å), and the raw
        arrays ``energy_pred/energy_ref`` (eV) and ``forces_pred/forces_ref`` (eV/Å, flattened).
    """
    from eqt.data.dataset import AtomsDataset, collate_atoms
    from eqt.physics.calculator import check_device
    from eqt.progress import Progress

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be an integer >= 1, got {batch_size!r}")
    device = check_device(device)
    model = model.to(dtype=dtype, device=device).eval()
    pot = Potential(model)
    ds = AtomsDataset(frames, dtype=dtype)
    e_pred, e_ref, f_pred, f_ref, zs, natoms = [], [], [], [], [], []
    bar = Progress(total=len(ds), what="test", unit="frame", enabled=progress)
    for start in range(0, len(ds), batch_size):
        b = collate_atoms([ds[i] for i in range(start, min(start + batch_size, len(ds)))])
        on = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in b.items()}
        out = pot(on["z"], on["pos"], on["batch"], cell=on.get("cell"), pbc=on.get("pbc"),
                  num_systems=b["num_systems"], forces=frames.forces is not None)
        out = {k: v.detach().cpu() for k, v in out.items() if torch.is_tensor(v)}
        e_pred.append(out["energy"].double().numpy())
        e_ref.append(b["energy"].double().numpy())
        natoms.append(torch.bincount(b["batch"], minlength=b["num_systems"]).numpy())
        if frames.forces is not None:
            f_pred.append(out["forces"].double().numpy())
            f_ref.append(b["forces"].double().numpy())
            zs.append(b["z"].numpy())
        bar.update(min(start + batch_size, len(ds)))
    bar.close()
    e_pred, e_ref, natoms = np.concatenate(e_pred), np.concatenate(e_ref), np.concatenate(natoms)
    de = e_pred - e_ref
    res: dict[str, Any] = {"n_frames": len(e_ref), "energy_mae": 1e3 * np.abs(de).mean(),
                           "energy_rmse": 1e3 * np.sqrt((de ** 2).mean()),
                           "energy_mae_per_atom": 1e3 * np.abs(de / natoms).mean(),
                           "energy_pred": e_pred, "energy_ref": e_ref}
    if f_pred:
        fp, fr, z = np.concatenate(f_pred), np.concatenate(f_ref), np.concatenate(zs)
        df = fp - fr
        res.update(forces_mae=1e3 * np.abs(df).mean(), forces_rmse=1e3 * np.sqrt((df ** 2).mean()),
                   forces_mae_by_element={chemical_symbols[e]: 1e3 * np.abs(df[z == e]).mean() for e in np.unique(z)},
                   forces_pred=fp.ravel(), forces_ref=fr.ravel())
    return res


def format_table(res: dict[str, Any], units: str = "eV") -> str:
    """A plain-text table of :func:`evaluate` metrics, in meV (``units="eV"``) or kcal/mol."""
    if units not in ("eV", "kcal/mol"):
        raise ValueError(f"units must be eV or kcal/mol, got '{units}'")
    k = 1.0 if units == "eV" else 1e-3 * ase_units.eV / (ase_units.kcal / ase_units.mol)
    e, f = ("meV", "meV/Å") if units == "eV" else ("kcal/mol", "kcal/mol/Å")
    lines = [f"frames: {res['n_frames']}", "", f"{'quantity':<26}{'MAE':>12}{'RMSE':>12}",
             f"{f'energy ({e})':<26}{k * res['energy_mae']:>12.4g}{k * res['energy_rmse']:>12.4g}",
             f"{f'energy/atom ({e})':<26}{k * res['energy_mae_per_atom']:>12.4g}{'':>12}"]
    if "forces_mae" in res:
        lines.append(f"{f'forces ({f})':<26}{k * res['forces_mae']:>12.4g}{k * res['forces_rmse']:>12.4g}")
        lines += ["", f"force MAE by element ({f}):"]
        lines += [f"  {sym:<4}{k * mae:>10.4g}" for sym, mae in res["forces_mae_by_element"].items()]
    return "\n".join(lines)


def parity_plot(res: dict[str, Any], path: str | Path) -> Path:
    """Energy and force parity plots as one PNG (needs matplotlib: ``pip install eqt[train]``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("energy", "eV", res["energy_ref"], res["energy_pred"])]
    if "forces_pred" in res:
        panels.append(("force component", "eV/Å", res["forces_ref"], res["forces_pred"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6))
    for ax, (name, unit, ref, pred) in zip(np.atleast_1d(axes), panels):
        ax.scatter(ref, pred, s=3, alpha=0.5)
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"reference {name} ({unit})")
        ax.set_ylabel(f"predicted {name} ({unit})")
        mae = res["energy_mae"] if name == "energy" else res["forces_mae"]
        ax.set_title(f"{name}: MAE {mae:.2f} m{unit}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
