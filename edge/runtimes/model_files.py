"""The model folder is checked before it runs: its checksums (``SHA256SUMS``) and its ``manifest.json``.

An installed bundle's version directory (:mod:`deploy.bundle`) holds ``SHA256SUMS``: one
``<sha256>  <name>`` line for ``bundle.json`` and every model file, signed at packing time and
verified by ``flash``. The edge verifies it again at every start (``run``) and in ``check``, so a
file changed or damaged after flashing (a flipped block of ``model.int8.onnx``, an edited
``manifest.json``) is refused with one line naming the file, instead of quietly changing labels:

* every listed file must exist, be a regular file and match its digest;
* no file may be there unlisted (``SHA256SUMS`` and its signature aside): an added
  ``model.int8.onnx`` would be picked before the listed ``model.onnx``.

A folder without ``SHA256SUMS`` (a calibration output, a development folder) follows
``model.checksums`` in the device config: ``required`` refuses it (the example config, which
``gemsight-deploy install`` writes, says so: a device runs bundles), ``when_present`` runs it and says
every start that its files are not verified.

``manifest.json``, when the folder has one, must be a valid manifest and agree with the one the
runtime reads (embedded in the ONNX model), field by field, except the fields that describe one
artifact rather than the model's contract (:data:`ARTIFACT_FIELDS`: precision, calibration,
metrics, provenance). New manifest fields (more outputs, say) are compared without changes here.
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Literal

from edge.errors import ManifestError
from edge.manifest import MANIFEST_FILENAME, Manifest, file_digest

logger = logging.getLogger(__name__)

SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.sig"
MAX_SUMS_BYTES = 1 << 20
#: Manifest fields that differ between a model's artifacts (the INT8 model's embedded manifest says
#: int8 and its calibration; manifest.json is the FP32 one with the metrics of both).
ARTIFACT_FIELDS = frozenset({"precision", "calibration", "metrics", "provenance"})
Checksums = Literal["required", "when_present"]
_LINE = re.compile(r"^([0-9a-f]{64})  (\S+)$")


def model_folder(model_path: str | Path) -> Path:
    """The folder whose files a model path runs from: the path itself, or an ``.onnx``/``.xml`` file's bundle."""
    path = Path(model_path)
    if path.is_dir():
        return path
    folder = path.parent
    # openvino/model.int8.xml sits one level down in a bundle
    return folder.parent if folder.name == "openvino" and (folder.parent / SUMS).is_file() else folder


def parse_sums(path: Path) -> dict[str, str]:
    """``{name: sha256}`` from a ``SHA256SUMS`` file (the ``sha256sum`` format deploy writes).

    Raises:
        ManifestError: unreadable, too large, or a malformed, unsafe or repeated line (names the line).
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SUMS_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the checksums ({exc.strerror or exc})") from exc
    if len(data) > MAX_SUMS_BYTES:
        raise ManifestError(f"{path}: larger than {MAX_SUMS_BYTES:,} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not ASCII text") from None
    sums: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        name = m.group(2) if m else ""
        if not m or name.startswith("/") or ".." in name.split("/") or name in (SUMS, SIGNATURE):
            raise ManifestError(f"{path} line {lineno}: expected '<sha256>  <relative name>', got {line[:80]!r}")
        if name in sums:
            raise ManifestError(f"{path} line {lineno}: '{name}' is listed twice")
        sums[name] = m.group(1)
    if not sums:
        raise ManifestError(f"{path}: lists no files")
    return sums


def verify_checksums(model_path: str | Path, checksums: Checksums = "when_present") -> str:
    """Check the model folder against its ``SHA256SUMS`` (see the module docstring).

    Returns:
        One line for people (``check`` prints it): what was verified, or that nothing could be.

    Raises:
        ManifestError: one line naming the file that is missing, changed, unlisted, or the missing
            ``SHA256SUMS`` when ``checksums`` is ``required``.
    """
    folder = model_folder(model_path)
    sums_path = folder / SUMS
    if not sums_path.is_file():
        if checksums == "required":
            raise ManifestError(f"{sums_path}: missing, and model.checksums is 'required' (a model folder runs "
                                "only as an installed bundle; set model.checksums: when_present for a "
                                "development folder)")
        line = f"model files: NOT verified (no {SUMS} in {folder}; an installed bundle has one)"
        logger.warning("%s", line)
        return line
    t0 = time.monotonic()
    listed = parse_sums(sums_path)
    size = 0
    for name, digest in listed.items():
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise ManifestError(f"{path}: listed in {sums_path} but " + (
                "a symbolic link" if path.is_symlink() else "missing" if not path.exists() else "not a regular file"))
        if file_digest(path) != digest:
            raise ManifestError(f"{path}: does not match its checksum in {sums_path} (changed or damaged since "
                                "it was flashed: flash the bundle again)")
        size += path.stat().st_size
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if name not in listed and name not in (SUMS, SIGNATURE) and (path.is_symlink() or not path.is_dir()):
            raise ManifestError(f"{path}: not listed in {sums_path} (a file added after flashing)")
    elapsed = time.monotonic() - t0
    line = f"model files: {len(listed)} verified against {SUMS} ({size / 2**20:.1f} MiB in {elapsed:.2f} s)"
    logger.info("%s: %s", folder, line)
    return line


def check_manifest_file(model_path: str | Path, manifest: Manifest) -> None:
    """The folder's ``manifest.json`` (if any) is valid and agrees with ``manifest``, the one the runtime reads.

    Raises:
        ManifestError: naming the file and, for a disagreement, the first field that differs.
    """
    path = model_folder(model_path) / MANIFEST_FILENAME
    if not path.is_file():
        return
    beside = Manifest.load(path)  # garbage, NaN, a bad class list: refused here, naming the file
    ours = manifest.model_dump(mode="json")
    theirs = beside.model_dump(mode="json")
    for field in sorted((set(ours) | set(theirs)) - ARTIFACT_FIELDS):
        if ours.get(field) != theirs.get(field):
            raise ManifestError(f"{path}: '{field}' differs from the manifest inside the model the runtime loads "
                                f"({_short(theirs.get(field))} here, {_short(ours.get(field))} in the model)")


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
