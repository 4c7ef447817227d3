"""``gemsight-edge keys``: CURVE key pairs and the device's allow-list of clients.

    gemsight-edge keys client NAME --out DIR     a client key pair: DIR/NAME.key (public), DIR/NAME.key_secret (0600)
    gemsight-edge keys server --out DIR          the device's key pair: DIR/server.key, DIR/server.key_secret (0600)
    gemsight-edge keys allow CLIENT.key [--name NAME] [--config edge.yaml | --dir DIR]
    gemsight-edge keys revoke NAME [--config edge.yaml | --dir DIR]
    gemsight-edge keys list [--config edge.yaml | --dir DIR]

Key files are ``zmq.auth`` certificates (what ``zmq.auth.create_certificates`` writes). The
allow-list directory is the config's ``publish.curve.allowed_clients`` (default config
``/etc/gemsight/edge.yaml``) or ``--dir``; a running edge picks up changes within
:data:`edge.link.allowlist.POLL_S` seconds. Only public certificates go in: a secret one is refused.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from edge.atomic import write_atomic
from edge.contracts import ID_PATTERN
from edge.errors import ConfigError
from edge.link.allowlist import PUBLIC_SUFFIX, SECRET_SUFFIX, read_public_key

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "/etc/gemsight/edge.yaml"
SERVER_NAME = "server"


def _check_name(name: str) -> str:
    if not re.match(ID_PATTERN, name or ""):
        raise ConfigError(f"key name {name!r} is not valid: 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit")
    return name


def create_key_pair(out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Write a new CURVE key pair ``NAME.key`` (0644) and ``NAME.key_secret`` (0600) into ``out_dir``.

    The secret file is never readable by others, not even for a moment: both are made in a private
    temporary directory beside them and renamed into place.

    Returns:
        The public and the secret certificate paths.

    Raises:
        ConfigError: a bad name, or either file already exists (never overwritten).
    """
    import zmq.auth  # noqa: PLC0415

    _check_name(name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = out / f"{name}{PUBLIC_SUFFIX}", out / f"{name}{SECRET_SUFFIX}"
    for path in (public, secret):
        if path.exists():
            raise ConfigError(f"{path} already exists: choose another name (keys are never overwritten)")
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".keys-"))  # mode 0700
    try:
        tmp_public, tmp_secret = map(Path, zmq.auth.create_certificates(tmp, name))
        os.chmod(tmp_secret, 0o600)
        os.chmod(tmp_public, 0o644)
        os.replace(tmp_secret, secret)
        os.replace(tmp_public, public)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("wrote %s and %s (secret, 0600)", public, secret)
    return public, secret


def allow_dir(config: str | Path | None, directory: str | Path | None) -> Path:
    """The allow-list directory: ``directory``, or the config's ``publish.curve.allowed_clients``.

    Raises:
        ConfigError: the config cannot be read, says ``curve: null``, or the directory does not exist.
    """
    if directory is not None:
        path = Path(directory)
    else:
        from edge.config.device import load_config  # noqa: PLC0415

        cfg = load_config(config or DEFAULT_CONFIG)
        if cfg.publish.curve is None:
            raise ConfigError(f"{config or DEFAULT_CONFIG}: publish.curve is null (plaintext): there is no "
                              "allow-list; configure publish.curve first")
        path = Path(cfg.publish.curve.allowed_clients)
    if not path.is_dir():
        raise ConfigError(f"allow-list directory {path} does not exist")
    return path


def list_clients(directory: Path) -> list[tuple[str, str]]:
    """``(name, public key)`` of every client in the allow-list, by name (a bad file shows its error)."""
    out = []
    for path in sorted(directory.glob(f"*{PUBLIC_SUFFIX}")):
        try:
            key = read_public_key(path).decode()
        except ConfigError as exc:
            key = f"(unusable: {exc})"
        out.append((path.name[:-len(PUBLIC_SUFFIX)], key))
    return out


