"""The store page, its state and its live events (server-sent events), and ``/healthz``."""
from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from kiosk.hub import sse
from kiosk.web.guard import JSON, page


async def store(request: Request) -> Response:
    return page(request, "store.html", state=request.app.state.kiosk.state(), csrf=request.user.csrf)


async def api_state(request: Request) -> Response:
    return JSON(request.app.state.kiosk.state())


async def api_events(request: Request) -> Response:
    hello = sse("hello", {"user": request.user.name, "ts": time.time()})
    return StreamingResponse(request.app.state.kiosk.hub.stream(hello), media_type="text/event-stream",
                             headers={"x-accel-buffering": "no"})


async def healthz(request: Request) -> Response:
    """200 ``ok`` while the feed and ticker run and no unhandled error is recent; else 503 with why."""
    kiosk = request.app.state.kiosk
    health = kiosk.health()
    return JSON({**health, "store": kiosk.config.store, "sse_clients": kiosk.hub.clients},
                200 if health["ok"] else 503)


routes = [Route("/", store), Route("/api/state", api_state), Route("/api/events", api_events),
          Route("/healthz", healthz)]
