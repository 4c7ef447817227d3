"""Every incident keeps its evidence: the slot's reference crop beside its crop at the moment it fired.

When a missing, swapped or smash incident opens (from slot states), the :class:`EvidenceCollector`
asks the device for each slot's crops (:func:`kiosk.device_requests.request_evidence`) on its own
thread: the feed never waits for a device. The :class:`EvidenceStore` checks that both are JPEGs
(magic bytes, end marker, size cap) and keeps them under the kiosk's state directory::

    <state_dir>/evidence/<incident id>/<camera>/<slot>/{reference.jpg, current.jpg, meta.json}

``meta.json`` says when the crop was taken, the slot's state and enrolment, or why there is no
picture (the device did not answer, sent something that is not a JPEG). Retention: directories older
than ``policies.evidence_days`` go, then the oldest until the total is under ``policies.evidence_mb``.
"""
from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from edge.atomic import write_atomic
from edge.contracts import ID_PATTERN
from edge.errors import GemsightError
from kiosk.config import KioskConfig
from kiosk.device_requests import DeviceRequestError, request_evidence
from kiosk.incident import Incident

logger = logging.getLogger(__name__)

DIR_NAME = "evidence"
JPEG_MAX_BYTES = 4 << 20          # a slot crop is tens of kB; a 4 MB one is not a crop
JPEG_SOI, JPEG_EOI = b"\xff\xd8\xff", b"\xff\xd9"
WHICH = ("reference", "current")
EVIDENCE_KINDS = ("missing", "swapped", "smash")
QUEUE_MAX = 200
_ID = re.compile(ID_PATTERN)


class EvidenceError(GemsightError):
    """A picture that cannot be kept (not a JPEG, too large), or a bad place name."""


def check_jpeg(data: Any, what: str) -> bytes:
    """Return ``data`` if it is a JPEG of at most :data:`JPEG_MAX_BYTES`, else raise :class:`EvidenceError`."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise EvidenceError(f"{what}: no picture data")
    if len(data) > JPEG_MAX_BYTES:
        raise EvidenceError(f"{what}: {len(data)} bytes is over the {JPEG_MAX_BYTES} bytes allowed for a crop")
    if not data.startswith(JPEG_SOI):
        raise EvidenceError(f"{what}: not a JPEG (starts with {bytes(data[:4]).hex()}, not ffd8ff)")
    if not bytes(data).rstrip(b"\x00").endswith(JPEG_EOI):
        raise EvidenceError(f"{what}: a JPEG cut short (no end marker ffd9)")
    return bytes(data)


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise EvidenceError(f"{what} {value!r} is not a valid id")
    return value


class EvidenceStore:
    """The evidence pictures under ``<state_dir>/evidence``.

    Args:
        state_dir: The kiosk's state directory.
        max_days: Keep pictures this many days.
        max_mb: Keep at most this many megabytes (oldest incidents pruned first).
    """

    def __init__(self, state_dir: str | Path, max_days: float, max_mb: float) -> None:
        self.root = Path(state_dir) / DIR_NAME
        self.max_days, self.max_bytes = max_days, int(max_mb * (1 << 20))
        self._lock = threading.Lock()

    def _slot_dir(self, incident_id: int, camera: str, slot: str) -> Path:
        return self.root / str(int(incident_id)) / _check_id(camera, "camera") / _check_id(slot, "slot")

    def save(self, incident_id: int, device: str, camera: str, slot: str, *, current: bytes,
             reference: bytes | None, ts: float | None, now: float, **info: Any) -> dict[str, Any]:
        """Check and keep one slot's crops; returns its meta (with the files' paths).

        Raises:
            EvidenceError: a crop is not a JPEG or too large (nothing is written then).
        """
        where = f"incident {incident_id} {device}/{camera}/{slot}"
        current = check_jpeg(current, f"{where}: current crop")
        reference = check_jpeg(reference, f"{where}: reference crop") if reference is not None else None
        d = self._slot_dir(incident_id, camera, slot)
        with self._lock:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(d / "current.jpg", current, 0o600)
            if reference is not None:
                write_atomic(d / "reference.jpg", reference, 0o600)
            meta = {"incident": incident_id, "device": device, "camera": camera, "slot": slot, "ts": ts,
                    "saved_at": now, "reference": reference is not None, "current": True, "error": None, **info}
            write_atomic(d / "meta.json", json.dumps(meta, default=str), 0o600)
        self.prune(now)
        return self._with_paths(d, meta)

    def save_error(self, incident_id: int, device: str, camera: str, slot: str, error: str, now: float) -> dict:
        """Keep why there is no picture for this slot (shown on the page and by the CLI)."""
        d = self._slot_dir(incident_id, camera, slot)
        meta = {"incident": incident_id, "device": device, "camera": camera, "slot": slot, "ts": None,
                "saved_at": now, "reference": False, "current": False, "error": error}
        with self._lock:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(d / "meta.json", json.dumps(meta), 0o600)
        return self._with_paths(d, meta)

    @staticmethod
    def _with_paths(d: Path, meta: dict[str, Any]) -> dict[str, Any]:
        files = {w: str(d / f"{w}.jpg") for w in WHICH if (d / f"{w}.jpg").is_file()}
        return {**meta, "files": files}

    def items(self, incident_id: int) -> list[dict[str, Any]]:
        """Every slot's evidence of an incident (meta with ``files``: which -> path), by camera and slot."""
        base = self.root / str(int(incident_id))
        out = []
        for meta_path in sorted(base.glob("*/*/meta.json")):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError) as exc:
                logger.warning("%s: unreadable evidence meta (%s)", meta_path, exc)
                continue
            out.append(self._with_paths(meta_path.parent, meta))
        return out

    def file(self, incident_id: int, camera: str, slot: str, which: str) -> Path | None:
        """The path of one stored picture, or None (unknown incident, camera, slot or picture)."""
        if which not in WHICH:
            return None
        try:
            p = self._slot_dir(incident_id, camera, slot) / f"{which}.jpg"
        except EvidenceError:
            return None
        return p if p.is_file() else None

    @staticmethod
    def _saved_at(d: Path, files: list[Path]) -> float:
        """When an incident's evidence was kept (its metas' ``saved_at``: the kiosk's clock), else the files' time."""
        times = []
        for f in files:
            if f.name == "meta.json":
                try:
                    times.append(float(json.loads(f.read_text())["saved_at"]))
                except (OSError, ValueError, KeyError, TypeError):
                    times.append(f.stat().st_mtime)
        return max(times, default=max((f.stat().st_mtime for f in files), default=d.stat().st_mtime))

    def prune(self, now: float) -> int:
        """Remove incidents' evidence older than ``max_days``, then the oldest past ``max_bytes``; returns
        how many incidents' evidence went."""
        if not self.root.is_dir():
            return 0
        entries = []
        for d in self.root.iterdir():
            if not d.is_dir() or not d.name.isdigit():
                continue
            files = [f for f in d.rglob("*") if f.is_file()]
            entries.append((self._saved_at(d, files), int(d.name), sum(f.stat().st_size for f in files), d))
        entries.sort()
        total, removed = sum(e[2] for e in entries), 0
        cutoff = now - self.max_days * 86400.0
        with self._lock:
            for newest, _, size, d in entries:
                if newest >= cutoff and total <= self.max_bytes:
                    break
                shutil.rmtree(d, ignore_errors=True)
                total -= size
                removed += 1
        if removed:
            logger.info("evidence: pruned the pictures of %d incident(s) (%d days, %d MB kept at most)",
                        removed, self.max_days, self.max_bytes >> 20)
        return removed


