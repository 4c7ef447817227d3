"""Counts: run one now (manager), read them, download one as CSV."""
from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from kiosk.counts import to_csv
from kiosk.web.guard import JSON, Refused, action, back, page


def _count(request: Request) -> dict:
    row = request.app.state.kiosk.history.count(int(request.path_params["count_id"]))
    if row is None:
        raise Refused(404, f"no count {request.path_params['count_id']}")
    return row


async def counts_page(request: Request) -> Response:
    return page(request, "counts.html", counts=request.app.state.kiosk.history.counts(), csrf=request.user.csrf)


async def count_page(request: Request) -> Response:
    return page(request, "count.html", count=_count(request), csrf=request.user.csrf)


async def count_csv(request: Request) -> Response:
    row = _count(request)
    text = to_csv(row["report"], {"store": request.app.state.kiosk.config.store, "count": row["id"],
                                  "kind": row["kind"], "user": row["user"],
                                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(row["ts"])),
                                  "sha256": row["digest"]})
    return PlainTextResponse(text, media_type="text/csv", headers={
        "content-disposition": f'attachment; filename="count-{row["id"]}.csv"'})


async def api_counts(request: Request) -> Response:
    return JSON({"counts": request.app.state.kiosk.history.counts()})


async def api_count(request: Request) -> Response:
    return JSON(_count(request))


@action("run a count")
async def count_now(request: Request, data: dict) -> Response:
    kiosk = request.app.state.kiosk
    count_id = await asyncio.to_thread(kiosk.run_count, request.user.name)
    return back(request, kiosk.history.count(count_id), f"/counts/{count_id}")


@action("sign a count")
async def sign(request: Request, data: dict) -> Response:
    if str(data.get("reviewed", "")).lower() not in ("1", "on", "true", "yes"):
        raise Refused(400, "tick that you reviewed every row before signing")
    row = request.app.state.kiosk.sign_count(int(request.path_params["count_id"]), request.user.name)
    return back(request, row, f"/counts/{row['id']}")


routes = [
    Route("/counts/{count_id:id}/sign", sign, methods=["POST"]),
    Route("/api/counts/{count_id:id}/sign", sign, methods=["POST"]),
    Route("/counts", counts_page), Route("/counts", count_now, methods=["POST"]),
    Route("/counts/{count_id:id}", count_page), Route("/counts/{count_id:id}.csv", count_csv),
    Route("/api/counts", api_counts), Route("/api/counts", count_now, methods=["POST"]),
    Route("/api/counts/{count_id:id}", api_count), Route("/api/counts/{count_id:id}.csv", count_csv),
]
