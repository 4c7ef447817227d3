"""Atomic writes: the target is the old file or the new one, never half of either."""
import os

import pytest

from edge.atomic import replacing, write_atomic, write_file_synced


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path):
    target = tmp_path / "journal.json"
    write_atomic(target, "old")
    write_atomic(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new" and (target.stat().st_mode & 0o777) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["journal.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "best.pt"
    write_atomic(target, b"old")
    with pytest.raises(RuntimeError), replacing(target) as fh:
        fh.write(b"half")
        raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["best.pt"]


def test_write_file_synced_never_overwrites(tmp_path):
    write_file_synced(tmp_path / "SHA256SUMS", b"x")
    with pytest.raises(FileExistsError):
        write_file_synced(tmp_path / "SHA256SUMS", b"y")
    assert (tmp_path / "SHA256SUMS").read_bytes() == b"x"
