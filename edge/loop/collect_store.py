"""Where collected crops are kept on the device, and the thread that writes them.

The folder is the trainer's layout, so ``gemsight-deploy pull-crops`` copies it as it is and ``gemsight-train
--extra-data`` reads it::

    <collect.dir>/<class>/<device>_<camera>_<slot>_<UTC time>.jpg
    <collect.dir>/manifest.jsonl     one JSON line per crop: device, camera, slot, time, model, class, file

Each JPEG is written atomically (:func:`edge.atomic.write_atomic`), then its manifest line is appended in one
``write`` and synced: a power cut leaves at most a torn last line, which every reader skips
(:func:`read_manifest`). Retention removes old crops and rewrites the manifest atomically.

The loop never waits for this disk: it hands a crop to :class:`CollectWriter`'s queue and goes on; a full queue
drops the crop. A disk that is full (or below ``min_free_bytes``), or a folder at ``max_bytes``, stops collection
with one warning; the loop runs on.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge.atomic import write_atomic
from edge.config.collect import CollectConfig
from edge.contracts import COLLECT_MANIFEST

logger = logging.getLogger(__name__)

MANIFEST = COLLECT_MANIFEST
QUEUE_SIZE = 64               # crops waiting for the disk; more are dropped (the loop never blocks)
PRUNE_EVERY_S = 3600.0        # how often retention runs while the device runs
MAX_MANIFEST_LINE = 4096


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """The manifest's entries (a torn or foreign line is skipped: a power cut may tear the last one)."""
    entries = []
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if len(line) > MAX_MANIFEST_LINE:
                    continue
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                if isinstance(doc, dict) and isinstance(doc.get("file"), str) \
                        and isinstance(doc.get("ts"), (int, float)):
                    entries.append(doc)
    except FileNotFoundError:
        pass
    except OSError as exc:   # the caller may be the loop's thread: a bad disk never stops it
        logger.warning("collect: cannot read %s (%s)", path, exc.strerror or exc)
    return entries


def manifest_line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()


class CollectStore:
    """One device's collect folder: writes crops, appends the manifest, prunes by age, watches the space."""

    def __init__(self, root: str | Path, cfg: CollectConfig) -> None:
        self.root = Path(root)
        self.cfg = cfg
        self.manifest = self.root / MANIFEST
        self.used = 0

    def measure(self) -> int:
        """Bytes of the crops in the folder now."""
        used = 0
        if self.root.is_dir():
            for d in self.root.iterdir():
                if d.is_dir():
                    used += sum(f.stat().st_size for f in d.iterdir() if f.is_file())
        self.used = used
        return used

    def space_problem(self, nbytes: int) -> str | None:
        """Why a crop of ``nbytes`` may not be written (``None``: it may)."""
        if self.used + nbytes > self.cfg.max_bytes:
            return f"the collect folder {self.root} reached collect.max_bytes ({self.cfg.max_bytes:,} bytes)"
        there = self.root
        while not there.exists() and there.parent != there:   # the folder (and the state folder) may not exist yet
            there = there.parent
        try:
            free = shutil.disk_usage(there).free
        except OSError as exc:
            return f"cannot see the free space of {self.root} ({exc.strerror or exc})"
        if free - nbytes < self.cfg.min_free_bytes:
            return (f"the disk of {self.root} has {free:,} bytes free, below collect.min_free_bytes "
                    f"({self.cfg.min_free_bytes:,})")
        return None

    def write(self, entry: dict[str, Any], data: bytes) -> None:
        """The crop, then its manifest line (one append, synced)."""
        path = self.root / entry["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        self.used += len(data)
        fd = os.open(self.manifest, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, manifest_line(entry))
            os.fsync(fd)
        finally:
            os.close(fd)

    def prune(self, now: float) -> int:
        """Remove crops older than ``retention_days`` (by the manifest's time, else the file's) and their lines."""
        if not self.root.is_dir():
            return 0
        cutoff = now - self.cfg.retention_days * 86400.0
        entries = read_manifest(self.manifest)
        keep = [e for e in entries if e["ts"] >= cutoff]
        removed = 0
        listed = {e["file"] for e in entries}
        for e in entries:
            if e["ts"] < cutoff:
                removed += self._remove(self.root / e["file"])
        for d in (p for p in self.root.iterdir() if p.is_dir()):
            for f in d.iterdir():   # a crop whose line was torn away: its file's age decides
                if f.is_file() and f"{d.name}/{f.name}" not in listed and f.stat().st_mtime < cutoff:
                    removed += self._remove(f)
        if len(keep) != len(entries):
            write_atomic(self.manifest, b"".join(manifest_line(e) for e in keep))
        if removed:
            self.measure()
            logger.info("collect: removed %d crop(s) older than %g days from %s", removed, self.cfg.retention_days,
                        self.root)
        return removed

    @staticmethod
    def _remove(path: Path) -> int:
        try:
            path.unlink()
            return 1
        except FileNotFoundError:
            return 0


class CollectWriter:
    """The device's one writer thread for collected crops (started on the first crop).

    Args:
        store: the collect folder.
        encode: BGR crop → JPEG bytes.
        clock: wall time (tests pass another).
    """

    def __init__(self, store: CollectStore, encode: Callable[[np.ndarray], bytes],
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.encode = encode
        self.clock = clock
        self.stopped: str | None = None      # why collection stopped (the disk), else None
        self.written = 0
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pruned = 0.0

    def start(self) -> "CollectWriter":
        """Start the thread (idempotent): the loop starts it with the device, so retention runs even while
        collection is off."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="collect-writer", daemon=True)
                self._thread.start()
        return self

    def put(self, entry: dict[str, Any], crop: np.ndarray) -> bool:
        """Hand a crop to the writer (never blocks; ``False`` when it was dropped)."""
        if self.stopped is not None:
            return False
        self.start()
        try:
            self._queue.put_nowait((entry, crop))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def retry(self) -> None:
        """A new request to collect: look at the disk again (space may have been freed)."""
        if self.stopped is not None:
            self.store.measure()
            self.stopped = None

    def _stop(self, why: str) -> None:
        if self.stopped is None:
            logger.warning("COLLECTION STOPPED: %s; the loop runs on (free space, or raise the limit, then ask "
                           "to collect again)", why)
        self.stopped = why

    def _run(self) -> None:
        try:
            self.store.measure()
        except OSError:
            pass
        while True:
            now = self.clock()
            if now - self._pruned >= PRUNE_EVERY_S:
                self._pruned = now
                self._guard(self.store.prune, now)
            try:
                item = self._queue.get(timeout=PRUNE_EVERY_S)
            except queue.Empty:
                continue
            try:
                if item is None:
                    return
                if self.stopped is None:
                    self._guard(self._write, *item)
            finally:
                self._queue.task_done()

    def _write(self, entry: dict[str, Any], crop: np.ndarray) -> None:
        data = self.encode(crop)
        why = self.store.space_problem(len(data))
        if why is not None:
            self._stop(why)
            return
        self.store.write(entry, data)
        self.written += 1

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except OSError as exc:   # a full or read-only disk: collection stops, the loop does not
            self._stop(f"cannot write to {self.store.root} ({exc.strerror or exc})")

    def flush(self) -> None:
        """Wait until every queued crop was written (the loop calls it when it stops; tests too)."""
        if self._thread is not None:
            self._queue.join()
