"""Files that survive a crash or a power cut: written whole or not at all.

Every package writes this way through here (engine cache, TensorRT timing cache, deploy's journal
and unit files, training checkpoints): a temporary file in the same directory (so the rename stays
on one file system), flushed and fsynced, renamed over the target, then the directory fsynced so
the rename itself is on disk.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

DEFAULT_MODE = 0o644


@contextlib.contextmanager
def replacing(path: str | Path, mode: int = DEFAULT_MODE) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to write.
        mode: its permission bits.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: str | Path, data: bytes | str, mode: int = DEFAULT_MODE) -> Path:
    """Replace ``path`` with ``data`` (``str`` is written as UTF-8): temp file, fsync, rename, fsync dir."""
    with replacing(path, mode) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_file_synced(path: str | Path, data: bytes, mode: int = DEFAULT_MODE) -> None:
    """Create ``path`` exclusively (never through a symlink) with ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def fsync_dir(path: str | Path) -> None:
    """fsync a directory so renames and new entries in it survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
