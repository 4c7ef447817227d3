"""Activation ranges, computed once with ONNX Runtime's calibrators; every artifact derives from them.

:func:`compute_ranges` runs the FP32 model over the calibration sample once and returns a
:class:`Ranges`: per tensor ``(lowest, highest)`` plus ONNX Runtime's own ``TensorsData`` (which
the QDQ quantizer reads from a JSON file, so it never recalibrates). The TensorRT cache, the
symmetric QDQ model and the FPGA model all take their per-tensor ``amax`` from the same object.

Method choice (measured on a ResNet-18 at 92% top-1 on the synthetic set, 512 calibration images,
240 validation images): percentile (99.999) and minmax kept 99.2–99.6% top-1 agreement with FP32
on every target; ONNX Runtime's entropy (KL) clipped harder and kept 96.7–98.3%, with 512, 1024 or
2048 histogram bins alike. Hence percentile is the command's default; entropy (TensorRT's own
method) stays available.

Real-photo models are less forgiving (issue 12: a ResNet-50 lost 11 points with percentile and
1.6 with entropy), so more methods are offered and ``--method auto`` picks one per model
(:mod:`calibration.search`): percentile at 99.9 / 99.99 / 99.999, entropy, minmax and ``mse`` (the
clipping threshold with the least expected int8 quantization error on each tensor's histogram).
:func:`candidate_ranges` computes every candidate from two calibration passes (one histogram of
absolute values for percentile, minmax and mse; one signed histogram for entropy).
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import CalibrationError

logger = logging.getLogger(__name__)

METHODS = ("entropy", "percentile", "minmax", "mse", "percentile-99.99", "percentile-99.9")
#: What ``--method auto`` tries, in order of preference when two candidates tie.
AUTO_CANDIDATES = ("percentile", "percentile-99.99", "percentile-99.9", "mse", "entropy", "minmax")
_ABS_HIST = {"num_bins": 2048, "symmetric": True}
# ONNX Runtime's entropy search only tries thresholds between num_quantized_bins and num_bins; its
# default 128/128 leaves one candidate (i.e. min/max). 512 bins gives a real search in seconds.
_EXTRA = {
    "entropy": {"num_bins": 512, "num_quantized_bins": 128},
    "percentile": {"num_bins": 2048, "percentile": 99.999, "symmetric": True},
    "minmax": {},
}
COLLECT_BATCH = 16   # images per inference while collecting
COLLECT_CHUNK = 32   # images whose intermediate outputs are held at once (~0.6 GB for ResNet-18 at 224 px)


@dataclass
class Ranges:
    """Per-tensor activation ranges from one calibration pass."""

    method: str
    tensors: dict[str, tuple[float, float]]
    ort_data: Any  # onnxruntime.quantization.calibrate.TensorsData

    def amax(self, name: str) -> float:
        lo, hi = self.tensors[name]
        return max(abs(lo), abs(hi))

    def amaxes(self) -> dict[str, float]:
        return {name: self.amax(name) for name in self.tensors}

    def save_ort(self, path: str | Path) -> Path:
        """Write ONNX Runtime's JSON form, which ``quantize_static(calibration_cache_path=...)`` loads."""
        from onnxruntime.quantization.calibrate import save_tensors_data  # noqa: PLC0415

        save_tensors_data(self.ort_data, Path(path))
        return Path(path)

    def to_json(self) -> dict[str, list[float]]:
        return {name: [lo, hi] for name, (lo, hi) in sorted(self.tensors.items())}


def ort_method(method: str) -> Any:
    """The ``CalibrationMethod`` for our method name."""
    from onnxruntime.quantization import CalibrationMethod  # noqa: PLC0415

    if method not in METHODS:
        raise CalibrationError(f"unknown calibration method '{method}' (choose {', '.join(METHODS)})")
    # mse and the other percentile levels are stored as percentile ranges (lowest/highest only).
    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax}.get(
        method, CalibrationMethod.Percentile)


