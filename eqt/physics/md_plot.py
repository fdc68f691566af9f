"""A picture of an MD run: temperature and energies against time, from :func:`eqt.physics.md.run_md`'s CSV log.

One PNG with two panels sharing the time axis (ps): the instantaneous temperature (K), and the
potential and total energy (eV, relative to the total energy of the first frame so that both fit
one axis). Energy drift in an NVE run, a thermostat that does not hold its temperature, or a
potential energy that falls off a cliff show at a glance.

matplotlib (``pip install eqt[train]``) is imported only here, with the Agg backend (no display).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from eqt.files import atomic_path

__all__ = ["plot_md_log"]


def plot_md_log(log: str | os.PathLike, path: str | os.PathLike, title: str | None = None) -> Path:
    """Draw the CSV log ``log`` (``step,time_fs,epot_eV,ekin_eV,etot_eV,temperature_K``) into the PNG ``path``.

    The file is written atomically (a complete picture or none).

    Args:
        log: the CSV log of :func:`eqt.physics.md.run_md`.
        path: the PNG to write.
        title: the figure title (default: the log's file name).

    Returns:
        ``path``.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: the log has no rows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log, path = Path(log), Path(path)
    rows = np.loadtxt(log, delimiter=",", skiprows=1, ndmin=2)
    if rows.size == 0:
        raise ValueError(f"{log} has no rows to plot")
    t_ps, epot, etot, temp = rows[:, 1] / 1000.0, rows[:, 2], rows[:, 4], rows[:, 5]
    ref = etot[0]
    fig, (ax_t, ax_e) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax_t.plot(t_ps, temp, lw=0.9, color="tab:red")
    ax_t.set_ylabel("temperature (K)")
    ax_e.plot(t_ps, epot - ref, lw=0.9, label="potential")
    ax_e.plot(t_ps, etot - ref, lw=0.9, label="total")
    ax_e.set_ylabel(f"energy - {ref:.6g} eV (eV)")
    ax_e.set_xlabel("time (ps)")
    ax_e.legend(loc="best", fontsize=8)
    fig.suptitle(title if title is not None else log.name)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path
