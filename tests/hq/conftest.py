"""Chain fixtures: one real mosquitto (TLS, per-store passwords, ACL) and one real PostgreSQL per session."""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import httpx
import psycopg
import pytest

from hq import store as db
from hq.config import parse_config
from hq.migrations import migrate
from hq.users import add_user
from hq.web import create_app

from .chainkit import NOW, Served, health_message, hq_config_dict, incident_message
from .services import HQ_USER, Broker, Postgres

#: Every store the broker knows, with its password; ``hq`` is the consumer.
PASSWORDS = {HQ_USER: "hq-secret-1", "zrh-01": "zrh-01-secret", "gva-02": "gva-02-secret", "bsl-03": "bsl-03-secret",
             "ghost-9": "ghost-9-secret"}
_db_numbers = itertools.count()


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    try:
        b = Broker(tmp_path_factory.mktemp("mosquitto"), PASSWORDS).start()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield b
    b.stop()


@pytest.fixture(scope="session")
def postgres():
    try:
        pg = Postgres().start()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield pg
    pg.destroy()


@pytest.fixture
def dsn(postgres) -> str:
    """A fresh, empty database of the session's PostgreSQL."""
    return postgres.new_database(f"t{next(_db_numbers)}")


@pytest.fixture
def creds(tmp_path, broker) -> SimpleNamespace:
    """Password files of every user (0600), and the broker's CA."""
    folder = tmp_path / "creds"
    folder.mkdir()
    files = {}
    for user, password in PASSWORDS.items():
        p = folder / f"{user}.password"
        p.write_text(password + "\n")
        p.chmod(0o600)
        files[user] = p
    return SimpleNamespace(folder=folder, files=files, ca=broker.ca)


@pytest.fixture
def chain(tmp_path, broker, dsn):
    """A database with three stores' reports and three users (viewer, regional for east, admin)."""
    cfg = parse_config(hq_config_dict(tmp_path, broker, dsn))
    with psycopg.connect(dsn) as conn:
        migrate(conn)
        db.sync_stores(conn, cfg.stores)
        with conn.transaction():
            db.apply(conn, incident_message("zrh-01", 1, 1, NOW - 7200))
            db.apply(conn, incident_message("gva-02", 1, 1, NOW - 60))
            db.apply(conn, incident_message("bsl-03", 2, 1, NOW - 600))
            db.apply(conn, health_message("zrh-01", 2, True, "1.2.0"))
            db.apply(conn, health_message("gva-02", 2, False, "1.1.0"))
            db.count_intake(conn, "unknown store", "gemsight/ghost-9/count: store 'ghost-9' is not one of the chain's")
        for name, role, stores in (("vera", "viewer", []), ("rita", "regional", ["zrh-01", "bsl-03"]),
                                   ("adam", "admin", [])):
            add_user(conn, name, role, "correct horse", stores, known=[s.id for s in cfg.stores])
    served = Served(create_app(cfg, dsn, clock=lambda: NOW))
    with httpx.Client(base_url=served.url, timeout=10) as client:
        yield client
    served.close()
