"""Cached splits of the seeded data generators: ``{root}/{split}.npz`` files plus a ``meta.json``.

Shared by :mod:`eqt.data.nbody`, :mod:`eqt.data.rigid` and :mod:`eqt.data.scenes`. Each of them
simulates a split from ``(size, config, split seed)`` only, so a file on disk can be reused as long
as ``meta.json`` records the same parameters. :func:`write_splits` generates, reuses and records
the splits; :func:`read_npz`, :func:`meta_entry` and :func:`check_meta` read one back.

Layout of ``{root}/meta.json`` (kept stable: existing caches stay valid)::

    {
      "format": "eqt.data.nbody",            # the generator (format_name)
      "eqt_version": "0.1.0",
      "splits": {
        "train": {
          "file": "train.npz",
          "size": 100000,                    # samples
          "seed": 0,                         # base seed
          "split_seed": 1234567,             # split_seed(seed, "train"), the seed simulated with
          "config": {...},                   # JSON-ready generator config
          "format_version": 1,               # bumped when the sampling protocol changes
          ...                                # generator extras (e.g. "mujoco_version")
          "eqt_version": "0.1.0"
        },
        ...
      }
    }

Writes are atomic (temporary file in the same folder, fsync, rename), so an interrupted run
leaves either the old file or the new one, never a partial file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "META_FILE",
    "is_number",
    "one_line",
    "eqt_version",
    "split_seed",
    "split_path",
    "atomic_write",
    "read_meta",
    "meta_entry",
    "write_splits",
    "read_npz",
    "check_meta",
]

META_FILE = "meta.json"
"""Name of the metadata file next to the split files."""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number: a Python or NumPy int or float, but not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` with every run of white space (newlines included) folded to one space."""
    return " ".join(str(exc).split())


def eqt_version() -> str | None:
    """``eqt.__version__``, or None if it is not set."""
    try:
        import eqt

        return getattr(eqt, "__version__", None)
    except ImportError:  # pragma: no cover - eqt is the package this module lives in
        return None


def split_seed(seed: int, split: str) -> int:
    """Seed of one split: a 32-bit word of ``SeedSequence([seed, crc32(split)])``.

    Args:
        seed: non-negative base seed.
        split: split name.

    Returns:
        An int in ``[0, 2**32)``, a fixed function of ``(seed, split)``.
    """
    words = np.random.SeedSequence([int(seed), zlib.crc32(split.encode())]).generate_state(1)
    return int(words[0])


