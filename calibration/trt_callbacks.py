"""Objects TensorRT calls back into: the logger and the calibration-cache calibrator.

TensorRT callbacks never raise (an exception unwinding through C++ aborts the build): they log and
return ``None``. The classes derive from the imported ``tensorrt`` module's trampoline bases, so
they are made by functions given that module.
"""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def make_logger(trt):
    """A ``trt.ILogger`` that routes TensorRT's messages into :mod:`logging`."""
    class _TrtLogger(trt.ILogger):
        """Route TensorRT's messages into logging (journald); never raises."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg):  # noqa: D401 - TensorRT callback
            try:
                name = getattr(severity, "name", str(severity)).rsplit(".", 1)[-1]
                level = {"INTERNAL_ERROR": logging.CRITICAL, "ERROR": logging.ERROR,
                         "WARNING": logging.WARNING}.get(name, logging.DEBUG)
                logger.log(level, "tensorrt: %s", msg)
            except Exception:  # a logging failure must never unwind through TensorRT
                pass
    return _TrtLogger()


def make_cache_calibrator(trt, cache_bytes: bytes, batch_size: int):
    """An ``IInt8EntropyCalibrator2`` that hands TensorRT ``cache_bytes`` (only where the API has one)."""
    class _CacheCalibrator(trt.IInt8EntropyCalibrator2):
        """Hands TensorRT our calibration cache; never calibrates, never raises."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # trampoline classes must init their base

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            # The cache has every scale; reaching here means TensorRT rejected it.
            logger.error("TensorRT asked for calibration data: it did not accept calib.cache (%s)", names)
            return None

        def read_calibration_cache(self):
            return cache_bytes

        def write_calibration_cache(self, cache):
            return None  # ours is the source of truth; TensorRT's copy is not kept
    return _CacheCalibrator()
