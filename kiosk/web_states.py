"""Web routes of slot states: incidents' evidence pictures, "Enrol this case", confirming suggestions.

Mounted by :func:`kiosk.web.create_app` with its login, CSRF and role helpers::

    GET  /evidence/{incident}/{camera}/{slot}/{reference|current}.jpg   a stored picture (login)
    GET  /api/incidents/{incident}/evidence                            what is stored, with URLs (login)
    POST /cases/{device}/{camera}/enrol, /api/cases/.../enrol           enrol every slot (manager, CSRF)
    POST /planogram/confirm, /api/planogram/confirm                     confirm a suggestion (manager, CSRF)

An unknown camera or slot, and a picture that is not there, answer 404 with one line saying which.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from kiosk.device_requests import DeviceRequestError
from kiosk.enrolment import confirm_suggestion, enrol_case


def evidence_url(incident_id: int, camera: str, slot: str, which: str) -> str:
    return f"/evidence/{incident_id}/{camera}/{slot}/{which}.jpg"


def states_routes(kiosk: Any, *, need_login: Callable, posted: Callable, guard: Callable, page: Callable,
                  refused: type, templates: Any) -> list[Route]:
    """The routes above; ``refused`` is the app's refusal exception ``(status, message)``, ``templates``
    its Jinja2 templates (they get ``evidence_of(incident_id)`` for the pages)."""

    def evidence_of(incident_id: int | None) -> list[dict[str, Any]]:
        if incident_id is None:
            return []
        items = kiosk.evidence.store.items(incident_id)
        for it in items:
            it["urls"] = {w: evidence_url(incident_id, it["camera"], it["slot"], w) for w in it["files"]}
        return items

    templates.env.globals["evidence_of"] = evidence_of

    def api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    async def picture(request: Request) -> Response:
        need_login(request)
        p = request.path_params
        incident, camera, slot, which = p["incident_id"], p["camera"], p["slot"], p["which"]
        with kiosk.lock:
            cameras = {c for _, c in kiosk.engine.cams} | {c for _, c in kiosk.engine.cases}
            slots = {k[2] for k in kiosk.engine.slots if k[1] == camera}
        if camera not in cameras:
            raise refused(404, f"unknown camera {camera!r} (cameras: {', '.join(sorted(cameras))})")
        if slot not in slots:
            raise refused(404, f"unknown slot {slot!r} of camera {camera}")
        if which not in ("reference", "current"):
            raise refused(404, f"no picture {which!r} (reference or current)")
        path = kiosk.evidence.store.file(incident, camera, slot, which)
        if path is None:
            raise refused(404, f"no {which} picture of {camera}/{slot} for incident {incident}")
        data = await asyncio.to_thread(path.read_bytes)
        return Response(data, media_type="image/jpeg")

    async def api_evidence(request: Request) -> Response:
        need_login(request)
        return JSONResponse({"incident": request.path_params["incident_id"],
                             "slots": evidence_of(request.path_params["incident_id"])})

    async def enrol(request: Request) -> Response:
        u, _ = await posted(request, "enrol a case")
        device, camera = request.path_params["device"], request.path_params["camera"]
        try:
            result = await asyncio.to_thread(enrol_case, kiosk, device, camera, u["name"])
        except DeviceRequestError as exc:
            raise refused(exc.status, str(exc)) from None
        if api(request):
            return JSONResponse(result)
        return page(request, "enrolled.html", result=result, title=kiosk.engine.case_title((device, camera)))

    async def confirm(request: Request) -> Response:
        u, data = await posted(request, "edit the planogram")
        key = tuple(str(data.get(k, "")) for k in ("device", "camera", "slot"))
        value = str(data.get("expected") or "") or None
        slot = await asyncio.to_thread(confirm_suggestion, kiosk, key, u["name"], value)
        return JSONResponse(slot) if api(request) else RedirectResponse("/", 303)

    g = guard
    return [
        Route("/evidence/{incident_id:int}/{camera}/{slot}/{which}.jpg", g(picture)),
        Route("/api/incidents/{incident_id:int}/evidence", g(api_evidence)),
        Route("/cases/{device}/{camera}/enrol", g(enrol), methods=["POST"]),
        Route("/api/cases/{device}/{camera}/enrol", g(enrol), methods=["POST"]),
        Route("/planogram/confirm", g(confirm), methods=["POST"]),
        Route("/api/planogram/confirm", g(confirm), methods=["POST"]),
    ]
