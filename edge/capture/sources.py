"""Camera sources named by URI, and a grabber thread per camera that keeps only the newest frame.

URIs (jetson-utils ``videoSource`` style)::

    file:///data/case.mp4?loop=1&realtime=0    a video file; realtime=1 (default) plays at the file's
                                               own rate, realtime=0 as fast as the loop takes frames;
                                               speed=4 plays it 4 times faster, every=2 takes every
                                               second frame; crop=x0,y0,x1,y1 hands over only that
                                               part (normalised; frame=WxH lets a Jetson cut it in
                                               hardware), codec=h265 for the Jetson's decoder
    v4l2:///dev/video0?width=1280&height=720&fps=30&fourcc=MJPG
    rtsp://host:554/stream, http://host/mjpeg  network streams through FFmpeg (credentials from a file)
    csi://0?width=1920&height=1080&fps=30      a Jetson CSI camera (nvarguscamerasrc pipeline)
    gst://<pipeline ending in appsink>         any GStreamer pipeline

The hot loop never sees exceptions from a camera: :meth:`CameraSource.read` answers a
:class:`Status` (OK, TIMEOUT, EOS, ERROR). A failed or stalled source is reopened by the grabber
with exponential backoff, capped, so a dead camera never spins the CPU. Credentials are stripped
from every URI that is logged.
"""
from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.backoff import Backoff
from edge.capture.gst import Crop, crop_for
from edge.capture.uri import open_capture, parse_source
from edge.contracts import StrEnum
from edge.errors import ConfigError, SourceError

logger = logging.getLogger(__name__)

HEALTHY_S = 1.0  # frames for this long after an open count as a recovery: the reconnect backoff starts over

__all__ = ["CameraSource", "Frame", "GrabEnd", "SourceState", "SourceStats", "Status", "substituted"]


class Status(enum.Enum):
    """What :meth:`CameraSource.read` answers instead of raising."""

    OK = "ok"            # a fresh frame
    TIMEOUT = "timeout"  # no new frame yet; the source is up (or still starting)
    EOS = "eos"          # a file ended and does not loop: no more frames will come
    ERROR = "error"      # the source is down; the grabber is reopening it with backoff


def substituted(image: np.ndarray) -> bool:
    """True for an all-zero frame: what some backends hand out around a failure, never a real scene."""
    return not image[::16, ::16].any() and not image.any()


@dataclass
class Frame:
    """A decoded frame and when it was captured."""

    camera: str
    image: np.ndarray
    index: int            # position in the file (files) or frames since open (live sources)
    capture_ts: float     # wall clock, seconds since the epoch
    t_mono: float         # time.monotonic() at capture, for latencies
    decode_s: float = 0.0  # how long the grabber's read (network, decode, colour conversion) took
    media_s: float | None = None  # a file's frame: its time in the video (index / the file's fps)


class SourceState(StrEnum):
    """Where a camera is (:attr:`SourceStats.state`); the loop's status messages carry the value."""

    STARTING = "starting"  # opened, no frame yet
    UP = "up"              # frames arrive
    DOWN = "down"          # failed or stalled: the grabber is reopening it with backoff
    EOS = "eos"            # a file ended and does not loop


class GrabEnd(StrEnum):
    """Why one open of a source stopped giving frames (:meth:`CameraSource._grab`); the value is the
    reason people read in the camera's status."""

    STOP = "stop"                  # the source was closed
    EOS = "eos"                    # a file ended
    LOOP = "loop"                  # a looping file ended: it reopens at once
    STALLED = "stalled"            # the watchdog asked for a reopen
    READ_FAILED = "read failed"    # not one frame after the open
    STREAM_ENDED = "stream ended"  # frames came, then none


@dataclass
class SourceStats:
    frames: int = 0        # good frames handed to the loop
    dropped: int = 0       # frames replaced by a newer one before the loop took them
    skipped: int = 0       # frames skipped by the fps cap
    invalid: int = 0       # substituted (all-black) frames never classified
    reconnects: int = 0    # successful reopenings after the first open
    open_failures: int = 0
    state: SourceState = SourceState.STARTING
    detail: str = ""
    events: collections.deque = field(default_factory=lambda: collections.deque(maxlen=100))


