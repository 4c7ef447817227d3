"""Verifying a bundle before anything is touched, extracting what was verified, checking an installed version.

:func:`verify_bundle` reads the archive without extracting it and refuses, with a message naming
the member: anything but regular files (links, devices, fifos, directories), unsafe names, a
header, padding or trailer that is not canonical (see :mod:`deploy.bundle`), a signature by an
untrusted key or over other bytes, a member not listed in ``SHA256SUMS`` or listed but missing, and
any checksum mismatch. :func:`extract_verified` then copies exactly the verified members, hashing
again as it writes, so a bundle file changed after verification cannot slip through.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from deploy.bundle import (BUNDLE_FORMAT, BUNDLE_JSON, MAX_MEMBERS, SIGNATURE, SUMS, SemVer, canonical_header,
                           check_member_name, parse_sums, shown)
from deploy.keys import PublicKey
from edge.atomic import fsync_dir, write_file_synced
from edge.errors import BundleError, ManifestError
from edge.manifest import MANIFEST_FILENAME, Manifest, file_digest

logger = logging.getLogger(__name__)

BLOCK = 512
_CHUNK = 1 << 20
_SMALL_LIMIT = 1 << 20  # bundle.json, SHA256SUMS, the signature, manifest.json are read into memory


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    data_offset: int


@dataclass(frozen=True)
class VerifiedBundle:
    """What :func:`verify_bundle` established about a bundle file."""

    path: Path
    version: str
    meta: dict
    manifest: Manifest
    key_id: str
    digests: dict[str, str]             # every signed file (payload + bundle.json) → sha256
    members: dict[str, Member] = field(repr=False)
    control: dict[str, bytes] = field(repr=False)  # bundle.json, SHA256SUMS, SHA256SUMS.sig bytes

    @property
    def semver(self) -> SemVer:
        return SemVer.parse(self.version)

    @property
    def payload_bytes(self) -> int:
        return sum(m.size for m in self.members.values())


def _kind(info: tarfile.TarInfo) -> str | None:
    if info.issym():
        return f"a symbolic link (to '{shown(info.linkname)}')"
    if info.islnk():
        return f"a hard link (to '{shown(info.linkname)}')"
    if info.ischr() or info.isblk():
        return "a device node"
    if info.isfifo():
        return "a fifo"
    if info.isdir():
        return "a directory entry"
    if not info.isreg():
        return f"of tar type {info.type!r}"
    return None


def _read_at(fh, offset: int, size: int) -> bytes:
    fh.seek(offset)
    data = fh.read(size)
    if len(data) != size:
        raise BundleError(f"{fh.name}: truncated (wanted {size} bytes at offset {offset}, got {len(data)})")
    return data


def _scan(path: Path, fh) -> dict[str, Member]:
    """List members and check the archive is canonical, byte for byte."""
    size = os.fstat(fh.fileno()).st_size
    if size < 3 * BLOCK or size % BLOCK:
        raise BundleError(f"{path}: {size} bytes is not a whole tar archive (truncated or not a bundle)")
    try:
        tar = tarfile.open(fileobj=fh, mode="r:")
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError(f"{path}: not a readable tar archive ({exc})") from exc
    members: dict[str, Member] = {}
    end = 0
    while True:
        try:
            info = tar.next()
        except (tarfile.TarError, EOFError) as exc:
            raise BundleError(f"{path}: corrupt tar after member {len(members)} ({exc})") from exc
        if info is None:
            break
        kind = _kind(info)
        if kind is not None:
            raise BundleError(f"{path}: unsafe member '{shown(info.name)}': {kind}; bundles hold regular files only")
        try:
            check_member_name(info.name)
        except BundleError as exc:
            raise BundleError(f"{path}: {exc}") from exc
        if info.name in members:
            raise BundleError(f"{path}: member '{info.name}' appears twice")
        if len(members) >= MAX_MEMBERS:
            raise BundleError(f"{path}: more than {MAX_MEMBERS} members")
        try:
            expected = canonical_header(info.name, info.size)
        except BundleError as exc:  # a size no ustar header can hold (base-256, negative): not ours
            raise BundleError(f"{path}: header of member '{info.name}' is not canonical ({exc})") from exc
        if info.offset_data - info.offset != len(expected) or _read_at(fh, info.offset, len(expected)) != expected:
            raise BundleError(f"{path}: header of member '{info.name}' is not canonical (tampered, or not "
                              "made by gemsight-deploy bundle)")
        data_end = info.offset_data + info.size
        padded = -(-data_end // BLOCK) * BLOCK
        if data_end > size:
            raise BundleError(f"{path}: member '{info.name}' is truncated")
        if any(_read_at(fh, data_end, padded - data_end)):
            raise BundleError(f"{path}: padding after member '{info.name}' is not zero (tampered)")
        members[info.name] = Member(info.name, info.size, info.offset_data)
        end = padded
    # A member may not be a file and a directory at once ("a" beside "a/b"): extraction could not
    # write both, and that must show here, before anything is touched.
    for name in members:
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in members:
                raise BundleError(f"{path}: member '{name}' needs '{'/'.join(parts[:i])}' to be a directory, "
                                  "but the bundle holds a file of that name")
    # Everything after the last member must be the zero end-of-archive blocks: a corrupt header
    # makes tarfile stop early, and this is where that shows.
    fh.seek(end)
    rest = fh.read()
    # tar writes two zero blocks and pads the archive to whole records (RECORDSIZE): exactly that.
    expected = -(-(end + 2 * BLOCK) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE
    if end + len(rest) < expected:
        raise BundleError(f"{path}: {size} bytes, the archive needs {expected} (truncated)")
    if rest.strip(b"\0"):
        at = end + len(rest) - len(rest.lstrip(b"\0"))
        raise BundleError(f"{path}: bytes at offset {at}, after member {len(members)}, are not a valid member "
                          "header or end-of-archive (corrupt or tampered)")
    if end + len(rest) != expected:
        raise BundleError(f"{path}: {size} bytes, the archive ends at {expected} (data appended?)")
    return members


def _json_object(path: Path, name: str, data: bytes) -> dict:
    """``data`` as a JSON object, or a one-line :class:`BundleError` naming the bundle and the member."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, an integer past Python's digit limit
        raise BundleError(f"{path}: {name} is not valid JSON ({' '.join(str(exc).split())[:200]})") from exc
    except RecursionError as exc:
        raise BundleError(f"{path}: {name} is not valid JSON (nested too deeply)") from exc
    if not isinstance(obj, dict):
        raise BundleError(f"{path}: {name} is not a JSON object")
    return obj


