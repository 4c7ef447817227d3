"""CURVE certificates are validated when read (edge.config.credentials.CurveKeyPair): check, run and listen refuse a
damaged key in one line naming the file, instead of libzmq's "Invalid argument" when the socket is made."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import zmq

from edge.cli.main import main
from edge.config.publish import CurveConfig
from edge.errors import ConfigError
from edge.link.publisher import Publisher
from tests.helpers import ANY, device_config, make_curve_files, write_yaml


def _damaged(curve, tmp_path: Path, kind: str) -> Path:
    """The device's secret certificate with its secret key (or public key) damaged as ``kind`` says."""
    text = curve.server_secret.read_text()
    secret = re.search(r'secret-key = "(.+)"', text).group(1)
    public = re.search(r'public-key = "(.+)"', text).group(1)
    if kind == "short":
        text = text.replace(secret, secret[:39])
    elif kind == "not-z85":
        text = text.replace(secret, "~" + secret[1:])
    elif kind == "mismatch":
        text = text.replace(public, zmq.curve_keypair()[0].decode())
    out = tmp_path / f"{kind}.key_secret"
    out.write_text(text)
    return out


def _config(tmp_path: Path, curve, secret: Path) -> Path:
    return write_yaml(tmp_path / "edge.yaml", device_config(publish={"curve": {
        "server_secret_key": str(secret), "allowed_clients": str(curve.allowed_clients)}}))


PROBLEMS = {"short": "the secret key is 39 characters long, not the 40 of a Z85 CURVE key",
            "not-z85": "the secret key is not Z85 text",
            "mismatch": "the public key is not the secret key's"}


@pytest.mark.parametrize("kind", sorted(PROBLEMS))
def test_b3_check_refuses_a_malformed_server_key_in_one_line(tmp_path, capsys, kind):
    curve = make_curve_files(tmp_path)
    bad = _damaged(curve, tmp_path, kind)
    assert main(["check", "--config", str(_config(tmp_path, curve, bad))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and PROBLEMS[kind] in err
    with pytest.raises(ConfigError, match=re.escape(PROBLEMS[kind])):  # run: refused before any socket
        Publisher("case-01", ANY, None, curve=CurveConfig(server_secret_key=str(bad),
                                                          allowed_clients=str(curve.allowed_clients)))


@pytest.mark.parametrize("kind", sorted(PROBLEMS))
def test_b3_listen_refuses_a_malformed_client_key_in_one_line(tmp_path, capsys, kind):
    curve = make_curve_files(tmp_path)
    bad = _damaged(curve, tmp_path, kind)
    rc = main(["listen", "tcp://127.0.0.1:9", "--curve-server-key", str(curve.server_public),
               "--curve-client-key", str(bad), "--timeout", "0.1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and PROBLEMS[kind] in err and "--curve-client-key" in err


def test_b6_a_key_path_that_is_a_folder_is_named_as_such(tmp_path, capsys):
    curve = make_curve_files(tmp_path)
    assert main(["check", "--config", str(_config(tmp_path, curve, tmp_path / "device"))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"'{tmp_path / 'device'}' is a folder, not a key file") and "does not exist" not in err
