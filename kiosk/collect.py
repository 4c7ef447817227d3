"""Collect training photos from a case (a manager action): the device keeps crops of its enrolled slots.

"Collect training photos from this case" asks the case's device to keep crops of its enrolled, still slots for
some hours (:func:`kiosk.device_requests.request_collect`; the device's side: docs/slot-states.md, "Collecting
training photos"). The kiosk sends what the store confirmed each slot holds: the planogram's class for every slot
whose value is a class (not a state such as sold, and not a suggestion an enrolment left that nobody confirmed
yet). The device labels each crop with it; a slot the planogram says nothing about gets the label its enrolment
recorded. Every request leaves an audit row. A device with no enrolment refuses, and the manager reads why.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Callable

from edge.contracts import ID_PATTERN
from kiosk.config import EMPTY_LABELS, STATES
from kiosk.device_requests import DeviceRequestError, request_collect

logger = logging.getLogger(__name__)

DEFAULT_HOURS = 8.0          # a store day
_DEVICE_CLASS = re.compile(ID_PATTERN)   # what a device takes as a class (a folder name on the trainer)


def confirmed_classes(kiosk: Any, device: str, camera: str) -> dict[str, str]:
    """Slot → the class the store confirmed for it (planogram values that are classes, suggestions left out)."""
    with kiosk.lock:
        plan = {k[2]: v for k, v in kiosk.engine.planogram.items()
                if k[:2] == (device, camera) and k not in kiosk.engine.suggested}
    return {slot: value for slot, value in sorted(plan.items())
            if value not in STATES and value not in EMPTY_LABELS and _DEVICE_CLASS.match(value)}


def collect_case(kiosk: Any, device: str, camera: str, user: str, *, on: bool = True, hours: float | None = None,
                 request: Callable[..., dict] = request_collect) -> dict[str, Any]:
    """Turn a case's collection of training crops on (for ``hours``) or off.

    Returns:
        ``{"device", "camera", "on", "until", "classes": {slot: class}, "sent": {slot: class}, "today", "stopped"}``.

    Raises:
        DeviceRequestError: unknown case (404), the device refused (e.g. 409: nothing enrolled) or did not answer.
    """
    case = (device, camera)
    if case not in kiosk.engine.cases:
        raise DeviceRequestError(f"no case {device}/{camera} in this store", 404)
    sent = confirmed_classes(kiosk, device, camera) if on else {}
    hours = (DEFAULT_HOURS if hours is None else hours) if on else None
    try:
        reply = request(kiosk.config, device, camera, on=on, hours=hours, labels=sent or None)
    except DeviceRequestError as exc:
        kiosk.history.audit(kiosk.clock(), user, "collect", {"case": f"{device}/{camera}", "on": on,
                                                             "error": str(exc)})
        raise
    kiosk.history.audit(kiosk.clock(), user, "collect", {"case": f"{device}/{camera}", "on": reply["on"],
                                                         "hours": hours, "classes": reply["classes"]})
    logger.info("collect %s/%s by %s: %s", device, camera, user,
                f"on for {hours:g} h, {len(reply['classes'])} slot(s)" if reply["on"] else "off")
    return {"device": device, "camera": camera, **reply, "sent": sent, "hours": hours}
