"""Files that never lose work: output checks, atomic writes, run locks and run fingerprints.

Every command of eqt that writes a file goes through these few functions, so that the rules hold
everywhere:

- :func:`check_output` before any expensive work: an existing output is refused unless
  ``force=True``; the folder must exist or be creatable and be writable; a path shadowed by a file
  (``out/x`` where ``out`` is a file) is named.
- :func:`atomic_write_text` / :func:`atomic_path`: a file under its final name is always complete
  (written to ``<name>.tmp`` then renamed; a failure leaves the old file untouched).
- :class:`RunLock`: one process per run directory. The lock file holds the owner's pid and host;
  a lock whose process is gone (on this host) is stale and taken over.
- :func:`fingerprint` / :func:`check_fingerprint`: what defines a run, recorded at its first start;
  a rerun into the same directory resumes only when it matches.
- :func:`file_digest`: the content hash of a data file (part of a fingerprint).

All errors are :class:`OutputError` (a ``ValueError``): one line saying what and where, which the
command line prints without a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["OutputError", "check_output", "check_writable_dir", "atomic_path", "atomic_write_text", "RunLock",
           "file_digest", "fingerprint", "check_fingerprint", "differences",
           "deferred_interrupts"]


class OutputError(ValueError):
    """An output path cannot be written, would overwrite work, or belongs to another run."""


def _writable_dir(folder: Path, what: str, named: Path | None = None) -> None:
    """Raise :class:`OutputError` unless ``folder`` exists (or can be made) and is writable.

    The message names ``named`` (the file to be written; default ``folder``).
    """
    name = named if named is not None else folder
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"{what} {name}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {name}: folder {probe} is not writable")
    try:  # os.access says yes to root everywhere: try for real (the file vanishes on close)
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise OutputError(f"{what} {name}: folder {probe} is not writable ({err.strerror})") from None


def check_writable_dir(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Check that ``folder`` is (or can be made as) a writable folder; nothing is created.

    Raises:
        OutputError: it is a file, sits below a file, or is not writable.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {folder} is a file, not a folder")
    _writable_dir(folder, what)
    return folder


def check_output(path: str | os.PathLike, force: bool = False, what: str = "output") -> Path:
    """Check, before any work, that ``path`` can be written without losing anything.

    Args:
        path: the file to be written.
        force: allow replacing an existing file.
        what: how the message names the file (``"output"``, ``"trajectory"``, ...).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the file exists (and not ``force``), is a folder, or its folder cannot be
            written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder, not a file")
    if path.exists() and not force:
        raise OutputError(f"{what} {path} exists; pass --force to overwrite it")
    _writable_dir(path.parent, what, named=path)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a complete file or the old one, never half)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """An exclusive lock on a run directory, held by one process (a context manager).

    The lock is the file ``<folder>/.lock`` created with ``O_EXCL``, holding ``{"pid", "host"}``.
    A lock left by a process that no longer exists on this host is stale: it is replaced (with a
    note on stderr). A lock of a live process, or of another host, stops with :class:`OutputError`.

    Args:
        folder: the run directory (created if missing).
        command: what the message calls the owner (``"eqt train"``).
    """

    def __init__(self, folder: str | os.PathLike, command: str = "eqt"):
        self.folder, self.command = Path(folder), command
        self.path = self.folder / ".lock"
        self.held = False

    def acquire(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None or (owner.get("host") == socket.gethostname() and not _pid_alive(int(owner["pid"]))):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()  # stale: its process is gone
                    gone = f"process {owner['pid']}" if owner else "a process"
                    print(f"eqt: note: {self.folder} was locked by {gone}, which no longer runs; taking it over",
                          file=sys.stderr)
                    continue
                raise OutputError(f"{self.folder} is in use by another {self.command} (pid {owner.get('pid')} on "
                                  f"{owner.get('host')}); wait for it, or remove {self.path} if that process "
                                  f"is gone") from None
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            self.held = True
            return self
        raise OutputError(f"cannot lock {self.folder}: {self.path} keeps reappearing")

    def _owner(self) -> dict | None:
        try:
            owner = json.loads(self.path.read_text() or "null")
            return owner if isinstance(owner, dict) and "pid" in owner else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """``sha256:<hex>`` of a file's content (a folder: of its files' names and contents, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return "sha256:" + h.hexdigest()


FINGERPRINT = "fingerprint.json"


def fingerprint(values: dict[str, Any]) -> dict[str, Any]:
    """A JSON-normal copy of what defines a run (keys sorted, tuples as lists)."""
    return json.loads(json.dumps(values, sort_keys=True, default=str))


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``["key.sub: old -> new", ...]`` between two JSON-like values (file digests shown short)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    if old == new:
        return []
    if isinstance(old, str) and isinstance(new, str) and old.startswith("sha256:") and new.startswith("sha256:"):
        return [f"{prefix[:-1]}: other file content (sha256 {old[7:15]}... -> {new[7:15]}...)"]
    return [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def check_fingerprint(folder: str | os.PathLike, values: dict[str, Any], write: bool = True) -> bool:
    """Compare what defines this run with the one recorded in ``folder``.

    Args:
        folder: the run directory.
        values: what defines the run (data digest, split, model config, objective, ...).
        write: record ``values`` when the folder has no fingerprint yet.

    Returns:
        True when a matching fingerprint was there (a resume), False for a first start.

    Raises:
        OutputError: the folder belongs to another run (naming the first differences).
    """
    path = Path(folder) / FINGERPRINT
    new = fingerprint(values)
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            raise OutputError(f"{path} is corrupt; move the run directory away to start fresh") from None
        diff = differences(old, new)
        if diff:
            shown = "; ".join(diff[:3]) + ("; ..." if len(diff) > 3 else "")
            raise OutputError(f"{folder} holds a different run ({shown}); use another --out, or delete "
                              f"{folder} to start fresh")
        return True
    if write:
        atomic_write_text(path, json.dumps(new, indent=1, sort_keys=True) + "\n")
    return False


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[Callable[[], None]]:
    """Make Ctrl-C land between steps: yields ``check()``, which raises ``KeyboardInterrupt`` once
    SIGINT has arrived.

    Why: a SIGINT that arrives while a C extension runs a Python callback (tblite's cffi finalisers,
    for one) is reported as "Exception ignored from callback" and lost, and the run goes on to the
    end. Here the signal only sets a flag; the loop calls ``check()`` at each safe point (after a
    frame is written), so the interrupt is never lost and the saved state is consistent. A second
    Ctrl-C interrupts at once. Outside the main thread, or when SIGINT is ignored, ``check()`` does
    nothing and the signal handling is left alone.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield lambda: None
        return
    hits: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        hits.append(signum)
        if len(hits) > 1:
            raise KeyboardInterrupt

    def check() -> None:
        if hits:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)


def is_disk_full(err: BaseException) -> bool:
    """True for 'no space left on device' (and quota) errors."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
