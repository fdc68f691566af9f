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
    """A file readable by ASE (its last frame), or the name of a molecule in ASE's g2 collection (e.g. CH3CH2OH)."""
    import ase.io
    from ase.build import molecule
    from ase.collections import g2

    path = Path(spec)
    if path.is_file():
        if path.stat().st_size == 0:
            raise ValueError(f"structure file {spec} is empty")
        try:
            return ase.io.read(spec)
        except Exception as err:  # ASE raises XYZError, UnknownFileTypeError, IndexError, ...
            text = str(err).strip().splitlines()
            hint = "an unknown element symbol?" if isinstance(err, KeyError) else \
                "is it truncated, or not in a format ASE reads?"
            raise ValueError(f"structure file {spec} cannot be read ({type(err).__name__}: "
                             f"{text[0] if text else ''}); {hint}") from None
    if path.is_dir():
        raise ValueError(f"structure {spec} is a folder, not a structure file")
    if spec in g2.names:
        return molecule(spec)
    raise ValueError(f"structure '{spec}' is neither a file nor a molecule name of ASE's g2 set")


def cmd_train(a) -> None:
    """Train or resume (docs/training.md): paths in the config file are relative to it, those given
    here (``--set data=...``, ``--out``) to the working directory; results on stdout, progress on stderr."""
    from eqt.train.config import load_config
    from eqt.train.run import train

    overrides = list(a.set or []) + ([f"out_dir={a.out}"] if a.out else [])
    res = train(load_config(a.config, overrides))
    print(f"model: {res['model_path']}")
    for split in ("val", "test"):
        if res[split]:
            e, f = res[split].get(f"{split}_energy_mae"), res[split].get(f"{split}_forces_mae")
            print(f"{split}: " + ", ".join(([f"energy MAE {1e3 * e:.2f} meV"] if e is not None else [])
                                           + ([f"force MAE {1e3 * f:.2f} meV/Å"] if f is not None else [])))


def cmd_test(a) -> None:
    """``eqt test``: error table (and parity plot) of an energy model on labelled frames.

    Everything that can be checked cheaply is checked before the evaluation (minutes for a few
    thousand frames on a CPU): the device, the plot's path (refused when it exists, unless
    ``--force``; its folder must be writable) and matplotlib, the checkpoint (an energy model),
    the data file and its elements.
    """
    import importlib.util

    from ase.data import chemical_symbols

    from eqt.checkpoint import load_checkpoint, load_energy_model
    from eqt.data.readers import read_frames
    from eqt.files import check_output
    from eqt.physics.calculator import check_device
    from eqt.train.evaluate import evaluate, format_table, parity_plot

    device = check_device(a.device)
    if a.plot:
        check_output(a.plot, force=a.force, what="--plot")
        if importlib.util.find_spec("matplotlib") is None:
            raise ValueError("--plot needs matplotlib (pip install matplotlib)")
    payload = load_checkpoint(a.checkpoint)
    model = load_energy_model(a.checkpoint, user="eqt test", payload=payload)
    frames = read_frames(a.data, energy_key=a.energy_key, forces_key=a.forces_key, units=a.units,
                         require_energy=True, require_forces=False)
    known = (payload.get("extra") or {}).get("elements")
    if known:
        for f, zs in enumerate(frames.z):
            unseen = sorted(set(int(z) for z in zs) - set(known))
            if unseen:
                raise ValueError(f"{a.data}: frame {f} has element(s) {', '.join(chemical_symbols[z] for z in unseen)} "
                                 f"that the model never saw in training (it knows "
                                 f"{', '.join(chemical_symbols[z] for z in known)})")
    res = evaluate(model, frames, batch_size=a.batch_size, device=device, progress=True)
    print(format_table(res, units=a.report_units))
    if a.plot:
        print(f"parity plot: {parity_plot(res, a.plot)}")


def _as_options(err: ValueError, names: dict[str, str]) -> ValueError:
    """``err`` with the API's argument names replaced by the command's options (``err`` itself when
    it names none of them), so that a message says what the user typed."""
    text = str(err)
    for name, option in names.items():
        text = text.replace(name, option)
    return err if text == str(err) else ValueError(text)


