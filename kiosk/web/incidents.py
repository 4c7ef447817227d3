"""Incidents: the live list and the filtered record, and acknowledging one (manager)."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kiosk.web.filters import read_filters
from kiosk.web.guard import JSON, action, back, page


def _recent(request: Request) -> tuple[dict, list[dict]]:
    kiosk = request.app.state.kiosk
    f = read_filters(request)
    rows = kiosk.history.incidents(kind=f["kind"], state=f["state"], device=f["device"], since=f["since"],
                                   until=f["until"], limit=f["limit"])
    return f, [kiosk.describe(r) for r in rows]


async def incidents_page(request: Request) -> Response:
    f, recent = _recent(request)
    return page(request, "incidents.html", open=request.app.state.kiosk.incidents(), recent=recent, filters=f,
                csrf=request.user.csrf)


async def api_incidents(request: Request) -> Response:
    _, recent = _recent(request)
    return JSON({"open": request.app.state.kiosk.incidents(), "recent": recent})


@action("acknowledge incidents")
async def acknowledge(request: Request, data: dict) -> Response:
    inc = request.app.state.kiosk.acknowledge(int(request.path_params["incident_id"]), request.user.name,
                                              str(data.get("note", "")))
    return back(request, inc, "/incidents")


routes = [
    Route("/incidents", incidents_page), Route("/api/incidents", api_incidents),
    Route("/incidents/{incident_id:id}/ack", acknowledge, methods=["POST"]),
    Route("/api/incidents/{incident_id:id}/ack", acknowledge, methods=["POST"]),
]