def split_path(root: str | os.PathLike, split: str) -> Path:
    """Path ``{root}/{split}.npz`` of one split file."""
    return Path(root) / f"{split}.npz"


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` atomically: ``write(fh)`` fills a temporary file that then replaces ``path``.

    Args:
        path: destination; its folder must exist.
        write: called once with a binary file handle open for writing.

    The temporary file ``.{name}.*.tmp`` lives in the same folder and is removed on failure.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_meta(root: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``{root}/meta.json``; ``{}`` if it is missing, unreadable or has no ``splits`` dict."""
    try:
        meta = json.loads((Path(root) / META_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) and isinstance(meta.get("splits"), dict) else {}


def meta_entry(root: str | os.PathLike, split: str) -> dict[str, Any] | None:
    """The ``meta.json`` entry of ``split`` (see the module docstring), or None if there is none."""
    entry = read_meta(root).get("splits", {}).get(split)
    return entry if isinstance(entry, dict) else None


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def write_splits(
    root: str | os.PathLike,
    sizes: Mapping[str, int],
    seed: int,
    configs: Mapping[str, Mapping[str, Any]],
    make: Callable[[str, int, int], Mapping[str, np.ndarray]],
    verify: Callable[[str], Any],
    format_name: str,
    format_version: int,
    overwrite: bool = False,
    extra_entry: Callable[[], Mapping[str, Any]] | None = None,
) -> dict[str, Path]:
    """Generate the splits that are not up to date and record them in ``{root}/meta.json``.

    For each split, in the order of ``sizes``, the entry ``{file, size, seed, split_seed, config,
    format_version}`` is compared with the one recorded in ``meta.json``. If they agree, ``overwrite``
    is false and ``verify(split)`` succeeds, the file is kept. Otherwise ``make(split, size,
    split_seed)`` is written to ``{root}/{split}.npz`` (``np.savez``, atomically) and ``meta.json`` is
    rewritten at once, keeping the entries of the other splits (so an interrupted run resumes at the
    first missing split).

    Args:
        root: output folder (created if missing).
        sizes: ``{split: n_samples}``; callers validate the sizes.
        seed: non-negative base seed; split ``s`` is made with ``split_seed(seed, s)``.
        configs: ``{split: JSON-ready config}`` for every split of ``sizes``.
        make: ``(split, size, split_seed) -> {key: array}``, the arrays to store.
        verify: loads a split from ``root``; raises ``OSError`` or ``ValueError`` if the file
            cannot be reused.
        format_name: the ``"format"`` of ``meta.json``, e.g. ``"eqt.data.nbody"``.
        format_version: the generator's protocol version, recorded per split.
        overwrite: regenerate every split even when up to date.
        extra_entry: called after each split is made; its items are recorded in that split's entry
            (before ``eqt_version``), e.g. the version of a simulator.

    Returns:
        ``{split: path of its .npz}`` for every split of ``sizes``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    recorded: dict[str, Any] = dict(read_meta(root).get("splits", {}))
    paths: dict[str, Path] = {}
    for split, size in sizes.items():
        path = split_path(root, split)
        entry = {
            "file": path.name,
            "size": int(size),
            "seed": int(seed),
            "split_seed": split_seed(seed, split),
            "config": configs[split],
            "format_version": format_version,
        }
        paths[split] = path
        old = recorded.get(split)
        if not overwrite and isinstance(old, dict) and {k: old.get(k) for k in entry} == entry:
            try:
                verify(split)
                continue
            except (OSError, ValueError):
                pass
        data = make(split, int(size), entry["split_seed"])
        atomic_write(path, lambda fh, data=data: np.savez(fh, **data))
        extra = dict(extra_entry()) if extra_entry is not None else {}
        recorded[split] = {**entry, **extra, "eqt_version": eqt_version()}
        meta = {"format": format_name, "eqt_version": eqt_version(), "splits": recorded}
        text = json.dumps(meta, indent=2) + "\n"
        atomic_write(root / META_FILE, lambda fh, text=text: fh.write(text.encode()))
    return paths


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def read_npz(
    path: Path,
    keys: Sequence[str],
    what: str,
    create: str,
    *,
    list_present: bool = True,
) -> dict[str, np.ndarray]:
    """Read the arrays ``keys`` of an ``.npz`` file (``allow_pickle=False``), with one-line errors.

    Args:
        path: the file.
        keys: the keys to read; all must be present (others are ignored).
        what: how messages name the file, e.g. ``"n-body split file"``.
        create: how to create a missing file, e.g. ``"eqt.data.nbody.generate('data')"``.
        list_present: name the keys the file has when some are missing.

    Returns:
        ``{key: array}`` in the order of ``keys``, dtypes and shapes as stored (not checked).

    Raises:
        FileNotFoundError: ``"{what} {path} not found; create it with {create}"``.
        ValueError: ``"{what} {path} lacks k1, k2 (has ...)"`` when keys are missing, or
            ``"cannot read {what} {path}: reason"`` for a file that is not a readable ``.npz``
            (corrupt, truncated, pickled objects); always one line.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found; create it with {create}")
    try:
        with np.load(str(path), allow_pickle=False) as npz:
            files = list(npz.files)
            missing = [k for k in keys if k not in files]
            if missing:
                have = f" (has {', '.join(files)})" if list_present else ""
                raise ValueError(f"{what} {path} lacks {', '.join(missing)}{have}")
            return {k: np.asarray(npz[k]) for k in keys}
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"cannot read {what} {path}: {one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - zipfile/OS errors on corrupt files
        raise ValueError(f"cannot read {what} {path}: {type(exc).__name__}: {one_line(exc)}") from None


def check_meta(path: Path, what: str, checks: Sequence[tuple[str, Any, Any]]) -> None:
    """Compare what a loaded file holds with what its ``meta.json`` entry says.

    Args:
        path: the file, for the message.
        what: how the message names the file, e.g. ``"n-body split file"``.
        checks: ``(label, have, want)`` triples, e.g. ``("samples", 100, entry.get("size"))``;
            a ``want`` of None is skipped, a list is compared as a tuple.

    Raises:
        ValueError: ``"{what} {path} has {have} {label}, meta.json says {want}"`` at the first
            mismatch.
    """
    for label, have, want in checks:
        if isinstance(want, list):
            want = tuple(want)
        if want is not None and have != want:
            raise ValueError(f"{what} {path} has {have} {label}, meta.json says {want}")