def _check_signature(path: Path, sums: bytes, sig_bytes: bytes, keys: Mapping[str, PublicKey]) -> str:
    sig = _json_object(path, SIGNATURE, sig_bytes)
    try:
        algorithm, key_id, signature = sig["algorithm"], sig["key_id"], sig["signature"]
        if not all(isinstance(v, str) for v in (algorithm, key_id, signature)):
            raise TypeError("algorithm, key_id and signature must be strings")
        raw = base64.b64decode(signature, validate=True)
    except (KeyError, TypeError, binascii.Error) as exc:
        raise BundleError(f"{path}: {SIGNATURE} is malformed ({type(exc).__name__}: {exc})") from exc
    if algorithm != "ed25519":
        raise BundleError(f"{path}: {SIGNATURE} uses algorithm '{shown(algorithm[:40])}', only ed25519 is accepted")
    if key_id not in keys:
        raise BundleError(f"{path}: signed by key {shown(key_id[:80])}, which this device does not trust "
                          f"(trusted: {', '.join(sorted(keys)) or 'none'})")
    if len(raw) != 64 or not keys[key_id].verify(raw, sums):
        raise BundleError(f"{path}: signature over {SUMS} does not verify with key {key_id} (tampered)")
    return key_id


def _member_blocks(fh, member: Member, truncated: str):
    """The member's content in chunks; ``truncated`` is the error if the file ends early."""
    fh.seek(member.data_offset)
    left = member.size
    while left:
        block = fh.read(min(_CHUNK, left))
        if not block:
            raise BundleError(truncated)
        left -= len(block)
        yield block


