"""The kiosk's history: one SQLite database (WAL) in its state directory.

Tables: every slot state change, every incident (updated in place, with its acknowledgement), every
count report, planogram edits and the planogram overrides they leave, users (argon2 hashes) and
their sessions (:mod:`kiosk.history_users`), and an append-only **audit log** of who did what, keyed
and checkpointed (:mod:`kiosk.history_audit`).

Retention (:meth:`History.prune`) deletes slot changes, resolved incidents and counts older than the
configured days; the audit log is never pruned (it is small: people's actions only).

One connection, shared by the subscriber thread and the web handlers under a lock; SQLite's WAL
lets readers of other processes (``gemsight-kiosk audit verify``) run while the kiosk writes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable

from kiosk.history_audit import GENESIS, AuditMixin, HistoryError, audit_hash, audit_key
from kiosk.history_pieces import PiecesMixin
from kiosk.history_users import UsersMixin

__all__ = ["GENESIS", "History", "HistoryError", "audit_hash"]

logger = logging.getLogger(__name__)

DB_NAME = "kiosk.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS slot_changes (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, device TEXT NOT NULL, camera TEXT NOT NULL, slot TEXT NOT NULL,
    label TEXT NOT NULL, score REAL, seq INTEGER, state TEXT);
CREATE INDEX IF NOT EXISTS slot_changes_ts ON slot_changes(ts);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, device TEXT NOT NULL, camera TEXT, slot TEXT,
    state TEXT NOT NULL, opened_at REAL NOT NULL, updated_at REAL NOT NULL, resolved_at REAL,
    reason TEXT NOT NULL, evidence TEXT NOT NULL, ack_by TEXT, ack_at REAL, ack_note TEXT);
CREATE INDEX IF NOT EXISTS incidents_state ON incidents(state);
CREATE TABLE IF NOT EXISTS counts (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, user TEXT NOT NULL, kind TEXT NOT NULL, report TEXT NOT NULL,
    digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS planogram (
    device TEXT NOT NULL, camera TEXT NOT NULL, slot TEXT NOT NULL, expected TEXT NOT NULL,
    PRIMARY KEY (device, camera, slot));
CREATE TABLE IF NOT EXISTS planogram_edits (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, user TEXT NOT NULL, device TEXT NOT NULL, camera TEXT NOT NULL,
    slot TEXT NOT NULL, old TEXT, new TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS planogram_suggested (
    device TEXT NOT NULL, camera TEXT NOT NULL, slot TEXT NOT NULL, ts REAL NOT NULL, user TEXT NOT NULL,
    PRIMARY KEY (device, camera, slot));
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pieces (
    device TEXT NOT NULL, camera TEXT NOT NULL, slot TEXT NOT NULL, sku TEXT NOT NULL, price REAL, photo BLOB,
    media TEXT, ts REAL NOT NULL, user TEXT NOT NULL, PRIMARY KEY (device, camera, slot));
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, user TEXT NOT NULL, csrf TEXT NOT NULL, created REAL NOT NULL, seen REAL NOT NULL,
    expires REAL NOT NULL, address TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, user TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL,
    prev TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
INCIDENT_COLUMNS = ("id", "kind", "device", "camera", "slot", "state", "opened_at", "updated_at", "resolved_at",
                    "reason", "evidence", "ack_by", "ack_at", "ack_note")


class History(AuditMixin, UsersMixin, PiecesMixin):
    """The kiosk's SQLite database.

    Args:
        state_dir: Directory of the database (created 0700 if missing).
        readonly: Open for reading only (``audit verify`` beside a running kiosk).

    Raises:
        HistoryError: the directory or database cannot be opened.
    """

    def __init__(self, state_dir: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(state_dir) / DB_NAME
        try:
            if readonly:
                if not self.path.is_file():
                    raise HistoryError(f"{self.path}: no kiosk history database here")
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            else:
                Path(state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
                self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(SCHEMA)
                self._migrate_users()
                self._migrate_counts()
                self._migrate_slot_changes()
            self._state_dir = Path(state_dir)
            self._audit_key = audit_key(self._state_dir, create=not readonly)
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"{self.path}: cannot open the kiosk history ({exc})") from exc
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()

    def _exec(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(args))
            except (sqlite3.Error, UnicodeError) as exc:
                raise HistoryError(f"{self.path}: {exc}") from exc

    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                return [dict(r) for r in self._db.execute(sql, tuple(args)).fetchall()]
            except sqlite3.Error as exc:
                raise HistoryError(f"{self.path}: {exc}") from exc

    # -- slot changes --------------------------------------------------------------------------------
    def _migrate_slot_changes(self) -> None:
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(slot_changes)").fetchall()}
        if "state" not in cols:       # histories from before slot states: their rows are category changes
            self._db.execute("ALTER TABLE slot_changes ADD COLUMN state TEXT")

    def add_slot_changes(self, rows: list[tuple]) -> None:
        """Record slot changes ``(ts, device, camera, slot, label, score, seq[, state])`` in one transaction
        (``state``: the device's slot state, when the kiosk decides by states; None or left out otherwise)."""
        if not rows:
            return
        rows = [tuple(r) + (None,) * (8 - len(r)) for r in rows]
        with self._lock:
            try:
                with self._db:
                    self._db.executemany("INSERT INTO slot_changes (ts, device, camera, slot, label, score, seq, "
                                         "state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            except sqlite3.Error as exc:
                raise HistoryError(f"{self.path}: {exc}") from exc

    def slot_changes(self, limit: int = 200, device: str | None = None, since: float | None = None,
                     until: float | None = None) -> list[dict[str, Any]]:
        """The latest slot changes, newest first (optionally of one device, within a time span)."""
        where, args = ["1 = 1"], []
        if device:
            where.append("device = ?")
            args.append(device)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts < ?")
            args.append(until)
        return self._rows(f"SELECT * FROM slot_changes WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                          [*args, int(limit)])

    # -- incidents -----------------------------------------------------------------------------------
    def save_incident(self, inc: dict[str, Any]) -> int:
        """Insert (no ``id``) or update an incident; returns its id."""
        values = {k: inc.get(k) for k in INCIDENT_COLUMNS}
        values["evidence"] = json.dumps(inc.get("evidence") or {}, separators=(",", ":"))
        if values["id"] is None:
            cols = INCIDENT_COLUMNS[1:]
            cur = self._exec(f"INSERT INTO incidents ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                             [values[c] for c in cols])
            return int(cur.lastrowid)
        sets = ", ".join(f"{c} = ?" for c in INCIDENT_COLUMNS[1:])
        self._exec(f"UPDATE incidents SET {sets} WHERE id = ?",
                   [values[c] for c in INCIDENT_COLUMNS[1:]] + [values["id"]])
        return int(values["id"])

    def incidents(self, *, open_only: bool = False, limit: int = 200, kind: str | None = None,
                  state: str | None = None, device: str | None = None, since: float | None = None,
                  until: float | None = None) -> list[dict[str, Any]]:
        """Incidents, newest first; ``open_only``: those not resolved; the others filter."""
        where, args = ["1 = 1"], []
        if open_only:
            where.append("state != 'resolved'")
        for col, value in (("kind", kind), ("state", state), ("device", device)):
            if value:
                where.append(f"{col} = ?")
                args.append(value)
        if since is not None:
            where.append("opened_at >= ?")
            args.append(since)
        if until is not None:
            where.append("opened_at < ?")
            args.append(until)
        rows = self._rows(f"SELECT * FROM incidents WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                          [*args, int(limit)])
        for r in rows:
            r["evidence"] = json.loads(r["evidence"])
        return rows

    # -- counts --------------------------------------------------------------------------------------
    def _migrate_counts(self) -> None:
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(counts)").fetchall()}
        if "signed_by" not in cols:   # counts before review-then-sign were signed when made
            self._db.execute("ALTER TABLE counts ADD COLUMN signed_by TEXT")
            self._db.execute("ALTER TABLE counts ADD COLUMN signed_at REAL")
            self._db.execute("UPDATE counts SET signed_by = user, signed_at = ts")

    def add_count(self, ts: float, user: str, kind: str, report: dict[str, Any]) -> tuple[int, str]:
        """Keep a count report to be reviewed and signed; returns ``(id, digest)`` (SHA-256 of the report as
        stored: the signature in the audit log names it)."""
        text = json.dumps(report, separators=(",", ":"), sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        cur = self._exec("INSERT INTO counts (ts, user, kind, report, digest) VALUES (?, ?, ?, ?, ?)",
                         [ts, user, kind, text, digest])
        return int(cur.lastrowid), digest

    def sign_count(self, count_id: int, user: str, ts: float) -> bool:
        """Sign a reviewed count; False if it does not exist or is signed already."""
        return self._exec("UPDATE counts SET signed_by = ?, signed_at = ? WHERE id = ? AND signed_by IS NULL",
                          [user, ts, int(count_id)]).rowcount > 0

    def counts(self, limit: int = 100) -> list[dict[str, Any]]:
        """Count reports without their rows, newest first."""
        return self._rows("SELECT id, ts, user, kind, digest, signed_by, signed_at FROM counts ORDER BY id DESC "
                          "LIMIT ?", [int(limit)])

    def count(self, count_id: int) -> dict[str, Any] | None:
        """One count report with its rows, or ``None``."""
        rows = self._rows("SELECT * FROM counts WHERE id = ?", [int(count_id)])
        if not rows:
            return None
        row = rows[0]
        row["report"] = json.loads(row["report"])
        return row

    # -- planogram -----------------------------------------------------------------------------------
    def planogram_overrides(self) -> dict[tuple[str, str, str], str]:
        """Slot -> expected, as edited from the page (these override the config file)."""
        return {(r["device"], r["camera"], r["slot"]): r["expected"]
                for r in self._rows("SELECT * FROM planogram")}

    def set_planogram(self, ts: float, user: str, key: tuple[str, str, str], old: str | None, new: str,
                      *, suggested: bool = False) -> None:
        """Record a planogram edit and keep the new value as an override; ``suggested``: an enrolment's
        suggestion waiting for a manager (any other edit of the slot confirms it)."""
        with self._lock:
            try:
                with self._db:
                    self._db.execute("INSERT INTO planogram_edits (ts, user, device, camera, slot, old, new) "
                                     "VALUES (?, ?, ?, ?, ?, ?, ?)", (ts, user, *key, old, new))
                    self._db.execute("INSERT OR REPLACE INTO planogram (device, camera, slot, expected) "
                                     "VALUES (?, ?, ?, ?)", (*key, new))
                    if suggested:
                        self._db.execute("INSERT OR REPLACE INTO planogram_suggested (device, camera, slot, ts, user) "
                                         "VALUES (?, ?, ?, ?, ?)", (*key, ts, user))
                    else:
                        self._db.execute("DELETE FROM planogram_suggested WHERE device = ? AND camera = ? AND slot = ?",
                                         key)
            except sqlite3.Error as exc:
                raise HistoryError(f"{self.path}: {exc}") from exc

    def planogram_suggested(self) -> set[tuple[str, str, str]]:
        """Slots whose planogram value an enrolment suggested and no manager has confirmed yet."""
        return {(r["device"], r["camera"], r["slot"]) for r in self._rows("SELECT * FROM planogram_suggested")}

    def planogram_edits(self, limit: int = 100) -> list[dict[str, Any]]:
        """Planogram edits, newest first."""
        return self._rows("SELECT * FROM planogram_edits ORDER BY id DESC LIMIT ?", [int(limit)])

    # -- upkeep --------------------------------------------------------------------------------------
    def prune(self, now: float, retention_days: int) -> int:
        """Delete slot changes, resolved incidents and counts older than ``retention_days``; returns rows deleted."""
        cutoff = now - retention_days * 86400.0
        n = 0
        for sql in ("DELETE FROM slot_changes WHERE ts < ?",
                    "DELETE FROM incidents WHERE state = 'resolved' AND resolved_at < ?",
                    "DELETE FROM counts WHERE ts < ?",
                    "DELETE FROM planogram_edits WHERE ts < ?"):
            n += self._exec(sql, [cutoff]).rowcount
        self._exec("DELETE FROM sessions WHERE expires < ?", [now])
        if n:
            logger.info("history: pruned %d rows older than %d days", n, retention_days)
        return n

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
