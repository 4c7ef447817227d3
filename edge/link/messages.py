"""The messages the device publishes over ZeroMQ: builders, topics, JSON encoding and schema checks.

Three kinds, each defined by a JSON Schema shipped in ``edge/schemas/<kind>.schema.json``:

* ``labels``: one per processed frame of a camera (slots, counts, model, latencies, ``seq``);
* ``status``: a camera went ``up`` or ``down``, or hit ``eos``;
* ``heartbeat``: one per device every ``heartbeat_s`` seconds, with the last ``seq`` per camera.

On the wire a message is multipart ``[topic, json]`` with topic ``gemsight/<device>/<camera>/<kind>``
(the heartbeat, which covers all cameras, uses ``_`` as its camera). JSON only, never pickle.
Every message carries ``kind`` and ``schema_version`` so it stands on its own without its topic
(``listen --json`` prints the payloads only).
"""
from __future__ import annotations

import itertools
import json
import logging
import re
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping, Sequence

import numpy as np

from edge.contracts import ID_PATTERN, REQUIRED_STAGES
from edge.contracts import FrameResult
from edge.errors import MessageError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1          # status and heartbeat messages
LABELS_SCHEMA_VERSION = 2   # 2: every slot's state and similarity to its reference, the camera's enrolment
SLOT_STATES = ("present", "changed", "empty", "occluded", "unenrolled")
TOPIC_ROOT = "gemsight"
KINDS = ("labels", "status", "heartbeat")
STATES = ("up", "down", "eos")
ALL_CAMERAS = "_"  # camera segment of the per-device heartbeat topic
MODEL_KEYS = ("name", "version", "precision", "backend")
_ID = re.compile(ID_PATTERN)
_SCORE_DIGITS = 4   # probabilities: 4 decimals is plenty for people and keeps messages small
_MS_DIGITS = 3      # latencies: microsecond resolution
_MAX_ERRORS = 50    # schema errors looked at per message


def check_id(value: Any, what: str) -> str:
    """Return ``value`` if it is a valid device/camera id (letters, digits, ``._-``; no ``/``), else raise.

    Raises:
        MessageError: naming ``what`` and the bad value.
    """
    if not isinstance(value, str) or not _ID.match(value):
        raise MessageError(f"{what} {value!r} is not a valid id (1-64 of A-Z a-z 0-9 . _ -, starting with a "
                           "letter or digit)")
    return value


def topic(device: str, camera: str | None, kind: str) -> str:
    """The topic ``gemsight/<device>/<camera>/<kind>`` (``camera=None`` gives the per-device ``_``).

    Raises:
        MessageError: a bad id or an unknown kind.
    """
    if kind not in KINDS:
        raise MessageError(f"message kind {kind!r} is not one of {list(KINDS)}")
    cam = ALL_CAMERAS if camera is None else check_id(camera, "camera")
    return f"{TOPIC_ROOT}/{check_id(device, 'device')}/{cam}/{kind}"


def parse_topic(value: str | bytes) -> tuple[str, str | None, str]:
    """Split a topic into ``(device, camera, kind)``; camera is ``None`` for the per-device heartbeat.

    Raises:
        MessageError: the topic is not ``gemsight/<device>/<camera>/<kind>``.
    """
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    parts = text.split("/")
    if len(parts) != 4 or parts[0] != TOPIC_ROOT or parts[3] not in KINDS:
        raise MessageError(f"topic {_short(repr(text), 120)} is not {TOPIC_ROOT}/<device>/<camera>/<kind>")
    return parts[1], (None if parts[2] == ALL_CAMERAS else parts[2]), parts[3]


