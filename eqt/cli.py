"""``eqt``: train, test and run potentials; sample and label data.

    eqt train CONFIG [--set key=value ...]
    eqt test CHECKPOINT DATA [--plot parity.png]
    eqt md CHECKPOINT STRUCTURE [--steps N --temperature K --timestep FS]
    eqt data sample STRUCTURE OUTPUT.xyz [--frames N --temperature K]
    eqt data label INPUT.xyz OUTPUT.xyz [--method GFN2-xTB]

User errors (bad files, configs, structures, unstable MD) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _read_structure(spec: str):
    """A file readable by ASE, or the name of a molecule in ASE's g2 collection (e.g. CH3CH2OH)."""
    import ase.io
    from ase.build import molecule
    from ase.collections import g2

    if Path(spec).is_file():
        return ase.io.read(spec)
    if spec in g2.names:
        return molecule(spec)
    raise ValueError(f"structure '{spec}' is neither a file nor a molecule name of ASE's g2 set")


def cmd_train(a) -> None:
    from eqt.train.config import load_config
    from eqt.train.run import train

    overrides = list(a.set or []) + ([f"out_dir={a.out}"] if a.out else [])
    res = train(load_config(a.config, overrides))
    print(f"model: {res['model_path']}")
    for split in ("val", "test"):
        if res[split]:
            e, f = res[split].get(f"{split}_energy_mae"), res[split].get(f"{split}_forces_mae")
            print(f"{split}: energy MAE {1e3 * e:.2f} meV" + (f", force MAE {1e3 * f:.2f} meV/Å" if f is not None else ""))


def cmd_test(a) -> None:
    from ase.data import chemical_symbols

    from eqt.checkpoint import load_checkpoint, load_model
    from eqt.data.readers import read_frames
    from eqt.train.evaluate import evaluate, format_table, parity_plot

    model = load_model(a.checkpoint)
    frames = read_frames(a.data, energy_key=a.energy_key, forces_key=a.forces_key, units=a.units,
                         require_energy=True, require_forces=False)
    known = load_checkpoint(a.checkpoint).get("extra", {}).get("elements")
    if known:
        for f, zs in enumerate(frames.z):
            unseen = sorted(set(int(z) for z in zs) - set(known))
            if unseen:
                raise ValueError(f"{a.data}: frame {f} has element(s) {', '.join(chemical_symbols[z] for z in unseen)} "
                                 f"that the model never saw in training (it knows "
                                 f"{', '.join(chemical_symbols[z] for z in known)})")
    res = evaluate(model, frames, batch_size=a.batch_size, device=a.device)
    print(format_table(res, units=a.report_units))
    if a.plot:
        print(f"parity plot: {parity_plot(res, a.plot)}")


def cmd_md(a) -> None:
    from eqt.physics.calculator import Calculator
    from eqt.physics.md import MDConfig, run_md

    atoms = _read_structure(a.structure)
    atoms.calc = Calculator(a.checkpoint, dtype=_dtype(a.dtype), device=a.device, graphed=a.graphed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = MDConfig(integrator=a.integrator, timestep_fs=a.timestep, temperature_K=a.temperature, steps=a.steps,
                   log_interval=a.log_interval, seed=a.seed)
    res = run_md(atoms, atoms.calc, cfg, trajectory=out / "md.traj", log=out / "md.csv")
    print(f"{res.steps_done} steps, mean T {res.mean_temperature_K:.1f} K, "
          f"energy drift {res.drift_eV_per_atom_per_ps:.2e} eV/atom/ps")
    print(f"trajectory: {res.trajectory}\nlog: {res.log}")


def cmd_sample(a) -> None:
    from eqt.physics.reference import sample_md

    frames = sample_md(_read_structure(a.structure), temperature_K=a.temperature, n_frames=a.frames,
                       interval=a.interval, seed=a.seed, method=a.method, progress=True)
    _write_atoms(a.output, frames)
    print(f"{len(frames)} frames labelled with {a.method}: {a.output}")


def cmd_label(a) -> None:
    import ase.io

    from eqt.physics.reference import label

    if not Path(a.input).is_file():
        raise ValueError(f"input file not found: {a.input}")
    structures = ase.io.read(a.input, ":")
    labelled = label(structures, a.method, progress=True)
    _write_atoms(a.output, labelled)
    print(f"{len(labelled)} structures labelled with {a.method}: {a.output}")


def cmd_nbody_data(a: argparse.Namespace) -> None:
    from eqt.data.nbody import generate

    sizes = None
    if a.size:
        sizes = {}
        for item in a.size:
            split, _, n = item.partition("=")
            if not n.isdigit():
                raise ValueError(f"--size expects SPLIT=N, got {item!r}")
            sizes[split] = int(n)
    paths = generate(a.output, sizes, seed=a.seed)
    print("\n".join(f"{split}: {path}" for split, path in paths.items()))


def _runs(module: str):
    """The handler of an experiment subcommand: ``module.run_from_args`` (imported when it runs)."""

    def handler(a: argparse.Namespace) -> None:
        import importlib

        importlib.import_module(module).run_from_args(a)

    return handler


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--batch-size 0`` is a usage error, not a crash)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _write_atoms(path: str, frames) -> None:
    import os

    import ase.io

    tmp = f"{path}.tmp"
    ase.io.write(tmp, frames, format="extxyz", write_results=False)
    os.replace(tmp, path)


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


