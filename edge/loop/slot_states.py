"""Every slot's state, from its own reference piece: present, changed, empty, occluded or unenrolled.

A store asks of each slot whether the piece that was there at opening is still there, and whether it is
the same piece. The category the model reads answers neither reliably (a misread ring is not a
missing ring), so each slot is compared with *its own* reference, recorded at enrolment:

* a slot moves (a hand, a customer's sleeve) → ``occluded``: no decision until it has been still for
  ``still_s``. Motion is a change of both the crop's pixels (a tiny grey thumbnail with light's gain
  divided out, so a flicker or a slow lighting ramp is not motion) and of its embedding from one frame
  to the next: the video codec's refreshes jolt the pixels of a plain empty tray without moving the
  embedding, and a sparkle moves the embedding of a piece a little without its pixels;
* once still: its embedding is within the slot's threshold of the reference → ``present`` (the reference
  follows the slow changes of a piece it matches: the day's light), unless a hand came over it and what
  lies there after the hand is another piece (its mean embedding and colour look over its first still
  frames against those before the hand: another piece of the same kind passes the reference's threshold,
  which the day's light needs); else the model reads ``empty`` → ``empty`` (at once, without waiting for
  the frames that check the piece after a hand: a smash-and-grab's slots must alarm within seconds);
  else → ``changed``. Once decided, whether the slot holds a piece or none flips only when most of its still
  frames' labels over ``label_window_s`` say so: nothing leaves or enters a still slot without a hand;
* a slot without a reference → ``unenrolled`` (it enrols itself once still with a piece, where
  ``auto_enrol`` is on, or when the kiosk or ``gemsight-edge enrol`` asks).

Thresholds come from each slot's own spread at enrolment (:func:`edge.loop.enrolment.make_reference`). A
decided state must hold ``confirm_frames`` frames before it is published. Time is the video's own for
files (frame index / fps, so a benchmark may play a day faster than real time) and the capture clock
for live cameras.
"""
from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.config.states import StatesConfig
from edge.errors import DataError
from edge.loop.enrolment import (Enrolment, EnrolmentError, EnrolmentStore, jpeg, make_reference, model_key,
                            slot_map_digest, thumbnail)
from edge.loop.identity import check_identity, window_since, windows_before

logger = logging.getLogger(__name__)


class SlotState(str, enum.Enum):
    """A slot's state in a labels message (serialised as its value)."""

    PRESENT = "present"
    CHANGED = "changed"
    EMPTY = "empty"
    OCCLUDED = "occluded"
    UNENROLLED = "unenrolled"


OCCLUDED_REASON = "occluded (a hand or motion over it): enrol it when it is still"
_DECIDED = (SlotState.PRESENT, SlotState.CHANGED, SlotState.EMPTY)


class UnknownSlot(DataError):
    """A request named a slot this camera does not have."""


@dataclass
class _Track:
    """What one slot's state is decided from."""

    grey: np.ndarray | None = None                 # the last frame's grey thumbnail (motion)
    emb: np.ndarray | None = None                  # the last frame's embedding
    t: float = 0.0                                 # the last frame's time
    still_since: float | None = None
    recent: deque = field(default_factory=deque)   # embeddings since the slot became still
    empties: deque = field(default_factory=deque)  # (time, read empty) of its still frames in label_window_s
    n_empty: int = 0                               # ... how many of them read empty
    history: deque = field(default_factory=deque)  # (time, embedding, thumbnails) of its last still frames
    before: tuple | None = None                    # (embedding, look, detail) of the present piece when a hand came
    anchor: tuple | None = None                    # ... and as it was last verified (enrolled, the same after a hand)
    other: bool | None = None                      # after that hand: another piece (None: not decided yet)
    label: str = ""
    state: SlotState = SlotState.UNENROLLED
    pending: SlotState | None = None
    pending_n: int = 0
    similarity: float | None = None