def labels_message(*, device: str, camera: str, seq: int | None = None, capture_ts: float,
                   publish_ts: float | None = None, model: Mapping[str, Any], result: FrameResult,
                   latencies_ms: Mapping[str, float], frame_index: int | None = None,
                   states: Sequence[tuple[str, float | None]] | None = None,
                   enrolment: Mapping[str, Any] | None = None) -> dict:
    """Build a labels message from one camera's :class:`~edge.contracts.FrameResult`.

    ``seq`` and ``publish_ts`` may be left ``None``: :meth:`edge.link.publisher.Publisher.publish_labels`
    sets both. Scores are rounded to 4 decimals and latencies to 3 (milliseconds).

    Args:
        device: Device id.
        camera: Camera id.
        seq: Message number for this camera (normally assigned by the publisher).
        capture_ts: When the frame was grabbed (Unix seconds).
        publish_ts: When it is sent (normally set by the publisher).
        model: At least ``name``, ``version``, ``precision``, ``backend``; other keys are left out.
        result: This frame's postprocessing result.
        latencies_ms: Stage latencies (:data:`edge.contracts.STAGES`); must hold the required ones.
        frame_index: Index of the frame in its source, if known.
        states: Every slot's (state, similarity to its reference), in slot order (``None``: every slot
            ``unenrolled``, as on a device without slot states).
        enrolment: The camera's enrolment summary (id, ts, model), or ``None``.

    Raises:
        MessageError: a bad id, a missing model field or latency.
    """
    missing = [k for k in MODEL_KEYS if k not in model]
    if missing:
        raise MessageError(f"labels message: model is missing {missing} (has {sorted(model)})")
    missing = [k for k in REQUIRED_STAGES if k not in latencies_ms]
    if missing:
        raise MessageError(f"labels message: latencies_ms is missing {missing}")
    msg: dict[str, Any] = {
        "schema_version": LABELS_SCHEMA_VERSION,
        "kind": "labels",
        "device": check_id(device, "device"),
        "camera": check_id(camera, "camera"),
        "seq": seq,
        "capture_ts": float(capture_ts),
        "publish_ts": None if publish_ts is None else float(publish_ts),
        "model": {k: str(model[k]) for k in MODEL_KEYS},
        "slots": [
            {"name": s.name, "label": s.label, "score": round(float(s.score), _SCORE_DIGITS),
             "topk": [{"label": lab, "score": round(float(p), _SCORE_DIGITS)} for lab, p in s.topk],
             "stable": bool(s.stable), "state": str(getattr(state, "value", state)),
             "similarity": _similarity(sim)}
            for s, (state, sim) in zip(result.slots, states or [("unenrolled", None)] * len(result.slots))
        ],
        "counts": {k: int(v) for k, v in result.counts.items()},
        "latencies_ms": {k: round(float(v), _MS_DIGITS) for k, v in latencies_ms.items()},
    }
    if states is not None and len(states) != len(result.slots):
        raise MessageError(f"labels message: {len(states)} slot states for {len(result.slots)} slots")
    msg["enrolment"] = dict(enrolment) if enrolment else None
    if frame_index is not None:
        msg["frame_index"] = int(frame_index)
    return msg


def _similarity(sim: float | None) -> float | None:
    """A similarity for the wire: within [-1, 1], rounded; ``None`` for none (or a non-finite one)."""
    if sim is None or not np.isfinite(sim):
        return None
    return round(max(-1.0, min(1.0, float(sim))), _SCORE_DIGITS)


def status_message(*, device: str, camera: str, state: str, detail: str, ts: float) -> dict:
    """Build a camera status message (``state``: up, down or eos).

    Raises:
        MessageError: an unknown state or a bad id.
    """
    if state not in STATES:
        raise MessageError(f"status message: state {state!r} is not one of {list(STATES)}")
    return {"schema_version": SCHEMA_VERSION, "kind": "status", "device": check_id(device, "device"),
            "camera": check_id(camera, "camera"), "state": state, "detail": str(detail)[:1000], "ts": float(ts)}


def heartbeat_message(*, device: str, ts: float, cameras: Mapping[str, Mapping[str, Any]], uptime_s: float) -> dict:
    """Build the per-device heartbeat; ``cameras`` maps camera id to scalar figures (seq, state, fps...).

    Raises:
        MessageError: a bad id, or a camera entry that is not a mapping.
    """
    cams: dict[str, dict[str, Any]] = {}
    for cam, info in cameras.items():
        if not isinstance(info, Mapping):
            raise MessageError(f"heartbeat message: cameras[{cam!r}] must be a mapping, got {type(info).__name__}")
        cams[check_id(cam, "camera")] = dict(info)
    return {"schema_version": SCHEMA_VERSION, "kind": "heartbeat", "device": check_id(device, "device"),
            "ts": float(ts), "uptime_s": round(float(uptime_s), 3), "cameras": cams}


def _json_default(obj: Any) -> Any:
    # Only called for types json cannot encode itself, so the common path stays in C.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_json_default)


def encode(msg: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes for the wire (no indentation; NaN and infinity refused).

    Raises:
        MessageError: the message holds something JSON cannot carry (the message says what).
    """
    try:
        return _ENCODER.encode(msg).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise MessageError(f"cannot encode message as JSON: {exc}") from exc


def decode(data: bytes | str) -> dict:
    """Parse a JSON payload into a dict.

    Raises:
        MessageError: not UTF-8 JSON, or not a JSON object.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        # The wire is UTF-8: json.loads would also take UTF-16/32 (and UTF-8-encoded surrogates), which
        # no publisher sends and a consumer printing the payload as sent cannot show.
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"message is not valid JSON: not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
                               f"{exc.start})") from None
    try:
        obj = json.loads(data)
    except ValueError as exc:  # JSONDecodeError, an integer past Python's digit limit
        raise MessageError(f"message is not valid JSON: {_short(exc)}") from exc
    except RecursionError as exc:  # json's decoder recurses once per nesting level
        raise MessageError("message is not valid JSON: nested too deeply") from exc
    if not isinstance(obj, dict):
        raise MessageError(f"message must be a JSON object, got {type(obj).__name__}")
    return obj


