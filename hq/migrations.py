"""PostgreSQL schema of headquarters, as numbered migrations applied once each, in order.

``schema_migrations`` records every version applied. A migration runs in one transaction with its
record, under an advisory lock, so two ``gemsight-hq`` starting together apply it once. Never edit a
migration that has shipped: add the next one.
"""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

LOCK_KEY = 0x6753_4851          # pg_advisory_xact_lock key of the migrations ("gSHQ")

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "stores, messages, incidents, counts, devices, intake, users", """
CREATE TABLE stores (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL DEFAULT '',
    applied BIGINT NOT NULL DEFAULT 0, duplicates BIGINT NOT NULL DEFAULT 0,
    last_seq BIGINT NOT NULL DEFAULT 0, last_seen DOUBLE PRECISION);
CREATE TABLE messages (
    id TEXT PRIMARY KEY, store TEXT NOT NULL REFERENCES stores(id), seq BIGINT NOT NULL, kind TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL, received DOUBLE PRECISION NOT NULL);
CREATE INDEX messages_store_seq ON messages(store, seq);
CREATE TABLE incidents (
    store TEXT NOT NULL REFERENCES stores(id), incident_id BIGINT NOT NULL, kind TEXT NOT NULL,
    device TEXT NOT NULL, camera TEXT, slot TEXT, state TEXT NOT NULL, opened_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL, resolved_at DOUBLE PRECISION, reason TEXT NOT NULL, ack_by TEXT,
    ack_at DOUBLE PRECISION, ack_note TEXT, evidence_sha256 TEXT NOT NULL, seq BIGINT NOT NULL,
    PRIMARY KEY (store, incident_id));
CREATE TABLE counts (
    store TEXT NOT NULL REFERENCES stores(id), count_id BIGINT NOT NULL, kind TEXT NOT NULL, user_name TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL, totals JSONB NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (store, count_id));
CREATE TABLE devices (
    store TEXT NOT NULL REFERENCES stores(id), device TEXT NOT NULL, link TEXT NOT NULL, up BOOLEAN NOT NULL,
    cameras JSONB NOT NULL, seq BIGINT NOT NULL, updated DOUBLE PRECISION NOT NULL, PRIMARY KEY (store, device));
CREATE TABLE intake (reason TEXT PRIMARY KEY, n BIGINT NOT NULL DEFAULT 0, last TEXT, last_at DOUBLE PRECISION);
CREATE TABLE users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL, stores TEXT[] NOT NULL DEFAULT '{}',
    created DOUBLE PRECISION NOT NULL);
"""),
    (2, "open incidents by age", """
CREATE INDEX incidents_open ON incidents(opened_at) WHERE state <> 'resolved';
"""),
    (3, "when each message was applied (headquarters' lag)", """
ALTER TABLE messages ADD COLUMN applied_at DOUBLE PRECISION NOT NULL
    DEFAULT extract(epoch FROM clock_timestamp());
"""),
    (4, "users can be disabled; server-side sessions (the kiosk's)", """
ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT false;
CREATE TABLE sessions (
    id TEXT PRIMARY KEY, user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE, csrf TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL, address TEXT NOT NULL);
CREATE INDEX sessions_user ON sessions(user_name);
"""),
)


def migrate(conn) -> list[int]:
    """Apply every migration not yet applied (psycopg connection, autocommit off); returns their versions."""
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                     "title TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        for version, title, sql in MIGRATIONS:
            if version in done:
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations (version, title) VALUES (%s, %s)", [version, title])
            applied.append(version)
            logger.info("database migrated to version %d: %s", version, title)
    return applied


def current_version(conn) -> int:
    """The highest migration applied (0 on an empty database)."""
    row = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if row[0] is None:
        return 0
    return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
