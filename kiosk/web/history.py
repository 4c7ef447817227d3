"""The record: slot changes (filtered by device and day), planogram edits, the audit log."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kiosk.web.filters import read_filters
from kiosk.web.guard import JSON, page


def _record(request: Request) -> dict:
    history = request.app.state.kiosk.history
    f = read_filters(request)
    return {"filters": f, "changes": history.slot_changes(f["limit"], f["device"], f["since"], f["until"]),
            "edits": history.planogram_edits(100), "audit": history.audit_rows(100)}


async def history_page(request: Request) -> Response:
    return page(request, "history.html", **_record(request))


async def api_history(request: Request) -> Response:
    record = _record(request)
    record.pop("filters")
    return JSON(record)


routes = [Route("/history", history_page), Route("/api/history", api_history)]
