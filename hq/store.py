"""Writing the stores' reports into PostgreSQL: each message applied once, a newer state never undone.

Every message is first inserted into ``messages`` keyed by its id (``ON CONFLICT DO NOTHING``): a
message the broker delivers again (QoS 1 is at-least-once) or that a store sends again after an
outage finds its id there and changes nothing but the store's ``duplicates`` counter. A new message
is applied in the same transaction: an incident or a device row is replaced only by a message with a
higher ``seq`` of its store (so a late duplicate of an old state loses), a count is inserted once.
``stores.applied`` counts the messages applied: with ``messages`` it shows that nothing was applied
twice (the bench checks ``applied`` = rows of ``messages`` = what the stores sent).
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Iterable

logger = logging.getLogger(__name__)

INCIDENT_UPSERT = """
INSERT INTO incidents (store, incident_id, kind, device, camera, slot, state, opened_at, updated_at, resolved_at,
                       reason, ack_by, ack_at, ack_note, evidence_sha256, seq)
VALUES (%(store)s, %(id)s, %(kind)s, %(device)s, %(camera)s, %(slot)s, %(state)s, %(opened_at)s, %(updated_at)s,
        %(resolved_at)s, %(reason)s, %(ack_by)s, %(ack_at)s, %(ack_note)s, %(evidence_sha256)s, %(seq)s)
ON CONFLICT (store, incident_id) DO UPDATE SET
    kind = EXCLUDED.kind, device = EXCLUDED.device, camera = EXCLUDED.camera, slot = EXCLUDED.slot,
    state = EXCLUDED.state, opened_at = EXCLUDED.opened_at, updated_at = EXCLUDED.updated_at,
    resolved_at = EXCLUDED.resolved_at, reason = EXCLUDED.reason, ack_by = EXCLUDED.ack_by,
    ack_at = EXCLUDED.ack_at, ack_note = EXCLUDED.ack_note, evidence_sha256 = EXCLUDED.evidence_sha256,
    seq = EXCLUDED.seq
WHERE incidents.seq < EXCLUDED.seq
"""
DEVICE_UPSERT = """
INSERT INTO devices (store, device, link, up, cameras, seq, updated)
VALUES (%(store)s, %(device)s, %(link)s, %(up)s, %(cameras)s, %(seq)s, %(updated)s)
ON CONFLICT (store, device) DO UPDATE SET link = EXCLUDED.link, up = EXCLUDED.up, cameras = EXCLUDED.cameras,
    seq = EXCLUDED.seq, updated = EXCLUDED.updated
WHERE devices.seq < EXCLUDED.seq
"""

OPTIONAL = dict.fromkeys(("camera", "slot", "resolved_at", "ack_by", "ack_at", "ack_note"))


def sync_stores(conn, stores: Iterable[Any]) -> None:
    """Insert or rename the configured stores (rows of stores no longer configured are kept)."""
    with conn.transaction():
        for s in stores:
            conn.execute("INSERT INTO stores (id, name, region) VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE "
                         "SET name = EXCLUDED.name, region = EXCLUDED.region", [s.id, s.name, s.region])


def apply(conn, msg: dict[str, Any], received: float | None = None) -> bool:
    """Apply one validated message inside the caller's transaction; False if its id was already applied."""
    store, seq = msg["store"], msg["seq"]
    received = time.time() if received is None else received
    row = conn.execute("INSERT INTO messages (id, store, seq, kind, ts, received) VALUES (%s, %s, %s, %s, %s, %s) "
                       "ON CONFLICT (id) DO NOTHING RETURNING id",
                       [msg["id"], store, seq, msg["kind"], msg["ts"], received]).fetchone()
    if row is None:
        conn.execute("UPDATE stores SET duplicates = duplicates + 1 WHERE id = %s", [store])
        return False
    kind = msg["kind"]
    if kind == "incident":
        conn.execute(INCIDENT_UPSERT, {**OPTIONAL, **msg["incident"], "store": store, "seq": seq})
    elif kind == "count":
        c = msg["count"]
        conn.execute("INSERT INTO counts (store, count_id, kind, user_name, ts, totals, sha256) "
                     "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (store, count_id) DO NOTHING",
                     [store, c["id"], c["kind"], c["user"], c["ts"], json.dumps(c["totals"]), c["sha256"]])
    elif kind == "health":
        for d in msg["devices"]:
            conn.execute(DEVICE_UPSERT, {"store": store, "device": d["device"], "link": d["link"], "up": d["up"],
                                         "cameras": json.dumps(d["cameras"]), "seq": seq, "updated": msg["ts"]})
    conn.execute("UPDATE stores SET applied = applied + 1, last_seq = GREATEST(last_seq, %s), "
                 "last_seen = GREATEST(COALESCE(last_seen, 0), %s) WHERE id = %s", [seq, received, store])
    return True


def count_intake(conn, reason: str, detail: str, n: int = 1) -> None:
    """Count a refused or malformed message (``reason``), keeping the last one's one-line ``detail``."""
    conn.execute("INSERT INTO intake (reason, n, last, last_at) VALUES (%s, %s, %s, %s) ON CONFLICT (reason) "
                 "DO UPDATE SET n = intake.n + EXCLUDED.n, last = EXCLUDED.last, last_at = EXCLUDED.last_at",
                 [reason, n, detail[:500], time.time()])
