"""ed25519 signing keys: generate a pair, load a private key, and gather the public keys a device trusts.

Keys are PEM files: the private key PKCS#8 (unencrypted, mode 0600), the public key
SubjectPublicKeyInfo. A key is named by its *key id*, the first 16 hex digits of the SHA-256 of its
raw 32-byte public key; bundles record the id of the key that signed them.

A device trusts the ``*.pub`` files in ``/etc/gemsight/keys`` (or a ``--pubkey`` given on the command
line) and, when started by systemd with ``LoadCredential=``, those in ``$CREDENTIALS_DIRECTORY``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from edge.errors import BundleError, ConfigError

logger = logging.getLogger(__name__)

PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"
DEFAULT_KEY_NAME = "gemsight-signing"


def _crypto():
    # cryptography is the "deploy" extra: import it where it is needed, with a clear message.
    try:
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - cryptography is installed here
        raise ConfigError("signing needs the 'cryptography' package (pip install 'gemsight[deploy]')") from exc
    return serialization, ed25519


@dataclass(frozen=True)
class PublicKey:
    """A trusted public key and where it came from."""

    key_id: str
    key: object  # Ed25519PublicKey
    source: Path

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` is this key's ed25519 signature of ``data``."""
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
        try:
            self.key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


def key_id_of(public_key: object) -> str:
    """The short id of an ed25519 public key (16 hex digits of the SHA-256 of its raw bytes)."""
    serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(out_dir: str | Path, name: str = DEFAULT_KEY_NAME) -> tuple[Path, Path]:
    """Write a new ed25519 pair ``<out_dir>/<name>.key`` (mode 0600) and ``<name>.pub``.

    Never overwrites: an existing file of either name is an error.

    Returns:
        (private key path, public key path).

    Raises:
        ConfigError: a key file already exists or the directory cannot be written.
    """
    serialization, ed25519 = _crypto()
    out_dir = Path(out_dir)
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"key name '{name}' must be a plain file name")
    priv_path, pub_path = out_dir / (name + PRIVATE_SUFFIX), out_dir / (name + PUBLIC_SUFFIX)
    for path in (priv_path, pub_path):
        if path.exists():
            raise ConfigError(f"{path}: already exists; refusing to overwrite a key")
    out_dir.mkdir(parents=True, exist_ok=True)
    private = ed25519.Ed25519PrivateKey.generate()
    priv_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    pub_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    # O_EXCL with mode 0600 from the start: the private key is never readable by others, not even briefly.
    try:
        fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(f"{priv_path}: cannot create ({exc.strerror})") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(priv_pem)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(priv_path, 0o600)  # in case the umask or filesystem widened it
    pub_path.write_bytes(pub_pem)
    logger.info("wrote key pair %s (key id %s)", priv_path, key_id_of(private.public_key()))
    return priv_path, pub_path


def load_private_key(path: str | Path) -> object:
    """Load an ed25519 private key (PEM PKCS#8).

    A key readable by group or others is loaded with a warning (USB sticks with FAT file systems
    cannot keep 0600).

    Raises:
        ConfigError: missing, unreadable, encrypted or not an ed25519 key.
    """
    serialization, ed25519 = _crypto()
    path = Path(path)
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read private key ({exc.strerror})") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("%s: private key is accessible by group/others (mode %o); chmod 600 it",
                       path, stat.S_IMODE(mode))
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an ed25519 key ({type(key).__name__})")
    return key


def load_public_key(path: str | Path) -> PublicKey:
    """Load one ed25519 public key (PEM SubjectPublicKeyInfo).

    Raises:
        ConfigError: missing, unreadable or not an ed25519 public key.
    """
    serialization, ed25519 = _crypto()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read public key ({exc.strerror})") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a PEM public key ({exc})") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{path}: not an ed25519 public key ({type(key).__name__})")
    return PublicKey(key_id_of(key), key, path)


def _pub_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix == PUBLIC_SUFFIX and p.is_file())


def trusted_keys(pubkeys: Iterable[str | Path] = (), key_dir: str | Path | None = None,
                 use_credentials: bool = True) -> dict[str, PublicKey]:
    """Gather the public keys a verification may accept, by key id.

    Args:
        pubkeys: explicit public key files (``--pubkey``); when given, ``key_dir`` is not read.
        key_dir: a directory of ``*.pub`` files (``<root>/etc/gemsight/keys``).
        use_credentials: also read ``*.pub`` files in ``$CREDENTIALS_DIRECTORY`` (systemd
            ``LoadCredential=``), when that variable is set.

    Raises:
        BundleError: no trusted key was found anywhere (nothing could ever verify).
        ConfigError: a named key file is unreadable or not an ed25519 key.
    """
    files = [Path(p) for p in pubkeys]
    looked = [str(p) for p in files]
    if not files and key_dir is not None:
        files = _pub_files(Path(key_dir))
        looked.append(f"{key_dir}/*{PUBLIC_SUFFIX}")
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if use_credentials and creds:
        files += _pub_files(Path(creds))
        looked.append(f"$CREDENTIALS_DIRECTORY/*{PUBLIC_SUFFIX}")
    keys: dict[str, PublicKey] = {}
    for path in files:
        pk = load_public_key(path)
        keys.setdefault(pk.key_id, pk)
    if not keys:
        raise BundleError("no trusted public key found (looked in: " + ", ".join(looked or ["nothing"]) +
                          "); pass --pubkey or install one with 'gemsight-deploy install --pubkey'")
    logger.debug("trusted keys: %s", ", ".join(f"{k} ({v.source})" for k, v in keys.items()))
    return keys