def allow(public_file: str | Path, directory: Path, name: str | None = None) -> Path:
    """Copy a client's public certificate into the allow-list as ``NAME.key``.

    Args:
        public_file: The client's ``NAME.key`` (from ``keys client``).
        directory: The allow-list directory.
        name: The client's name in the list (default: the file's name without ``.key``).

    Raises:
        ConfigError: missing or invalid file, a secret certificate, a name already in the list, or a key
            already allowed under another name.
    """
    src = Path(public_file)
    if not src.is_file():
        raise ConfigError(f"{src}: no such key file")
    key = read_public_key(src)  # refuses secret certificates and malformed keys
    name = _check_name(name or src.name.removesuffix(PUBLIC_SUFFIX).removesuffix(SECRET_SUFFIX))
    target = directory / f"{name}{PUBLIC_SUFFIX}"
    if target.exists():
        raise ConfigError(f"a client named {name!r} is already allowed ({target}): revoke it first or give --name")
    for other, other_key in list_clients(directory):
        if other_key == key.decode():
            raise ConfigError(f"{src}: this key is already allowed as {other!r}")
    write_atomic(target, src.read_bytes(), 0o644)
    logger.info("allowed %s (%s)", name, key.decode())
    return target


def revoke(name: str, directory: Path) -> Path:
    """Remove ``NAME.key`` from the allow-list.

    Raises:
        ConfigError: no such client (the message lists the ones there are).
    """
    target = directory / f"{_check_name(name)}{PUBLIC_SUFFIX}"
    if not target.is_file():
        names = [n for n, _ in list_clients(directory)]
        raise ConfigError(f"no client named {name!r} in {directory} (allowed: {', '.join(names) or 'none'})")
    target.unlink()
    logger.info("revoked %s", name)
    return target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``keys`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="keys_command", required=True)
    client = sub.add_parser("client", help="make a client key pair (for a kiosk or a listen user)")
    client.add_argument("name", metavar="NAME", help="client name (file names and logs), e.g. kiosk-1")
    client.add_argument("--out", required=True, metavar="DIR", help="directory to write NAME.key and NAME.key_secret")
    server = sub.add_parser("server", help="make the device's key pair")
    server.add_argument("--out", required=True, metavar="DIR",
                        help="directory to write server.key and server.key_secret")
    server.add_argument("--name", default=SERVER_NAME, help=f"file name stem (default {SERVER_NAME})")

    def where(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--config", metavar="EDGE_YAML",
                           help=f"device config naming publish.curve.allowed_clients (default {DEFAULT_CONFIG})")
        group.add_argument("--dir", metavar="DIR", help="the allow-list directory itself")

    allow_p = sub.add_parser("allow", help="let a client in: copy its public key into the allow-list")
    allow_p.add_argument("public_key", metavar="PUBLIC_KEY_FILE", help="the client's NAME.key (never the .key_secret)")
    allow_p.add_argument("--name", help="name in the list (default: the file name without .key)")
    where(allow_p)
    revoke_p = sub.add_parser("revoke", help="shut a client out: remove it from the allow-list")
    revoke_p.add_argument("name", metavar="NAME")
    where(revoke_p)
    where(sub.add_parser("list", help="the clients in the allow-list"))


def run(args: argparse.Namespace) -> int:
    """Run a ``keys`` subcommand; prints what it did on stdout."""
    cmd = args.keys_command
    if cmd in ("client", "server"):
        public, secret = create_key_pair(args.out, args.name)
        print(f"wrote {public} (public: give it to the {'clients' if cmd == 'server' else 'device'}) "
              f"and {secret} (secret, 0600: keep it on this {'device' if cmd == 'server' else 'client'})")
        return 0
    directory = allow_dir(args.config, args.dir)
    if cmd == "allow":
        target = allow(args.public_key, directory, args.name)
        print(f"allowed {target.stem}: {target} (a running edge admits it within a few seconds)")
    elif cmd == "revoke":
        target = revoke(args.name, directory)
        print(f"revoked {args.name}: removed {target} (a running edge drops it within a few seconds)")
    else:
        for name, key in list_clients(directory):
            print(f"{name}\t{key}")
    return 0