def percentile_level(method: str) -> float:
    """``percentile`` → 99.999, ``percentile-99.9`` → 99.9."""
    return float(method.split("-", 1)[1]) if "-" in method else 99.999


class _Reader:
    """A ``CalibrationDataReader`` over a slice of the sample."""

    def __init__(self, input_name: str, batch: np.ndarray, size: int = COLLECT_BATCH) -> None:
        self._input_name = input_name
        self._batches = iter([batch[i:i + size] for i in range(0, len(batch), size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self._batches, None)
        return None if chunk is None else {self._input_name: chunk}

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def _chunks(batch: np.ndarray):
    """Slices of at most ``COLLECT_CHUNK`` images whose inference batches are all the same size
    (ONNX Runtime's histogram collector stacks one call's outputs and fails on a ragged last batch)."""
    for start in range(0, len(batch), COLLECT_CHUNK):
        chunk = batch[start:start + COLLECT_CHUNK]
        full = len(chunk) // COLLECT_BATCH * COLLECT_BATCH
        for part in (chunk[:full], chunk[full:]):
            if len(part):
                yield part


def compute_ranges(model_path: str | Path, batch: np.ndarray, input_name: str, method: str = "entropy") -> Ranges:
    """Run the calibrator once over ``batch`` and return every tensor's range.

    Args:
        model_path: the FP32 ONNX model the QDQ models will be made from (same tensor names).
        batch: the preprocessed calibration sample, ``N x 3 x H x W`` float32.
        input_name: the model input (from the manifest).
        method: ``entropy`` (TensorRT's KL method), ``percentile`` (99.999) or ``minmax``.

    Raises:
        CalibrationError: unknown method, or the calibrator failed.
    """
    calib_method = ort_method(method)
    if method not in _EXTRA:
        return candidate_ranges(model_path, batch, input_name, (method,))[method]
    started = time.perf_counter()
    try:
        data = _collect(model_path, batch, input_name, calib_method, _EXTRA[method]).compute_data()
    except CalibrationError:
        raise
    except Exception as exc:
        raise CalibrationError(f"{model_path}: {method} calibration failed: {exc}") from exc
    tensors = {}
    for name in data:
        lo, hi = data[name].range_value
        # MinMax gives 1-element arrays, the histogram methods 0-d ones.
        tensors[name] = (float(np.min(lo)), float(np.max(hi)))
    if not tensors:
        raise CalibrationError(f"{model_path}: the calibrator found no tensors to calibrate")
    logger.info("%s ranges for %d tensors from %d images in %.1fs", method, len(tensors), len(batch),
                time.perf_counter() - started)
    return pin_input(Ranges(method, tensors, data), input_name, batch)


def pin_input(ranges: Ranges, input_name: str, batch: np.ndarray) -> Ranges:
    """Give the model's input its whole observed range, whatever the method.

    The input is normalised 8-bit pixels: bounded, with no outliers to clip. A percentile or entropy
    threshold would clip its brightest values, and product photos are mostly white background: on
    real-photo models that one clipped tensor cost the power-of-two FPGA model 15 points of agreement.
    """
    from onnxruntime.quantization.calibrate import TensorData  # noqa: PLC0415

    if input_name not in ranges.tensors or not batch.size:
        return ranges
    lo, hi = np.float32(batch.min()), np.float32(batch.max())
    ranges.tensors[input_name] = (float(lo), float(hi))
    if ranges.ort_data is not None and input_name in ranges.ort_data:
        ranges.ort_data[input_name] = TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
    return ranges


def _collect(model_path: str | Path, batch: np.ndarray, input_name: str, calib_method: Any, extra: dict) -> Any:
    """Run one ONNX Runtime calibrator over ``batch``; return it (its collector holds the histograms)."""
    from onnxruntime.quantization.calibrate import create_calibrator  # noqa: PLC0415

    captured = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="gemsight-calib-") as tmp:
        try:
            with contextlib.redirect_stdout(captured):
                calibrator = create_calibrator(Path(model_path), None,
                                               augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                               calibrate_method=calib_method, extra_options=extra)
                for part in _chunks(batch):
                    calibrator.collect_data(_Reader(input_name, part))
        except Exception as exc:
            raise CalibrationError(f"{model_path}: calibration pass failed: {exc}") from exc
        finally:
            for line in captured.getvalue().splitlines():
                logger.debug("onnxruntime: %s", line)
    return calibrator


def mse_threshold(hist: np.ndarray, edges: np.ndarray, levels: int = 127) -> float:
    """The clipping threshold ``t`` (a histogram edge) with the least expected squared error when
    ``|x|`` (histogram ``hist`` over ``edges``) is quantized to ``levels`` steps of ``t / levels``:
    rounding noise ``step**2 / 12`` below ``t``, clipping error ``(|x| - t)**2`` above it."""
    hist = hist.astype(np.float64)
    centres = (edges[:-1].astype(np.float64) + edges[1:]) / 2
    t = edges[1:].astype(np.float64)
    # Suffix sums over bins above each threshold: sum h, sum h c, sum h c^2.
    def suffix(v):
        return np.concatenate([np.cumsum(v[::-1])[::-1][1:], [0.0]])
    n_above, s1, s2 = suffix(hist), suffix(hist * centres), suffix(hist * centres ** 2)
    n_below = hist.sum() - n_above
    err = n_below * (t / levels) ** 2 / 12 + (s2 - 2 * t * s1 + t ** 2 * n_above)
    return float(t[int(np.argmin(err))])


def candidate_ranges(model_path: str | Path, batch: np.ndarray, input_name: str,
                     methods: tuple[str, ...] = AUTO_CANDIDATES) -> dict[str, Ranges]:
    """The ranges of several methods from at most two calibration passes over ``batch``.

    Percentile levels, minmax and mse share one histogram of absolute values (ONNX Runtime's
    percentile collector, 2048 bins, the same one ``compute_ranges("percentile")`` uses); entropy
    needs its own signed histogram. Ranges are clamped to the observed minimum and maximum, as ONNX
    Runtime does for percentile, so a ReLU output keeps a lowest value of 0.

    Raises:
        CalibrationError: an unknown method, or the calibrator failed.
    """
    from onnxruntime.quantization.calibrate import TensorData, TensorsData  # noqa: PLC0415

    for m in methods:
        ort_method(m)
    started = time.perf_counter()
    out: dict[str, Ranges] = {}
    if "entropy" in methods:
        out["entropy"] = compute_ranges(model_path, batch, input_name, "entropy")
    shared = [m for m in methods if m != "entropy"]
    if shared:
        calibrator = _collect(model_path, batch, input_name, ort_method("percentile"),
                              {**_ABS_HIST, "percentile": 99.999})
        collector = calibrator.collector
        hists = collector.histogram_dict
        for m in shared:
            data = {}
            for name, (hist, edges, lo, hi) in hists.items():
                lo, hi = np.float32(lo), np.float32(hi)
                if m == "minmax":
                    t_lo, t_hi = lo, hi
                else:
                    if m == "mse":
                        t = np.float32(mse_threshold(hist, edges))
                    else:
                        cdf = np.cumsum(hist / hist.sum())
                        t = np.float32(edges[np.searchsorted(cdf, percentile_level(m) / 100.0)])
                    t_lo, t_hi = max(-t, lo), min(t, hi)
                data[name] = TensorData(lowest=np.array(t_lo, np.float32), highest=np.array(t_hi, np.float32))
            ranges = {name: (float(d.lowest), float(d.highest)) for name, d in data.items()}
            out[m] = pin_input(Ranges(m, ranges, TensorsData(ort_method(m), data)), input_name, batch)
    logger.info("ranges of %s for %d images in %.1fs", ", ".join(methods), len(batch), time.perf_counter() - started)
    return {m: out[m] for m in methods}