class EvidenceCollector:
    """Fetches the evidence of new incidents from their devices, on its own thread.

    Args:
        config: The kiosk config (devices, keys, policies).
        clock: Wall time.
        fetch: The request function (:func:`~kiosk.device_requests.request_evidence`; tests may pass
            another that talks to a test device).
        on_stored: Called with ``(incident_id, metas)`` after an incident's evidence is kept.
    """

    def __init__(self, config: KioskConfig, *, clock: Callable[[], float] = time.time,
                 fetch: Callable[..., dict] = request_evidence,
                 on_stored: Callable[[int, list[dict]], None] | None = None) -> None:
        self.config = config
        self.store = EvidenceStore(config.state_dir, config.policies.evidence_days, config.policies.evidence_mb)
        self.clock, self.fetch, self.on_stored = clock, fetch, on_stored
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_MAX)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done = 0

    def start(self) -> "EvidenceCollector":
        self._thread = threading.Thread(target=self._run, name="gemsight-kiosk-evidence", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.policies.snapshot_timeout_s + 3)

    def on_incidents(self, events: list[tuple[str, Incident]]) -> None:
        """The incidents the service just stored: queue the new ones that come from slot states."""
        for event, inc in events:
            if event != "opened" or inc.kind not in EVIDENCE_KINDS or inc.id is None or not inc.evidence.get("states"):
                continue
            slots = inc.evidence.get("slots") if inc.kind == "smash" else [inc.slot]
            try:
                self._queue.put_nowait((inc.id, inc.device, inc.camera, list(slots or [])))
            except queue.Full:
                logger.warning("evidence queue full: no pictures for incident %s (%s)", inc.id, inc.reason)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.collect(*job)

    def _fetch(self, device: str, camera: str, slot: str) -> dict:
        try:
            return self.fetch(self.config, device, camera, slot)
        except DeviceRequestError as exc:
            if exc.status != 504:
                raise
        # The device answers one request at a time, and an enrolment may wait there for its slot to settle (the
        # device's states.enrol_wait_s): asked once more, as long as an enrolment may take.
        logger.info("evidence of %s/%s/%s: no answer in time; asking once more", device, camera, slot)
        return self.fetch(self.config, device, camera, slot, timeout_s=self.config.policies.enrol_timeout_s)

    def collect(self, incident_id: int, device: str, camera: str, slots: list[str]) -> list[dict]:
        """Fetch and keep the evidence of one incident's slots now (the worker's job; errors are kept, never raised)."""
        metas = []
        for slot in slots:
            now = self.clock()
            try:
                got = self._fetch(device, camera, slot)
                metas.append(self.store.save(incident_id, device, camera, slot, current=got["current"],
                                             reference=got["reference"], ts=got.get("ts"), now=now,
                                             state=got.get("state"), enrolment=got.get("enrolment")))
            except (DeviceRequestError, EvidenceError) as exc:
                logger.warning("incident %s: no evidence for %s/%s/%s: %s", incident_id, device, camera, slot, exc)
                try:
                    metas.append(self.store.save_error(incident_id, device, camera, slot, str(exc), now))
                except (EvidenceError, OSError) as exc2:
                    logger.error("incident %s: cannot record the evidence failure: %s", incident_id, exc2)
            except OSError as exc:
                logger.error("incident %s: cannot store evidence under %s: %s", incident_id, self.store.root, exc)
        self.done += 1
        if self.on_stored is not None and metas:
            self.on_stored(incident_id, metas)
        return metas
