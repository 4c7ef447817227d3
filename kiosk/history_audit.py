"""The kiosk's audit log: who did what, in a chain keyed with a secret and checkpointed outside the database.

Each row holds an HMAC-SHA256 (key: ``audit.key`` in the state directory, 0600, made once) over the
previous row's MAC and its own fields, so editing a row, or rewriting the rows and recomputing the
chain, needs the key. Truncation (dropping the newest rows) keeps a valid chain, so every row's id
and MAC is also appended to ``audit.checkpoint``, a file only ever opened for appending (and logged
to the journal): :meth:`AuditMixin.verify_audit` refuses a database that holds fewer rows than the
checkpoint, or other MACs. Acknowledgements are rows too, and verify checks that every acknowledged
incident's ``ack_by``/``ack_note`` is the one its row recorded.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
from pathlib import Path
from typing import Any

from edge.atomic import write_file_synced
from edge.errors import GemsightError

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
AUDIT_KEY_FILE = "audit.key"
CHECKPOINT_FILE = "audit.checkpoint"
CRASH_SLACK_ROWS = 1      # a row committed just before a crash may miss its checkpoint line


class HistoryError(GemsightError):
    """The history database cannot be opened or written, or its audit chain is broken."""


def audit_hash(prev: str, ts: float, user: str, action: str, detail: str, key: bytes) -> str:
    """The chain MAC of one audit row: HMAC-SHA256 (``key``) over the previous MAC and this row's fields."""
    body = json.dumps([prev, repr(float(ts)), user, action, detail], separators=(",", ":"))
    return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


def audit_key(state_dir: Path, *, create: bool) -> bytes | None:
    """The audit chain's key from the state directory (made once, 0600, when ``create``)."""
    path = Path(state_dir) / AUDIT_KEY_FILE
    if create and not path.exists():
        try:
            write_file_synced(path, secrets.token_hex(32).encode(), mode=0o600)
        except FileExistsError:
            pass
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise HistoryError(f"{path}: cannot read the audit key ({exc})") from exc


class AuditMixin:
    """The audit part of :class:`~kiosk.history.History` (needs ``_db``, ``_lock``, ``_rows``, ``path``)."""

    _audit_key: bytes | None
    _state_dir: Path

    def _fail(self, message: str) -> Exception:
        return HistoryError(message)

    def audit(self, ts: float, user: str, action: str, detail: dict[str, Any]) -> str:
        """Append one row to the audit log and to the checkpoint; returns its MAC."""
        if self._audit_key is None:
            raise self._fail(f"{self._state_dir / AUDIT_KEY_FILE}: no audit key (read-only history)")
        text = json.dumps(detail, separators=(",", ":"), sort_keys=True, default=str)
        with self._lock:
            try:
                with self._db:
                    last = self._db.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
                    prev = last[0] if last else GENESIS
                    digest = audit_hash(prev, ts, user, action, text, self._audit_key)
                    cur = self._db.execute("INSERT INTO audit (ts, user, action, detail, prev, hash) "
                                           "VALUES (?, ?, ?, ?, ?, ?)", (ts, user, action, text, prev, digest))
                row_id = int(cur.lastrowid)
            except sqlite3.Error as exc:
                raise self._fail(f"{self.path}: {exc}") from exc
            self._checkpoint(row_id, digest)
        return digest

    def _checkpoint(self, row_id: int, digest: str) -> None:
        path = self._state_dir / CHECKPOINT_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{row_id} {digest}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._fail(f"{path}: cannot append the audit checkpoint ({exc.strerror or exc})") from exc
        logger.info("audit checkpoint %d %s", row_id, digest)

    def audit_rows(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest audit rows."""
        return self._rows("SELECT * FROM audit ORDER BY id DESC LIMIT ?", [int(limit)])

    def _checkpoints(self) -> list[tuple[int, str]]:
        path = self._state_dir / CHECKPOINT_FILE
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise self._fail(f"{path}: cannot read the audit checkpoint ({exc})") from exc
        out = []
        for i, line in enumerate(lines, 1):
            parts = line.split()
            if len(parts) != 2 or not parts[0].isdigit():
                raise self._fail(f"{path}: line {i} is not '<row> <mac>' (the checkpoint was edited)")
            out.append((int(parts[0]), parts[1]))
        return out

    def verify_audit(self) -> int:
        """Walk the audit chain, check it against the checkpoint and the acknowledgements; returns the rows.

        Raises:
            HistoryError: naming the first row that does not match, a truncated log, or an
                acknowledgement the log does not hold.
        """
        if self._audit_key is None:
            raise self._fail(f"{self._state_dir / AUDIT_KEY_FILE}: no audit key; the chain cannot be checked")
        prev, macs = GENESIS, {}
        acks: dict[int, tuple[str, str]] = {}
        for row in self._rows("SELECT * FROM audit ORDER BY id"):
            if row["prev"] != prev:
                raise self._fail(f"audit log broken at row {row['id']}: it does not follow the row before "
                                 "(a row was removed or reordered)")
            if audit_hash(prev, row["ts"], row["user"], row["action"], row["detail"], self._audit_key) != row["hash"]:
                raise self._fail(f"audit log broken at row {row['id']}: its content does not match its hash "
                                 "(the row was edited, or the chain recomputed without the key)")
            prev, macs[row["id"]] = row["hash"], row["hash"]
            if row["action"] == "acknowledge":
                detail = json.loads(row["detail"])
                acks[int(detail.get("incident", -1))] = (row["user"], detail.get("note"))
        marks = self._checkpoints()
        for row_id, mac in marks:
            if row_id not in macs:
                raise self._fail(f"audit log truncated: the checkpoint records row {row_id}, the database "
                                 f"holds {len(macs)} rows (rows were removed)")
            if macs[row_id] != mac:
                raise self._fail(f"audit log rewritten at row {row_id}: its hash is not the checkpoint's")
        last = marks[-1][0] if marks else 0
        unmarked = [i for i in macs if i > last]
        if len(unmarked) > CRASH_SLACK_ROWS:
            raise self._fail(f"audit log rows {unmarked[0]}-{unmarked[-1]} are not in the checkpoint "
                             f"{self._state_dir / CHECKPOINT_FILE} (it was replaced or truncated)")
        for inc in self._rows("SELECT id, ack_by, ack_note FROM incidents WHERE ack_by IS NOT NULL"):
            if acks.get(inc["id"]) != (inc["ack_by"], inc["ack_note"]):
                raise self._fail(f"incident {inc['id']}: its acknowledgement (by {inc['ack_by']}) is not the one "
                                 "in the audit log (edited)")
        return len(macs)
