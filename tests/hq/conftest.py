"""Chain fixtures: one real mosquitto (TLS, per-store passwords, ACL) and one real PostgreSQL per session."""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

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