def _digest_member(fh, member: Member) -> str:
    h = hashlib.sha256()
    for block in _member_blocks(fh, member, f"{fh.name}: member '{member.name}' is truncated"):
        h.update(block)
    return h.hexdigest()


def verify_bundle(path: str | Path, keys: Mapping[str, PublicKey]) -> VerifiedBundle:
    """Check a bundle completely, without writing anything.

    Args:
        path: the ``.gsb`` file.
        keys: trusted public keys by key id (:func:`deploy.keys.trusted_keys`).

    Returns:
        A :class:`VerifiedBundle` describing it.

    Raises:
        BundleError: anything wrong; the message names the bundle and the member or file at fault.
    """
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise BundleError(f"{path}: cannot open bundle ({exc.strerror})") from exc
    with fh:
        members = _scan(path, fh)
        for name in (BUNDLE_JSON, SUMS, SIGNATURE):
            if name not in members:
                raise BundleError(f"{path}: no '{name}' member (not a gemsight bundle, or truncated)")
            if members[name].size > _SMALL_LIMIT:
                raise BundleError(f"{path}: '{name}' is implausibly large ({members[name].size} bytes)")
        control = {n: _read_at(fh, members[n].data_offset, members[n].size) for n in (BUNDLE_JSON, SUMS, SIGNATURE)}
        key_id = _check_signature(path, control[SUMS], control[SIGNATURE], keys)
        try:
            listed = parse_sums(control[SUMS])
        except BundleError as exc:
            raise BundleError(f"{path}: {exc}") from exc
        signed = {n: m for n, m in members.items() if n not in (SUMS, SIGNATURE)}
        for name in signed:
            if name not in listed:
                raise BundleError(f"{path}: member '{name}' is not listed in {SUMS}; refusing unsigned content")
        for name in listed:
            if name not in signed:
                raise BundleError(f"{path}: '{name}' is listed in {SUMS} but missing from the bundle (truncated?)")
        for name, member in signed.items():
            if _digest_member(fh, member) != listed[name]:
                raise BundleError(f"{path}: checksum mismatch for '{name}' (tampered or corrupt)")
        meta = _parse_meta(path, control[BUNDLE_JSON], key_id, signed)
        if MANIFEST_FILENAME not in signed or signed[MANIFEST_FILENAME].size > _SMALL_LIMIT:
            raise BundleError(f"{path}: no usable '{MANIFEST_FILENAME}' in the bundle")
        try:
            manifest = Manifest.from_json(_read_at(fh, signed[MANIFEST_FILENAME].data_offset,
                                                   signed[MANIFEST_FILENAME].size).decode("utf-8"),
                                          f"{path}:{MANIFEST_FILENAME}")
        except (ManifestError, UnicodeDecodeError) as exc:
            # One line for the flash log: the manifest's problems joined, each without its repeated source.
            problems = [line.split(": invalid manifest: ", 1)[-1] for line in str(exc).splitlines()]
            raise BundleError(f"{path}: bad model manifest: {'; '.join(problems)}") from exc
    payload = {n: m for n, m in signed.items() if n != BUNDLE_JSON}
    logger.info("verified %s: version %s, %d files, signed by %s", path, meta["version"], len(payload), key_id)
    return VerifiedBundle(path, meta["version"], meta, manifest, key_id, listed, payload, control)


