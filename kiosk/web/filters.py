"""The filters of the incidents and history pages, read from the query string (one line per bad value)."""
from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request

from kiosk.incident import KINDS
from kiosk.web.guard import Refused

STATES = ("open", "acknowledged", "resolved")
MAX_LIMIT = 1000


def _day(text: str, tz: str | None, field: str) -> float:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise Refused(400, f"filter {field}: {text[:40]!r} is not a date YYYY-MM-DD") from None
    start = dt.datetime.combine(day, dt.time(), ZoneInfo(tz) if tz else None)
    return (start if tz else start.astimezone()).timestamp()


def read_filters(request: Request) -> dict[str, Any]:
    """``kind``, ``state``, ``device``, ``day`` (YYYY-MM-DD, store's time zone) and ``limit`` of a request.

    Returns:
        The filters as given (for the form) under ``"given"``, and ``kind``/``state``/``device``/
        ``since``/``until``/``limit`` for the history's queries.
    """
    q = request.query_params
    kiosk = request.app.state.kiosk
    tz = kiosk.timezone
    given = {k: q.get(k, "").strip()[:64] for k in ("kind", "state", "device", "day", "limit")}
    if given["kind"] and given["kind"] not in KINDS:
        raise Refused(400, f"filter kind: {given['kind']!r} is not one of {', '.join(KINDS)}")
    if given["state"] and given["state"] not in STATES:
        raise Refused(400, f"filter state: {given['state']!r} is not one of {', '.join(STATES)}")
    devices = [d.id for d in kiosk.config.devices]
    if given["device"] and given["device"] not in devices:
        raise Refused(400, f"filter device: {given['device']!r} is not a device of this store")
    limit = 200
    if given["limit"]:
        if not given["limit"].isdigit() or not 1 <= int(given["limit"]) <= MAX_LIMIT:
            raise Refused(400, f"filter limit: {given['limit']!r} is not a number from 1 to {MAX_LIMIT}")
        limit = int(given["limit"])
    since = until = None
    if given["day"]:
        since = _day(given["day"], tz, "day")
        until = since + 86400.0
    return {"given": given, "kind": given["kind"] or None, "state": given["state"] or None,
            "device": given["device"] or None, "since": since, "until": until, "limit": limit,
            "devices": devices, "kinds": list(KINDS), "states": list(STATES)}