class CameraSource:
    """A grabber thread for one camera: newest frame only, drops counted, reopened with backoff.

    Args:
        camera_id: the camera's id (for logs and frames).
        uri: source URI (see the module docstring).
        credentials: credentials file or name for network sources.
        fps: optional cap on frames handed out per second.
        reconnect_initial_s, reconnect_max_s: backoff between reopen attempts (doubling, capped).
        stall_s: no frame for this long while up counts as a stall: the camera goes down and is reopened.
        wake: an event set whenever a frame arrives or the state changes (shared by all cameras of a loop).
    """

    def __init__(self, camera_id: str, uri: str, *, credentials: str | None = None, fps: float | None = None,
                 reconnect_initial_s: float = 0.5, reconnect_max_s: float = 30.0, stall_s: float = 5.0,
                 wake: threading.Event | None = None) -> None:
        self.camera_id = camera_id
        self.uri = uri
        self.credentials = credentials
        self.spec = parse_source(uri)  # validates now; credentials are read at each open
        self.fps = fps
        self.initial_s, self.max_s, self.stall_s = reconnect_initial_s, reconnect_max_s, stall_s
        self.wake = wake or threading.Event()
        self.stats = SourceStats()
        # A file read "as fast as possible" hands every frame over (blocking); the rest keep the newest.
        self.blocking = self.spec.kind == "file" and not self.spec.realtime
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._stop = threading.Event()
        self._reopen = threading.Event()
        self._last_progress = time.monotonic()
        self._last_read = time.monotonic()
        self._thread: threading.Thread | None = None
        self._crop: Crop | None = None   # crop= in pixels, for the last frame size

    # -- consumer side (the loop's thread) -------------------------------------------------------
    def start(self) -> "CameraSource":
        """Start the grabber thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"grab-{self.camera_id}", daemon=True)
            self._thread.start()
        return self

    def read(self, timeout: float = 0.0) -> tuple[Status, Frame | None]:
        """Take the newest frame, waiting up to ``timeout`` seconds; never raises."""
        now = time.monotonic()
        if now - self._last_read > self._stall_limit():
            # The loop did not look for a whole stall window: this process was paused (SIGSTOP, a
            # suspended host) and the grabber with it, so its stall clock starts over, no false stall.
            self._last_progress = max(self._last_progress, now)
        self._last_read = now
        with self._cond:
            if self._latest is None and timeout > 0 and self.stats.state is not SourceState.EOS:
                self._cond.wait(timeout)
            frame, self._latest = self._latest, None
            if frame is not None:
                self._cond.notify_all()  # a blocking grabber may go on
                return Status.OK, frame
            state = self.stats.state
        self._watchdog()
        if state is SourceState.EOS:
            return Status.EOS, None
        if state is SourceState.DOWN:
            return Status.ERROR, None
        return Status.TIMEOUT, None

    def pop_events(self) -> list[tuple[SourceState, str]]:
        """State changes since the last call, oldest first: ``[(state, detail), ...]``."""
        out = []
        with self._cond:
            while self.stats.events:
                out.append(self.stats.events.popleft())
        return out

    @property
    def state(self) -> SourceState:
        return self.stats.state

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the grabber and release the camera."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("camera %s: grabber did not stop within %.0fs (a read is blocked)",
                               self.camera_id, timeout)
            self._thread = None

    def __enter__(self) -> "CameraSource":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _stall_limit(self) -> float:
        return max(self.stall_s, 3.0 / self.fps if self.fps else 0.0)

    def _watchdog(self) -> None:
        # A grabber stuck in a read that never returns: report the camera down, ask for a reopen.
        limit = self._stall_limit()
        if self.stats.state is SourceState.UP and time.monotonic() - self._last_progress > limit:
            self._set_state(SourceState.DOWN, f"stalled: no frame for {limit:.1f}s")
            self._reopen.set()

    # -- grabber side ---------------------------------------------------------------------------
    def _set_state(self, state: SourceState, detail: str = "") -> None:
        with self._cond:
            if state == self.stats.state and detail == self.stats.detail:
                return
            changed = state != self.stats.state
            self.stats.state, self.stats.detail = state, detail
            if changed:
                self.stats.events.append((state, detail))
            self._cond.notify_all()
        if changed:
            log = logger.info if state in (SourceState.UP, SourceState.EOS) else logger.warning
            log("camera %s (%s): %s%s", self.camera_id, self.spec.redacted, state, f" ({detail})" if detail else "")
        self.wake.set()

    def _deliver(self, frame: Frame) -> bool:
        with self._cond:
            if self.blocking:
                while self._latest is not None and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return False
            if self._latest is not None:
                self.stats.dropped += 1
            self._latest = frame
            self.stats.frames += 1
            self._last_progress = time.monotonic()
            self._cond.notify_all()
        self.wake.set()
        return True

    def _open(self) -> Any:
        spec = parse_source(self.uri, self.credentials) if self.credentials else self.spec
        return open_capture(spec)

    def _run(self) -> None:
        backoff = Backoff(self.initial_s, self.max_s)
        failed = False  # the last open or read failed: the next successful open is a reconnect
        while not self._stop.is_set():
            try:
                cap = self._open()
            except (SourceError, ConfigError) as exc:
                self.stats.open_failures += 1
                failed = True
                delay = backoff.failed()
                self._set_state(SourceState.DOWN, f"{exc}; retrying in {delay:.1f}s")
                if self._stop.wait(delay):
                    break
                continue
            if failed:
                self.stats.reconnects += 1
            failed = False
            self._reopen.clear()
            self._last_progress = time.monotonic()
            try:
                outcome, good = self._grab(cap)
            finally:
                cap.release()
            if outcome is GrabEnd.STOP:
                break
            if outcome is GrabEnd.EOS:
                self._set_state(SourceState.EOS, "end of file")
                break
            if good:
                # It recovered: the next outage starts over from the first, short wait.
                backoff.reset()
            if outcome is GrabEnd.LOOP:
                continue  # a looping file reopens at once: it did deliver frames
            # A failure: back off, more each time, unless the source had been healthy a while.
            failed = True
            delay = backoff.failed()
            self._set_state(SourceState.DOWN, f"{outcome}; reopening in {delay:.1f}s")
            if self._stop.wait(delay):
                break

    def _cut(self, image: np.ndarray) -> np.ndarray:
        """The ``crop=`` part of a decoded frame (a view): the same even-pixel rectangle the Jetson
        pipeline would cut (:func:`edge.capture.gst.crop_for`), so the loop sees one geometry everywhere."""
        h, w = image.shape[:2]
        if self._crop is None or (self._crop.width, self._crop.height) != (w, h):
            self._crop = crop_for(self.spec.crop, w, h, where=f"camera {self.camera_id}")
        c = self._crop
        return image[c.y0:c.y1, c.x0:c.x1]

    def _grab(self, cap: Any) -> tuple[GrabEnd, bool]:
        """Read until the source fails, ends or is stopped: ``(outcome, healthy)``.

        Healthy: frames came for at least :data:`HEALTHY_S` after the open (or a file played to its
        end): the backoff starts over. A source that fails sooner keeps backing off, so one that
        opens, gives a frame and dies at once cannot make the grabber spin.
        """
        import cv2  # noqa: PLC0415

        file_fps = cap.get(cv2.CAP_PROP_FPS) if self.spec.kind == "file" else 0.0
        rate = file_fps if 0 < file_fps < 1000 else 0.0
        period = 1.0 / (rate * self.spec.speed) if (self.spec.realtime and rate) else 0.0
        min_gap = 1.0 / self.fps if self.fps else 0.0
        index = 0
        opened = time.monotonic()
        # A file played at a rate waits for each frame's time and only then decodes it, as a live
        # camera's frame exists only from its capture on (reading ahead would decode frame N+1 while
        # frame N is being classified, which no camera does).
        gap = max(period, min_gap) if (period or (self.spec.kind == "file" and min_gap)) else 0.0
        t_next = opened  # the first frame goes out at once
        last_out = -1e9
        last_frame = opened
        while not self._stop.is_set():
            if gap:
                if self._stop.wait(max(0.0, t_next - time.monotonic())):
                    return GrabEnd.STOP, True
                t_next = max(t_next + gap, time.monotonic() - 1.0)
            t_read = time.monotonic()
            ok, image = cap.read()
            now = time.monotonic()
            healthy = index > 0 and last_frame - opened >= HEALTHY_S
            if self._reopen.is_set():
                return GrabEnd.STALLED, healthy
            if not ok or image is None:
                if self.spec.kind == "file" and index > 0:
                    return (GrabEnd.LOOP if self.spec.loop else GrabEnd.EOS), True
                return (GrabEnd.READ_FAILED if index == 0 else GrabEnd.STREAM_ENDED), healthy
            self._last_progress = last_frame = now
            if substituted(image):
                self.stats.invalid += 1
                continue
            frame_index = index
            index += 1
            if frame_index % self.spec.every:
                continue                       # ?every=N: a slower camera on the same video
            if self.stats.state is not SourceState.UP:
                self._set_state(SourceState.UP, f"{image.shape[1]}x{image.shape[0]}")
            if not gap and min_gap and now - last_out < min_gap:
                self.stats.skipped += 1
                continue
            if self.spec.crop is not None and not self.spec.crop_in_pipeline:
                image = self._cut(image)
            last_out = time.monotonic()
            frame = Frame(self.camera_id, image, frame_index, time.time(), last_out, now - t_read,
                          frame_index / rate if rate else None)
            if not self._deliver(frame):
                return GrabEnd.STOP, True
        return GrabEnd.STOP, True