#: MDConfig fields as ``eqt md`` options, for its messages.
_MD_OPTIONS = {"timestep_fs": "--timestep", "temperature_K": "--temperature", "steps": "--steps",
               "log_interval": "--log-interval", "seed": "--seed", "integrator": "--integrator"}


def cmd_md(a) -> None:
    """``eqt md``: resumable MD with a trained energy model into ``--out``.

    Order: everything cheap is checked before the model is loaded (device, settings, the output
    folder, the structure file, existing outputs or a resumable state), then the structure is
    checked against the model (elements, one energy evaluation), then the run. ``--out`` is
    locked (:class:`eqt.files.RunLock`) for the whole command.

    Outputs in ``--out``: ``md.traj``, ``md.csv``, ``md.png``; while running ``md.traj.partial``,
    ``md.csv.partial`` and ``md.state.npz``. A rerun of the same command resumes from the state
    (with or without ``--force``); a state of other settings is refused, or discarded with
    ``--force``; finished outputs are refused, or replaced with ``--force``.
    """
    import contextlib

    from eqt.checkpoint import CheckpointError
    from eqt.files import RunLock, check_output, check_writable_dir, file_digest
    from eqt.physics.calculator import Calculator, check_device
    from eqt.physics.md import MDConfig, check_resume, check_structure, run_md

    check_device(a.device)
    try:
        cfg = MDConfig(integrator=a.integrator, timestep_fs=a.timestep, temperature_K=a.temperature, steps=a.steps,
                       log_interval=a.log_interval, seed=a.seed)
    except ValueError as err:
        raise _as_options(err, {f"MDConfig.{k}": v for k, v in _MD_OPTIONS.items()}) from None
    out = check_writable_dir(a.out, "--out folder")
    atoms = _read_structure(a.structure)  # a file or a g2 name; a one-line error naming it
    try:
        check_structure(atoms, cfg.min_distance)
    except ValueError as err:
        raise ValueError(f"structure {a.structure}: {err}") from None
    if not Path(a.checkpoint).is_file():
        raise CheckpointError(f"checkpoint not found: {a.checkpoint}")
    run_info = {"checkpoint": file_digest(a.checkpoint), "dtype": a.dtype}
    traj, log, png, state = out / "md.traj", out / "md.csv", out / "md.png", out / "md.state.npz"
    with RunLock(out, "eqt md"):
        try:
            resume = check_resume(state, atoms, cfg, run_info)
        except ValueError as err:  # another run's state (MDStateMismatch), or an unreadable one
            if not a.force:
                raise
            print(f"eqt md: --force: discarding {state} ({_first_line(err)})", file=sys.stderr)
            state.unlink()
            resume = None
        if resume is None:
            for p in (traj, log, png):
                check_output(p, force=a.force, what="output")
            for p in (traj, log, png):  # --force: no finished file of the old run next to the new one
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        calc = Calculator(a.checkpoint, dtype=_dtype(a.dtype), device=a.device, graphed=a.graphed)
        try:
            calc.check_elements(atoms.numbers)
            atoms.calc = calc
            atoms.get_forces()
        except ValueError as err:
            raise ValueError(f"structure {a.structure}: {_first_line(err)}") from None
        res = run_md(atoms, calc, cfg, trajectory=traj, log=log, state=state, state_every=a.state_every,
                     run_info=run_info, progress=True)
        print(f"{res.steps_done} steps, mean T {res.mean_temperature_K:.1f} K, "
              f"energy drift {res.drift_eV_per_atom_per_ps:.2e} eV/atom/ps")
        print(f"trajectory: {res.trajectory}\nlog: {res.log}")
        title = f"{atoms.get_chemical_formula()}, {cfg.integrator}, {cfg.temperature_K:g} K, {cfg.timestep_fs:g} fs"
        try:
            from eqt.physics.md_plot import plot_md_log

            print(f"plot: {plot_md_log(log, png, title=title)}")
        except ImportError:
            print(f"eqt md: matplotlib is not installed, {png} not written (pip install matplotlib)",
                  file=sys.stderr)


#: sample_md's arguments as ``eqt data sample`` options, for its messages.
_SAMPLE_OPTIONS = {"temperature_K": "--temperature", "timestep_fs": "--timestep", "n_frames": "--frames",
                   "equilibration_steps": "--equilibration", "friction_per_fs": "friction"}


