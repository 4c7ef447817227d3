"""What the chain's page reads from PostgreSQL; every query limited to the stores a user may see.

``stores=None`` means every store (viewer, admin); a regional manager passes their list.
"""
from __future__ import annotations

from typing import Any, Sequence

from psycopg.rows import dict_row

ALL = None


def _rows(conn, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def _scope(stores: Sequence[str] | None, column: str = "store") -> tuple[str, list]:
    if stores is None:
        return "TRUE", []
    return f"{column} = ANY(%s)", [list(stores)]


def stores(conn, scope: Sequence[str] | None, now: float, down_after_s: float) -> list[dict[str, Any]]:
    """Every store with its open incidents, devices and devices down."""
    where, params = _scope(scope, "s.id")
    return _rows(conn, f"""
        SELECT s.id, s.name, s.region, s.last_seen, s.applied, s.duplicates,
               (SELECT COUNT(*) FROM incidents i WHERE i.store = s.id AND i.state <> 'resolved') AS open_incidents,
               (SELECT COUNT(*) FROM devices d WHERE d.store = s.id) AS devices,
               (SELECT COUNT(*) FROM devices d WHERE d.store = s.id AND (NOT d.up OR d.updated < %s)) AS devices_down
        FROM stores s WHERE {where} ORDER BY s.region, s.id""", [now - down_after_s, *params])


def open_incidents(conn, scope: Sequence[str] | None, now: float, limit: int = 1000) -> list[dict[str, Any]]:
    """Unresolved incidents, oldest first, with their age in seconds."""
    where, params = _scope(scope)
    return _rows(conn, f"""
        SELECT store, incident_id, kind, device, camera, slot, state, opened_at, reason, ack_by,
               %s - opened_at AS age_s, evidence_sha256
        FROM incidents WHERE state <> 'resolved' AND {where} ORDER BY opened_at LIMIT %s""", [now, *params, limit])


def devices_down(conn, scope: Sequence[str] | None, now: float, down_after_s: float) -> list[dict[str, Any]]:
    """Devices that say they are down, or have not reported for ``down_after_s``."""
    where, params = _scope(scope)
    rows = _rows(conn, f"""
        SELECT store, device, link, up, updated, %s - updated AS silent_s FROM devices
        WHERE (NOT up OR updated < %s) AND {where} ORDER BY store, device""", [now, now - down_after_s, *params])
    for r in rows:
        r["why"] = (f"no report for {r['silent_s']:.0f} s" if r["silent_s"] > down_after_s
                    else f"link {r['link']}, or a camera not up")
    return rows


def model_versions(conn, scope: Sequence[str] | None) -> list[dict[str, Any]]:
    """The model every camera of every device runs (as its kiosk last reported)."""
    where, params = _scope(scope, "d.store")
    return _rows(conn, f"""
        SELECT d.store, d.device, c->>'camera' AS camera, c->>'health' AS health,
               c->'model'->>'name' AS model, c->'model'->>'version' AS version,
               c->'model'->>'precision' AS precision, c->'model'->>'backend' AS backend
        FROM devices d CROSS JOIN LATERAL jsonb_array_elements(d.cameras) AS c
        WHERE {where} ORDER BY d.store, d.device, camera""", params)


def version_summary(conn, scope: Sequence[str] | None) -> list[dict[str, Any]]:
    """How many cameras run each model version."""
    counts: dict[tuple, int] = {}
    for r in model_versions(conn, scope):
        key = (r["model"] or "?", r["version"] or "?")
        counts[key] = counts.get(key, 0) + 1
    return [{"model": m, "version": v, "cameras": n} for (m, v), n in sorted(counts.items())]


def opening_closing(conn, scope: Sequence[str] | None, limit: int = 500) -> list[dict[str, Any]]:
    """Per store and day (UTC), the last opening count beside the last closing count."""
    where, params = _scope(scope)
    rows = _rows(conn, f"""
        SELECT store, to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, kind, totals, ts
        FROM counts WHERE kind IN ('opening', 'closing') AND {where} ORDER BY ts""", params)
    days: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        days.setdefault((r["store"], r["day"]), {"store": r["store"], "day": r["day"]})[r["kind"]] = r["totals"]
    out = []
    for d in sorted(days.values(), key=lambda d: (d["day"], d["store"]), reverse=True)[:limit]:
        o, c = d.get("opening") or {}, d.get("closing") or {}
        d["seen_opening"], d["seen_closing"] = o.get("seen"), c.get("seen")
        d["missing_opening"], d["missing_closing"] = o.get("missing"), c.get("missing")
        d["seen_change"] = (c["seen"] - o["seen"]) if "seen" in c and "seen" in o else None
        out.append(d)
    return out


def intake(conn) -> list[dict[str, Any]]:
    """Messages refused (unknown store) or skipped (malformed), with the last one's reason."""
    return _rows(conn, "SELECT reason, n, last, last_at FROM intake ORDER BY reason")
