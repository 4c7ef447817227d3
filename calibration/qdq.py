"""QDQ ONNX models written from one set of ranges.

* :func:`write_cpu_int8` → ``model.int8.onnx``: uint8 asymmetric activations, int8 symmetric
  per-channel weights, ``reduce_range`` off. ONNX Runtime fuses this form into QLinearConv with
  u8s8 kernels (VNNI where the CPU has it, the AVX2 u8s8 path where it does not); int8 activations
  are not fused on x86 and run no faster than FP32. Where the CPU lacks VNNI, the u8s8 path sums
  pairs of products into saturating 16-bit integers: edge's ONNX Runtime adapter asks for exact
  u8u8 kernels there (``exact_int8``), and the OpenVINO IR is converted from the same form with
  7-bit weights (``weight_bits=7``), which cannot saturate (OpenVINO's own advice for such CPUs).
* :func:`write_tensorrt_int8` → ``model.int8.trt.onnx``: what TensorRT's explicit quantization
  accepts — int8 activations with zero point 0 and scale ``amax / 127`` (exactly the scales in
  ``calib.cache``), int8 per-channel weights, biases left in float. TensorRT rejects the uint8
  model above ("TRT only supports symmetric quantization - zeroPt must be all zeros").

Both embed the manifest with ``precision: int8`` and the calibration record.
"""
from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from calibration.ranges import Ranges, ort_method
from calibration.trt_cache import symmetric_scale
from edge.errors import CalibrationError
from edge.manifest import CalibrationInfo, Manifest, embed_manifest

logger = logging.getLogger(__name__)


def _quiet_ort():
    """Silence ONNX Runtime's quantizer chatter (root-logger warnings, stdout prints)."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    stack.callback(root.setLevel, level)
    return stack


def prepare_fp32(source: str | Path, dest: str | Path, manifest: Manifest) -> Path:
    """Write the FP32 model every artifact is made from: ONNX Runtime's pre-processing (shape
    inference, constant folding, Conv+BatchNorm fusion) applied, the manifest embedded.

    Ranges are computed on this file and the QDQ models are made from it, so tensor names agree
    between ``model.onnx``, ``calib.cache`` and the QDQ models. If pre-processing fails the model
    is used as it is (with a warning).
    """
    import onnx  # noqa: PLC0415
    from onnxruntime.quantization import quant_pre_process  # noqa: PLC0415

    source, dest = Path(source), Path(dest)
    try:
        with _quiet_ort():
            quant_pre_process(str(source), str(dest), skip_symbolic_shape=True)
        model = onnx.load(str(dest))
    except Exception as exc:
        logger.warning("onnxruntime pre-processing of %s failed (%s); calibrating the model as it is", source, exc)
        shutil.copyfile(source, dest)
        model = onnx.load(str(dest))
    onnx.save(embed_manifest(model, manifest), str(dest))
    return dest


def embed_int8_manifest(path: str | Path, manifest: Manifest, calibration: CalibrationInfo) -> Manifest:
    """Embed the INT8 form of ``manifest`` in the QDQ model at ``path``; return it."""
    import onnx  # noqa: PLC0415

    int8 = manifest.updated(precision="int8", calibration=calibration)
    model = onnx.load(str(path))
    onnx.save(embed_manifest(model, int8), str(path))
    return int8


def output_nodes(fp32: str | Path) -> list[str]:
    """Names of the nodes that produce the graph's outputs (the classifier head)."""
    import onnx  # noqa: PLC0415

    model = onnx.load(str(fp32), load_external_data=False)
    outputs = {o.name for o in model.graph.output}
    return [n.name for n in model.graph.node if outputs.intersection(n.output) and n.name]