def schema_path(kind: str = "labels") -> str:
    """Path of the JSON Schema file for ``kind`` (inside the installed package)."""
    if kind not in KINDS:
        raise MessageError(f"message kind {kind!r} is not one of {list(KINDS)}")
    return str(resources.files("edge") / "schemas" / f"{kind}.schema.json")


@lru_cache(maxsize=None)
def load_schema(kind: str = "labels") -> dict:
    """The JSON Schema for ``kind`` as a dict (read once)."""
    path = schema_path(kind)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise MessageError(f"cannot read message schema {path}: {exc}") from exc


@lru_cache(maxsize=None)
def _validator(kind: str) -> Any:
    try:
        import jsonschema  # noqa: PLC0415 - only tests and tools validate, the device loop does not need it
    except ImportError as exc:
        raise MessageError("validating messages needs the jsonschema package (pip install 'gemsight[dev]')") from exc
    schema = load_schema(kind)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validate(msg: Mapping[str, Any], kind: str | None = "labels") -> None:
    """Check ``msg`` against the repository's JSON Schema for ``kind`` (``None``: use ``msg["kind"]``).

    Raises:
        MessageError: naming the first offending field (as a JSON path) and why.
    """
    if kind is None:
        kind = msg.get("kind") if isinstance(msg, Mapping) else None
        if kind not in KINDS:
            raise MessageError(f"message has no valid 'kind' (got {_short(repr(kind), 80)}; expected one of "
                               f"{list(KINDS)})")
    validator = _validator(kind)
    # A hostile message may hold thousands of errors: look at a bounded number of them.
    errors = sorted(itertools.islice(validator.iter_errors(msg), _MAX_ERRORS),
                    key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(message)"
        more = f" (and {len(errors) - 1}{'+' if len(errors) == _MAX_ERRORS else ''} more)" if len(errors) > 1 else ""
        raise MessageError(f"{kind} message invalid at {_short(where)}: {_short(err.message)}{more}")


def parse_message(topic: bytes | str, payload: bytes | str) -> tuple[str, str | None, str, dict]:
    """What a consumer does with one received ``[topic, json]`` before using it.

    Splits the topic, decodes the payload, validates it against its kind's JSON Schema, and checks
    that it names the device, camera and kind of its topic. Every field a consumer reads is then
    of the type the schema promises.

    Returns:
        ``(device, camera, kind, message)``; camera is ``None`` for a heartbeat.

    Raises:
        MessageError: one line saying what is wrong (bounded in length, whatever the input).
    """
    device, camera, kind = parse_topic(topic)
    msg = decode(payload)
    validate(msg, kind)
    if msg["device"] != device or msg.get("camera") != camera:
        raise MessageError(f"{kind} message of device {msg['device']!r} camera {msg.get('camera')!r} arrived on "
                           f"topic {_short(topic)}")
    return device, camera, kind, msg


def parse_snapshot(payload: bytes | str) -> dict[str, dict[str, dict]]:
    """Decode and check a snapshot endpoint's reply (:meth:`edge.link.publisher.Publisher.snapshot_reply`).

    Returns:
        ``{"cameras": {camera: labels message}, "status": {camera: status message}}``, every message
        validated against its schema and filed under its own camera.

    Raises:
        MessageError: the endpoint refused the request (its ``error``), or the reply is malformed
            (the first bad part is named).
    """
    reply = decode(payload)
    if "error" in reply:
        raise MessageError(f"refused the request: {_short(reply['error'])}")
    out: dict[str, dict[str, dict]] = {}
    for key, kind in (("cameras", "labels"), ("status", "status")):
        part = reply.get(key) or {}
        if not isinstance(part, dict):
            raise MessageError(f"snapshot reply: {key!r} must be an object, got {type(part).__name__}")
        for cam, msg in part.items():
            if not isinstance(msg, dict):
                raise MessageError(f"snapshot reply: {key}[{_short(cam)}] must be a {kind} message")
            try:
                validate(msg, kind)
            except MessageError as exc:
                raise MessageError(f"snapshot reply: {key}[{_short(cam)}]: {exc}") from exc
            if msg["camera"] != cam:
                raise MessageError(f"snapshot reply: {key}[{_short(cam)}] holds camera {msg['camera']!r}")
        out[key] = part
    return out


def _short(value: Any, limit: int = 200) -> str:
    """``value`` as text for a one-line error: newlines escaped, cut to ``limit`` characters."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[:limit] + "..."
