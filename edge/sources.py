"""Camera sources named by URI, and a grabber thread per camera that keeps only the newest frame.

URIs (jetson-utils ``videoSource`` style)::

    file:///data/case.mp4?loop=1&realtime=0    a video file; realtime=1 (default) plays at the file's
                                               own rate, realtime=0 as fast as the loop takes frames
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
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import numpy as np

from edge.errors import ConfigError, SourceError

logger = logging.getLogger(__name__)

_USERINFO = re.compile(r"(?<=://)[^/@\s?#]+@")
_SECRET_PARAM = re.compile(r"(?i)\b(password|passwd|pass|pwd|token|user-pw|user_pw|key)=([^&\s!]+)")
_FILE_KEYS = {"loop", "realtime"}
_V4L2_KEYS = {"width", "height", "fps", "fourcc"}
_CSI_KEYS = {"width", "height", "fps", "flip"}
_NET_TIMEOUT_MS = 5000


class Status(enum.Enum):
    """What :meth:`CameraSource.read` answers instead of raising."""

    OK = "ok"            # a fresh frame
    TIMEOUT = "timeout"  # no new frame yet; the source is up (or still starting)
    EOS = "eos"          # a file ended and does not loop: no more frames will come
    ERROR = "error"      # the source is down; the grabber is reopening it with backoff


def redact(uri: str) -> str:
    """A URI or pipeline safe to log: ``user:password@`` and password-like parameters replaced."""
    out = _USERINFO.sub("***@", uri)
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=***", out)


def read_credentials(ref: str) -> tuple[str, str]:
    """Read ``user:password`` from a file path, or a name in ``$CREDENTIALS_DIRECTORY`` (systemd).

    Raises:
        SourceError: the file is missing or malformed (the message names the file, never its content).
    """
    path = Path(ref)
    if "/" not in ref:
        base = os.environ.get("CREDENTIALS_DIRECTORY")
        if not base:
            raise SourceError(f"credentials '{ref}': not a path and $CREDENTIALS_DIRECTORY is not set")
        path = Path(base) / ref
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SourceError(f"credentials file {path}: cannot read ({exc.strerror or exc})") from exc
    user, sep, password = text.partition(":")
    if not sep or not user or "\n" in text:
        raise SourceError(f"credentials file {path}: expected one line 'user:password'")
    return user, password


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source URI: what to hand OpenCV and how to pace it."""

    uri: str
    kind: str            # file | v4l2 | rtsp | http | csi | gst
    target: str | int    # what cv2.VideoCapture opens
    api: str             # cv2.CAP_* name
    params: tuple[int, ...] = ()
    loop: bool = False
    realtime: bool = True
    props: tuple[tuple[str, Any], ...] = ()  # CAP_PROP_* settings applied after opening

    @property
    def live(self) -> bool:
        return self.kind != "file"

    @property
    def redacted(self) -> str:
        return redact(self.uri)


def _flag(value: str, key: str, uri: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"source {redact(uri)}: {key}={value} must be 0 or 1")


def _query(uri: str, query: str, allowed: set[str]) -> dict[str, str]:
    q = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(q) - allowed)
    if unknown:
        raise ConfigError(f"source {redact(uri)}: unknown parameter(s) {unknown} (allowed: {sorted(allowed)})")
    return q


def _int(q: dict[str, str], key: str, uri: str, default: int | None = None) -> int | None:
    if key not in q:
        return default
    try:
        value = int(q[key])
    except ValueError:
        value = -1
    if value <= 0:
        raise ConfigError(f"source {redact(uri)}: {key}={q[key]} must be a positive integer")
    return value


def csi_pipeline(sensor: int, width: int = 1920, height: int = 1080, fps: int = 30, flip: int = 0) -> str:
    """The Jetson ``nvarguscamerasrc`` pipeline for a CSI camera, ending in a BGR appsink."""
    return (f"nvarguscamerasrc sensor-id={sensor} ! "
            f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, framerate=(fraction){fps}/1, "
            f"format=(string)NV12 ! nvvidconv flip-method={flip} ! video/x-raw, format=(string)BGRx ! "
            "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false")