def _parse_meta(path: Path, data: bytes, key_id: str, signed: dict[str, Member]) -> dict:
    meta = _json_object(path, BUNDLE_JSON, data)
    if meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: {BUNDLE_JSON} format {shown(str(meta.get('format'))[:40])} "
                          f"is not {BUNDLE_FORMAT} (bundle made by another gemsight version?)")
    SemVer.parse(str(meta.get("version")), f"{path}: bundle version")
    if meta.get("signer") != key_id:
        raise BundleError(f"{path}: {BUNDLE_JSON} names signer {shown(str(meta.get('signer'))[:80])} but key {key_id} "
                          "signed it")
    files = meta.get("files")
    if (not isinstance(files, list) or not all(isinstance(f, str) for f in files)
            or sorted(files) != sorted(n for n in signed if n != BUNDLE_JSON)):
        raise BundleError(f"{path}: {BUNDLE_JSON} 'files' does not match the bundle's members")
    return meta


def extract_verified(bundle: VerifiedBundle, dest: str | Path,
                     on_file: Callable[[str], None] | None = None) -> int:
    """Write the verified payload and control files into the empty directory ``dest``.

    Files are created exclusively (never following links), hashed while written and fsynced;
    directories are fsynced at the end.

    Args:
        bundle: the result of :func:`verify_bundle`.
        dest: an existing, empty directory.
        on_file: called with each member name after it is written (the flash's kill points).

    Returns:
        Bytes written.

    Raises:
        BundleError: the bundle file changed since it was verified.
    """
    dest = Path(dest)
    written = 0
    dirs = {dest}
    with open(bundle.path, "rb") as fh:
        for name in sorted(bundle.members):
            member = bundle.members[name]
            target = dest / name
            for parent in reversed(target.relative_to(dest).parents[:-1]):
                (dest / parent).mkdir(mode=0o755, exist_ok=True)
                dirs.add(dest / parent)
            h = hashlib.sha256()
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as out:
                for block in _member_blocks(fh, member, f"{bundle.path}: '{name}' became truncated after verification"):
                    h.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if h.hexdigest() != bundle.digests[name]:
                raise BundleError(f"{bundle.path}: '{name}' changed after verification; refusing")
            written += member.size
            if on_file is not None:
                on_file(name)
    for name, data in bundle.control.items():
        write_file_synced(dest / name, data)
        written += len(data)
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(d)
    return written


def verify_installed(version_dir: str | Path, keys: Mapping[str, PublicKey] | None = None,
                     check_digests: bool = True) -> dict:
    """Check an installed version directory is complete and unchanged.

    Args:
        version_dir: ``<root>/var/lib/gemsight/models/<version>``.
        keys: when given, the stored signature must verify with one of them.
        check_digests: re-hash every file (else only check that exactly the listed files exist).

    Returns:
        The version's ``bundle.json``.

    Raises:
        BundleError: a file missing, extra, changed, or the signature does not verify.
    """
    vdir = Path(version_dir)
    try:
        sums = (vdir / SUMS).read_bytes()
        sig = (vdir / SIGNATURE).read_bytes()
        meta_bytes = (vdir / BUNDLE_JSON).read_bytes()
    except OSError as exc:
        raise BundleError(f"{vdir}: incomplete version directory ({exc.strerror}: {exc.filename})") from exc
    if keys is not None:
        _check_signature(vdir, sums, sig, keys)
    listed = parse_sums(sums)
    present = {p.relative_to(vdir).as_posix() for p in vdir.rglob("*") if not p.is_dir() or p.is_symlink()}
    expected = set(listed) | {SUMS, SIGNATURE}
    if present != expected:
        missing, extra = sorted(expected - present), sorted(present - expected)
        raise BundleError(f"{vdir}: files differ from {SUMS} (missing: {missing or 'none'}, extra: {extra or 'none'})")
    if check_digests:
        for name, digest in listed.items():
            p = vdir / name
            if p.is_symlink() or file_digest(p) != digest:
                raise BundleError(f"{vdir}: '{name}' does not match its checksum")
    return _json_object(vdir, BUNDLE_JSON, meta_bytes)
