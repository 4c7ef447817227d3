"""The signed model bundle (``.gsb``): format, version numbers, and making one.

A bundle is an uncompressed POSIX ustar archive of regular files only::

    bundle.json        version, created, model summary and digest, signer key id  (signed)
    SHA256SUMS         "<sha256>  <name>" for bundle.json and every payload file, sorted
    SHA256SUMS.sig     {"algorithm": "ed25519", "key_id": ..., "signature": base64} over SHA256SUMS
    manifest.json      ┐
    model.onnx         │ the calibration output directory, as is (see edge/runtimes/artifacts.py)
    openvino/...       ┘

The archive is *canonical*: every header is what :func:`canonical_header` makes from the member's
name and size (mode 0644, owner 0, mtime 0), padding and the end-of-archive blocks are zeros. The
verifier rebuilds each header and compares it byte for byte, so a changed byte anywhere in the file
(content, sums, signature, a header, padding, trailer) is refused. Payloads are not compressed: ONNX
weights barely compress and a flash should not pay for it.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import io
import json
import logging
import re
import tarfile
from dataclasses import dataclass
from functools import total_ordering
from pathlib import Path

from edge.atomic import replacing
from edge.errors import BundleError, ManifestError
from edge.manifest import MANIFEST_FILENAME, Manifest, file_digest
from edge.runtimes.artifacts import FP32_ONNX, INT8_ONNX, OPENVINO_FP32, OPENVINO_INT8

logger = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
BUNDLE_SUFFIX = ".gsb"
BUNDLE_JSON = "bundle.json"
SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.sig"
# Bundle control files; a model directory may not contain files of these names.
CONTROL_FILES = (BUNDLE_JSON, SUMS, SIGNATURE)
MODEL_ARTIFACTS = (FP32_ONNX, INT8_ONNX, OPENVINO_FP32, OPENVINO_INT8)
MAX_MEMBERS = 1000
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_SUMS_LINE = re.compile(r"^([0-9a-f]{64})  (\S+)$")
# semver.org 2.0.0, without the "v" some people prefix.
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                     r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
                     r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$")


@total_ordering
@dataclass(frozen=True)
class SemVer:
    """A semantic version; ordering follows semver.org precedence (build metadata is ignored)."""

    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str, what: str = "version") -> "SemVer":
        """Parse ``MAJOR.MINOR.PATCH[-pre][+build]``.

        Raises:
            BundleError: not a semantic version (the message quotes it).
        """
        m = _SEMVER.match(text or "")
        if not m:
            shown = repr(text) if len(str(text)) <= 60 else repr(str(text)[:60]) + "..."
            raise BundleError(f"{what} {shown} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.4.0)")
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre, m.group(5) or "")

    def _key(self) -> tuple:
        # A release sorts after its pre-releases; numeric identifiers sort before alphanumeric ones.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __lt__(self, other: "SemVer") -> bool:
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SemVer) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += "-" + ".".join(self.pre)
        return text + (f"+{self.build}" if self.build else "")


def shown(name: str) -> str:
    """A member name as it may appear in a one-line message: control characters and the like escaped."""
    return repr(name)[1:-1]


def check_member_name(name: str) -> str:
    """Return ``name`` if it is a safe relative member path, else raise.

    Safe: relative, ``/``-separated, no empty, ``.``, ``..`` or hidden components, only
    ``[A-Za-z0-9._-]``, at most 255 characters (what ustar can hold).

    Raises:
        BundleError: the name is unsafe; the message says why.
    """
    if not name or name.startswith("/") or "\\" in name:
        raise BundleError(f"unsafe member name '{shown(name)}': absolute or not a plain relative path")
    parts = name.split("/")
    if ".." in parts:
        raise BundleError(f"unsafe member name '{shown(name)}': contains '..'")
    for part in parts:
        if not _NAME_RE.match(part):
            raise BundleError(f"unsafe member name '{shown(name)}': component '{shown(part)}' is empty, hidden or has "
                              "characters outside [A-Za-z0-9._-]")
    if len(name.encode()) > 255:
        raise BundleError(f"member name '{shown(name[:60])}...' is longer than 255 bytes")
    return name


def canonical_header(name: str, size: int) -> bytes:
    """The one header a bundle member of this name and size may have (ustar, 0644, owner 0, mtime 0)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    try:
        return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    except ValueError as exc:
        raise BundleError(f"member '{name}' cannot be stored in a ustar header ({exc})") from exc


def format_sums(digests: dict[str, str]) -> bytes:
    """``SHA256SUMS`` text (the ``sha256sum`` format, sorted by name) for ``{name: hex digest}``."""
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests)).encode("ascii")