def parse_source(uri: str, credentials: str | None = None) -> SourceSpec:
    """Turn a source URI into what OpenCV opens.

    Args:
        uri: see the module docstring.
        credentials: for rtsp/http sources, a credentials file or name (see :func:`read_credentials`);
            read here, at open time, so the secret never sits in the config.

    Raises:
        ConfigError: an unsupported scheme or parameter.
        SourceError: the credentials cannot be read.
    """
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigError(f"source {redact(uri)}: not a URI (file://, v4l2://, rtsp://, http://, csi://, gst://)")
    if scheme == "file":
        path, _, query = rest.partition("?")
        q = _query(uri, query, _FILE_KEYS)
        return SourceSpec(uri, "file", path, "CAP_FFMPEG", loop=_flag(q.get("loop", "0"), "loop", uri),
                          realtime=_flag(q.get("realtime", "1"), "realtime", uri))
    if scheme == "v4l2":
        path, _, query = rest.partition("?")
        q = _query(uri, query, _V4L2_KEYS)
        m = re.fullmatch(r"/dev/video(\d+)", path)
        target: str | int = int(m.group(1)) if m else path
        props = []
        if "fourcc" in q:
            if len(q["fourcc"]) != 4:
                raise ConfigError(f"source {redact(uri)}: fourcc={q['fourcc']} must be 4 characters")
            props.append(("CAP_PROP_FOURCC", q["fourcc"]))
        for key, prop in (("width", "CAP_PROP_FRAME_WIDTH"), ("height", "CAP_PROP_FRAME_HEIGHT"),
                          ("fps", "CAP_PROP_FPS")):
            value = _int(q, key, uri)
            if value is not None:
                props.append((prop, value))
        return SourceSpec(uri, "v4l2", target, "CAP_V4L2", props=tuple(props))
    if scheme in ("rtsp", "rtsps", "http", "https"):
        target = uri
        if credentials:
            user, password = read_credentials(credentials)
            parts = urlsplit(uri)
            host = parts.netloc.rpartition("@")[2]
            target = parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}").geturl()
        params = (_cap("CAP_PROP_OPEN_TIMEOUT_MSEC"), _NET_TIMEOUT_MS, _cap("CAP_PROP_READ_TIMEOUT_MSEC"), _NET_TIMEOUT_MS)
        return SourceSpec(uri, "rtsp" if scheme.startswith("rtsp") else "http", target, "CAP_FFMPEG", params=params)
    if scheme == "csi":
        sensor, _, query = rest.partition("?")
        q = _query(uri, query, _CSI_KEYS)
        if not sensor.isdigit():
            raise ConfigError(f"source {redact(uri)}: csi://N needs a sensor number")
        pipeline = csi_pipeline(int(sensor), _int(q, "width", uri, 1920), _int(q, "height", uri, 1080),
                                _int(q, "fps", uri, 30), int(q.get("flip", "0")))
        return SourceSpec(uri, "csi", pipeline, "CAP_GSTREAMER")
    if scheme == "gst":
        if "appsink" not in rest:
            raise ConfigError(f"source {redact(uri)}: a GStreamer pipeline must end in appsink")
        return SourceSpec(uri, "gst", rest, "CAP_GSTREAMER")
    raise ConfigError(f"source {redact(uri)}: unsupported scheme '{scheme}://'")


def _cap(name: str) -> int:
    import cv2  # noqa: PLC0415 - keeps config validation free of OpenCV

    return int(getattr(cv2, name))


def open_capture(spec: SourceSpec) -> Any:
    """Open a ``cv2.VideoCapture`` for ``spec``.

    Raises:
        SourceError: the source does not open (the message carries the redacted URI).
    """
    import cv2  # noqa: PLC0415

    if spec.kind == "file" and not Path(spec.target).is_file():
        raise SourceError(f"{spec.redacted}: file not found")
    if spec.kind == "v4l2" and isinstance(spec.target, str) and not Path(spec.target).exists():
        raise SourceError(f"{spec.redacted}: no such device")
    if spec.kind == "v4l2" and isinstance(spec.target, int) and not Path(f"/dev/video{spec.target}").exists():
        raise SourceError(f"{spec.redacted}: no such device /dev/video{spec.target}")
    if spec.api == "CAP_GSTREAMER" and "GStreamer:                   YES" not in cv2.getBuildInformation():
        raise SourceError(f"{spec.redacted}: this OpenCV has no GStreamer support (use the JetPack OpenCV)")
    try:
        cap = cv2.VideoCapture(spec.target, _cap(spec.api), list(spec.params))
    except cv2.error as exc:
        raise SourceError(f"{spec.redacted}: cannot open ({exc})") from exc
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"{spec.redacted}: cannot open")
    for prop, value in spec.props:
        if prop == "CAP_PROP_FOURCC":
            value = cv2.VideoWriter_fourcc(*value)
        cap.set(_cap(prop), value)
    return cap


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


