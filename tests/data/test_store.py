"""Tests of the shared split cache of the data generators (eqt.data.store)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from eqt.data.store import (
    META_FILE,
    atomic_write,
    check_meta,
    is_number,
    meta_entry,
    one_line,
    read_meta,
    read_npz,
    split_path,
    split_seed,
    write_splits,
)

_WHAT = "toy split file"


def _make(calls: list):
    """A generator whose arrays are a function of (size, split seed); records its calls."""

    def make(split: str, size: int, seed: int) -> dict[str, np.ndarray]:
        calls.append((split, size, seed))
        rng = np.random.default_rng(seed)
        return {"x": rng.standard_normal((size, 3)), "label": np.arange(size)}

    return make


def _write(root, calls, sizes=None, seed=0, config=None, overwrite=False, extra_entry=None):
    sizes = {"train": 4, "val": 2} if sizes is None else sizes
    config = {"scale": 1.0} if config is None else config
    return write_splits(
        root,
        sizes,
        seed,
        configs=dict.fromkeys(sizes, config),
        make=_make(calls),
        verify=lambda split: read_npz(split_path(root, split), ("x", "label"), _WHAT, "_write(...)"),
        format_name="eqt.data.toy",
        format_version=3,
        overwrite=overwrite,
        extra_entry=extra_entry,
    )


def test_round_trip_and_meta(tmp_path):
    calls: list = []
    paths = _write(tmp_path, calls, seed=5, extra_entry=lambda: {"tool_version": "1.2"})
    assert paths == {"train": tmp_path / "train.npz", "val": tmp_path / "val.npz"}
    assert [c[:2] for c in calls] == [("train", 4), ("val", 2)]
    assert [c[2] for c in calls] == [split_seed(5, "train"), split_seed(5, "val")]
    data = read_npz(paths["train"], ("x", "label"), _WHAT, "x")
    ref = _make([])("train", 4, split_seed(5, "train"))
    np.testing.assert_array_equal(data["x"], ref["x"])
    np.testing.assert_array_equal(data["label"], ref["label"])

    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["format"] == "eqt.data.toy" and set(meta["splits"]) == {"train", "val"}
    entry = meta_entry(tmp_path, "val")
    assert list(entry) == ["file", "size", "seed", "split_seed", "config", "format_version",
                           "tool_version", "eqt_version"]
    assert entry["file"] == "val.npz" and entry["size"] == 2 and entry["seed"] == 5
    assert entry["split_seed"] == split_seed(5, "val") and entry["config"] == {"scale": 1.0}
    assert entry["format_version"] == 3 and entry["tool_version"] == "1.2"
    assert meta_entry(tmp_path, "test") is None
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_reuse_when_meta_matches(tmp_path):
    calls: list = []
    _write(tmp_path, calls)
    mtime = (tmp_path / "train.npz").stat().st_mtime_ns
    calls.clear()
    _write(tmp_path, calls)
    assert calls == []
    assert (tmp_path / "train.npz").stat().st_mtime_ns == mtime
    # a subset of the splits: the other entries of meta.json are kept
    _write(tmp_path, calls, sizes={"val": 2})
    assert calls == [] and set(read_meta(tmp_path)["splits"]) == {"train", "val"}


@pytest.mark.parametrize(
    "change",
    [
        {"overwrite": True},
        {"sizes": {"train": 5, "val": 2}},
        {"seed": 1},
        {"config": {"scale": 2.0}},
    ],
)
def test_regenerate_on_overwrite_or_mismatch(tmp_path, change):
    calls: list = []
    _write(tmp_path, calls)
    calls.clear()
    _write(tmp_path, calls, **change)
    assert "train" in [c[0] for c in calls]
    size = change.get("sizes", {"train": 4})["train"]
    assert meta_entry(tmp_path, "train")["size"] == size
    assert read_npz(tmp_path / "train.npz", ("x",), _WHAT, "x")["x"].shape == (size, 3)


def test_regenerate_a_corrupt_or_missing_file(tmp_path):
    calls: list = []
    _write(tmp_path, calls)
    (tmp_path / "train.npz").write_bytes(b"garbage")
    (tmp_path / "val.npz").unlink()
    calls.clear()
    _write(tmp_path, calls)
    assert [c[0] for c in calls] == ["train", "val"]
    assert read_npz(tmp_path / "train.npz", ("x",), _WHAT, "x")["x"].shape == (4, 3)


def test_regenerate_on_another_format_version(tmp_path):
    calls: list = []
    _write(tmp_path, calls)
    meta = read_meta(tmp_path)
    meta["splits"]["val"]["format_version"] = 2
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    calls.clear()
    _write(tmp_path, calls)
    assert [c[0] for c in calls] == ["val"]


def test_unreadable_meta_is_empty(tmp_path):
    assert read_meta(tmp_path) == {}
    (tmp_path / META_FILE).write_text("{not json")
    assert read_meta(tmp_path) == {} and meta_entry(tmp_path, "train") is None
    (tmp_path / META_FILE).write_text(json.dumps({"splits": []}))
    assert read_meta(tmp_path) == {}
    calls: list = []
    _write(tmp_path, calls)  # a broken meta.json is replaced
    assert set(read_meta(tmp_path)["splits"]) == {"train", "val"}


def test_read_npz_missing_file(tmp_path):
    path = tmp_path / "train.npz"
    with pytest.raises(FileNotFoundError) as info:
        read_npz(path, ("x",), _WHAT, "toy.generate('root')")
    assert str(info.value) == f"{_WHAT} {path} not found; create it with toy.generate('root')"


def test_read_npz_missing_keys(tmp_path):
    path = tmp_path / "train.npz"
    np.savez(path, x=np.zeros(2), y=np.ones(2))
    with pytest.raises(ValueError) as info:
        read_npz(path, ("x", "label", "z"), _WHAT, "x")
    assert str(info.value) == f"{_WHAT} {path} lacks label, z (has x, y)"
    with pytest.raises(ValueError) as info:
        read_npz(path, ("x", "label"), _WHAT, "x", list_present=False)
    assert str(info.value) == f"{_WHAT} {path} lacks label"
    assert list(read_npz(path, ("y", "x"), _WHAT, "x")) == ["y", "x"]


@pytest.mark.parametrize(
    "content",
    [b"this is not an npz file", b"PK\x03\x04" + bytes(range(256)) * 4, b""],
    ids=["garbage", "truncated-zip", "empty"],
)
def test_read_npz_corrupt_file_names_the_file(tmp_path, content):
    path = tmp_path / "val.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(f"cannot read {_WHAT} {path}: ")) as info:
        read_npz(path, ("x",), _WHAT, "x")
    assert "\n" not in str(info.value)


def test_read_npz_refuses_pickles(tmp_path):
    path = tmp_path / "val.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=re.escape(f"cannot read {_WHAT} {path}: ")):
        read_npz(path, ("x",), _WHAT, "x")


def test_check_meta():
    check_meta("f.npz", _WHAT, (("samples", 3, 3), ("bodies", 4, None), ("size", (2, 3), [2, 3])))
    with pytest.raises(ValueError) as info:
        check_meta("f.npz", _WHAT, (("samples", 3, 3), ("bodies", 4, 5), ("size", (2, 3), [9, 9])))
    assert str(info.value) == f"{_WHAT} f.npz has 4 bodies, meta.json says 5"
    with pytest.raises(ValueError, match=r"has \(2, 3\) size, meta.json says \(9, 9\)"):
        check_meta("f.npz", _WHAT, (("size", (2, 3), [9, 9]),))


def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "a.bin"
    atomic_write(path, lambda fh: fh.write(b"old"))

    def fail(fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_split_seed_is_fixed_and_distinct():
    assert split_seed(0, "train") == split_seed(0, "train")
    seeds = {split_seed(s, name) for s in (0, 1) for name in ("train", "val", "test")}
    assert len(seeds) == 6 and all(0 <= s < 2**32 for s in seeds)


def test_small_helpers():
    assert is_number(1) and is_number(2.5) and is_number(np.int32(3)) and is_number(np.float32(1))
    assert not is_number(True) and not is_number("1") and not is_number(None)
    assert one_line(ValueError("a\n  b\tc ")) == "a b c"