def quantize_from_ranges(fp32: str | Path, out: str | Path, ranges: Ranges, *, activation_type: str,
                         per_channel: bool, extra_options: dict[str, Any], float_head: bool = False,
                         exclude: tuple[str, ...] = (), weight_bits: int = 8) -> Path:
    """``quantize_static`` fed the precomputed ranges (it never runs a calibrator itself).

    Args:
        fp32: the prepared FP32 model the ranges were computed on.
        out: the QDQ model to write.
        ranges: from :func:`calibration.ranges.compute_ranges`.
        activation_type: ``uint8`` or ``int8``.
        per_channel: per-channel weight scales.
        extra_options: passed to the quantizer (symmetry, overrides ...).
        float_head: leave the node(s) producing the graph outputs in float, so the logits are not
            rounded to 8 bits (close classes would otherwise swap); the head is tiny.
        exclude: more node names to leave in float (the mixed-precision fallback): their inputs
            and weights get no Q/DQ pair.
        weight_bits: 8, or 7 (the quantizer's ``reduce_range``): weights within ±64, so that the
            16-bit pair sums of a U8S8 kernel on a CPU without VNNI cannot saturate.

    Raises:
        CalibrationError: the quantizer failed.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static  # noqa: PLC0415

    act = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[activation_type]
    if weight_bits not in (7, 8):
        raise CalibrationError(f"weight bits must be 7 or 8, got {weight_bits}")
    with tempfile.TemporaryDirectory(prefix="gemsight-qdq-") as tmp:
        cache = ranges.save_ort(Path(tmp) / "ranges.json")
        try:
            with _quiet_ort():
                quantize_static(str(fp32), str(out), None, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                                reduce_range=weight_bits == 7, activation_type=act, weight_type=QuantType.QInt8,
                                calibrate_method=ort_method(ranges.method), calibration_cache_path=str(cache),
                                nodes_to_exclude=[*(output_nodes(fp32) if float_head else []), *exclude] or None,
                                extra_options={"WeightSymmetric": True, **extra_options,
                                               # A layer left in float reads the tensor before its Q/DQ
                                               # pair; a ReLU folded into that pair would then be lost.
                                               **({"QDQKeepRemovableActivations": True} if exclude else {})})
        except Exception as exc:
            raise CalibrationError(f"{fp32}: quantization to {Path(out).name} failed: {exc}") from exc
    if exclude:
        unwrap_inputs(out, exclude)
    return Path(out)


def unwrap_inputs(path: str | Path, nodes: tuple[str, ...]) -> None:
    """Feed ``nodes`` the float tensors, not their ``QuantizeLinear → DequantizeLinear`` copies.

    The quantizer leaves an excluded node's weights in float, but its input may still pass through
    the Q/DQ pair of the tensor's producer (a quantized ReLU); a node left in float should see no
    rounding at all, and TensorRT should find no Q/DQ around it. Pairs nobody reads any more go.
    """
    import onnx  # noqa: PLC0415

    model = onnx.load(str(path))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    wanted = set(nodes)
    for node in graph.node:
        if node.name not in wanted:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    onnx.save(model, str(path))


def cpu_qdq(fp32: str | Path, out: str | Path, ranges: Ranges, exclude: tuple[str, ...] = (),
            weight_bits: int = 8) -> Path:
    """The ``model.int8.onnx`` form without its manifest (also what the method search measures);
    with ``weight_bits=7``, what the OpenVINO IR is converted from."""
    return quantize_from_ranges(fp32, out, ranges, activation_type="uint8", per_channel=True,
                                extra_options={"ActivationSymmetric": False}, float_head=True, exclude=exclude,
                                weight_bits=weight_bits)


def tensorrt_qdq(fp32: str | Path, out: str | Path, ranges: Ranges, exclude: tuple[str, ...] = ()) -> Path:
    """The ``model.int8.trt.onnx`` form without its manifest."""
    from onnxruntime.quantization import QuantType  # noqa: PLC0415

    overrides = {name: [{"scale": np.array(symmetric_scale(ranges.amax(name)), np.float32),
                         "zero_point": np.array(0, np.int8), "quant_type": QuantType.QInt8}]
                 for name in ranges.tensors}
    return quantize_from_ranges(fp32, out, ranges, activation_type="int8", per_channel=True,
                                extra_options={"ActivationSymmetric": True, "QuantizeBias": False,
                                               "TensorQuantOverrides": overrides}, float_head=True, exclude=exclude)


def write_cpu_int8(fp32: str | Path, out: str | Path, ranges: Ranges, manifest: Manifest,
                   calibration: CalibrationInfo, exclude: tuple[str, ...] = ()) -> Manifest:
    """``model.int8.onnx``: uint8 activations, int8 per-channel weights; returns its manifest.

    ``exclude``: nodes left in float (the mixed-precision fallback of ``--auto``).
    """
    cpu_qdq(fp32, out, ranges, exclude)
    logger.info("wrote %s (QDQ, uint8 activations, int8 per-channel weights%s)", out,
                f"; {len(exclude)} node(s) in float" if exclude else "")
    return embed_int8_manifest(out, manifest, calibration)


def write_tensorrt_int8(fp32: str | Path, out: str | Path, ranges: Ranges, manifest: Manifest,
                        calibration: CalibrationInfo, exclude: tuple[str, ...] = ()) -> Manifest:
    """``model.int8.trt.onnx``: symmetric int8 activations with the ``calib.cache`` scales.

    ``exclude``: nodes TensorRT should run in float (no Q/DQ around them).
    """
    tensorrt_qdq(fp32, out, ranges, exclude)
    logger.info("wrote %s (QDQ for TensorRT explicit quantization: int8 activations, zero point 0)", out)
    return embed_int8_manifest(out, manifest, calibration)


def activation_qparams(path: str | Path) -> dict[str, tuple[float, int, int]]:
    """Tensor → (scale, zero point, ONNX element type) of every QuantizeLinear in a model."""
    import onnx  # noqa: PLC0415
    from onnx import numpy_helper  # noqa: PLC0415

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        scale = numpy_helper.to_array(inits[node.input[1]])
        zp_tensor = inits[node.input[2]] if len(node.input) > 2 and node.input[2] in inits else None
        zp = int(numpy_helper.to_array(zp_tensor).reshape(-1)[0]) if zp_tensor is not None else 0
        elem = zp_tensor.data_type if zp_tensor is not None else onnx.TensorProto.UINT8
        out[node.input[0]] = (float(scale.reshape(-1)[0]), zp, elem)
    return out
