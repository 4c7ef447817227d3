"""Camera source URIs: parsing, credentials, redaction, and opening an OpenCV ``VideoCapture``.

See :mod:`edge.capture.sources` for the URI forms. Credentials come from a file (or systemd's
``$CREDENTIALS_DIRECTORY``) at open time and never appear in anything that is logged.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from edge import platform
from edge.capture.gst import Crop, crop_for, file_source, hardware_pipeline
from edge.capture.gst import quote as gst_quote
from edge.config.credentials import redact
from edge.config.credentials import resolve as resolve_credential
from edge.errors import ConfigError, SourceError

logger = logging.getLogger(__name__)

_FILE_KEYS = {"loop", "realtime", "speed", "every", "codec", "crop", "frame"}
_V4L2_KEYS = {"width", "height", "fps", "fourcc"}
_CSI_KEYS = {"width", "height", "fps", "flip"}
_RTSP_FRAGMENT_KEYS = {"codec", "latency", "crop", "frame"}
_NET_TIMEOUT_MS = 5000
RTSP_LATENCY_MS = 200   # rtspsrc's jitter buffer on a Jetson (its default, 2000 ms, would delay every frame)
_GSTREAMER_YES = "GStreamer:                   YES"


def read_credentials(ref: str) -> tuple[str, str]:
    """Read ``user:password`` from a credential name or path (the rule: :func:`edge.config.credentials.resolve`).

    Raises:
        SourceError: the file is missing or malformed (the message names the file, never its content).
    """
    try:
        path = resolve_credential(ref, "credentials")
    except ConfigError as exc:
        raise SourceError(str(exc)) from None
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
    speed: float = 1.0   # a file played in real time runs this many times faster (benchmarks: a day in minutes)
    every: int = 1       # a file's every N-th frame is used (a slower camera on the same video)
    props: tuple[tuple[str, Any], ...] = ()  # CAP_PROP_* settings applied after opening
    #: ``crop=x0,y0,x1,y1``: the part of the camera's frame the loop sees (normalised; the slots are given
    #: in the whole frame and remapped into it). Cut by the Jetson pipeline where it knows the frame size
    #: (``crop_in_pipeline``), else by the grabber from each decoded frame (a view, no copy).
    crop: tuple[float, float, float, float] | None = None
    crop_in_pipeline: bool = False
    file: str = ""       # a file source's path (its target may be a pipeline that reads it)

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


def _speed(q: dict[str, str], uri: str) -> float:
    try:
        value = float(q.get("speed", "1"))
    except ValueError:
        value = -1.0
    if not 0.01 <= value <= 1000:
        raise ConfigError(f"source {redact(uri)}: speed={q['speed']} must be a number from 0.01 to 1000")
    return value


def _every(q: dict[str, str], uri: str) -> int:
    text = q.get("every", "1")
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise ConfigError(f"source {redact(uri)}: every={text} must be a whole number from 1 to 100")
    return int(text)


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


def rtsp_pipeline(url: str, codec: str = "h264", latency_ms: int = RTSP_LATENCY_MS,
                  user: str | None = None, password: str | None = None, crop: Crop | None = None) -> str:
    """The Jetson pipeline for an RTSP camera: depayload and parse on the CPU (cheap), decode on the
    hardware decoder (``nvv4l2decoder``, NV12 in NVMM memory), convert to BGRx on the hardware
    converter (``nvvidconv``), drop the fourth byte (``videoconvert``) into a BGR appsink that keeps
    only the newest frame. Elements as in NVIDIA's Jetson Linux "Accelerated GStreamer" guide.

    Args:
        url: the camera's ``rtsp://`` URL, without credentials.
        codec: ``h264`` or ``h265`` (what the camera streams).
        latency_ms: rtspsrc's jitter buffer.
        user, password: given to rtspsrc as ``user-id`` / ``user-pw`` (never in the URL).
        crop: the rectangle ``nvvidconv`` keeps, in NVMM memory (:func:`edge.capture.gst.hardware_pipeline`).
    """
    depay = {"h264": "rtph264depay", "h265": "rtph265depay"}[codec]
    auth = ""
    if user is not None:
        auth = f" user-id={gst_quote(user)} user-pw={gst_quote(password or '')}"
    source = f"rtspsrc location={gst_quote(url)} latency={int(latency_ms)}{auth} ! {depay}"
    return hardware_pipeline(source, codec, crop)


def opencv_has_gstreamer() -> bool:
    """Whether this OpenCV was built with GStreamer (JetPack's is; the pip wheels are not)."""
    import cv2  # noqa: PLC0415

    return _GSTREAMER_YES in cv2.getBuildInformation()


def hardware_decode_available() -> bool:
    """A Jetson whose OpenCV has GStreamer: network cameras decode on the hardware decoder there."""
    return platform.is_jetson() and opencv_has_gstreamer()


def _rtsp_fragment(uri: str, fragment: str) -> tuple[str, int, dict[str, str]]:
    """gemsight's own options after ``#`` in an RTSP URI (a fragment never reaches the camera)."""
    q = _query(uri, fragment, _RTSP_FRAGMENT_KEYS)
    return _codec(q, uri), _int(q, "latency", uri, RTSP_LATENCY_MS), q


def _codec(q: dict[str, str], uri: str) -> str:
    codec = q.get("codec", "h264").lower()
    if codec not in ("h264", "h265"):
        raise ConfigError(f"source {redact(uri)}: codec={q['codec']} must be h264 or h265")
    return codec


def _crop(q: dict[str, str], uri: str) -> tuple[tuple[float, float, float, float] | None, Crop | None]:
    """``crop=x0,y0,x1,y1`` (normalised) and, with ``frame=WxH``, its pixels for a pipeline."""
    if "crop" not in q:
        if "frame" in q:
            raise ConfigError(f"source {redact(uri)}: frame= is the frame size for crop=; crop= is missing")
        return None, None
    try:
        box = tuple(float(v) for v in q["crop"].split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise ConfigError(f"source {redact(uri)}: crop={q['crop']} must be four numbers x0,y0,x1,y1 (normalised)")
    x0, y0, x1, y1 = box
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise ConfigError(f"source {redact(uri)}: crop={q['crop']} must be x0 < x1 and y0 < y1, all within 0..1")
    if "frame" not in q:
        return box, None
    m = re.fullmatch(r"([0-9]{1,5})x([0-9]{1,5})", q["frame"])
    if not m:
        raise ConfigError(f"source {redact(uri)}: frame={q['frame']} must be WIDTHxHEIGHT in pixels, e.g. 1920x1080")
    return box, crop_for(box, int(m.group(1)), int(m.group(2)), where=f"source {redact(uri)}")


def parse_source(uri: str, credentials: str | None = None, *, hardware_decode: bool | None = None) -> SourceSpec:
    """Turn a source URI into what OpenCV opens.

    Args:
        uri: see the module docstring.
        credentials: for rtsp/http sources, a credentials file or name (see :func:`read_credentials`);
            read here, at open time, so the secret never sits in the config.
        hardware_decode: decode ``rtsp://`` through the Jetson's hardware decoder (a GStreamer
            pipeline, :func:`rtsp_pipeline`) instead of FFmpeg on the CPU; ``None``: when
            :func:`hardware_decode_available`. ``rtsp://...#codec=h265&latency=200`` sets the
            pipeline's codec and jitter buffer (the fragment is never sent to the camera).

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
        codec = _codec(q, uri)
        box, pixels = _crop(q, uri)
        play = {"loop": _flag(q.get("loop", "0"), "loop", uri), "speed": _speed(q, uri), "every": _every(q, uri),
                "realtime": _flag(q.get("realtime", "1"), "realtime", uri), "crop": box, "file": path}
        if hardware_decode_available() if hardware_decode is None else hardware_decode:
            return SourceSpec(uri, "file", hardware_pipeline(file_source(path), codec, pixels), "CAP_GSTREAMER",
                              crop_in_pipeline=pixels is not None, **play)
        return SourceSpec(uri, "file", path, "CAP_FFMPEG", **play)
    if scheme == "v4l2":
        path, _, query = rest.partition("?")
        q = _query(uri, query, _V4L2_KEYS)
        m = re.fullmatch(r"/dev/video([0-9]+)", path)
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
        uri_only, _, fragment = uri.partition("#")
        codec, latency, q = _rtsp_fragment(uri, fragment) if scheme.startswith("rtsp") else ("h264", 0, {})
        box, pixels = _crop(q, uri)
        if fragment and not scheme.startswith("rtsp"):
            raise ConfigError(f"source {redact(uri)}: '#' options are for rtsp:// cameras only")
        if scheme.startswith("rtsp") and (hardware_decode_available() if hardware_decode is None else hardware_decode):
            user = password = None
            if credentials:
                user, password = read_credentials(credentials)
            return SourceSpec(uri, "rtsp", rtsp_pipeline(uri_only, codec, latency, user, password, pixels),
                              "CAP_GSTREAMER", crop=box, crop_in_pipeline=pixels is not None)
        target = uri_only
        if credentials:
            user, password = read_credentials(credentials)
            parts = urlsplit(uri_only)
            host = parts.netloc.rpartition("@")[2]
            target = parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}").geturl()
        params = (_cap("CAP_PROP_OPEN_TIMEOUT_MSEC"), _NET_TIMEOUT_MS,
                  _cap("CAP_PROP_READ_TIMEOUT_MSEC"), _NET_TIMEOUT_MS)
        return SourceSpec(uri, "rtsp" if scheme.startswith("rtsp") else "http", target, "CAP_FFMPEG", params=params,
                          crop=box)
    if scheme == "csi":
        sensor, _, query = rest.partition("?")
        q = _query(uri, query, _CSI_KEYS)
        if not re.fullmatch(r"[0-9]{1,3}", sensor):
            raise ConfigError(f"source {redact(uri)}: csi://N needs a sensor number")
        flip = q.get("flip", "0")
        if not re.fullmatch(r"[0-7]", flip):  # nvvidconv's flip-method is 0..7
            raise ConfigError(f"source {redact(uri)}: flip={flip} must be 0..7 (nvvidconv flip-method)")
        pipeline = csi_pipeline(int(sensor), _int(q, "width", uri, 1920), _int(q, "height", uri, 1080),
                                _int(q, "fps", uri, 30), int(flip))
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

    if spec.kind == "file" and not Path(spec.file or str(spec.target)).is_file():
        raise SourceError(f"{spec.redacted}: file not found")
    if spec.kind == "v4l2" and isinstance(spec.target, str) and not Path(spec.target).exists():
        raise SourceError(f"{spec.redacted}: no such device")
    if spec.kind == "v4l2" and isinstance(spec.target, int) and not Path(f"/dev/video{spec.target}").exists():
        raise SourceError(f"{spec.redacted}: no such device /dev/video{spec.target}")
    if spec.api == "CAP_GSTREAMER" and not opencv_has_gstreamer():
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
