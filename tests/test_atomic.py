"""Atomic writes: the target is either the old file or the complete new one."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mulegraph.core import atomic as atomic
from mulegraph.core.atomic import atomic_path, fsync_dir, write_bytes_atomic, write_text_atomic

OLD = b"old contents\x00\xff\n" * 100


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_success_replaces(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(OLD)
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.exists() and tmp != target
        tmp.write_bytes(b"new")
        assert target.read_bytes() == OLD  # nothing visible before the block ends
    assert target.read_bytes() == b"new"
    assert _leftovers(tmp_path) == []


def test_creates_new_file_and_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert write_text_atomic("plain.txt", "a\r\nb\n") == Path("plain.txt")
    assert (tmp_path / "plain.txt").read_bytes() == b"a\r\nb\n"  # newlines as given
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [ValueError("boom"), KeyboardInterrupt()])
def test_failure_keeps_old_file_and_removes_temp(tmp_path, exc):
    target = tmp_path / "out.bin"
    target.write_bytes(OLD)
    with pytest.raises(type(exc)), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise exc
    assert target.read_bytes() == OLD
    assert _leftovers(tmp_path) == []


def test_failure_without_old_file_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "new.txt") as tmp:
        tmp.write_text("x")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_failed_rename_removes_temp(tmp_path):
    target = tmp_path / "adir"
    target.mkdir()
    (target / "inside").write_text("keep")
    with pytest.raises(OSError):
        write_text_atomic(target, "x")
    assert (target / "inside").read_text() == "keep"
    assert _leftovers(tmp_path) == []


def test_file_is_synced_before_rename(tmp_path, monkeypatch):
    target = tmp_path / "t.txt"
    seen = []
    real = atomic.fsync_file

    def spy(p):
        seen.append((Path(p).name, target.exists()))
        real(p)

    monkeypatch.setattr(atomic, "fsync_file", spy)
    write_text_atomic(target, "x")
    assert len(seen) == 1 and seen[0][0].endswith(".tmp") and seen[0][1] is False
    seen.clear()
    write_text_atomic(target, "y", fsync=False)
    assert seen == [] and target.read_text() == "y"


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "p.txt", "x")
    finally:
        os.umask(old)
    if os.name == "posix":
        assert stat.S_IMODE((tmp_path / "p.txt").stat().st_mode) == 0o640


def test_fsync_dir_tolerates_missing(tmp_path):
    fsync_dir(tmp_path)
    fsync_dir(tmp_path / "missing")  # no error where the folder cannot be opened


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_text_atomic(tmp_path / "nope" / "x.txt", "x")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_write_leaves_old_file(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(OLD)
    script = textwrap.dedent(
        """
        import sys, time
        from mulegraph.core.atomic import atomic_path
        with atomic_path(sys.argv[1]) as tmp, open(tmp, "wb") as fh:
            fh.write(b"partial" * 100000)
            fh.flush()
            print("writing", flush=True)
            time.sleep(60)
            fh.write(b"never")
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        partial = _leftovers(tmp_path)
        assert len(partial) == 1 and (tmp_path / partial[0]).stat().st_size == 700000
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert target.read_bytes() == OLD
    # a killed writer may leave its temp file; it never replaces the target
    assert all(n.startswith(".data.bin.") for n in _leftovers(tmp_path))
    write_bytes_atomic(target, b"next")
    assert target.read_bytes() == b"next"
