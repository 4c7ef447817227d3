"""Secrets the device reads from files: camera logins and ZeroMQ CURVE keys, never the YAML.

One rule for every credential reference, in the config or on a command line:

* a bare **name** (no ``/``, e.g. ``cam1-login``) is a credential systemd handed the service: the
  file ``$CREDENTIALS_DIRECTORY/<name>`` (``LoadCredential=`` names cannot hold a ``/`` either);
* anything with a ``/`` is a **path**: absolute, ``~/...``, or relative (``./key``, ``keys/key``:
  from the device config, relative to the config file's directory, see :mod:`edge.config.device`; on a
  command line, to the working directory).

A CURVE certificate's keys are validated by :class:`CurveKeyPair` as soon as the file is read (by
``check``, ``run``, ``listen`` and the kiosk alike): 40 characters of Z85, and a public key that is
the secret key's own, so that a damaged key is one line naming the file, not libzmq's ``Invalid
argument`` when the socket is made.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import ConfigDict, ValidationError, field_validator, model_validator

from edge.errors import ConfigError
from edge.validation import Strict

ENV_DIRECTORY = "CREDENTIALS_DIRECTORY"
_USERINFO = re.compile(r"(?<=://)[^/@\s?#]+@")
# A value is a double-quoted string (GStreamer pipelines) or runs to the next separator.
_SECRET_PARAM = re.compile(r'(?i)\b(password|passwd|pass|pwd|token|user-pw|user_pw|key)=("(?:[^"\\]|\\.)*"?|[^&\s!]+)')
Z85_KEY_CHARS = 40  # a 32-byte CURVE key in Z85 text


def check_z85_key(key: bytes, which: str = "") -> bytes:
    """``key`` if it is a CURVE key in Z85 text (40 characters that decode to 32 bytes).

    Raises:
        ValueError: naming ``which`` key (``"public"``, ``"secret"``) and what is wrong.
    """
    from zmq.utils import z85  # noqa: PLC0415 - only CURVE users need zmq here

    name = f"{which} key" if which else "key"
    if len(key) != Z85_KEY_CHARS:
        raise ValueError(f"the {name} is {len(key)} characters long, not the {Z85_KEY_CHARS} of a Z85 CURVE key")
    try:
        z85.decode(key)
    except Exception as exc:  # noqa: BLE001 - z85 raises ValueError, KeyError or struct.error on bad text
        raise ValueError(f"the {name} is not Z85 text ({type(exc).__name__})") from None
    return key


class CurveKeyPair(Strict):
    """The keys of one ``zmq.auth`` certificate, validated: Z85 keys, and a public key matching the secret."""

    model_config = ConfigDict(strict=True)  # and Strict's: no unknown field, frozen
    public: bytes
    secret: bytes | None = None

    @field_validator("public")
    @classmethod
    def _public_ok(cls, v: bytes) -> bytes:
        return check_z85_key(v, "public")

    @field_validator("secret")
    @classmethod
    def _secret_ok(cls, v: bytes | None) -> bytes | None:
        return v if v is None else check_z85_key(v, "secret")

    @model_validator(mode="after")
    def _pair_ok(self) -> "CurveKeyPair":
        import zmq  # noqa: PLC0415

        if self.secret is not None and zmq.curve_public(self.secret) != self.public:
            raise ValueError("the public key is not the secret key's (a damaged or hand-edited certificate)")
        return self


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
    if path.is_dir():
        raise ConfigError(f"{what} '{path}' is a folder, not a key file")
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist" if not path.exists()
                          else f"{what} '{path}' is not a regular file")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} '{path}' is not a readable ZeroMQ certificate: {exc}") from exc
    if need_secret and not secret:
        raise ConfigError(f"{what} '{path}' holds no secret key (give the server's .key_secret file)")
    try:
        pair = CurveKeyPair(public=public, secret=secret or None)
    except ValidationError as exc:
        problem = str(exc.errors()[0].get("msg", "invalid key")).removeprefix("Value error, ")
        raise ConfigError(f"{what} '{path}': {problem}") from None
    return pair.public, pair.secret


def redact(uri: str) -> str:
    """A URI or pipeline safe to log: ``user:password@`` and password-like parameters replaced."""
    out = _USERINFO.sub("***@", uri)
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=***", out)
