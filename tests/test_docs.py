"""The documentation runs: every Python and shell code block in README.md and docs/*.md.

Collection. Every fenced block tagged ```python or ```bash (also ```sh, ```shell) in README.md and
docs/*.md is one test, with the id ``FILE:LINE``. Fences without a language or with another one
(directory trees, YAML, text) are not code and are not collected.

Convention for blocks that are not run. A block is not run only when the nearest non-blank line
before its opening fence is an HTML comment of the form

    <!-- not run: REASON -->

(invisible in rendered markdown). REASON must say why, e.g. ``needs a GPU``, ``40 CPU-minutes; its
result is quoted below`` or ``runs the test suite itself``. Such a block is reported as a skip with
``not run: REASON`` (``pytest -ra`` lists them), so the list of what the docs test does not execute
is always printed. Anything else runs; there are no hidden exceptions in this file.

How blocks run. The blocks of one file run in order, as a reader would run them:

- in one fresh working folder per file (a temporary folder, never the repository), laid out like
  the repository's root: ``configs/`` is copied in, ``benchmarks/`` (scripts only) is copied in,
  ``tests/`` and ``.venv`` are symlinks to the repository's, and ``../shared`` points to the
  reference data next to the repository when it exists; so commands written for the repository
  root (``eqt train configs/et-md17.yaml``, ``../shared/data/...``, ``.venv/bin/python ...``) run
  unchanged and write only into the temporary folder;
- Python blocks are executed in-process in one namespace per file (a later block sees the names
  an earlier block defined), with the working folder as the current directory and
  ``torch.manual_seed(0)`` at the start of each file; a block that needs inputs must build them
  itself (docs are self-contained, there is no hidden setup);
- shell blocks run with ``bash -euo pipefail`` (a failing command fails the block), with the
  interpreter's ``bin`` folder first on PATH (so ``eqt`` and ``python`` are this environment's),
  ``OMP_NUM_THREADS=1``, and a time limit per block (``BLOCK_TIMEOUT_S``). Commands that would take
  long are shown in the docs with a tiny budget (``--set max_epochs=1``, ``--steps 10``, ...) or
  marked not run with the reason.

The reference data is not required: a block that reads ``../shared/data`` is skipped with a
message when the folder is absent (as the ``shared_data`` fixture does for the other tests).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import eqt

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
BLOCK_TIMEOUT_S = 120



@dataclass(frozen=True)
class Block:
    doc: str        # path relative to the repository
    line: int       # 1-based line of the opening fence
    lang: str       # "python" or "bash"
    code: str
    not_run: str | None  # the reason, when marked not run

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    """The code blocks of one markdown file, with their not-run markers."""
    doc = path.relative_to(REPO).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, j = m["indent"], i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if j == len(lines):
            raise ValueError(f"{doc}:{i + 1}: code fence never closed")
        lang = LANGUAGES.get(m["lang"].lower())
        if lang is not None:
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            marker = NOT_RUN.match(lines[k].strip()) if k >= 0 else None
            code = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:j])
            blocks.append(Block(doc, i + 1, lang, code + "\n", marker["reason"] if marker else None))
        i = j + 1
    return blocks


BLOCKS = [b for path in DOC_FILES for b in parse_blocks(path)]


class _DocState:
    """One working folder and one Python namespace per doc file."""

    def __init__(self, root: Path):
        self.dir = root / "repo"
        self.dir.mkdir(parents=True)
        shutil.copytree(REPO / "configs", self.dir / "configs")
        shutil.copytree(REPO / "benchmarks", self.dir / "benchmarks",
                        ignore=shutil.ignore_patterns("results", "__pycache__", ".gpu"))
        (self.dir / "tests").symlink_to(REPO / "tests", target_is_directory=True)
        (self.dir / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
        if SHARED.is_dir():
            (root / "shared").symlink_to(SHARED, target_is_directory=True)
        self.namespace: dict = {"__name__": "__doc__"}
        torch.manual_seed(0)


_STATES: dict[str, _DocState] = {}


@pytest.fixture
def doc_state(request, tmp_path_factory):
    block: Block = request.param
    if block.doc not in _STATES:
        _STATES[block.doc] = _DocState(tmp_path_factory.mktemp(Path(block.doc).stem))
    return block, _STATES[block.doc]


@pytest.mark.parametrize("doc_state", BLOCKS, ids=[b.id for b in BLOCKS], indirect=True)
def test_doc_block(doc_state, monkeypatch):
    block, state = doc_state
    if block.not_run is not None:
        pytest.skip(f"not run: {block.not_run}")
    if "shared/data" in block.code and not SHARED.is_dir():
        pytest.skip(f"reference data not found at {SHARED / 'data'}")
    monkeypatch.chdir(state.dir)
    if block.lang == "python":
        exec(compile(block.code, block.id, "exec"), state.namespace)
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", EQT_PROGRESS_INTERVAL="60",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    # its own process group, so that a timeout also ends the commands the block started
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", block.code], cwd=state.dir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{block.id}: still running after {BLOCK_TIMEOUT_S} s; show a smaller budget in the "
                    "doc or mark the block <!-- not run: REASON -->")
    assert proc.returncode == 0, (f"{block.id} exited with {proc.returncode}\n--- stdout\n{stdout[-3000:]}"
                                  f"\n--- stderr\n{stderr[-3000:]}")


def test_docs_have_code():
    assert {b.doc for b in BLOCKS} >= {"README.md", "docs/et.md", "docs/equiformer.md", "docs/gatr.md"}
    assert sum(b.not_run is None for b in BLOCKS) >= 10


def test_every_marker_precedes_a_code_block():
    """A `not run` marker that is not right before a code fence would silently mark nothing."""
    marked = {(b.doc, b.line) for b in BLOCKS if b.not_run is not None}
    for path in DOC_FILES:
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            if "not run" in line and line.strip().startswith("<!--"):
                assert NOT_RUN.match(line.strip()), f"{path.name}:{n}: write it as <!-- not run: REASON -->"
                k = n  # 0-based index of the next line
                while k < len(lines) and not lines[k].strip():
                    k += 1
                assert k < len(lines) and FENCE.match(lines[k]), f"{path.name}:{n}: no code block after the marker"
                assert (path.relative_to(REPO).as_posix(), k + 1) in marked, \
                    f"{path.name}:{n}: the marker precedes a block that is neither python nor bash"


def test_one_version_string():
    """eqt.__version__ = pyproject.toml's version = the installed distribution's version."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    pyproject = re.search(r'^\[project\][^\[]*?^version\s*=\s*"([^"]+)"', text, re.M | re.S)[1]
    assert eqt.__version__ == pyproject
    assert importlib.metadata.version("eqt") == pyproject, "reinstall: pip install -e ."


def test_public_api_is_exported_and_import_stays_light():
    import eqt.data
    import eqt.models
    import eqt.physics

    for module in (eqt.physics, eqt.models, eqt.data):
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"
    for name in ("Potential", "Calculator", "GraphedPotential", "run_md", "MDConfig"):
        assert name in eqt.physics.__all__
    for name in ("ET", "ETConfig", "Equiformer", "EquiformerConfig", "GATr", "GATrConfig"):
        assert name in eqt.models.__all__
    code = ("import sys, eqt, eqt.physics, eqt.models, eqt.data; "
            "print(sorted(m for m in ('ase', 'lightning', 'tblite', 'pyscf', 'e3nn', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"importing eqt's packages pulled in {out.strip()}"
