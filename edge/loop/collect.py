"""Training photos from the case: crops of enrolled slots whose piece is present and still.

The device sees every piece of its case at the case's scale and light all day; the photos a model misses are
exactly those its product shots do not show that way. So, when collection is on (``collect.enabled``, the kiosk's
"Collect training photos from this case", or ``gemsight-edge collect``), each camera keeps crops of its slots:

* only **enrolled** slots whose state is ``present`` (a state that is only published once the slot is still:
  never a crop while ``occluded``, i.e. with a hand or motion over it), and only the slot's crop, never the frame;
* labelled with the slot's **confirmed class**: the class the kiosk's planogram gives the slot (sent with the
  request, for slots whose reference is still the one enrolled when it was sent), else the label the enrolment
  recorded (what the model read in the slot when the store enrolled it);
* crops must **vary**: a slot gives at most one every ``every_s``; one whose embedding is within ``max_cosine`` of
  a crop the slot kept, and whose brightness is within ``min_light_change`` of it, is a near-duplicate and dropped;
  a slot keeps at most ``per_slot_per_day`` a day.

The decision is made on the loop's thread and costs a comparison per slot per frame while a slot is not due; the
JPEG is encoded and written by :class:`~edge.loop.collect_store.CollectWriter`. Collection with no enrolled slot
is refused, naming what to do.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from edge.config.collect import CollectConfig
from edge.contracts import ID_PATTERN
from edge.errors import DataError
from edge.loop.collect_store import CollectWriter, read_manifest
from edge.loop.slot_states import SlotState, SlotTracker

logger = logging.getLogger(__name__)

MAX_HOURS = 24 * 31
KEPT_PER_SLOT = 256          # crops of a slot remembered for the near-duplicate test
_CLASS = re.compile(ID_PATTERN)


class CollectRefused(DataError):
    """A request to collect that cannot be met (no enrolment, no slot states); the message says what to do."""


def crop_name(device: str, camera: str, slot: str, ts: float) -> str:
    """``<device>_<camera>_<slot>_<UTC time>.jpg``: one slot gives at most one crop a second."""
    return f"{device}_{camera}_{slot}_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(ts))}.jpg"


def local_day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts))


@dataclass
class _SlotLog:
    """What one slot kept: when it was last sampled, how many crops today, the crops it remembers."""

    last_t: float | None = None
    day: str = ""
    today: int = 0
    kept: deque = field(default_factory=lambda: deque(maxlen=KEPT_PER_SLOT))   # (embedding, brightness)


class CameraCollector:
    """One camera's collection (the loop's thread offers every frame; request threads turn it on and off).

    Args:
        device: the device id (file names, manifest).
        camera: the camera id.
        tracker: the camera's slot tracker (its states, enrolment and embeddings decide).
        cfg: the ``collect`` section of the device config.
        writer: the device's crop writer.
        model: the model's name@version (manifest).
    """

    def __init__(self, device: str, camera: str, tracker: SlotTracker, cfg: CollectConfig, writer: CollectWriter,
                 model: str) -> None:
        self.device, self.camera, self.tracker, self.cfg = device, camera, tracker, cfg
        self.writer = writer
        self.model = model
        self.on = False
        self.until: float | None = None
        self.given: dict[str, tuple[str, float]] = {}    # slot -> (planogram class, its reference's ts)
        self.duplicates = 0
        self._logs: dict[str, _SlotLog] | None = None
        self._lock = threading.Lock()
        if cfg.enabled:
            self.on = True
            self._load_logs()     # now, not on the loop's thread
            logger.info("camera %s: collecting training crops into %s (collect.enabled)", camera, writer.store.root)

    # -- requests (any thread) -------------------------------------------------------------------------------
    def start(self, hours: float | None = None, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Turn collection on (for ``hours``; ``None``: until turned off) with the store's classes per slot.

        Raises:
            CollectRefused: slot states are off, or no slot is enrolled.
            UnknownSlot: ``labels`` names a slot this camera does not have.
            DataError: a bad ``hours`` or class name.
        """
        if hours is not None and not 0 < hours <= MAX_HOURS:
            raise DataError(f"hours must be more than 0 and at most {MAX_HOURS}, got {hours:g}")
        for slot, label in (labels or {}).items():
            self.tracker.index(slot)
            if not _CLASS.match(label) or label == self.tracker.empty_label:
                raise DataError(f"slot {slot}: {label[:64]!r} is not a class name (letters, digits, '.', '-', '_')")
        tr = self.tracker
        if not tr.enabled:
            raise CollectRefused(f"camera {self.camera}: cannot collect: {tr.problem or 'slot states are disabled'} "
                                 "(crops are kept only of enrolled slots whose piece is present)")
        with tr._lock:
            refs = {name: ref.ts for name, ref in tr.enrolment.slots.items()}
        if not refs:
            raise CollectRefused(f"camera {self.camera} has no enrolled slot: enrol the case first (the kiosk's "
                                 "\"Enrol this case\" or gemsight-edge enrol); crops are labelled by the enrolment")
        with self._lock:
            self.given = {s: (c, refs[s]) for s, c in (labels or {}).items() if s in refs}
            self.until = time.time() + hours * 3600.0 if hours is not None else None
            self.on = True
            self._load_logs()
        self.writer.retry()
        logger.info("camera %s: collecting training crops of %d enrolled slot(s)%s into %s", self.camera, len(refs),
                    f" for {hours:g} h" if hours is not None else "", self.writer.store.root)
        return self.status()

    def stop(self) -> dict[str, Any]:
        with self._lock:
            self.on, self.until = False, None
        logger.info("camera %s: collection off", self.camera)
        return self.status()

    def status(self) -> dict[str, Any]:
        """The ``collect`` reply: on or off, until when, each enrolled slot's class, crops kept today."""
        with self.tracker._lock:
            refs = dict(self.tracker.enrolment.slots)
        with self._lock:
            logs = self._logs or {}
            return {"kind": "collect", "camera": self.camera, "on": self.on, "until": self.until,
                    "classes": {s: self._label(s, r)[0] for s, r in sorted(refs.items())},
                    "today": {s: log.today for s, log in sorted(logs.items()) if log.day == local_day(time.time())},
                    "duplicates": self.duplicates, "written": self.writer.written, "stopped": self.writer.stopped,
                    "dir": str(self.writer.store.root)}

    def _label(self, slot: str, ref: Any) -> tuple[str, str]:
        given = self.given.get(slot)
        if given is not None and given[1] == ref.ts:
            return given[0], "planogram"
        return ref.label, "enrolment"

    def _load_logs(self) -> None:
        """Today's counts and last crops per slot from the manifest (a restart keeps the day's cap)."""
        if self._logs is not None:
            return
        self._logs = {}
        today = local_day(time.time())
        for e in read_manifest(self.writer.store.manifest):
            if e.get("camera") == self.camera and e.get("device") == self.device and isinstance(e.get("slot"), str):
                log = self._logs.setdefault(e["slot"], _SlotLog())
                if local_day(e["ts"]) == today:
                    log.day, log.today = today, log.today + 1

    # -- every frame (the loop's thread) ---------------------------------------------------------------------
    def offer(self, t: float, ts: float, crops: Sequence[np.ndarray], embeddings: np.ndarray | None,
              states: Sequence[tuple[SlotState, float | None]]) -> int:
        """One frame's slots; returns how many crops were handed to the writer."""
        if not self.on or embeddings is None or self.writer.stopped is not None:
            return 0
        if self.until is not None and ts > self.until:
            logger.info("camera %s: collection ended (its hours are over)", self.camera)
            self.stop()
            return 0
        kept = 0
        with self._lock:
            if self._logs is None:
                self._load_logs()
            for i, (name, (state, similarity)) in enumerate(zip(self.tracker.names, states)):
                if state != SlotState.PRESENT:
                    continue
                log = self._logs.setdefault(name, _SlotLog())
                if log.last_t is not None and 0 <= t - log.last_t < self.cfg.every_s:
                    continue
                ref = self.tracker.enrolment.slots.get(name)
                if ref is None:
                    continue
                label, source = self._label(name, ref)
                if not _CLASS.match(label or "") or label == self.tracker.empty_label:
                    continue
                kept += self._sample(name, log, t, ts, crops[i], embeddings[i], label, source, similarity)
        return kept

    def _sample(self, name: str, log: _SlotLog, t: float, ts: float, crop: np.ndarray, emb: np.ndarray, label: str,
                source: str, similarity: float | None) -> int:
        log.last_t = t
        day = local_day(ts)
        if day != log.day:
            log.day, log.today = day, 0
        if log.today >= self.cfg.per_slot_per_day:
            return 0
        brightness = float(crop.mean())
        for kept_emb, kept_brightness in log.kept:
            if float(emb @ kept_emb) >= self.cfg.max_cosine and (
                    self.cfg.min_light_change == 0 or abs(brightness - kept_brightness) < self.cfg.min_light_change):
                self.duplicates += 1
                return 0
        entry = {"device": self.device, "camera": self.camera, "slot": name, "ts": round(ts, 3),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)), "model": self.model, "class": label,
                 "label_source": source, "file": f"{label}/{crop_name(self.device, self.camera, name, ts)}",
                 "enrolment": self.tracker.enrolment.id, "brightness": round(brightness, 1),
                 "similarity": None if similarity is None else round(similarity, 4)}
        if not self.writer.put(entry, np.ascontiguousarray(crop).copy()):
            return 0
        log.kept.append((np.array(emb, dtype=np.float32), brightness))
        log.today += 1
        return 1

