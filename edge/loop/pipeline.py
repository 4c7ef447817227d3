"""The loop's batching and inference threads: the runtime never waits for decode, crop or preprocess.

Three stages run at once::

    grabbers (decode, one thread per camera)
      └► batching thread: takes the newest frame of every camera, crops its slots and preprocesses
         them straight into a preallocated batch buffer (with one helper thread for half the
         rows) ──► a hand-off one batch deep
      └► inference thread: runs the runtime on the handed-off batch, then takes the next one at once
      └► the loop's own thread: postprocesses and publishes each finished batch (edge.loop.run)

While batch N infers, the batching thread prepares batch N+1 from the newest frames; it starts
only once the hand-off is empty, so a prepared batch waits at most for the one inference before
it, and a frame never queues behind older ones (the grabbers keep only the newest frame and count
the ones they replace). Two buffers are allocated once, each for every slot of every camera: one
in the runtime, one being filled; nothing is allocated per slot or per frame.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edge.capture.sources import Frame, Status
from edge.errors import ConfigError, DataError
from edge.loop.state import CameraState
from edge.preprocess import BatchWriter

logger = logging.getLogger(__name__)

IDLE_WAIT_S = 0.25   # the batching thread's longest sleep when no camera has a new frame
BUFFERS = 2          # one batch in the runtime, one being prepared
PREP_THREADS = 2     # threads that fill one batch's rows: the batching thread and one helper


@dataclass
class Span:
    """One frame's rows in a batch, and what cropping and preprocessing them cost."""

    camera: CameraState
    frame: Frame
    first: int
    stop: int
    crop_s: float
    preprocess_s: float


@dataclass
class Batch:
    """Slot images of the frames taken in one turn, on their way through the runtime."""

    buffer: np.ndarray          # the preallocated buffer (all rows); the batch is its first ``rows``
    rows: int
    spans: list[Span]
    t0: float                   # preparing started (monotonic)
    t1: float                   # preparing done
    t_in: float = 0.0           # the runtime call started
    t_out: float = 0.0          # the runtime call returned
    logits: np.ndarray | None = None
    embeddings: np.ndarray | None = None   # where the model has an embedding output
    error: BaseException | None = None

    @property
    def frames(self) -> int:
        return len(self.spans)

    @property
    def array(self) -> np.ndarray:
        return self.buffer[:self.rows]


@dataclass
class PipelineStats:
    """What the threads did (tests read them; the loop's metrics have the timings)."""

    prepared: int = 0        # batches handed off
    inferred: int = 0        # batches run
    buffers: set[int] = field(default_factory=set)  # ids of the batch buffers filled
    # per batch: (preparing started, runtime call started, returned, capture time of its oldest frame)
    runs: collections.deque = field(default_factory=lambda: collections.deque(maxlen=1000))


