"""Slot states on the web: incidents' evidence pictures, "Enrol this case", confirming suggestions.

    GET  /evidence/{incident}/{camera}/{slot}/{reference|current}.jpg   a stored picture
    GET  /api/incidents/{incident}/evidence                            what is stored, with URLs
    POST /cases/{device}/{camera}/enrol, /api/cases/.../enrol           enrol every slot (manager)
    POST /planogram/confirm, /api/planogram/confirm                     confirm a suggestion (manager)
    POST /cases/{device}/{camera}/collect, /api/cases/.../collect       collect training photos (manager)

Login comes from :class:`~kiosk.web.guard.RequireLogin`, CSRF and role from :func:`~kiosk.web.guard.action`.
An unknown camera or slot, and a picture that is not there, answer 404 with one line saying which; a
device that refuses or does not answer an enrolment answers its status (docs/kiosk-states.md).
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kiosk.collect import collect_case
from kiosk.device_requests import DeviceRequestError
from kiosk.enrolment import confirm_suggestion, enrol_case
from kiosk.web.guard import JSON, Refused, action, back, page


def evidence_url(incident_id: int, camera: str, slot: str, which: str) -> str:
    return f"/evidence/{incident_id}/{camera}/{slot}/{which}.jpg"


def evidence_lookup(kiosk: Any) -> Callable[[int | None], list[dict[str, Any]]]:
    """``evidence_of(incident_id)``: the incident's stored pictures with their URLs (templates, API)."""

    def evidence_of(incident_id: int | None) -> list[dict[str, Any]]:
        if incident_id is None:
            return []
        items = kiosk.evidence.store.items(incident_id)
        for it in items:
            it["urls"] = {w: evidence_url(incident_id, it["camera"], it["slot"], w) for w in it["files"]}
        return items

    return evidence_of


async def picture(request: Request) -> Response:
    kiosk = request.app.state.kiosk
    p = request.path_params
    incident, camera, slot, which = p["incident_id"], p["camera"], p["slot"], p["which"]
    with kiosk.lock:
        cameras = {c for _, c in kiosk.engine.cams} | {c for _, c in kiosk.engine.cases}
        slots = {k[2] for k in kiosk.engine.slots if k[1] == camera}
    if camera not in cameras:
        raise Refused(404, f"unknown camera {camera!r} (cameras: {', '.join(sorted(cameras))})")
    if slot not in slots:
        raise Refused(404, f"unknown slot {slot!r} of camera {camera}")
    if which not in ("reference", "current"):
        raise Refused(404, f"no picture {which!r} (reference or current)")
    path = kiosk.evidence.store.file(incident, camera, slot, which)
    if path is None:
        raise Refused(404, f"no {which} picture of {camera}/{slot} for incident {incident}")
    data = await asyncio.to_thread(path.read_bytes)
    return Response(data, media_type="image/jpeg")


async def api_evidence(request: Request) -> Response:
    incident = request.path_params["incident_id"]
    return JSON({"incident": incident, "slots": evidence_lookup(request.app.state.kiosk)(incident)})


@action("enrol a case")
async def enrol(request: Request, data: dict) -> Response:
    kiosk = request.app.state.kiosk
    device, camera = request.path_params["device"], request.path_params["camera"]
    slot = str(data.get("slot") or "").strip() or None   # one restocked slot, or the whole case
    try:
        result = await asyncio.to_thread(enrol_case, kiosk, device, camera, request.user.name,
                                         slots=[slot] if slot else None)
    except DeviceRequestError as exc:
        raise Refused(exc.status, str(exc)) from None
    if request.url.path.startswith("/api/"):
        return JSON(result)
    return page(request, "enrolled.html", result=result, title=kiosk.engine.case_title((device, camera)))


@action("collect training photos")
async def collect(request: Request, data: dict) -> Response:
    kiosk = request.app.state.kiosk
    device, camera = request.path_params["device"], request.path_params["camera"]
    on = str(data.get("on", "true")).lower() not in ("false", "0", "off", "no")
    raw = data.get("hours")
    try:
        hours = float(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        raise Refused(400, f"hours {str(raw)[:20]!r} is not a number") from None
    if hours is not None and not 0 < hours <= 24 * 31:
        raise Refused(400, f"hours must be more than 0 and at most {24 * 31}, got {hours:g}")
    try:
        result = await asyncio.to_thread(collect_case, kiosk, device, camera, request.user.name, on=on, hours=hours)
    except DeviceRequestError as exc:
        raise Refused(exc.status, str(exc)) from None
    if request.url.path.startswith("/api/"):
        return JSON(result)
    return page(request, "collecting.html", result=result, title=kiosk.engine.case_title((device, camera)))


@action("edit the planogram")
async def confirm(request: Request, data: dict) -> Response:
    key = tuple(str(data.get(k, "")) for k in ("device", "camera", "slot"))
    value = str(data.get("expected") or "").strip() or None
    slot = await asyncio.to_thread(confirm_suggestion, request.app.state.kiosk, key, request.user.name, value)
    return back(request, slot, "/")


routes = [
    Route("/evidence/{incident_id:id}/{camera}/{slot}/{which}.jpg", picture),
    Route("/api/incidents/{incident_id:id}/evidence", api_evidence),
    Route("/cases/{device}/{camera}/enrol", enrol, methods=["POST"]),
    Route("/api/cases/{device}/{camera}/enrol", enrol, methods=["POST"]),
    Route("/cases/{device}/{camera}/collect", collect, methods=["POST"]),
    Route("/api/cases/{device}/{camera}/collect", collect, methods=["POST"]),
    Route("/planogram/confirm", confirm, methods=["POST"]),
    Route("/api/planogram/confirm", confirm, methods=["POST"]),
]
