"""Enrol a case from the kiosk, and the planogram suggestions it leaves (manager actions).

"Enrol this case" asks the case's device to enrol every slot of its camera
(:func:`kiosk.device_requests.request_enrol`): the device records each still, occupied slot's reference
and refuses the others by name (occluded, empty). A slot the planogram says holds a piece is enrolled even
where the model reads it empty (``unseen``: a faint piece would otherwise never be watched). What the device
reads in each enrolled slot fills the planogram as a **suggestion**: stored like any planogram edit, marked
suggested until a manager confirms it or types another value (:func:`confirm_suggestion`, or any planogram
edit of the slot).
Every step leaves an audit row. Swapped incidents of the enrolled slots end: the piece there now is
the reference.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from kiosk.config import EMPTY_LABELS, STATES, check_expected
from kiosk.device_requests import DeviceRequestError, request_enrol
from kiosk.engine import ActionError

logger = logging.getLogger(__name__)


def enrol_case(kiosk: Any, device: str, camera: str, user: str, *, slots: list[str] | None = None,
               request: Callable[..., dict] = request_enrol) -> dict[str, Any]:
    """Enrol every slot of a case (or ``slots``: a restocked one) and fill its planogram with suggestions.

    Args:
        kiosk: The running :class:`~kiosk.service.Kiosk`.
        device: Device id of the case.
        camera: Camera id of the case.
        user: Who asked (audit).
        slots: Only these slots (``None``: every slot of the case).
        request: The enrol request (tests may pass another).

    Returns:
        ``{"device", "camera", "enrolled": [...], "refused": {slot: why}, "suggested": {slot: {"old", "new"}},
        "unseen": [...] (enrolled on the planogram's word: the model reads them empty), "enrolment": {...} | None}``.

    Raises:
        DeviceRequestError: unknown case (404), or the device refused or did not answer (its status);
            nothing in the planogram changes then.
    """
    case = (device, camera)
    if case not in kiosk.engine.cases:
        raise DeviceRequestError(f"no case {device}/{camera} in this store", 404)
    # The slots the planogram says hold a piece: the device enrols them even where its model reads them empty
    # (a faint piece would otherwise stay unenrolled, and its theft alarm nobody).
    pieces = sorted(slot for (dev, cam, slot), value in kiosk.engine.planogram.items()
                    if (dev, cam) == case and value not in STATES and (slots is None or slot in slots))
    try:
        reply = request(kiosk.config, device, camera, slots, pieces=pieces)
    except DeviceRequestError as exc:
        kiosk.history.audit(kiosk.clock(), user, "enrol", {"case": f"{device}/{camera}", "error": str(exc)})
        raise
    suggested: dict[str, dict[str, str | None]] = {}
    for slot in reply["enrolled"]:
        key = (device, camera, slot)
        label = reply["labels"].get(slot)
        try:
            check_expected(label)
        except ValueError:
            continue                         # empty/unknown or not a class name: nothing to suggest
        old = kiosk.engine.planogram.get(key)
        if old == label:
            continue                         # the planogram says so already
        try:
            kiosk.set_expected(key, label, user, suggested=True)
        except ActionError as exc:           # a slot the kiosk has never seen
            logger.warning("enrol %s/%s: no suggestion for %s: %s", device, camera, slot, exc)
            continue
        suggested[slot] = {"old": old, "new": label}
    with kiosk.lock:
        now = kiosk.clock()
        kiosk._apply(kiosk.engine.on_enrolled(case, reply["enrolled"], user, now))
    unseen = reply.get("unseen") or []
    kiosk.history.audit(now, user, "enrol", {"case": f"{device}/{camera}", "enrolled": reply["enrolled"],
                                             "refused": reply["refused"], "suggested": suggested,
                                             "unseen": unseen, "enrolment": reply["enrolment"]})
    if unseen:
        logger.warning("enrol %s/%s by %s: enrolled on the planogram's word, the model reads them empty: %s",
                       device, camera, user, ", ".join(unseen))
    if reply["refused"]:
        logger.warning("enrol %s/%s by %s: refused %s", device, camera, user,
                       "; ".join(f"{s}: {why}" for s, why in sorted(reply["refused"].items())))
    logger.info("enrol %s/%s by %s: %d slot(s) enrolled, %d suggestion(s)", device, camera, user,
                len(reply["enrolled"]), len(suggested))
    return {"device": device, "camera": camera, "enrolled": reply["enrolled"], "refused": reply["refused"],
            "suggested": suggested, "unseen": unseen, "enrolment": reply["enrolment"]}


def confirm_suggestion(kiosk: Any, key: tuple[str, str, str], user: str, value: str | None = None) -> dict[str, Any]:
    """A manager confirms a suggested slot (``value``: another value instead); returns the slot cell.

    Raises:
        ActionError: the slot has no suggestion waiting, or a bad value.
    """
    if key not in kiosk.engine.suggested:
        raise ActionError(f"slot {'/'.join(key)} has no suggestion to confirm")
    value = value or kiosk.engine.planogram[key]
    if value in EMPTY_LABELS:
        raise ActionError(f"planogram value {value!r} must be a class name or a state")
    return kiosk.set_expected(key, value, user)
