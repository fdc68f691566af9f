"""eqt.files: output checks before work, atomic writes, run locks, run fingerprints."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from eqt.files import (OutputError, RunLock, atomic_path, atomic_write_text, check_fingerprint, check_output,
                       check_writable_dir, file_digest)


def test_check_output_refuses_existing_folders_and_shadowed_paths(tmp_path):
    (tmp_path / "old.xyz").write_text("work")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="old.xyz exists; pass --force"):
        check_output(tmp_path / "old.xyz")
    assert check_output(tmp_path / "old.xyz", force=True) == tmp_path / "old.xyz"
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path)
    with pytest.raises(OutputError, match="afile is a file, not a folder"):
        check_output(tmp_path / "afile" / "deeper" / "out.xyz")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_writable_dir(tmp_path / "afile")
    assert check_output(tmp_path / "new" / "deeper" / "out.xyz").name == "out.xyz"
    assert not (tmp_path / "new").exists()  # checked, not created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "old.xyz"]  # the probe leaves nothing


def test_atomic_writes_leave_the_old_file_on_failure(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and not (tmp_path / "f.txt.tmp").exists()


def test_run_lock_live_stale_and_released(tmp_path, capsys):
    with RunLock(tmp_path / "run", "eqt test") as lock:
        assert lock.path.exists()
        with pytest.raises(OutputError, match=r"in use by another eqt test \(pid"):
            RunLock(tmp_path / "run", "eqt test").acquire()
    assert not (tmp_path / "run" / ".lock").exists()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    (tmp_path / "run" / ".lock").write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    with RunLock(tmp_path / "run"):
        assert json.loads((tmp_path / "run" / ".lock").read_text())["pid"] == os.getpid()
    assert "no longer runs; taking it over" in capsys.readouterr().err


def test_fingerprint_resumes_only_the_same_run(tmp_path):
    (tmp_path / "a.xyz").write_text("frames a")
    (tmp_path / "b.xyz").write_text("frames b")
    values = {"lr": 1e-3, "model": {"hidden": 8}, "data": file_digest(tmp_path / "a.xyz")}
    assert check_fingerprint(tmp_path, values) is False  # first start: recorded
    assert check_fingerprint(tmp_path, dict(values)) is True
    with pytest.raises(OutputError, match=r"lr: 0.001 -> 0.01"):
        check_fingerprint(tmp_path, {**values, "lr": 1e-2})
    with pytest.raises(OutputError, match=r"model.hidden: 8 -> 16"):
        check_fingerprint(tmp_path, {**values, "model": {"hidden": 16}})
    with pytest.raises(OutputError, match=r"data: other file content"):
        check_fingerprint(tmp_path, {**values, "data": file_digest(tmp_path / "b.xyz")})


def test_deferred_interrupts_land_at_the_next_check():
    import signal

    from eqt.files import deferred_interrupts

    before = signal.getsignal(signal.SIGINT)
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts() as check:
            for step in range(5):
                check()
                steps.append(step)
                if step == 1:
                    os.kill(os.getpid(), signal.SIGINT)  # arrives mid-step: the step still completes
    assert steps == [0, 1] and signal.getsignal(signal.SIGINT) is before
