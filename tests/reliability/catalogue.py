"""The bad-input catalogue: what eqt does with wrong, corrupt or unusual input, case by case.

Each :class:`Case` is one kind of input a person might give, to the command line (run in-process
through :func:`eqt.cli.main`) or to the Python API. Every case runs in a fresh copy of one small
workspace (a tiny trained run, labelled GFN2-xTB frames, checkpoints, good and broken files) and
is put in one category:

``clear error``
    the expected refusal: exit status 2 with one line ``eqt: error: ...`` (or argparse's usage
    error) on stderr, or for the API an exception of the expected type, whose message says what
    and where (``Case.match``), and no traceback.
``accepted``
    the input is valid (or converted, as documented) and the command or call succeeds
    (``Case.check`` verifies the result where there is one).
``traceback``
    an exception escaped the command line (a bare Python traceback).
``cryptic``
    an error, but not the one expected: the wrong type, a message that does not say what and
    where, ``internal error``, or a failure where success was expected.
``silent wrong``
    success (exit 0) where the input should have been refused.

Independently of the category, every file that was in the workspace before the case must be
byte-identical after it ("nothing already on disk changed"); a case that changes one counts as
``lost work`` (for cases whose job is to write a file, ``Case.writes`` names the files it may
create or change).

Run as a script (``python -m tests.reliability.catalogue``) it prints the table of
``docs/reliability.md``; ``tests/reliability/test_catalogue.py`` runs every case in ``make test``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import io
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CATEGORIES = ("clear error", "accepted", "traceback", "cryptic", "silent wrong")


@dataclasses.dataclass(frozen=True)
class Case:
    """One input of the catalogue.

    Attributes:
        id: short unique name.
        area: ``train``, ``test``, ``md``, ``data sample``, ``data label``, ``cli``, ``config``,
            ``checkpoint``, ``readers``, ``Potential``, ``Calculator``, ``MD API``.
        what: the input, in words (the table's text).
        argv: command-line arguments (workspace-relative paths), or None for an API case.
        call: for an API case, ``call(ws)`` does it (raises or returns).
        expect: ``"error"`` or ``"accepted"``.
        match: what the error message must say (what and where): a regex, whose parts
            separated by ``.*`` may appear in any order (``"nan\\.xyz.*frame 1"``).
        errors: exception types an API case may raise (default ValueError, which includes
            eqt's CheckpointError and OutputError).
        check: ``check(ws, result)`` for an accepted case: raises AssertionError if the result is
            wrong (``result`` is the API return value, or the CLI's stdout).
        writes: workspace-relative files (glob patterns) an accepted case may change.
        setup: ``setup(ws)`` prepares the copy of the workspace before the case.
    """

    id: str
    area: str
    what: str
    argv: tuple[str, ...] | None = None
    call: Callable[[Path], Any] | None = None
    expect: str = "error"
    match: str = ""
    errors: tuple[type[BaseException], ...] = (ValueError,)
    check: Callable[[Path, Any], None] | None = None
    writes: tuple[str, ...] = ()
    setup: Callable[[Path], None] | None = None


@dataclasses.dataclass
class Outcome:
    """The result of running one case."""

    category: str
    message: str
    changed: list[str]

    @property
    def lost_work(self) -> bool:
        return bool(self.changed)


# --------------------------------------------------------------------------------------------------
# the workspace
# --------------------------------------------------------------------------------------------------
TINY_MODEL = {"hidden_channels": 8, "num_layers": 1, "num_heads": 2, "num_rbf": 4, "cutoff_upper": 3.0}

TRAIN_YAML = """\
data: data.xyz
train_size: 6
val_size: 2
test_size: null
seed: 1
model: {hidden_channels: 8, num_layers: 1, num_heads: 2, num_rbf: 4, cutoff_upper: 3.0}
batch_size: 3
inference_batch_size: 8
max_epochs: 1
lr_warmup_steps: 1
checkpoint_every_n_steps: 1000
out_dir: run
"""


def _labelled(molecule_name: str, n: int, seed: int):
    """``n`` rattled copies of a g2 molecule labelled with GFN2-xTB (tblite)."""
    from ase.build import molecule

    from eqt.physics.reference import label

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        a = molecule(molecule_name)
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        frames.append(a)
    return label(frames, "GFN2-xTB")


def _write(path: Path, frames) -> None:
    import ase.io

    ase.io.write(path, frames, format="extxyz", write_results=False)  # labels are in info/arrays


def build_workspace(root: Path) -> Path:
    """Make the template workspace under ``root`` (a few seconds: GFN2-xTB labels, one tiny run)."""
    import ase.io
    import torch
    from ase.build import molecule

    from eqt.checkpoint import save_checkpoint
    from eqt.cli import main
    from eqt.models.et import ET, ETConfig
    from eqt.models.gatr import GATr, GATrConfig

    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_checkpoint(root / "model.pt", ET(ETConfig(**TINY_MODEL)), extra={"elements": [1, 6, 8]})
    save_checkpoint(root / "gatr.pt", GATr(GATrConfig(num_blocks=1, hidden_mv=4, hidden_s=4, heads=1, head_mv=4,
                                                      head_s=4, bilinear_mv=4)))
    raw = (root / "model.pt").read_bytes()
    (root / "zero.pt").write_bytes(b"")
    (root / "half.pt").write_bytes(raw[: len(raw) // 2])
    (root / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (root / "text.pt").write_text("this is not a checkpoint\n")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, root / "plain.pt")

    data = _labelled("CH3CH2OH", 10, 0)
    _write(root / "data.xyz", data)
    _write(root / "other.xyz", _labelled("CH3OH", 10, 1))
    _write(root / "chloro.xyz", _labelled("CH3Cl", 3, 2))
    (root / "empty.xyz").write_text("")
    (root / "garbage.xyz").write_text("this is not\nan xyz file at all\n")
    text = (root / "data.xyz").read_text().splitlines()
    (root / "truncated.xyz").write_text("\n".join(text[: len(text) // 2 + 3]) + "\n")
    nan = [a.copy() for a in data[:3]]
    nan[1].positions[2] = np.nan
    ase.io.write(root / "nan.xyz", nan, format="extxyz")
    unlabelled = [molecule("CH3CH2OH") for _ in range(3)]
    ase.io.write(root / "unlabelled.xyz", unlabelled, format="extxyz")
    z0 = [molecule("H2O"), molecule("H2O")]
    z0[1].numbers[0] = 0
    ase.io.write(root / "z0.xyz", z0, format="extxyz")
    overlap = molecule("H2O")
    overlap.positions[1] = overlap.positions[0] + 0.01
    ase.io.write(root / "overlap.xyz", overlap, format="extxyz")
    ase.io.write(root / "water.xyz", molecule("H2O"), format="extxyz")
    ase.io.write(root / "single.xyz", molecule("H2O")[:1], format="extxyz")
    ase.io.write(root / "cl.xyz", molecule("CH3Cl"), format="extxyz")
    nanmol = molecule("H2O")
    nanmol.positions[0, 0] = np.nan
    ase.io.write(root / "nanmol.xyz", nanmol, format="extxyz")
    (root / "afile").write_text("a file where a folder is expected\n")
    (root / "existing.xyz").write_text((root / "data.xyz").read_text())
    (root / "existing.png").write_bytes(b"\x89PNG old plot")
    (root / "mdold").mkdir()
    (root / "mdold" / "md.csv").write_text("step,time_fs\n0,0\n")
    (root / "mdold" / "md.traj").write_bytes(b"old trajectory")

    (root / "tiny.yaml").write_text(TRAIN_YAML)
    (root / "broken.yaml").write_text("data: [unclosed\n  model: {\n")
    (root / "list.yaml").write_text("- data.xyz\n- 3\n")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = main(["train", "tiny.yaml"])
    finally:
        os.chdir(cwd)
    if status != 0 or not (root / "run" / "model.pt").exists():
        raise RuntimeError("the catalogue's template training run failed")
    return root


# --------------------------------------------------------------------------------------------------
# running one case
# --------------------------------------------------------------------------------------------------
def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _matches(pattern: str, line: str) -> bool:
    """Every ``.*``-separated part of ``pattern`` is found in ``line`` (in any order)."""
    return all(re.search(part, line) is not None for part in pattern.split(".*"))


def _last_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run_case(case: Case, template: Path, work: Path) -> Outcome:
    """Run ``case`` in a fresh copy of ``template`` at ``work``; classify it."""
    import torch

    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(template, work, symlinks=True)
    cwd = os.getcwd()
    os.chdir(work)
    threads = torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    category, message, result = "", "", None
    try:
        if case.setup is not None:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                case.setup(work)
        before = _snapshot(work)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if case.argv is not None:
                category, message = _run_cli(case, out, err)
                result = out.getvalue()
            else:
                category, message, result = _run_api(case, work)
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    if category == "accepted" and case.check is not None:
        try:
            case.check(work, result)
        except AssertionError as e:
            category, message = "cryptic", f"accepted but wrong: {e}"
    message = message.replace(str(work) + os.sep, "")  # workspace-relative paths in the table
    after = _snapshot(work)
    allowed = case.writes if category == "accepted" else ()
    changed = sorted(k for k, h in before.items()
                     if after.get(k) != h and not any(fnmatch.fnmatch(k, pat) for pat in allowed))
    return Outcome(category, message, changed)


def _run_cli(case: Case, out: io.StringIO, err: io.StringIO) -> tuple[str, str]:
    from eqt.cli import main

    try:
        status = main(list(case.argv))
    except SystemExit as e:  # argparse
        status = e.code if isinstance(e.code, int) else 2
        line = _last_error_line(err.getvalue())
        if status == 0:
            return ("accepted" if case.expect == "accepted" else "silent wrong"), line
        ok = case.expect == "error" and _matches(case.match, line) and "Traceback" not in err.getvalue()
        return ("clear error" if ok else "cryptic"), line
    except BaseException as e:  # noqa: BLE001 - an escaped exception is what we classify
        return "traceback", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    text = err.getvalue()
    line = _last_error_line(text)
    if status == 0:
        return ("accepted" if case.expect == "accepted" else "silent wrong"), line
    if "Traceback (most recent call last)" in text:
        return "traceback", line
    if case.expect == "accepted":
        return "cryptic", line
    clear = (status == 2 and line.startswith("eqt: error: ") and "internal error" not in line
             and _matches(case.match, line))
    return ("clear error" if clear else "cryptic"), line


def _run_api(case: Case, work: Path) -> tuple[str, str, Any]:
    try:
        result = case.call(work)
    except case.errors as e:
        text = str(e).strip()
        line = text.splitlines()[0] if text else type(e).__name__
        if case.expect == "accepted":
            return "cryptic", f"{type(e).__name__}: {line}", None
        clear = "\n" not in text and _matches(case.match, line)
        return ("clear error" if clear else "cryptic"), f"{type(e).__name__}: {line}", None
    except Exception as e:  # noqa: BLE001
        text = str(e).strip()
        return "cryptic", f"{type(e).__name__}: {text.splitlines()[0] if text else ''}", None
    return ("accepted" if case.expect == "accepted" else "silent wrong"), "", result


def run_all(cases: list[Case], template: Path, scratch: Path) -> dict[str, Outcome]:
    """Every case, each in its own copy of the workspace."""
    return {c.id: run_case(c, template, scratch / c.id) for c in cases}


def table(cases: list[Case], outcomes: dict[str, Outcome], before: dict[str, dict] | None = None) -> str:
    """The markdown tables of docs/reliability.md: counts per category, then one row per case.

    ``before``: outcomes of an earlier eqt (from ``--json``), shown in a column of their own.
    """
    def counts(results) -> tuple[dict[str, int], int]:
        c = {k: 0 for k in CATEGORIES}
        for o in results:
            c[o["category"]] += 1
        return c, sum(bool(o["changed"]) for o in results)

    now = {k: dataclasses.asdict(o) for k, o in outcomes.items()}
    sets = [("now", [now[c.id] for c in cases])]
    if before is not None:
        sets.insert(0, ("before", [before[c.id] for c in cases if c.id in before]))
    head = "| category | " + " | ".join(name for name, _ in sets) + " |"
    lines = [head, "|---" * (len(sets) + 1) + "|"]
    tallies = [counts(results) for _, results in sets]
    for k in CATEGORIES:
        lines.append(f"| {k} | " + " | ".join(str(t[0][k]) for t in tallies) + " |")
    lines.append("| lost work (a file already on disk changed) | " + " | ".join(str(t[1]) for t in tallies) + " |")
    lines.append("| **cases** | " + " | ".join(str(len(r)) for _, r in sets) + " |")
    lines.append("")
    cols = "| # | area | input | expected | " + ("before | " if before is not None else "") + "now | message now |"
    lines += [cols, "|---" * (cols.count("|") - 1) + "|"]

    def cell(o: dict | None) -> str:
        if o is None:
            return "—"
        return o["category"] + (" + lost work" if o["changed"] else "")

    for i, c in enumerate(cases, 1):
        o = now[c.id]
        msg = o["message"].replace("|", "\\|")
        msg = msg if len(msg) <= 150 else msg[:147] + "..."
        prev = f"{cell(before.get(c.id))} | " if before is not None else ""
        lines.append(f"| {i} | {c.area} | {c.what} | {c.expect} | {prev}{cell(o)} | {msg} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.reliability.catalogue [--only AREA] [--json OUT] [--before BEFORE.json]``:
    run every case, print the tables (``--json``: also save the outcomes; ``--before``: add the
    outcomes of an earlier eqt as a column)."""
    import argparse
    import json
    import tempfile

    from tests.reliability.cases import CASES

    p = argparse.ArgumentParser()
    p.add_argument("--only", help="run the cases of one area")
    p.add_argument("--json", help="write the outcomes here")
    p.add_argument("--before", help="outcomes of an earlier eqt (a --json file) for comparison")
    a = p.parse_args(argv)
    cases = [c for c in CASES if a.only is None or c.area == a.only]
    with tempfile.TemporaryDirectory() as tmp:
        template = build_workspace(Path(tmp) / "template")
        outcomes = run_all(cases, template, Path(tmp) / "cases")
    if a.json:
        Path(a.json).write_text(json.dumps({k: dataclasses.asdict(o) for k, o in outcomes.items()}, indent=1))
    before = json.loads(Path(a.before).read_text()) if a.before else None
    print(table(cases, outcomes, before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
