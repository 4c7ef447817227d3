"""Requests to a device's snapshot REP endpoint: evidence crops and enrolment (docs/kiosk-states.md).

One JSON frame out, one JSON frame back, over the same CURVE-authenticated link as the snapshots
(:class:`edge.link.client.Link`, a fresh REQ socket per request: a REQ whose reply never came is stuck, and
sockets belong to the thread that made them). Every reply is checked before anyone uses it; a device
that answers ``{"error": ..., "status": 404}`` raises :class:`DeviceRequestError` with that status and
message, a device that does not answer in time raises one with status 504.

Python use (the bench, scripts)::

    reply = request_enrol(config, "case-01", "cam0", None)            # every slot
    reply["enrolled"], reply["refused"], reply["labels"]
    crops = request_evidence(config, "case-01", "cam0", "r0c1")       # JPEG bytes
    request_collect(config, "case-01", "cam0", on=True, hours=8, labels={"r0c1": "ring"})
"""
from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

import zmq

from edge.errors import ConfigError, GemsightError, LinkError, MessageError
from edge.link import messages
from edge.link.client import ClientKeys, Link
from kiosk.config import KioskConfig

logger = logging.getLogger(__name__)

MAX_REPLY_BYTES = 16 << 20     # two crops of a slot are tens of kB; refuse a runaway reply