def parse_sums(data: bytes) -> dict[str, str]:
    """Parse ``SHA256SUMS``; every line must be ``<64 hex>  <safe name>``, names unique.

    Raises:
        BundleError: a malformed line, an unsafe or repeated name.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{SUMS}: not ASCII text") from exc
    if not text.endswith("\n"):
        raise BundleError(f"{SUMS}: does not end with a newline (truncated?)")
    out: dict[str, str] = {}
    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        m = _SUMS_LINE.match(line)
        if not m:
            raise BundleError(f"{SUMS} line {lineno}: expected '<sha256>  <name>', got {line[:80]!r}")
        digest, name = m.groups()
        check_member_name(name)
        if name in out:
            raise BundleError(f"{SUMS} line {lineno}: '{name}' listed twice")
        out[name] = digest
    return out


def sign_sums(sums: bytes, private_key: object) -> bytes:
    """The ``SHA256SUMS.sig`` file: a JSON object with the ed25519 signature over ``sums``."""
    from deploy.keys import key_id_of  # noqa: PLC0415

    sig = private_key.sign(sums)
    return (json.dumps({"algorithm": "ed25519", "key_id": key_id_of(private_key.public_key()),
                        "signature": base64.b64encode(sig).decode("ascii")}, sort_keys=True) + "\n").encode()


def _payload_files(model_dir: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(model_dir.rglob("*")):
        rel = path.relative_to(model_dir).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            logger.debug("skipping hidden %s", path)
            continue
        if path.is_symlink():
            raise BundleError(f"{path}: symbolic links cannot go into a bundle; copy the file")
        if path.is_dir():
            continue
        if not path.is_file():
            raise BundleError(f"{path}: not a regular file")
        if rel in CONTROL_FILES:
            raise BundleError(f"{path}: a model directory may not contain '{rel}' (is this an installed "
                              "version directory? bundle the calibration output instead)")
        files[check_member_name(rel)] = path
    if len(files) + len(CONTROL_FILES) > MAX_MEMBERS:
        raise BundleError(f"{model_dir}: {len(files)} files is more than a bundle may hold ({MAX_MEMBERS})")
    return files


def _model_summary(model_dir: Path, files: dict[str, Path]) -> tuple[Manifest, str]:
    if MANIFEST_FILENAME not in files:
        raise BundleError(f"{model_dir}: no {MANIFEST_FILENAME}; bundle a calibration output or model directory")
    try:
        manifest = Manifest.load(files[MANIFEST_FILENAME])
    except ManifestError as exc:
        raise BundleError(f"{model_dir}: {exc}") from exc
    artifact = next((a for a in MODEL_ARTIFACTS if a in files), None)
    if artifact is None:
        raise BundleError(f"{model_dir}: no model artifact (looked for {', '.join(MODEL_ARTIFACTS)})")
    return manifest, f"sha256:{file_digest(files[artifact])}"


def create_bundle(model_dir: str | Path, private_key_path: str | Path, out: str | Path,
                  version: str | None = None, created: str | None = None) -> Path:
    """Pack a model directory into a signed bundle.

    Args:
        model_dir: a calibration output (or any model directory with ``manifest.json`` and a model).
        private_key_path: the ed25519 signing key (PEM).
        out: the ``.gsb`` file to write (written to a temporary name, then renamed).
        version: the bundle version (semver); defaults to the manifest's ``version``. When they
            differ, both are recorded and the bundle version is what flashing compares.
        created: ISO-8601 UTC time to record (default: now); fixed values make bundles reproducible.

    Returns:
        The bundle path.

    Raises:
        BundleError: no manifest or model, unsafe file names, a bad version.
        ConfigError: the key cannot be loaded.
    """
    from deploy.keys import key_id_of, load_private_key  # noqa: PLC0415

    model_dir, out = Path(model_dir), Path(out)
    if not model_dir.is_dir():
        raise BundleError(f"{model_dir}: not a directory (give the calibration output directory)")
    files = _payload_files(model_dir)
    manifest, model_digest = _model_summary(model_dir, files)
    version = version or manifest.version
    semver = SemVer.parse(version, "bundle version")
    if str(semver) != version:
        raise BundleError(f"bundle version '{version}' must be written canonically ('{semver}')")
    if semver.build:
        raise BundleError(f"bundle version '{version}': build metadata (+...) is not allowed; it does not order")
    if version != manifest.version:
        logger.warning("bundle version %s differs from the model manifest's version %s; both are recorded",
                       version, manifest.version)
    key = load_private_key(private_key_path)
    created = created or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = {
        "format": BUNDLE_FORMAT,
        "version": version,
        "created": created,
        "signer": key_id_of(key.public_key()),
        "model": {"name": manifest.name, "version": manifest.version, "arch": manifest.arch,
                  "classes": list(manifest.classes), "input_size": list(manifest.input.size),
                  "precision": manifest.precision},
        "model_digest": model_digest,
        "files": sorted(files),
    }
    meta_bytes = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
    digests = {name: file_digest(path) for name, path in files.items()}
    digests[BUNDLE_JSON] = hashlib.sha256(meta_bytes).hexdigest()
    sums = format_sums(digests)
    sig = sign_sums(sums, key)
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in ((BUNDLE_JSON, meta_bytes), (SUMS, sums), (SIGNATURE, sig)):
            _add(tar, name, len(data), io.BytesIO(data))
        order = [MANIFEST_FILENAME] + [n for n in sorted(files) if n != MANIFEST_FILENAME]
        for name in order:
            with open(files[name], "rb") as fh:
                _add(tar, name, files[name].stat().st_size, fh)
    logger.info("wrote %s: version %s, %d files, %.1f MB, signed by %s", out, version, len(files),
                out.stat().st_size / 1e6, meta["signer"])
    return out


def _add(tar: tarfile.TarFile, name: str, size: int, fileobj) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid = size, 0o644, 0, 0, 0
    info.uname = info.gname = ""
    tar.addfile(info, fileobj)
