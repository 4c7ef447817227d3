"""Requests a kiosk (or ``gemsight-edge enrol``) makes of a device over its snapshot endpoint.

The snapshot REP endpoint is authenticated like the labels (CURVE, the device's allow-list), so
these requests are as private as the labels. One JSON frame in, one JSON frame out:

* ``{"kind": "enrol", "camera": ID, "slots": [NAME, ...] | null, "pieces": [NAME, ...]}``: enrol the slots
  (all when null) from their last still frames; a moving or covered slot is refused by name, an empty one
  too, unless ``pieces`` (optional: the slots the store says hold a piece) names it (the reply's ``unseen``);
* ``{"kind": "evidence", "camera": ID, "slot": NAME}``: the slot's crop in the latest frame and its
  reference crop, base64 JPEGs;
* ``{"kind": "collect", "camera": ID, "on": true | false, "hours": N | null, "labels": {SLOT: CLASS} | null}``:
  turn the collection of training crops on (for N hours, with the store's class per slot) or off; without
  ``"on"``, only its status. Refused (409) while no slot is enrolled (:mod:`edge.loop.collect`).

An unknown camera or slot is answered ``{"error": ..., "status": 404}``; a malformed request
``{"error": ..., "status": 400}``.
"""
from __future__ import annotations

import base64
from typing import Any, Callable, Mapping

from edge.errors import DataError
from edge.loop.collect import CameraCollector, CollectRefused
from edge.loop.enrolment import EnrolmentError
from edge.loop.slot_states import SlotTracker, UnknownSlot

MAX_SLOTS_PER_REQUEST = 256


def _error(status: int, text: str) -> dict[str, Any]:
    return {"error": text, "status": status}


def handlers(trackers: Mapping[str, SlotTracker],
             collectors: Mapping[str, CameraCollector] | None = None) -> dict[str, Callable[[dict], dict]]:
    """The request handlers of a device whose cameras have these trackers and collectors (camera id → each)."""

    def tracker(req: dict) -> SlotTracker | dict:
        camera = req.get("camera")
        if not isinstance(camera, str):
            return _error(400, "request needs \"camera\": <camera id>")
        if camera not in trackers:
            return _error(404, f"unknown camera '{camera[:64]}' (cameras: {', '.join(trackers)})")
        return trackers[camera]

    def enrol(req: dict) -> dict:
        if set(req) - {"kind", "camera", "slots", "pieces"}:
            return _error(400, 'an enrol request is {"kind": "enrol", "camera": ID, "slots": [NAME, ...] | null, '
                               '"pieces": [NAME, ...]}')
        found = tracker(req)
        if isinstance(found, dict):
            return found
        slots = req.get("slots")
        if slots is not None and (not isinstance(slots, list) or not all(isinstance(s, str) for s in slots)
                                  or len(slots) > MAX_SLOTS_PER_REQUEST):
            return _error(400, "\"slots\" must be a list of slot names, or null for every slot")
        pieces = req.get("pieces")
        pieces = [] if pieces is None else pieces
        if not isinstance(pieces, list) or not all(isinstance(s, str) for s in pieces) \
                or len(pieces) > MAX_SLOTS_PER_REQUEST:
            return _error(400, "\"pieces\" must be a list of slot names (the slots the store says hold a piece)")
        try:
            return found.enrol(slots, pieces)
        except UnknownSlot as exc:
            return _error(404, str(exc))
        except EnrolmentError as exc:
            return _error(409, str(exc))

    def evidence(req: dict) -> dict:
        if set(req) - {"kind", "camera", "slot"} or not isinstance(req.get("slot"), str):
            return _error(400, "an evidence request is {\"kind\": \"evidence\", \"camera\": ID, \"slot\": NAME}")
        found = tracker(req)
        if isinstance(found, dict):
            return found
        try:
            got = found.evidence(req["slot"])
        except UnknownSlot as exc:
            return _error(404, str(exc))
        except DataError as exc:
            return _error(503, str(exc))
        return {"kind": "evidence", **got, "current": base64.b64encode(got["current"]).decode(),
                "reference": base64.b64encode(got["reference"]).decode() if got["reference"] else None}

    def collect(req: dict) -> dict:
        hours, labels, on = req.get("hours"), req.get("labels"), req.get("on")
        if set(req) - {"kind", "camera", "on", "hours", "labels"} or on not in (None, True, False) \
                or not (hours is None or (isinstance(hours, (int, float)) and not isinstance(hours, bool))) \
                or not (labels is None or (isinstance(labels, dict) and len(labels) <= MAX_SLOTS_PER_REQUEST and all(
                    isinstance(k, str) and isinstance(v, str) for k, v in labels.items()))):
            return _error(400, "a collect request is {\"kind\": \"collect\", \"camera\": ID, \"on\": true | false, "
                               "\"hours\": N | null, \"labels\": {SLOT: CLASS} | null}")
        found = tracker(req)
        if isinstance(found, dict):
            return found
        collector = (collectors or {}).get(req["camera"])
        if collector is None:
            return _error(409, f"camera {req['camera']}: this device does not collect training crops")
        try:
            if on is None:
                return collector.status()
            return collector.start(hours, labels) if on else collector.stop()
        except UnknownSlot as exc:
            return _error(404, str(exc))
        except CollectRefused as exc:
            return _error(409, str(exc))
        except DataError as exc:
            return _error(400, str(exc))

    return {"enrol": enrol, "evidence": evidence, "collect": collect}


def ask(endpoint: str, keys: Any, request: Mapping[str, Any], *, timeout_s: float = 5.0,
        plaintext: bool = False, device: str | None = None) -> dict[str, Any]:
    """Send one request to a device's snapshot endpoint and return its JSON reply.

    Args:
        endpoint: the device's snapshot endpoint.
        keys: the client's :class:`~edge.link.client.ClientKeys` (``None`` with ``plaintext``).
        request: the request (see this module's docstring).

    Raises:
        LinkError: the device refused the handshake.
        DataError: no reply within ``timeout_s``, or a reply that is not a JSON object.
    """
    import zmq  # noqa: PLC0415

    from edge.link import messages  # noqa: PLC0415
    from edge.link.client import Link  # noqa: PLC0415

    with Link(zmq.REQ, endpoint, keys, plaintext=plaintext, device=device) as link:
        reply = link.request(messages.encode(dict(request)), timeout_s)
        link.check()
    if reply is None:
        raise DataError(f"{device or endpoint}: no answer within {timeout_s:g} s (is the device running, and this "
                        "client in its allow-list?)")
    try:
        doc = messages.decode(reply)
    except Exception as exc:  # noqa: BLE001 - any undecodable reply is the same problem to the caller
        raise DataError(f"{device or endpoint}: the reply is not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise DataError(f"{device or endpoint}: the reply is not a JSON object")
    return doc