class DeviceRequestError(GemsightError):
    """A device request failed; ``status`` is HTTP-like (404 unknown camera/slot, 502 bad reply, 503
    no endpoint or link refused, 504 no answer in time)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


def device_request(config: KioskConfig, device: str, request: dict[str, Any], timeout_s: float,
                   *, context: zmq.Context | None = None) -> dict[str, Any]:
    """Send one request to ``device``'s snapshot endpoint and return its reply (a JSON object).

    Raises:
        DeviceRequestError: unknown device or no snapshot endpoint (503), a refused link (503), no
            answer within ``timeout_s`` (504), a reply that is not a JSON object (502), or the
            device's own error (its status, e.g. 404).
    """
    try:
        entry = config.device(device)
    except KeyError:
        raise DeviceRequestError(f"no device {device!r} in this store", 404) from None
    if not entry.snapshot:
        raise DeviceRequestError(f"{device}: no snapshot endpoint in the kiosk config to ask", 503)
    what = request.get("kind", "snapshot")
    try:
        keys = (ClientKeys.load(entry.server_key, config.curve.client_secret_key)
                if config.curve is not None else None)
        with Link(zmq.REQ, entry.snapshot, keys, plaintext=keys is None, device=device, context=context,
                  options={zmq.MAXMSGSIZE: MAX_REPLY_BYTES}) as link:
            data = link.request(messages.encode(request), timeout_s)
    except (LinkError, ConfigError) as exc:
        raise DeviceRequestError(f"{what} request to {device}: {exc}", 503) from None
    if data is None:
        raise DeviceRequestError(f"{device} ({entry.snapshot}) did not answer the {what} request within "
                                 f"{timeout_s:g} s", 504)
    try:
        reply = messages.decode(data)
    except MessageError as exc:
        raise DeviceRequestError(f"{device}: {what} reply is not JSON ({exc})") from None
    if not isinstance(reply, dict):
        raise DeviceRequestError(f"{device}: {what} reply is not a JSON object")
    if "error" in reply:
        status = reply.get("status")
        raise DeviceRequestError(f"{device}: {reply['error']}", status if isinstance(status, int) and
                                 400 <= status < 600 else 502)
    if reply.get("kind") != what:
        raise DeviceRequestError(f"{device}: the reply to the {what} request is of kind {reply.get('kind')!r} "
                                 "(a device without slot states?)")
    return reply


def _b64(reply: dict[str, Any], field: str, device: str, *, optional: bool = False) -> bytes | None:
    value = reply.get(field)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise DeviceRequestError(f"{device}: evidence reply field {field!r} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DeviceRequestError(f"{device}: evidence reply field {field!r} is not valid base64") from None


def request_evidence(config: KioskConfig, device: str, camera: str, slot: str, timeout_s: float | None = None,
                     ) -> dict[str, Any]:
    """The slot's crop now and its enrolment crop, from the device.

    Returns:
        ``{"ts", "current": bytes, "reference": bytes | None, "enrolment", "state"}`` (bytes still
        unchecked: :func:`kiosk.evidence.check_jpeg` checks them before they are stored).

    Raises:
        DeviceRequestError: as :func:`device_request`, or a reply without its fields.
    """
    timeout = config.policies.snapshot_timeout_s if timeout_s is None else timeout_s
    reply = device_request(config, device, {"kind": "evidence", "camera": camera, "slot": slot}, timeout)
    if reply.get("camera") != camera or reply.get("slot") != slot:
        raise DeviceRequestError(f"{device}: evidence reply is for {reply.get('camera')}/{reply.get('slot')}, "
                                 f"not {camera}/{slot}")
    ts = reply.get("ts")
    return {"ts": float(ts) if isinstance(ts, (int, float)) else None,
            "current": _b64(reply, "current", device), "reference": _b64(reply, "reference", device, optional=True),
            "enrolment": reply.get("enrolment") if isinstance(reply.get("enrolment"), dict) else None,
            "state": reply.get("state") if isinstance(reply.get("state"), str) else None}


def request_enrol(config: KioskConfig, device: str, camera: str, slots: list[str] | None,
                  timeout_s: float | None = None, pieces: list[str] | None = None) -> dict[str, Any]:
    """Ask the device to enrol ``slots`` of ``camera`` (``None``: every slot); ``pieces``: the slots the
    planogram says hold a piece (enrolled even where the model reads them empty).

    Returns:
        ``{"enrolled": [slot, ...], "refused": {slot: why}, "labels": {slot: category}, "unseen": [slot, ...],
        "enrolment": {...}}``.

    Raises:
        DeviceRequestError: as :func:`device_request`, or a reply whose fields have the wrong shape.
    """
    timeout = config.policies.enrol_timeout_s if timeout_s is None else timeout_s
    request = {"kind": "enrol", "camera": camera, "slots": slots} | ({"pieces": pieces} if pieces else {})
    reply = device_request(config, device, request, timeout)
    enrolled, refused, labels = reply.get("enrolled"), reply.get("refused"), reply.get("labels") or {}
    unseen = reply.get("unseen") or []
    if not (isinstance(enrolled, list) and all(isinstance(s, str) for s in enrolled)):
        raise DeviceRequestError(f"{device}: enrol reply field 'enrolled' is not a list of slot names")
    if not (isinstance(refused, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in refused.items())):
        raise DeviceRequestError(f"{device}: enrol reply field 'refused' is not a mapping of slot to reason")
    if not (isinstance(labels, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
        raise DeviceRequestError(f"{device}: enrol reply field 'labels' is not a mapping of slot to category")
    if not (isinstance(unseen, list) and all(isinstance(s, str) for s in unseen)):
        raise DeviceRequestError(f"{device}: enrol reply field 'unseen' is not a list of slot names")
    enrolment = reply.get("enrolment")
    return {"enrolled": enrolled, "refused": refused, "labels": labels, "unseen": unseen,
            "enrolment": enrolment if isinstance(enrolment, dict) else None}


def request_collect(config: KioskConfig, device: str, camera: str, *, on: bool, hours: float | None = None,
                    labels: dict[str, str] | None = None, timeout_s: float | None = None) -> dict[str, Any]:
    """Turn the collection of training crops of ``camera`` on (for ``hours``, with the store's class per slot) or off.

    Returns:
        ``{"on": bool, "until": float | None, "classes": {slot: class}, "today": {slot: n}, "stopped": str | None}``.

    Raises:
        DeviceRequestError: as :func:`device_request` (409: nothing enrolled), or a reply of the wrong shape.
    """
    timeout = config.policies.snapshot_timeout_s if timeout_s is None else timeout_s
    reply = device_request(config, device, {"kind": "collect", "camera": camera, "on": on, "hours": hours,
                                            "labels": labels}, timeout)
    classes, today, until = reply.get("classes"), reply.get("today") or {}, reply.get("until")
    if not isinstance(reply.get("on"), bool) or not (until is None or isinstance(until, (int, float))):
        raise DeviceRequestError(f"{device}: collect reply fields 'on'/'until' are not a flag and a time")
    if not (isinstance(classes, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in classes.items())):
        raise DeviceRequestError(f"{device}: collect reply field 'classes' is not a mapping of slot to class")
    stopped = reply.get("stopped")
    return {"on": reply["on"], "until": until, "classes": classes,
            "today": {k: v for k, v in today.items() if isinstance(v, int)} if isinstance(today, dict) else {},
            "stopped": stopped if isinstance(stopped, str) else None}
