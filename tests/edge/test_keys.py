"""``gemsight-edge keys``: key pairs with private secrets, and allow-list changes with clear refusals."""
from __future__ import annotations

import stat

import pytest
import zmq
import zmq.auth

from edge.cli.main import main as cli_main
from tests.helpers import device_config, write_yaml

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


def keys(*argv: str) -> int:
    return cli_main(["keys", *map(str, argv)])


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_client_and_server_key_pairs(tmp_path, capsys):
    assert keys("client", "kiosk-1", "--out", tmp_path / "k") == 0
    public, secret = tmp_path / "k/kiosk-1.key", tmp_path / "k/kiosk-1.key_secret"
    assert mode(secret) == 0o600 and mode(public) == 0o644
    pub_key, sec_key = zmq.auth.load_certificate(str(secret))
    assert sec_key and zmq.auth.load_certificate(str(public)) == (pub_key, None)
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["kiosk-1.key", "kiosk-1.key_secret"]  # no temp left
    assert "kiosk-1.key_secret (secret, 0600" in capsys.readouterr().out
    assert keys("server", "--out", tmp_path / "d") == 0 and mode(tmp_path / "d/server.key_secret") == 0o600
    before = secret.read_bytes()
    assert keys("client", "kiosk-1", "--out", tmp_path / "k") == 2
    assert "kiosk-1.key already exists: choose another name" in capsys.readouterr().err
    assert secret.read_bytes() == before  # never overwritten
    assert keys("client", "../evil", "--out", tmp_path / "k") == 2
    assert "key name '../evil' is not valid" in capsys.readouterr().err


@pytest.fixture
def allow_dir(tmp_path):
    d = tmp_path / "clients"
    d.mkdir()
    for name in ("kiosk-1", "kiosk-2"):
        zmq.auth.create_certificates(str(tmp_path), name)
    return d


def test_allow_list_revoke(tmp_path, allow_dir, capsys):
    assert keys("allow", tmp_path / "kiosk-1.key", "--dir", allow_dir) == 0
    assert keys("allow", tmp_path / "kiosk-2.key", "--dir", allow_dir, "--name", "front-desk") == 0
    assert mode(allow_dir / "kiosk-1.key") == 0o644
    capsys.readouterr()
    assert keys("list", "--dir", allow_dir) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in listed] == ["front-desk", "kiosk-1"]
    assert listed[1].split("\t")[1] == zmq.auth.load_certificate(str(tmp_path / "kiosk-1.key"))[0].decode()
    assert keys("revoke", "kiosk-1", "--dir", allow_dir) == 0
    assert not (allow_dir / "kiosk-1.key").exists()
    assert keys("revoke", "kiosk-1", "--dir", allow_dir) == 2
    err = capsys.readouterr().err
    assert "no client named 'kiosk-1' in" in err and "(allowed: front-desk)" in err


@pytest.mark.parametrize("make, match", [
    (lambda t: t / "kiosk-1.key_secret", "holds a secret key; only public certificates"),
    (lambda t: t / "missing.key", "missing.key: no such key file"),
    (lambda t: (t / "junk.key").write_text("hello\n") and t / "junk.key", "junk.key: not a readable ZeroMQ certificate"),
    (lambda t: (t / "short.key").write_text('curve\n    public-key = "abc"\n') and t / "short.key",
     "short.key: the public key is 3 characters long, not the 40 of a Z85 CURVE key"),
])
def test_allow_refuses_bad_files(tmp_path, allow_dir, capsys, make, match):
    assert keys("allow", make(tmp_path), "--dir", allow_dir) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1
    assert not list(allow_dir.iterdir())


def test_allow_refuses_duplicates(tmp_path, allow_dir, capsys):
    assert keys("allow", tmp_path / "kiosk-1.key", "--dir", allow_dir) == 0
    assert keys("allow", tmp_path / "kiosk-2.key", "--dir", allow_dir, "--name", "kiosk-1") == 2
    assert "a client named 'kiosk-1' is already allowed" in capsys.readouterr().err
    assert keys("allow", tmp_path / "kiosk-1.key", "--dir", allow_dir, "--name", "again") == 2
    assert "this key is already allowed as 'kiosk-1'" in capsys.readouterr().err


def test_allow_list_named_by_the_config(tmp_path, allow_dir, capsys):
    curve = {"server_secret_key": "server.key_secret", "allowed_clients": "clients"}
    cfg = write_yaml(tmp_path / "edge.yaml", device_config(publish={"curve": curve}))
    assert keys("allow", tmp_path / "kiosk-1.key", "--config", cfg) == 0
    assert (allow_dir / "kiosk-1.key").is_file()
    write_yaml(cfg, device_config())
    assert keys("list", "--config", cfg) == 2
    assert "publish.curve is null (plaintext): there is no allow-list" in capsys.readouterr().err
    assert keys("list", "--dir", tmp_path / "nowhere") == 2
    assert "allow-list directory" in capsys.readouterr().err