def cmd_sample(a) -> None:
    from eqt.physics.reference import sample_md_to_file

    if a.equilibration < 0:
        raise ValueError(f"--equilibration must be 0 or more steps, got {a.equilibration}")
    try:
        res = sample_md_to_file(_read_structure(a.structure), a.output, force=a.force, temperature_K=a.temperature,
                                n_frames=a.frames, interval=a.interval, equilibration_steps=a.equilibration,
                                timestep_fs=a.timestep, seed=a.seed, method=a.method, accuracy=a.accuracy,
                                source=a.structure, progress=True)
    except ValueError as err:  # name the options, not sample_md's arguments
        named = _as_options(err, _SAMPLE_OPTIONS)
        if named is err:
            raise
        raise named from None
    resumed = f" ({res.resumed_from} of them from the interrupted run)" if res.resumed_from else ""
    print(f"{res.frames} frames labelled with {a.method}{resumed}: {res.path}")


def cmd_label(a) -> None:
    from eqt.physics.reference import LabelError, label_to_file, read_structures

    structures = read_structures(a.input)
    try:
        res = label_to_file(structures, a.output, a.method, force=a.force, skip_failed=a.skip_failed,
                            source=a.input, charge=a.charge, accuracy=a.accuracy, progress=True)
    except LabelError as err:
        if a.skip_failed or err.index is None:
            raise
        raise LabelError(f"{err}; pass --skip-failed to leave such frames out",
                         err.index, err.reason) from None
    if res.skipped:
        shown = ", ".join(str(i) for i, _ in res.skipped[:10]) + (", ..." if len(res.skipped) > 10 else "")
        print(f"eqt: skipped {len(res.skipped)} frame(s) of {a.input} that cannot be labelled: {shown} "
              f"(reasons in {res.skipped_path})", file=sys.stderr)
    resumed = f" ({res.resumed_from} of them from the interrupted run)" if res.resumed_from else ""
    print(f"{res.frames} structures labelled with {a.method}{resumed}: {res.path}")


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
    """Write ``frames`` as extended XYZ; ``path`` is replaced only once the new file is complete."""
    import ase.io

    from eqt.files import atomic_path

    with atomic_path(path) as tmp:
        ase.io.write(tmp, frames, format="extxyz", write_results=False)


def _dtype(name: str):
    """The torch dtype of a ``--dtype`` value (``float32`` or ``float64``)."""
    import torch

    dtypes = {"float32": torch.float32, "float64": torch.float64}
    if name not in dtypes:
        raise ValueError(f"--dtype must be float32 or float64, got {name!r}")
    return dtypes[name]


