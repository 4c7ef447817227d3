"""The cases and their planogram: what each slot should hold (manager)."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kiosk.web.guard import action, back


@action("edit the planogram")
async def planogram(request: Request, data: dict) -> Response:
    key = tuple(str(data.get(k, "")) for k in ("device", "camera", "slot"))
    slot = request.app.state.kiosk.set_expected(key, str(data.get("expected", "")), request.user.name)  # type: ignore[arg-type]
    return back(request, slot, "/")


routes = [Route("/planogram", planogram, methods=["POST"]), Route("/api/planogram", planogram, methods=["POST"])]
