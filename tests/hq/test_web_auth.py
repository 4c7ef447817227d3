"""The chain page on the kiosk's auth: server-side sessions, disabled users, the login limit, CSRF, the body limit."""
from __future__ import annotations


import httpx
import psycopg
import pytest
import yaml
from argon2 import PasswordHasher

from edge.errors import ConfigError
from hq.cli import main
from hq.config import parse_config
from hq.users import add_user, set_disabled
from hq.web import COOKIE, create_app

from .chainkit import NOW, Served, csrf_of, hq_config_dict, log_in


def _hash(dsn: str, name: str) -> str:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT hash FROM users WHERE name = %s", [name]).fetchone()[0]


def test_a_session_lives_in_the_database_and_logout_ends_it(chain, dsn):
    assert log_in(chain, "rita").status_code == 303
    token = chain.cookies[COOKIE]
    with psycopg.connect(dsn) as conn:       # only the token's SHA-256 is kept
        assert conn.execute("SELECT COUNT(*) FROM sessions WHERE id = %s", [token]).fetchone() == (0,)
        assert conn.execute("SELECT user_name FROM sessions").fetchall() == [("rita",)]
    copied = httpx.Client(base_url=chain.base_url, cookies={COOKIE: token})
    assert copied.get("/api/chain").status_code == 200
    r = chain.post("/logout", data={"csrf": "not the token"})
    assert r.status_code == 403 and "missing or wrong CSRF token" in r.text
    r = chain.post("/logout", data={"csrf": csrf_of(chain.get("/").text)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert copied.get("/api/chain").json() == {"error": "login required"}      # the copied cookie is dead too
    assert copied.get("/export/stores.csv").status_code == 401
    copied.close()


def test_a_disabled_or_replaced_user_is_out_at_once(chain, dsn, tmp_path, broker, capsys):
    assert log_in(chain, "vera").status_code == 303
    cfg_path = tmp_path / "hq.yaml"
    cfg_path.write_text(yaml.safe_dump(hq_config_dict(tmp_path, broker, dsn)))
    assert main(["user", "disable", "vera", "--config", str(cfg_path)]) == 0
    assert capsys.readouterr().out == "user vera disabled; 1 sessions ended\n"
    assert chain.get("/api/chain").status_code == 401
    r = log_in(chain, "vera")                 # the same message as a wrong password: names cannot be probed
    assert r.status_code == 401 and "wrong user name or password" in r.text
    assert main(["user", "enable", "vera", "--config", str(cfg_path)]) == 0
    assert log_in(chain, "vera").status_code == 303 and chain.get("/api/chain").status_code == 200
    with psycopg.connect(dsn) as conn:
        add_user(conn, "vera", "viewer", "another horse")
    assert chain.get("/api/chain").status_code == 401
    assert main(["user", "disable", "nobody", "--config", str(cfg_path)]) == 2
    assert capsys.readouterr().err.strip().endswith("no user 'nobody'")


def test_the_login_limit_is_per_account_and_address(chain):
    for _ in range(5):
        assert log_in(chain, "rita", "wrong one!").status_code == 401
    r = log_in(chain, "rita")                                 # even the right password, for now
    assert r.status_code == 429 and "too many failed logins" in r.text and int(r.headers["retry-after"]) > 0
    assert log_in(chain, "adam").status_code == 303          # another account from the same address


def test_bodies_over_the_limit_are_refused_before_the_form_is_read(chain):
    csrf = csrf_of(chain.get("/login").text)
    r = chain.post("/login", data={"user": "rita", "password": "x" * 70_000, "csrf": csrf})
    assert r.status_code == 413 and "request body over 65536 bytes" in r.text
    chunks = (b"user=rita&password=" + b"x" * 8192 for _ in range(10))      # chunked: no Content-Length
    r = chain.post("/login", content=chunks, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    r = chain.post("/login", data={"user": "rita\x00", "password": "correct horse", "csrf": csrf})
    assert r.status_code == 400 and "field &#39;user&#39; contains a NUL character" in r.text


def test_passwords_use_the_kiosks_argon2_parameters(chain, dsn):
    assert "$m=19456,t=2,p=1$" in _hash(dsn, "rita")
    with psycopg.connect(dsn) as conn:          # an older hash (the library's defaults) is re-made at login
        conn.execute("UPDATE users SET hash = %s WHERE name = 'rita'", [PasswordHasher().hash("correct horse")])
    assert log_in(chain, "rita").status_code == 303
    assert "$m=19456,t=2,p=1$" in _hash(dsn, "rita")
    with psycopg.connect(dsn) as conn:
        with pytest.raises(ConfigError, match="at least 8 characters"):
            add_user(conn, "otto", "viewer", "short")
        with pytest.raises(ConfigError, match="NUL or a lone surrogate"):
            add_user(conn, "otto", "viewer", "correct\x00horse")
        with pytest.raises(ConfigError, match="no user 'otto'"):
            set_disabled(conn, "otto", True)


def test_a_database_away_answers_503(tmp_path, broker, dsn):
    cfg = parse_config(hq_config_dict(tmp_path, broker, dsn))
    served = Served(create_app(cfg, "postgresql://nobody@127.0.0.1:1/none", clock=lambda: NOW))
    try:
        with httpx.Client(base_url=served.url, timeout=10, cookies={COOKIE: "a-token"}) as client:
            r = client.get("/api/chain")
            assert r.status_code == 503 and r.json() == {"error": "the chain's database is unavailable; "
                                                                   "try again shortly"}
            client.cookies.clear()
            r = log_in(client, "rita")
            assert r.status_code == 503 and "database is unavailable" in r.text
    finally:
        served.close()