def build_parser() -> argparse.ArgumentParser:
    import eqt

    p = argparse.ArgumentParser(prog="eqt", description="Equivariant transformer potentials: train, test, MD, data.")
    p.add_argument("--version", action="version", version=f"eqt {eqt.__version__}")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a potential from a YAML config (rerun the same command to resume)",
                       description="Train a potential. Rerunning the same command resumes the run in its out_dir; "
                                   "a different run there (other data, model, lr, ...) is refused. Relative paths "
                                   "in CONFIG are relative to CONFIG's folder, those on the command line to the "
                                   "working directory. See docs/training.md.")
    t.add_argument("config", help="YAML file (see configs/)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set max_epochs=100 --set model.num_layers=4")
    t.add_argument("--out", help="output directory (overrides out_dir)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("test", help="errors of a trained model on labelled data, with a parity plot")
    e.add_argument("checkpoint")
    e.add_argument("data", help="extxyz, ASE db or sGDML npz")
    e.add_argument("--energy-key")
    e.add_argument("--forces-key")
    e.add_argument("--units", help="units of the file: eV (default) or kcal/mol")
    e.add_argument("--batch-size", type=positive_int, default=64)
    e.add_argument("--device", default="cpu", help="where the model runs, e.g. cuda")
    e.add_argument("--report-units", default="eV", choices=["eV", "kcal/mol"], help="units of the error table")
    e.add_argument("--plot", help="write a parity plot PNG here (refused if it exists, unless --force)")
    e.add_argument("--force", action="store_true", help="overwrite an existing --plot file")
    e.set_defaults(func=cmd_test)

    m = sub.add_parser("md", help="molecular dynamics with a trained model (ASE); resumes a killed run")
    m.add_argument("checkpoint")
    m.add_argument("structure", help="structure file or a g2 molecule name such as CH3CH2OH")
    m.add_argument("--integrator", default="langevin", choices=["langevin", "verlet"])
    m.add_argument("--steps", type=positive_int, default=2000)
    m.add_argument("--timestep", type=float, default=0.5, help="fs")
    m.add_argument("--temperature", type=float, default=300.0, help="K")
    m.add_argument("--log-interval", type=positive_int, default=10, help="steps between log rows and frames")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    m.add_argument("--device", default="cpu", help="where the model runs, e.g. cuda")
    m.add_argument("--graphed", action="store_true",
                   help="energy + forces as one CUDA graph per step (non-periodic; see eqt.physics.graphed)")
    m.add_argument("--out", default="md_out", help="output folder: md.traj, md.csv, md.png (locked while running)")
    m.add_argument("--state-every", type=positive_int, default=100,
                   help="steps between saves of the resumable state md.state.npz (also saved on Ctrl-C)")
    m.add_argument("--force", action="store_true",
                   help="replace finished outputs in --out, or discard a resumable state of other settings "
                        "(a state of the same settings is always resumed)")
    m.set_defaults(func=cmd_md)

    d = sub.add_parser("data", help="make reference data with real electronic-structure codes")
    dsub = d.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("sample", help="GFN2-xTB (tblite) Langevin MD, frames labelled on the fly (resumable)",
                        description="GFN-xTB Langevin MD; frames go to OUTPUT.partial as they are made, and a "
                                    "killed or interrupted run resumes when the same command is rerun.")
    s.add_argument("structure", help="structure file or a g2 molecule name such as CH3CH2OH")
    s.add_argument("output", help="extxyz file to write")
    s.add_argument("--frames", type=positive_int, default=2000)
    s.add_argument("--interval", type=positive_int, default=5, help="MD steps between stored frames")
    s.add_argument("--equilibration", type=int, default=200, help="MD steps before the first frame")
    s.add_argument("--temperature", type=float, default=500.0, help="K")
    s.add_argument("--timestep", type=float, default=0.5, help="fs")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--method", default="GFN2-xTB", help="GFN2-xTB or GFN1-xTB (label with DFT afterwards)")
    s.add_argument("--accuracy", type=float, default=1.0, help="tblite accuracy factor (smaller is tighter)")
    s.add_argument("--force", action="store_true",
                   help="replace an existing OUTPUT (once the new one is complete); start over an unfinished run "
                        "with other settings")
    s.set_defaults(func=cmd_sample)
    lab = dsub.add_parser("label", help="label structures with GFN2-xTB (tblite) or PySCF (pyscf:PBE/def2-SVP); "
                                        "resumable",
                          description="Label every structure of INPUT; frames go to OUTPUT.partial as they are "
                                      "done, and a killed or interrupted run resumes when the same command is rerun.")
    lab.add_argument("input")
    lab.add_argument("output")
    lab.add_argument("--method", default="GFN2-xTB")
    lab.add_argument("--charge", type=int, default=0, help="total charge of every structure (e)")
    lab.add_argument("--accuracy", type=float, default=1.0, help="tblite accuracy factor (xTB only)")
    lab.add_argument("--skip-failed", action="store_true",
                     help="leave out frames that cannot be labelled (listed on stderr and in OUTPUT.skipped.txt) "
                          "instead of stopping")
    lab.add_argument("--force", action="store_true",
                     help="replace an existing OUTPUT (once the new one is complete); start over an unfinished run "
                          "with other settings")
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

    name = getattr(err, "filename", None)
    where = f" ({name})" if name else ""
    if is_disk_full(err):
        return f"no space left on the device{where}; free some space and rerun the same command to resume"
    if name and isinstance(err, FileExistsError):
        return f"cannot create folder {name}: a file of that name is in the way"
    if name and isinstance(err, NotADirectoryError):
        return f"{name}: a part of this path is a file, not a folder"
    if name and isinstance(err, IsADirectoryError):
        return f"{name} is a folder, not a file"
    if name and isinstance(err, PermissionError):
        return f"permission denied: {name}"
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