class BatchPipeline:
    """The batching and inference threads of one loop.

    Args:
        cameras: the loop's cameras.
        writer: preprocesses a crop into a batch row (the manifest's rule).
        runtime: called with an ``N x 3 x H x W`` float32 batch, returns ``N x classes``, or a dict of the
            runtime's outputs (class scores first, then ``N x dim`` embeddings).
        wake: set by the grabbers when a frame arrives.
        done: called (from the inference thread) when a batch finished, so the loop wakes.
        max_frames: take at most this many frames in all (``None``: no limit).
        on_invalid: called with a camera and the error when a frame cannot be cropped.
    """

    def __init__(self, cameras: list[CameraState], writer: BatchWriter, runtime: Callable[[np.ndarray], np.ndarray],
                 wake: threading.Event, done: Callable[[], None], *, max_frames: int | None = None,
                 on_invalid: Callable[[CameraState, Exception], None] | None = None) -> None:
        self.cameras = cameras
        self.writer = writer
        self.runtime = runtime
        self.wake = wake
        self._done_cb = done
        self.max_frames = max_frames
        self.on_invalid = on_invalid
        rows = sum(len(c.slots) for c in cameras)
        self._free = collections.deque(writer.allocate(rows) for _ in range(BUFFERS))
        self.stats = PipelineStats()
        self._cond = threading.Condition()
        self._ready: Batch | None = None      # the hand-off, one batch deep
        self._finished: collections.deque[Batch] = collections.deque()
        self._outstanding = 0                 # frames taken and not yet handed back by :meth:`finished`
        self._taken = 0
        self._ended = 0
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(PREP_THREADS - 1, thread_name_prefix="prep") if PREP_THREADS > 1 else None
        self._threads = [threading.Thread(target=self._batching, name="batch", daemon=True),
                         threading.Thread(target=self._inference, name="infer", daemon=True)]

    # -- the loop's side ------------------------------------------------------------------------
    def start(self) -> "BatchPipeline":
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both threads (a batch in the runtime finishes first)."""
        self._stop.set()
        self.wake.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)
            if t.is_alive():
                logger.warning("%s thread did not stop within %.0fs", t.name, timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def finished(self) -> list[Batch]:
        """Batches the runtime finished (or failed), oldest first; each given back once."""
        with self._cond:
            out = list(self._finished)
            self._finished.clear()
            self._outstanding -= sum(b.frames for b in out)
            return out

    def drained(self) -> bool:
        """True when every camera reached EOS and every frame taken was handed back."""
        with self._cond:
            return self._ended == len(self.cameras) and self._outstanding == 0 and not self._finished

    def limit_reached(self) -> bool:
        """True when ``max_frames`` frames were taken and all of them were handed back."""
        with self._cond:
            return (self.max_frames is not None and self._taken >= self.max_frames and self._outstanding == 0
                    and not self._finished)

    # -- the batching thread --------------------------------------------------------------------
    def _batching(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                # Prepare only once the runtime took the last batch: frames then wait for at most
                # the one inference in progress, never behind a queue of older batches.
                while (self._ready is not None or not self._free) and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                room = None if self.max_frames is None else self.max_frames - self._taken
            if room is not None and room <= 0:
                self._stop.wait(IDLE_WAIT_S)
                continue
            self.wake.clear()  # before looking: a frame that arrives from now on wakes the wait below
            fresh = self._take(room)
            if not fresh:
                self.wake.wait(IDLE_WAIT_S)
                continue
            with self._cond:
                buffer = self._free.popleft()
            batch = self._prepare(fresh, buffer)
            with self._cond:
                if batch is None:
                    self._free.appendleft(buffer)
                    continue
                self._ready = batch
                self.stats.prepared += 1
                self.stats.buffers.add(id(buffer))
                self._cond.notify_all()

    def _take(self, room: int | None) -> list[tuple[CameraState, Frame]]:
        """The fresh frame of every camera that has one (at most ``room``); counts cameras at EOS."""
        fresh: list[tuple[CameraState, Frame]] = []
        ended = 0
        for cam in self.cameras:
            if room is not None and len(fresh) >= room:
                break
            status, frame = cam.source.read(0.0)
            if status is Status.OK and frame is not None:
                fresh.append((cam, frame))
            ended += status is Status.EOS  # EOS only once its last frame was taken
        with self._cond:
            self._ended = ended
            self._taken += len(fresh)
            self._outstanding += len(fresh)
        return fresh

    def _prepare(self, fresh: list[tuple[CameraState, Frame]], buffer: np.ndarray) -> Batch | None:
        """Crop every slot of every fresh frame, then preprocess the crops straight into ``buffer``'s
        rows, split between :data:`PREP_THREADS` threads (resizing and the table lookup release the
        GIL: at 10 fps the runtime is idle when a frame comes, and this halves the frame's wait)."""
        t0 = time.monotonic()
        spans: list[Span] = []
        crops: list[np.ndarray] = []
        for cam, frame in fresh:
            ta = time.monotonic()
            try:
                cam_crops = cam.slots.crop(frame.image)
            except (DataError, ConfigError) as exc:
                self._skip(cam, exc)
                continue
            spans.append(Span(cam, frame, len(crops), len(crops) + len(cam_crops), time.monotonic() - ta, 0.0))
            crops.extend(cam_crops)
        if not spans:
            return None
        tb = time.monotonic()
        failed = self._write(buffer, crops)
        share = (time.monotonic() - tb) / len(crops)
        kept = []
        for span in spans:
            bad = next((exc for row, exc in failed if span.first <= row < span.stop), None)
            if bad is not None:
                self._skip(span.camera, bad)
                continue
            span.preprocess_s = share * (span.stop - span.first)  # its rows' share of the batch's time
            kept.append(span)
        if not kept:
            return None
        return Batch(buffer, len(crops), kept, t0, time.monotonic())

    def _write(self, buffer: np.ndarray, crops: list[np.ndarray]) -> list[tuple[int, DataError]]:
        """Preprocess ``crops`` into ``buffer``'s first rows; the rows that failed, with why."""
        def rows(start: int, stop: int) -> list[tuple[int, DataError]]:
            bad = []
            for i in range(start, stop):
                try:
                    self.writer.write(buffer, crops[i], i)
                except DataError as exc:
                    bad.append((i, exc))
            return bad

        n = len(crops)
        if self._pool is None or n < 2:
            return rows(0, n)
        cut = (n + 1) // 2
        other = self._pool.submit(rows, cut, n)
        return rows(0, cut) + other.result()

    def _skip(self, cam: CameraState, exc: Exception) -> None:
        with self._cond:
            self._outstanding -= 1
        if self.on_invalid is not None:
            self.on_invalid(cam, exc)

    # -- the inference thread -------------------------------------------------------------------
    def _inference(self) -> None:
        while True:
            with self._cond:
                while self._ready is None and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._ready is None:
                    return
                batch, self._ready = self._ready, None
                self._cond.notify_all()  # the batching thread may prepare the next batch now
            self._run(batch)
            with self._cond:
                self._free.append(batch.buffer)  # the logits are a copy: the rows may be refilled now
                self.stats.inferred += 1
                self.stats.runs.append((batch.t0, batch.t_in, batch.t_out, min(sp.frame.t_mono for sp in batch.spans)))
                self._finished.append(batch)
                self._cond.notify_all()
            self._done_cb()

    def _run(self, batch: Batch) -> None:
        batch.t_in = time.monotonic()
        try:
            # A copy: the rows' buffer is refilled while the loop postprocesses these logits.
            out = self.runtime(batch.array)
            if isinstance(out, dict):
                outputs = list(out.values())
                batch.logits = np.array(outputs[0], copy=True)
                batch.embeddings = np.asarray(outputs[1], dtype=np.float32) if len(outputs) > 1 else None
            else:
                batch.logits = np.array(out, copy=True)
        except Exception as exc:  # backends raise their own types; one bad batch must not stop the device
            batch.error = exc
        batch.t_out = time.monotonic()