@dataclass
class SourceStats:
    frames: int = 0        # good frames handed to the loop
    dropped: int = 0       # frames replaced by a newer one before the loop took them
    skipped: int = 0       # frames skipped by the fps cap
    invalid: int = 0       # substituted (all-black) frames never classified
    reconnects: int = 0    # successful reopenings after the first open
    open_failures: int = 0
    state: str = "starting"  # starting | up | down | eos
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
        self._thread: threading.Thread | None = None

    # -- consumer side (the loop's thread) -------------------------------------------------------
    def start(self) -> "CameraSource":
        """Start the grabber thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"grab-{self.camera_id}", daemon=True)
            self._thread.start()
        return self

    def read(self, timeout: float = 0.0) -> tuple[Status, Frame | None]:
        """Take the newest frame, waiting up to ``timeout`` seconds; never raises."""
        with self._cond:
            if self._latest is None and timeout > 0 and self.stats.state not in ("eos",):
                self._cond.wait(timeout)
            frame, self._latest = self._latest, None
            if frame is not None:
                self._cond.notify_all()  # a blocking grabber may go on
                return Status.OK, frame
            state = self.stats.state
        self._watchdog()
        if state == "eos":
            return Status.EOS, None
        if state == "down":
            return Status.ERROR, None
        return Status.TIMEOUT, None

    def pop_events(self) -> list[tuple[str, str]]:
        """State changes since the last call, oldest first: ``[(state, detail), ...]``."""
        out = []
        with self._cond:
            while self.stats.events:
                out.append(self.stats.events.popleft())
        return out

    @property
    def state(self) -> str:
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

    def _watchdog(self) -> None:
        # A grabber stuck in a read that never returns: report the camera down, ask for a reopen.
        limit = max(self.stall_s, 3.0 / self.fps if self.fps else 0.0)
        if self.stats.state == "up" and time.monotonic() - self._last_progress > limit:
            self._set_state("down", f"stalled: no frame for {limit:.1f}s")
            self._reopen.set()

    # -- grabber side ---------------------------------------------------------------------------
    def _set_state(self, state: str, detail: str = "") -> None:
        with self._cond:
            if state == self.stats.state and detail == self.stats.detail:
                return
            changed = state != self.stats.state
            self.stats.state, self.stats.detail = state, detail
            if changed:
                self.stats.events.append((state, detail))
            self._cond.notify_all()
        if changed:
            log = logger.info if state in ("up", "eos") else logger.warning
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
        delay = self.initial_s
        failed = False  # the last open or read failed: the next successful open is a reconnect
        while not self._stop.is_set():
            try:
                cap = self._open()
            except (SourceError, ConfigError) as exc:
                self.stats.open_failures += 1
                failed = True
                self._set_state("down", f"{exc}; retrying in {delay:.1f}s")
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.max_s)
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
            if outcome == "stop":
                break
            if outcome == "eos":
                self._set_state("eos", "end of file")
                break
            if outcome == "loop":
                continue  # a looping file reopens at once: it did deliver frames
            # A failure: back off, more each time, unless the source had been healthy a while.
            failed = True
            delay = self.initial_s if good else delay
            self._set_state("down", f"{outcome}; reopening in {delay:.1f}s")
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.max_s)

    def _grab(self, cap: Any) -> tuple[str, bool]:
        """Read until the source fails, ends or is stopped: ``(outcome, healthy)``."""
        import cv2  # noqa: PLC0415

        file_fps = cap.get(cv2.CAP_PROP_FPS) if self.spec.kind == "file" else 0.0
        period = 1.0 / file_fps if (self.spec.realtime and file_fps and 0 < file_fps < 1000) else 0.0
        min_gap = 1.0 / self.fps if self.fps else 0.0
        index = 0
        opened = time.monotonic()
        t_next = opened - max(period, min_gap)  # the first frame goes out at once
        last_out = -1e9
        while not self._stop.is_set():
            ok, image = cap.read()
            now = time.monotonic()
            if self._reopen.is_set():
                return "stalled", False
            if not ok or image is None:
                if self.spec.kind == "file" and index > 0:
                    return ("loop" if self.spec.loop else "eos"), True
                return ("read failed" if index == 0 else "stream ended"), now - opened > 1.0
            self._last_progress = now
            if substituted(image):
                self.stats.invalid += 1
                continue
            frame_index = index
            index += 1
            if self.stats.state != "up":
                self._set_state("up", f"{image.shape[1]}x{image.shape[0]}")
            if period or (self.spec.kind == "file" and min_gap):
                # A file plays at its own rate (or the cap): sleep instead of skipping.
                t_next = max(t_next + max(period, min_gap), now - 1.0)
                if self._stop.wait(max(0.0, t_next - time.monotonic())):
                    return "stop", True
            elif min_gap and now - last_out < min_gap:
                self.stats.skipped += 1
                continue
            last_out = time.monotonic()
            frame = Frame(self.camera_id, image, frame_index, time.time(), last_out)
            if not self._deliver(frame):
                return "stop", True
        return "stop", True
