"""``model.fpga.onnx``: the DPU-style QDQ model (symmetric int8, every scale a power of two).

FPGA DPU compilers (Vitis AI and kin) run integer arithmetic with shifts, so they require:
activations int8, symmetric (zero point 0), one scale per tensor; weights int8, symmetric, one
scale per tensor; every scale ``2**k``. Biases become int32 with scale ``s_in * s_w``, itself a
power of two.

Activation scales come from the shared ranges: ``amax / 127`` rounded UP to a power of two, so
nothing inside the calibrated range is clipped (the calibrated ``amax`` has already cut the
outliers). Rounding to the nearest power of two instead clipped up to 29% of each range: on
real-photo ResNet-18s that kept 82-85% top-1 agreement with FP32, rounding up 99.6%
(``bench/real_photos.py``). Weight scales pick, among the two powers of two around
``max|w| / 127``, the one with the smaller quantization MSE on the actual weights.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from calibration.qdq import embed_int8_manifest, quantize_from_ranges
from calibration.ranges import Ranges
from calibration.trt_cache import symmetric_scale
from edge.errors import CalibrationError
from edge.manifest import CalibrationInfo, Manifest

logger = logging.getLogger(__name__)

_WEIGHT_OPS = {"Conv": 1, "Gemm": 1, "MatMul": 1, "ConvTranspose": 1}
_BIAS_OPS = {"Conv": 2, "Gemm": 2, "ConvTranspose": 2}


def pow2_at_least(scale: float) -> float:
    """The smallest power of two not below ``scale`` (a range it quantizes is never clipped)."""
    if scale <= 0 or not math.isfinite(scale):
        return 1.0
    return float(2.0 ** math.ceil(math.log2(scale)))


def pow2_weight_scale(weights: np.ndarray) -> float:
    """The power-of-two per-tensor scale with the least int8 quantization error for ``weights``."""
    amax = float(np.max(np.abs(weights))) if weights.size else 0.0
    if amax == 0.0:
        return 1.0
    upper = math.ceil(math.log2(amax / 127.0))
    best, best_err = 2.0 ** upper, math.inf
    for k in (upper, upper - 1):
        s = 2.0 ** k
        err = float(np.mean((np.clip(np.round(weights / s), -127, 127) * s - weights) ** 2))
        if err < best_err:
            best, best_err = s, err
    return float(best)


def is_power_of_two(value: float) -> bool:
    """Exactly ``2**k`` (``math.frexp`` mantissa 0.5)."""
    mantissa, _ = math.frexp(float(value))
    return value > 0 and mantissa == 0.5


def scale_violations(path: str | Path) -> list[str]:
    """Every scale initializer of a QDQ model that is not a power of two, or zero point that is not 0."""
    import onnx  # noqa: PLC0415
    from onnx import numpy_helper  # noqa: PLC0415

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    bad = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = numpy_helper.to_array(inits[node.input[1]]).reshape(-1)
        if not all(is_power_of_two(s) for s in scale):
            bad.append(f"{node.input[1]}={scale[:4].tolist()}")
        if len(node.input) > 2 and node.input[2] in inits:
            zp = numpy_helper.to_array(inits[node.input[2]]).reshape(-1)
            if np.any(zp != 0):
                bad.append(f"{node.input[2]}={zp[:4].tolist()} (zero point)")
    return bad


def _weight_overrides(fp32: Path) -> dict[str, list[dict]]:
    import onnx  # noqa: PLC0415
    from onnx import numpy_helper  # noqa: PLC0415
    from onnxruntime.quantization import QuantType  # noqa: PLC0415

    model = onnx.load(str(fp32))
    inits = {t.name: t for t in model.graph.initializer}
    biases = {node.input[i] for node in model.graph.node for op, i in _BIAS_OPS.items()
              if node.op_type == op and len(node.input) > i}
    out = {}
    for node in model.graph.node:
        i = _WEIGHT_OPS.get(node.op_type)
        if i is None or len(node.input) <= i or node.input[i] not in inits or node.input[i] in biases:
            continue
        weights = numpy_helper.to_array(inits[node.input[i]]).astype(np.float32)
        out[node.input[i]] = [{"scale": np.array(pow2_weight_scale(weights), np.float32),
                               "zero_point": np.array(0, np.int8), "quant_type": QuantType.QInt8}]
    return out


def fpga_qdq(fp32: str | Path, out: str | Path, ranges: Ranges, exclude: tuple[str, ...] = ()) -> Path:
    """The power-of-two QDQ model without its manifest; every scale checked.

    ``exclude`` is for diagnosis only (the per-layer sensitivity): the artifact keeps every layer int8.

    Raises:
        CalibrationError: the quantizer failed or left a scale that is not a power of two.
    """
    from onnxruntime.quantization import QuantType  # noqa: PLC0415

    fp32 = Path(fp32)
    overrides = {name: [{"scale": np.array(pow2_at_least(symmetric_scale(ranges.amax(name))), np.float32),
                         "zero_point": np.array(0, np.int8), "quant_type": QuantType.QInt8}]
                 for name in ranges.tensors}
    overrides.update(_weight_overrides(fp32))
    quantize_from_ranges(fp32, out, ranges, activation_type="int8", per_channel=False,
                         extra_options={"ActivationSymmetric": True, "TensorQuantOverrides": overrides,
                                        # keep the weight scale we chose even when the int32 bias is tiny
                                        "QDQDisableWeightAdjustForInt32Bias": True}, exclude=exclude)
    bad = scale_violations(out)
    if bad:
        raise CalibrationError(f"{out}: {len(bad)} scale(s) are not powers of two: {', '.join(bad[:5])}")
    return Path(out)


def write_fpga(fp32: str | Path, out: str | Path, ranges: Ranges, manifest: Manifest,
               calibration: CalibrationInfo) -> Manifest:
    """Write the power-of-two QDQ model and check every scale; return its manifest.

    ``fp32`` may be the equalized, bias-corrected model of :mod:`calibration.equalize` (with
    ``ranges`` computed on it): the DPU model is then made from that.

    Raises:
        CalibrationError: the quantizer failed or left a scale that is not a power of two.
    """
    fpga_qdq(fp32, out, ranges)
    logger.info("wrote %s (symmetric int8, per-tensor, power-of-two scales)", out)
    return embed_int8_manifest(out, manifest, calibration)
