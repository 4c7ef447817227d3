"""Camera source URIs: parsing, credentials, redaction, and opening an OpenCV ``VideoCapture``.

See :mod:`edge.sources` for the URI forms. Credentials come from a file (or systemd's
``$CREDENTIALS_DIRECTORY``) at open time and never appear in anything that is logged.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from edge.credentials import resolve as resolve_credential
from edge.errors import ConfigError, SourceError

logger = logging.getLogger(__name__)

_USERINFO = re.compile(r"(?<=://)[^/@\s?#]+@")
_SECRET_PARAM = re.compile(r"(?i)\b(password|passwd|pass|pwd|token|user-pw|user_pw|key)=([^&\s!]+)")
_FILE_KEYS = {"loop", "realtime"}
_V4L2_KEYS = {"width", "height", "fps", "fourcc"}
_CSI_KEYS = {"width", "height", "fps", "flip"}
_NET_TIMEOUT_MS = 5000


def redact(uri: str) -> str:
    """A URI or pipeline safe to log: ``user:password@`` and password-like parameters replaced."""
    out = _USERINFO.sub("***@", uri)
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=***", out)


def read_credentials(ref: str) -> tuple[str, str]:
    """Read ``user:password`` from a credential name or path (the rule: :func:`edge.credentials.resolve`).

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