class SlotTracker:
    """One camera's slot states and enrolment (the loop's thread updates it; request threads enrol
    and read evidence under the same lock).

    Args:
        camera: the camera id.
        slots: the camera's :class:`~edge.loop.slots.SlotMap` (crops for references and evidence).
        slot_configs: the slot map as configured (an enrolment is bound to it).
        manifest: the model's manifest (an enrolment is bound to its name, version and embedding).
        cfg: the ``states`` section of the device config.
        state_dir: where enrolments are kept (``None``: nowhere, they last as long as the process).
        empty_label: the class meaning nothing is in the slot.
    """

    def __init__(self, camera: str, slots: Any, slot_configs: Sequence[Any], manifest: Any, cfg: StatesConfig,
                 state_dir: Path | None, empty_label: str = "empty") -> None:
        self.camera = camera
        self.slots = slots
        self.names = list(slots.names)
        self.cfg = cfg
        self.empty_label = empty_label
        self.enabled = cfg.enabled and manifest.embedding is not None
        self.problem: str | None = None
        if cfg.enabled and manifest.embedding is None:
            self.problem = (f"model {manifest.name} {manifest.version} has no embedding output: every slot stays "
                            "unenrolled (export it with this gemsight's trainer)")
            logger.warning("camera %s: %s", camera, self.problem)
        self.enrolment = Enrolment(camera, model_key(manifest), slot_map_digest(slot_configs))
        self.store = EnrolmentStore(state_dir, camera) if state_dir is not None else None
        history = (cfg.before_windows + 2) * cfg.enrol_frames
        self._tracks = [_Track(recent=deque(maxlen=cfg.enrol_frames), history=deque(maxlen=history))
                        for _ in self.names]
        self._lock = threading.Lock()
        self._frame = threading.Condition(self._lock)    # notified after every frame
        self._feeder: int | None = None                  # the thread that feeds frames
        self._image: np.ndarray | None = None
        self._t = 0.0
        self._ts = 0.0
        if self.enabled and self.store is not None:
            self._load()

    def _load(self) -> None:
        try:
            stored = self.store.load(model=self.enrolment.model, slot_map=self.enrolment.slot_map,
                                     slot_names=self.names)
        except EnrolmentError as exc:
            self.problem = f"{exc}; {'enrolling again' if self.cfg.auto_enrol else 'enrol the case again'}"
            logger.error("camera %s: ENROLMENT REFUSED: %s", self.camera, self.problem)
            return
        if stored is not None:
            self.enrolment = stored
            logger.info("camera %s: enrolment %s loaded (%d of %d slots)", self.camera, stored.id,
                        len(stored.slots), len(self.names))

    # -- every frame ------------------------------------------------------------------------------
    def update(self, t: float, ts: float, image: np.ndarray, crops: Sequence[np.ndarray],
               embeddings: np.ndarray | None, labels: Sequence[str]) -> list[tuple[SlotState, float | None]]:
        """One frame: every slot's (state, similarity to its reference).

        Args:
            t: the frame's time in seconds (the video's for files, the capture clock's for cameras).
            ts: its capture time (Unix seconds), for evidence.
            image: the frame (kept for evidence and references; never copied).
            crops: every slot's crop of it, in slot order.
            embeddings: ``n_slots x dim`` unit rows (``None`` where the model has none).
            labels: every slot's smoothed category label.
        """
        cfg = self.cfg
        out: list[tuple[SlotState, float | None]] = []
        with self._frame:
            self._feeder = threading.get_ident()
            self._image, self._t, self._ts = image, t, ts
            auto_enrolled = []
            for i, (name, tr) in enumerate(zip(self.names, self._tracks)):
                small = thumbnail(crops[i], 32)
                h2, w2 = small.shape[0] // 2, small.shape[1] // 2
                thumb = small.reshape(h2, 2, w2, 2, small.shape[2]).mean(axis=(1, 3))   # 16 x 16
                grey = thumb.mean(axis=2)
                emb = embeddings[i] if embeddings is not None else None
                moving = tr.grey is None or (float(np.abs(grey - tr.grey).mean()) > cfg.motion and (
                    emb is None or tr.emb is None or 1.0 - float(emb @ tr.emb) > cfg.motion_embedding))
                tr.grey, tr.emb, tr.label = grey, emb, labels[i]
                if moving:
                    if tr.state == SlotState.PRESENT and tr.before is None:
                        # the piece before the hand
                        tr.before = windows_before(tr.history, t - cfg.identity_guard_s, cfg) or None
                    tr.other = None
                    tr.still_since = None
                    tr.recent.clear()
                    tr.empties.clear()
                    tr.n_empty = 0
                else:
                    if tr.still_since is None:
                        tr.still_since = t
                    tr.empties.append((t, labels[i] == self.empty_label))
                    tr.n_empty += labels[i] == self.empty_label
                    if emb is not None:
                        tr.recent.append(emb)
                        tr.history.append((t, emb, thumb, small))
                still = tr.still_since is not None and t - tr.still_since >= cfg.still_s
                ref = self.enrolment.slots.get(name) if self.enabled else None
                if ref is None and self.enabled and cfg.auto_enrol and still and labels[i] != self.empty_label \
                        and len(tr.recent) >= cfg.enrol_frames:
                    ref = self._enrol_slot(i, crops[i])
                    auto_enrolled.append(name)
                tr.similarity = None if ref is None or emb is None else float(emb @ ref.embedding)
                same = ref is not None and tr.similarity is not None and tr.similarity >= ref.threshold
                if still and tr.before is not None and (tr.other is None or cfg.identity_recheck):
                    check_identity(tr, t, cfg, self.empty_label)
                reads_empty = self._reads_empty(tr, labels[i] == self.empty_label, t)
                gone = reads_empty and not same   # empty whichever piece lay there before
                if ref is None:
                    candidate = SlotState.UNENROLLED
                elif not still or (tr.before is not None and tr.other is None and not gone):
                    candidate = SlotState.OCCLUDED     # moving, or still too briefly to tell the piece after a hand
                elif same and not tr.other:
                    # The enrolled piece, even where the model calls a small piece "empty".
                    candidate = SlotState.PRESENT
                    self._follow(ref, emb, t - tr.t)
                elif reads_empty:
                    candidate = SlotState.EMPTY
                elif cfg.change_needs_hand and not tr.other and (tr.other is False or tr.state == SlotState.PRESENT):
                    candidate = SlotState.PRESENT  # no hand since it was present, or the piece after one: light, glare
                else:
                    candidate = SlotState.CHANGED
                tr.t = t
                self._settle(tr, candidate, fresh=name in auto_enrolled)
                out.append((tr.state, tr.similarity))
            if auto_enrolled:
                self._save(f"auto-enrolled {', '.join(auto_enrolled)}", auto_enrolled)
            self._frame.notify_all()
        return out

    def _reads_empty(self, tr: _Track, empty_now: bool, t: float) -> bool:
        """Whether the slot reads empty: this frame's label, but a decided slot (present, changed, empty) flips
        between a piece and none only when most of its still frames over ``label_window_s`` say so (nothing
        leaves or enters a slot without a hand, which makes it occluded and decides afresh; a faint piece's label
        flickering must not restart the kiosk's count of a swap or clear a missing piece)."""
        while tr.empties and tr.empties[0][0] < t - self.cfg.label_window_s:
            tr.n_empty -= tr.empties.popleft()[1]
        n = len(tr.empties)
        if self.cfg.label_window_s <= 0 or n == 0 or tr.state not in _DECIDED:
            return empty_now
        if tr.state == SlotState.EMPTY:
            return 2 * (n - tr.n_empty) <= n     # stays empty unless most read a piece
        return 2 * tr.n_empty > n               # stays a piece unless most read empty

    def _follow(self, ref: Any, emb: np.ndarray | None, dt: float) -> None:
        """The reference follows slow changes of the piece it already matches (the day's light moving over
        the case) with a time constant of ``follow_s``; an abrupt change never matches, so it is never
        followed. Kept in memory: a restart starts again from the enrolled reference."""
        if emb is None or self.cfg.follow_s <= 0 or dt <= 0:
            return
        alpha = min(0.2, dt / self.cfg.follow_s)
        moved = (1.0 - alpha) * ref.embedding + alpha * emb
        ref.embedding = (moved / max(float(np.linalg.norm(moved)), 1e-12)).astype(np.float32)

    def _settle(self, tr: _Track, candidate: SlotState, fresh: bool) -> None:
        """Publish ``candidate`` once it held ``confirm_frames`` frames (occluded, unenrolled and a
        fresh enrolment at once)."""
        if candidate == tr.state:
            tr.pending, tr.pending_n = None, 0
            return
        if fresh or candidate in (SlotState.OCCLUDED, SlotState.UNENROLLED):
            tr.state, tr.pending, tr.pending_n = candidate, None, 0
            return
        tr.pending_n = tr.pending_n + 1 if tr.pending == candidate else 1
        tr.pending = candidate
        if tr.pending_n >= self.cfg.confirm_frames:
            tr.state, tr.pending, tr.pending_n = candidate, None, 0

    def _enrol_slot(self, i: int, crop: np.ndarray):
        """Record slot ``i``'s reference from its still frames (under the lock)."""
        tr, cfg = self._tracks[i], self.cfg
        ref = make_reference(np.stack(list(tr.recent)), tr.label, spread_k=cfg.spread_k, min_margin=cfg.min_margin,
                             max_margin=cfg.max_margin, crop_jpeg=jpeg(crop))
        self.enrolment.slots[self.names[i]] = ref
        self.problem = None
        tr.state, tr.pending, tr.pending_n = SlotState.PRESENT, None, 0
        tr.before = tr.other = None
        tr.anchor = window_since(tr.history, tr.still_since, cfg) if tr.still_since is not None else None
        return ref

    def _save(self, why: str, slots: Sequence[str]) -> None:
        """Record a (re-)enrolment: a new id now, the files written by the writer thread (under the lock:
        the loop's thread never waits for a disk)."""
        self.enrolment.touch()
        logger.info("camera %s: %s (enrolment %s, %d of %d slots)", self.camera, why, self.enrolment.id,
                    len(self.enrolment.slots), len(self.names))
        if self.store is not None:
            crops = {name: self.enrolment.slots[name].crop_jpeg for name in slots}
            self.store.save_later(self.store.document(self.enrolment), crops)

    def flush(self) -> None:
        """Wait until every enrolment was written (the loop calls it when it stops)."""
        if self.store is not None:
            self.store.flush()

    # -- requests (any thread) -----------------------------------------------------------------------
    def index(self, slot: str) -> int:
        try:
            return self.names.index(slot)
        except ValueError:
            raise UnknownSlot(f"camera {self.camera} has no slot '{slot}' (slots: {', '.join(self.names)})") from None

    def enrol(self, slots: Sequence[str] | None = None, pieces: Sequence[str] = ()) -> dict[str, Any]:
        """Enrol ``slots`` (all by default) from their last still frames (a slot still only just is waited for).

        A slot that is moving or covered is refused, naming why; so is one read empty, unless ``pieces`` (the
        store's planogram) names it (a faint piece; listed in ``unseen``). The others are enrolled and saved.

        Raises:
            UnknownSlot: a slot name this camera does not have.
            EnrolmentError: the model has no embedding (nothing to enrol with).
        """
        if not self.enabled:
            raise EnrolmentError(f"camera {self.camera}: cannot enrol: {self.problem or 'slot states are disabled'}")
        names = list(self.names if slots is None else slots)
        indices = [self.index(n) for n in names]
        for name in pieces:
            self.index(name)            # an unknown slot is refused by name, like one in ``slots``
        enrolled, refused, labels, unseen = [], {}, {}, []
        with self._frame:
            self._await_settled(indices)
            crops = self.slots.crop(self._image) if self._image is not None else None
            for name, i in zip(names, indices):
                tr = self._tracks[i]
                if crops is None or tr.still_since is None or self._t - tr.still_since < self.cfg.still_s \
                        or len(tr.recent) < 2:
                    refused[name] = OCCLUDED_REASON
                elif tr.label == self.empty_label and name not in pieces:
                    refused[name] = "empty: nothing to enrol"
                else:
                    self._enrol_slot(i, crops[i])
                    enrolled.append(name)
                    labels[name] = tr.label
                    unseen += [name] if tr.label == self.empty_label else []
            if enrolled:
                self._save(f"enrolled {', '.join(enrolled)} on request", enrolled)
            summary = self.enrolment.summary()
        for name, why in refused.items():
            logger.warning("camera %s: slot %s not enrolled: %s", self.camera, name, why)
        for name in unseen:
            logger.warning("camera %s: slot %s enrolled on the store's word, read as empty", self.camera, name)
        return {"kind": "enrol", "camera": self.camera, "enrolled": enrolled, "refused": refused, "labels": labels,
                "unseen": unseen, "enrolment": summary}

    def _await_settled(self, indices: Sequence[int]) -> None:
        """Wait (up to ``enrol_wait_s``; the wait frees the lock) until each of these slots that is still has
        ``enrol_frames`` still frames past ``identity_guard_s``: a reference made in a hand's shadow reads the
        piece as another once it has gone. Never on the thread that feeds frames: it would wait for itself."""
        if self.cfg.enrol_wait_s <= 0 or threading.get_ident() == self._feeder:
            return
        deadline, guard, n = time.monotonic() + self.cfg.enrol_wait_s, self.cfg.identity_guard_s, self.cfg.enrol_frames

        def settling(tr: _Track) -> bool:     # a moving slot is not waited for: it is refused
            return tr.still_since is not None and sum(r[0] >= tr.still_since + guard for r in tr.history) < n

        while any(settling(self._tracks[i]) for i in indices) and (left := deadline - time.monotonic()) > 0:
            self._frame.wait(left)

    def evidence(self, slot: str) -> dict[str, Any]:
        """The slot's crop in the latest frame and its reference crop, as JPEG bytes.

        Raises:
            UnknownSlot: no such slot.
            DataError: no frame yet.
        """
        i = self.index(slot)
        with self._lock:
            if self._image is None:
                raise DataError(f"camera {self.camera}: no frame yet")
            crop = self.slots.crop(self._image)[i]
            ref = self.enrolment.slots.get(slot)
            state = self._tracks[i].state.value
            ts = self._ts
            summary = self.enrolment.summary()
        return {"camera": self.camera, "slot": slot, "ts": ts, "state": state, "current": jpeg(crop),
                "reference": ref.crop_jpeg if ref is not None and ref.crop_jpeg else None, "enrolment": summary}

    def summary(self) -> dict[str, Any] | None:
        with self._lock:
            return self.enrolment.summary()
