"""``make demo``: the main job of eqt end to end, on its own data (nothing from ../shared).

1. sample ethanol configurations by GFN2-xTB Langevin MD at 500 K (tblite), labelled on the fly;
2. train a small ET on energies and forces (Lightning, with checkpoints; rerunning resumes);
3. test it on the held-out frames (error table + parity plot);
4. run 1 ps of Langevin MD at 300 K with the trained model through the ASE calculator.

    python -m eqt.demo [--out demo_out] [--frames 2000] [--minutes 4]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_out")
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--minutes", type=float, default=4.0, help="training wall-clock budget")
    p.add_argument("--md-steps", type=int, default=2000, help="0.5 fs steps (2000 = 1 ps)")
    a = p.parse_args(argv)

    import ase.io
    import torch
    from ase.build import molecule

    from eqt.checkpoint import load_model
    from eqt.data.dataset import load_splits
    from eqt.data.readers import read_frames
    from eqt.physics.calculator import Calculator
    from eqt.physics.md import MDConfig, run_md
    from eqt.physics.reference import sample_md
    from eqt.train.config import TrainConfig
    from eqt.train.evaluate import evaluate, format_table, parity_plot
    from eqt.train.run import train

    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "ethanol_gfn2_500K.xyz"
    t0 = time.time()
    if not data.exists():
        print(f"[1/4] sampling {a.frames} ethanol frames with GFN2-xTB MD at 500 K (tblite) ...", flush=True)
        frames = sample_md(molecule("CH3CH2OH"), temperature_K=500.0, n_frames=a.frames, interval=5, seed=0)
        tmp = out / "ethanol.tmp.xyz"
        ase.io.write(tmp, frames, format="extxyz", write_results=False)
        tmp.replace(data)
    print(f"[1/4] data: {data} ({time.time() - t0:.0f} s)", flush=True)

    n = len(read_frames(data))
    n_train, n_val = int(0.5 * n), int(0.05 * n)
    config = TrainConfig(
        data=str(data), train_size=n_train, val_size=n_val, test_size=None, seed=1,
        model={"hidden_channels": 64, "num_layers": 3, "num_heads": 4, "num_rbf": 16, "cutoff_upper": 4.0},
        energy_weight=0.05, forces_weight=0.95, lr=1e-3, lr_warmup_steps=100, lr_patience=5, lr_factor=0.8,
        batch_size=16, inference_batch_size=64, max_epochs=1000, max_time=f"00:00:{int(a.minutes):02d}:{int(60 * (a.minutes % 1)):02d}",
        early_stopping_patience=50, ema_decay=0.99, checkpoint_every_n_steps=200, out_dir=str(out / "train"),
        progress_bar=False)
    print(f"[2/4] training a small ET ({n_train} train / {n_val} val frames, {a.minutes:g} min budget) ...", flush=True)
    res = train(config)
    print(f"[2/4] model: {res['model_path']} ({time.time() - t0:.0f} s)", flush=True)

    print("[3/4] testing on the held-out frames ...", flush=True)
    frames = read_frames(data)
    test = frames.subset(load_splits(Path(config.out_dir) / "splits.npz")["test"])
    metrics = evaluate(load_model(res["model_path"]), test)
    table = format_table(metrics)
    (out / "test_metrics.txt").write_text(table + "\n")
    plot = parity_plot(metrics, out / "parity.png")
    print(table, flush=True)

    print(f"[4/4] {a.md_steps * 0.5 / 1000:g} ps of Langevin MD at 300 K with the trained model (ASE) ...", flush=True)
    atoms = test.to_ase()[0]
    atoms.calc = Calculator(res["model_path"])
    md = run_md(atoms, atoms.calc, MDConfig(steps=a.md_steps, timestep_fs=0.5, temperature_K=300.0, log_interval=10),
                trajectory=out / "md.traj", log=out / "md.csv")
    print(f"      mean T {md.mean_temperature_K:.0f} K, energy drift {md.drift_eV_per_atom_per_ps:.2e} eV/atom/ps")
    print(f"\nDone in {time.time() - t0:.0f} s. Results in {out}/:\n"
          f"  data            {data}\n  model           {res['model_path']}\n"
          f"  training logs   {Path(config.out_dir) / 'logs'}\n  test table      {out / 'test_metrics.txt'}\n"
          f"  parity plot     {plot}\n  MD trajectory   {md.trajectory}\n  MD log          {md.log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
