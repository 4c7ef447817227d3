"""Secrets the device reads from files: camera logins and ZeroMQ CURVE keys, never the YAML.

One rule for every credential reference, in the config or on a command line:

* a bare **name** (no ``/``, e.g. ``cam1-login``) is a credential systemd handed the service: the
  file ``$CREDENTIALS_DIRECTORY/<name>`` (``LoadCredential=`` names cannot hold a ``/`` either);
* anything with a ``/`` is a **path**: absolute, ``~/...``, or relative (``./key``, ``keys/key``:
  from the device config, relative to the config file's directory, see :mod:`edge.config`; on a
  command line, to the working directory).
"""
from __future__ import annotations

import os
from pathlib import Path

from edge.errors import ConfigError

ENV_DIRECTORY = "CREDENTIALS_DIRECTORY"


def is_name(ref: str | os.PathLike) -> bool:
    """True for a bare credential name (looked up in ``$CREDENTIALS_DIRECTORY``), False for a path."""
    return "/" not in os.fspath(ref)


def resolve(ref: str | os.PathLike, what: str) -> Path:
    """The file a credential reference names (see the module docstring for the rule).

    Args:
        ref: a credential name or a path.
        what: what it is, for messages (e.g. ``"publish CURVE secret key file"``).

    Raises:
        ConfigError: an empty reference, or a name while ``$CREDENTIALS_DIRECTORY`` is not set.
    """
    text = os.fspath(ref)
    if not text.strip():
        raise ConfigError(f"{what}: empty name")
    if not is_name(text):
        return Path(os.path.expanduser(text))
    base = os.environ.get(ENV_DIRECTORY)
    if not base:
        raise ConfigError(f"{what} '{text}' is a credential name (no '/'), but ${ENV_DIRECTORY} is not set: "
                          "run under systemd with LoadCredential=, or give a path")
    return Path(base) / text


def load_curve_keys(ref: str | os.PathLike, what: str, *, need_secret: bool) -> tuple[bytes, bytes | None]:
    """Read a ``zmq.auth`` certificate: ``(public_key, secret_key or None)``.

    Raises:
        ConfigError: the file is missing or unreadable, or holds no secret key when one is needed.
    """
    import zmq.auth  # noqa: PLC0415 - only CURVE users need it

    path = resolve(ref, what)
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} '{path}' is not a readable ZeroMQ certificate: {exc}") from exc
    if need_secret and not secret:
        raise ConfigError(f"{what} '{path}' holds no secret key (give the server's .key_secret file)")
    return public, secret
