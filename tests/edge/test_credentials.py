"""One rule for credential references: a bare name is in $CREDENTIALS_DIRECTORY, anything with a '/' is a path."""
import pytest
import zmq
import zmq.auth

from edge.config.credentials import is_name, load_curve_keys, resolve
from edge.errors import ConfigError


def test_a_bare_name_is_looked_up_in_the_credentials_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert is_name("cam1-login") and resolve("cam1-login", "credentials") == tmp_path / "cam1-login"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match=r"credentials 'cam1-login' is a credential name .*\$CREDENTIALS_DIRECTORY "
                                          r"is not set"):
        resolve("cam1-login", "credentials")


@pytest.mark.parametrize("ref", ["/etc/gemsight/cam1", "./cam1", "keys/cam1"])
def test_anything_with_a_slash_is_a_path(ref, tmp_path, monkeypatch):
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert not is_name(ref) and str(resolve(ref, "credentials")) == ref.removeprefix("./")


def test_home_and_empty(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve("~/cam1", "credentials") == tmp_path / "cam1"
    with pytest.raises(ConfigError, match="credentials: empty name"):
        resolve(" ", "credentials")


def test_curve_keys_by_name_and_by_path(tmp_path, monkeypatch):
    if not zmq.has("curve"):
        pytest.skip("libzmq without CURVE")
    public_file, secret_file = zmq.auth.create_certificates(str(tmp_path), "server")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    public, secret = load_curve_keys("server.key_secret", "key", need_secret=True)
    assert secret and load_curve_keys(public_file, "key", need_secret=False) == (public, None)
    with pytest.raises(ConfigError, match="holds no secret key"):
        load_curve_keys(public_file, "key", need_secret=True)
    with pytest.raises(ConfigError, match="does not exist"):
        load_curve_keys("missing.key", "key", need_secret=False)