def build_parser() -> argparse.ArgumentParser:
    import eqt

    p = argparse.ArgumentParser(prog="eqt", description="Equivariant transformer potentials: train, test, MD, data.")
    p.add_argument("--version", action="version", version=f"eqt {eqt.__version__}")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a potential from a YAML config (resumes a killed run)")
    t.add_argument("config", help="YAML file (see configs/)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    t.add_argument("--out", help="output directory (overrides out_dir)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("test", help="errors of a trained model on labelled data, with a parity plot")
    e.add_argument("checkpoint")
    e.add_argument("data", help="extxyz, ASE db or sGDML npz")
    e.add_argument("--energy-key")
    e.add_argument("--forces-key")
    e.add_argument("--units", help="units of the file: eV (default) or kcal/mol")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", default="cpu", help="where the model runs, e.g. cuda")
    e.add_argument("--report-units", default="eV", choices=["eV", "kcal/mol"], help="units of the error table")
    e.add_argument("--plot", help="write a parity plot PNG here")
    e.set_defaults(func=cmd_test)

    m = sub.add_parser("md", help="molecular dynamics with a trained model (ASE)")
    m.add_argument("checkpoint")
    m.add_argument("structure", help="structure file or a g2 molecule name such as CH3CH2OH")
    m.add_argument("--integrator", default="langevin", choices=["langevin", "verlet"])
    m.add_argument("--steps", type=int, default=2000)
    m.add_argument("--timestep", type=float, default=0.5, help="fs")
    m.add_argument("--temperature", type=float, default=300.0, help="K")
    m.add_argument("--log-interval", type=int, default=10)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    m.add_argument("--device", default="cpu", help="where the model runs, e.g. cuda")
    m.add_argument("--graphed", action="store_true",
                   help="energy + forces as one CUDA graph per step (non-periodic; see eqt.physics.graphed)")
    m.add_argument("--out", default="md_out")
    m.set_defaults(func=cmd_md)

    d = sub.add_parser("data", help="make reference data with real electronic-structure codes")
    dsub = d.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("sample", help="GFN2-xTB (tblite) Langevin MD, frames labelled on the fly")
    s.add_argument("structure", help="structure file or a g2 molecule name such as CH3CH2OH")
    s.add_argument("output", help="extxyz file to write")
    s.add_argument("--frames", type=int, default=2000)
    s.add_argument("--interval", type=int, default=5)
    s.add_argument("--temperature", type=float, default=500.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--method", default="GFN2-xTB")
    s.set_defaults(func=cmd_sample)
    lab = dsub.add_parser("label", help="label structures with GFN2-xTB (tblite) or PySCF (pyscf:PBE/def2-SVP)")
    lab.add_argument("input")
    lab.add_argument("output")
    lab.add_argument("--method", default="GFN2-xTB")
    lab.set_defaults(func=cmd_label)
    nb = dsub.add_parser("nbody", help="simulate GATr's n-body splits (star + planets, Newtonian gravity)")
    nb.add_argument("output", help="folder for {split}.npz and meta.json")
    nb.add_argument("--size", action="append", metavar="SPLIT=N",
                    help="samples of a split (repeatable; default: the reference sizes of every split)")
    nb.add_argument("--seed", type=int, default=0)
    nb.set_defaults(func=cmd_nbody_data)
    from eqt.data import polymers

    polymers.add_arguments(dsub.add_parser("polymers", help="capped polymer oligomers (RDKit), GFN2-xTB MD "
                                                             "samples and labels, extended XYZ")
                           ).set_defaults(func=_runs("eqt.data.polymers"))

    from eqt.train import nbody, polyget, polyget_md, rays, rigid, scaling, slmc

    experiments = {
        "nbody": (nbody, "GATr's n-body experiment: E-, P-, iP-, C-GATr and a transformer, one table"),
        "slmc": (slmc, "self-learning Monte Carlo: exact data, linear and transformer effective models, SLMC "
                       "acceptance vs depth"),
        "rigid": (rigid, "one rigid-body run (MuJoCo data): GATr or a transformer, FLOPs counted, resumable"),
        "polyget": (polyget, "PolyGET: force-only vs joint ET training, unseen polymer families, long chains"),
        "polyget-md": (polyget_md, "PolyGET MD robustness: batched ML trajectories of unseen polymers, failures, "
                                   "bond/angle distributions vs GFN2-xTB MD"),
        "rays": (rays, "ray-space reconstruction: equivariant model vs transformer, I/SO3 train/test frames, IoU"),
        "scaling": (scaling, "rigid-body scaling sweep (size x steps x data, resumable, shardable) and its fits"),
    }
    for name, (module, text) in experiments.items():
        module.add_arguments(sub.add_parser(name, help=text)).set_defaults(func=_runs(module.__name__))
    return p


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are a user's mistake (bad file, config, structure) or an unstable run."""
    from eqt.checkpoint import CheckpointError

    errors: tuple[type[BaseException], ...] = (ValueError, CheckpointError, FileNotFoundError, ImportError)
    try:
        from eqt.physics.md import MDInstabilityError

        errors += (MDInstabilityError,)
    except ImportError:  # pragma: no cover - ase missing
        pass
    return errors


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _os_error(err: OSError) -> str:
    """One line for an operating-system error: what failed, and where."""
    from eqt.files import is_disk_full

    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    if is_disk_full(err):
        return f"no space left on the device{where}; free some space and rerun the same command to resume"
    return f"{err.strerror or _first_line(err)}{where}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    0: done. 2: an error, reported as one line on stderr (``--debug`` shows the traceback).
    130: interrupted (Ctrl-C); what was written so far is kept, and rerunning the same command
    resumes where that command supports it.
    """
    import os
    import traceback

    args = build_parser().parse_args(argv)
    debug = bool(args.debug or os.environ.get("EQT_DEBUG"))
    errors = _user_errors()
    try:
        args.func(args)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"eqt: interrupted; what was written so far is kept; {_RESUME.get(args.command, 'rerun to start again')}",
              file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 - the one place that turns errors into messages
        if debug:
            traceback.print_exc()
        if isinstance(err, errors):
            text = _first_line(err)
        elif isinstance(err, OSError):
            text = _os_error(err)
        else:  # a bug of eqt or a library: still one line, with the way to see more
            text = f"internal error: {type(err).__name__}: {_first_line(err)} (rerun with --debug for the traceback)"
        print(f"eqt: error: {text}", file=sys.stderr)
        return 2
    return 0


#: What Ctrl-C tells the user, per command.
_RESUME = {"train": "rerun the same command to resume from the last checkpoint",
           "md": "rerun the same command to resume the trajectory",
           "data": "rerun the same command to resume (frames already written are kept)",
           "test": "rerun to evaluate again"}


if __name__ == "__main__":
    sys.exit(main())
