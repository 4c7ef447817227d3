"""The TensorRT calibration cache text format: write it from our ranges, read it back.

The format is what TensorRT's ``IInt8EntropyCalibrator2`` writes and reads (and what ONNX Runtime's
TensorRT provider parses)::

    TRT-8601-EntropyCalibration2
    input: 3caa54fc
    /conv1/Conv_output_0: 3d2e7b0a

The header carries TensorRT's version number (``major*1000 + minor*100 + patch`` before 10,
``major*10000 + minor*100 + patch`` from 10 on: 8.6.1 → 8601, 10.14.1 → 101401). Each line is a
tensor name, ``": "``, and the per-tensor scale ``amax / 127`` as the bits of a big-endian IEEE-754
float32 in lower-case hex without leading zeros (``struct.pack(">f", s).hex()`` with zeros
stripped; a zero scale is ``0``).

TensorRT refuses a cache whose header names another TensorRT version, which makes a cache written
on the trainer machine useless on a device; :func:`cache_bytes_for` rewrites the header for the
TensorRT that is about to read it (the scales are version-independent).
"""
from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from edge.errors import CalibrationError

logger = logging.getLogger(__name__)

ALGORITHM = "EntropyCalibration2"
# Written when no TensorRT is importable (the trainer machine); the device rewrites the header for
# its own version anyway (TensorRT 11 has no calibration-cache path at all: it builds the Q/DQ model).
DEFAULT_TRT_VERSION = "8.6.1"
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")


@dataclass(frozen=True)
class CalibrationCache:
    """A parsed cache: header version number, algorithm, and tensor name → scale."""

    version_number: int
    algorithm: str
    scales: dict[str, float]


def trt_version_number(version: str | int) -> int:
    """TensorRT's ``NV_TENSORRT_VERSION`` integer for a version string (``"8.6.1"`` → 8601).

    Raises:
        CalibrationError: the string is not a TensorRT version.
    """
    if isinstance(version, int):
        return version
    parts = version.strip().split(".")
    try:
        major, minor, patch = (int(p) for p in (parts + ["0", "0"])[:3])
    except ValueError as exc:
        raise CalibrationError(f"'{version}' is not a TensorRT version (expected e.g. 8.6.1)") from exc
    if major >= 10:
        return major * 10000 + minor * 100 + patch
    return major * 1000 + minor * 100 + patch


def symmetric_scale(amax: float) -> float:
    """TensorRT's per-tensor INT8 scale for a range ``[-amax, amax]``: ``amax / 127``.

    A tensor that was always zero gets scale 1.0 (the ONNX Runtime quantizer's convention), so no
    consumer ever divides by zero.
    """
    amax = float(amax)
    return amax / 127.0 if amax > 0.0 else 1.0


def float_to_hex(value: float) -> str:
    """The float32 bits of ``value`` as TensorRT prints them: lower-case hex, no leading zeros."""
    return format(struct.unpack(">I", struct.pack(">f", value))[0], "x")


def hex_to_float(text: str) -> float:
    """Inverse of :func:`float_to_hex`."""
    return struct.unpack(">f", struct.pack(">I", int(text, 16)))[0]


def format_cache(scales: Mapping[str, float], trt_version: str | int = DEFAULT_TRT_VERSION) -> str:
    """The cache text for ``scales`` (tensor → scale), tensors in sorted order for stable files."""
    lines = [f"TRT-{trt_version_number(trt_version)}-{ALGORITHM}"]
    for name in sorted(scales):
        if "\n" in name:
            raise CalibrationError(f"tensor name {name!r} cannot be written to a TensorRT cache (newline)")
        lines.append(f"{name}: {float_to_hex(scales[name])}")
    return "\n".join(lines) + "\n"


def write_cache(path: str | Path, scales: Mapping[str, float],
                trt_version: str | int = DEFAULT_TRT_VERSION) -> Path:
    """Write ``scales`` as a TensorRT calibration cache file.

    Args:
        path: the file to write (``calib.cache``).
        scales: tensor name → per-tensor scale (``amax / 127``, see :func:`symmetric_scale`).
        trt_version: the TensorRT version the header names.
    """
    path = Path(path)
    path.write_text(format_cache(scales, trt_version), encoding="ascii")
    logger.info("wrote TensorRT calibration cache %s (%d tensors, header TRT-%d)", path, len(scales),
                trt_version_number(trt_version))
    return path


def parse_cache(text: str, source: str = "calibration cache") -> CalibrationCache:
    """Parse cache text.

    Raises:
        CalibrationError: no ``TRT-<version>-<algorithm>`` header, or a line that is not
            ``name: hex``; the message names the source and the line.
    """
    lines = text.splitlines()
    if not lines:
        raise CalibrationError(f"{source}: empty calibration cache")
    match = _HEADER.match(lines[0].strip())
    if not match:
        raise CalibrationError(f"{source}: first line {lines[0][:60]!r} is not a TRT-<version>-<algorithm> header")
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        # Tensor names may themselves contain ':' (TensorFlow-style 'x:0'), the scale never does.
        name, sep, value = line.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError("no 'name: scale'")
            scales[name] = hex_to_float(value.strip())
        except (ValueError, struct.error) as exc:
            raise CalibrationError(f"{source}: line {number} {line[:80]!r} is not 'tensor: hex-scale' ({exc})") from exc
    return CalibrationCache(int(match.group(1)), match.group(2), scales)


def read_cache(path: str | Path) -> CalibrationCache:
    """Read a TensorRT calibration cache file (ours or one TensorRT wrote).

    Raises:
        CalibrationError: missing or malformed file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError as exc:
        raise CalibrationError(f"{path}: calibration cache not found") from exc
    except UnicodeDecodeError as exc:
        raise CalibrationError(f"{path}: not a text calibration cache") from exc
    return parse_cache(text, str(path))


def cache_bytes_for(path: str | Path, trt_version: str | int) -> bytes:
    """The cache at ``path`` with its header rewritten for ``trt_version``, as TensorRT wants it.

    Raises:
        CalibrationError: the cache is malformed or was made for another algorithm.
    """
    cache = read_cache(path)
    if cache.algorithm != ALGORITHM:
        raise CalibrationError(f"{path}: cache is for {cache.algorithm}, the builder uses {ALGORITHM}")
    wanted = trt_version_number(trt_version)
    if cache.version_number != wanted:
        logger.info("calibration cache %s was written for TRT-%d; presenting it to TensorRT as TRT-%d",
                    path, cache.version_number, wanted)
    return format_cache(cache.scales, wanted).encode("ascii")
