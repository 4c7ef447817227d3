"""Make an FP32 model friendlier to per-tensor power-of-two INT8 before the FPGA model is made from it.

The DPU model has one weight scale per tensor (a power of two), so a conv whose output channels
differ widely in weight range rounds its small channels to a few levels, or to zero. Two classic
remedies, applied to a copy of the prepared FP32 model (BatchNorm already folded into the convs):

* **Cross-layer equalization** (Nagel et al. 2019, "Data-free quantization"): for every
  ``Conv → Relu → Conv`` pair whose middle tensor feeds nothing else, output channel ``i`` of the
  first conv is divided by ``s_i = sqrt(r1_i / r2_i)`` (weights and bias) and input channel ``i`` of
  the second is multiplied by it (``r1``, ``r2``: the channel's weight ranges). ReLU is positively
  homogeneous, so the float function is unchanged, and both channels end with range
  ``sqrt(r1_i * r2_i)``.
* **Bias correction** (same paper): rounding the weights to the DPU's grid shifts each output
  channel's mean by ``(W_q - W) · E[x]``. ``E[x]``, the mean of each input channel, is measured on
  the calibration images; the shift is subtracted from the layer's bias, so the quantized layer's
  expected output matches the float one.

The ranges of the FPGA model are then computed on the returned model (its activations differ from
the original's per channel), with the same method and images as every other target.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration.fpga import pow2_weight_scale
from edge.errors import CalibrationError

logger = logging.getLogger(__name__)

EQUALIZE_ITERATIONS = 4   # chains (conv-relu-conv-relu-conv) settle in a few sweeps
_SCALE_LIMITS = (1e-4, 1e4)
MEAN_IMAGES = 128         # images whose activations give E[x] for bias correction
_CHUNK = 16


@dataclass
class Adjustments:
    """What :func:`prepare_fpga_fp32` changed (recorded in ``calibration.json``)."""

    equalized_pairs: list[tuple[str, str]] = field(default_factory=list)
    bias_corrected: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"equalized_pairs": [list(p) for p in self.equalized_pairs], "bias_corrected": self.bias_corrected}


def _attr(node, name: str, default):
    import onnx  # noqa: PLC0415

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


class _Graph:
    """Initializers as arrays and who consumes what, over an ``onnx.ModelProto``."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper  # noqa: PLC0415

        self.model = model
        self.inits = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in model.graph.initializer
                      if t.data_type == 1}
        self.consumers: dict[str, list] = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in model.graph.output}

    def uses(self, name: str) -> int:
        return len(self.consumers.get(name, []))

    def sole_consumer(self, tensor: str):
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.outputs else None

    def conv_bias(self, node) -> np.ndarray | None:
        return self.inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None

    def private(self, node, index: int) -> str | None:
        """The initializer at ``node.input[index]``, copied for this node alone when others share it
        (exporters dedupe equal tensors, e.g. the all-zero biases of freshly folded BatchNorms)."""
        from onnx import numpy_helper  # noqa: PLC0415

        if len(node.input) <= index or node.input[index] not in self.inits:
            return None
        name = node.input[index]
        if self.uses(name) == 1:
            return name
        copy = f"{name}__{node.name or node.output[0]}"
        self.inits[copy] = self.inits[name].copy()
        self.model.graph.initializer.append(numpy_helper.from_array(self.inits[copy], copy))
        self.consumers[name].remove(node)
        self.consumers[copy] = [node]
        node.input[index] = copy
        return copy

    def save_into(self, model) -> None:
        from onnx import numpy_helper  # noqa: PLC0415

        for t in model.graph.initializer:
            if t.name in self.inits and t.data_type == 1:
                t.CopyFrom(numpy_helper.from_array(self.inits[t.name], t.name))


def _equalizable_pairs(g: _Graph) -> list[tuple]:
    pairs = []
    for c1 in g.model.graph.node:
        if c1.op_type != "Conv" or g.private(c1, 1) is None:
            continue
        relu = g.sole_consumer(c1.output[0])
        if relu is None or relu.op_type != "Relu":
            continue
        c2 = g.sole_consumer(relu.output[0])
        if c2 is None or c2.op_type != "Conv" or c2.input[0] != relu.output[0] or g.private(c2, 1) is None:
            continue
        w1, w2 = g.inits[c1.input[1]], g.inits[c2.input[1]]
        groups2 = _attr(c2, "group", 1)
        depthwise = groups2 == w1.shape[0] and w2.shape[1] == 1
        if groups2 != 1 and not depthwise:
            continue
        if len(c1.input) > 2 and c1.input[2] and g.private(c1, 2) is None:
            continue
        pairs.append((c1, c2, depthwise))
    return pairs


def equalize(model) -> list[tuple[str, str]]:
    """Cross-layer equalization of every eligible ``Conv → Relu → Conv`` pair, in place.

    Returns:
        the (first, second) node names of the pairs equalized.
    """
    g = _Graph(model)
    pairs = _equalizable_pairs(g)
    for _ in range(EQUALIZE_ITERATIONS):
        for c1, c2, depthwise in pairs:
            w1, w2 = g.inits[c1.input[1]], g.inits[c2.input[1]]
            r1 = np.abs(w1).reshape(w1.shape[0], -1).max(1)
            w2_in = w2 if depthwise else np.swapaxes(w2, 0, 1)   # input channel first
            r2 = np.abs(w2_in).reshape(w2_in.shape[0], -1).max(1)
            ok = (r1 > 0) & (r2 > 0)
            s = np.ones_like(r1)
            s[ok] = np.sqrt(r1[ok] / r2[ok])
            s = np.clip(s, *_SCALE_LIMITS).astype(np.float32)
            g.inits[c1.input[1]] = w1 / s.reshape(-1, *([1] * (w1.ndim - 1)))
            bias = g.conv_bias(c1)
            if bias is not None:
                g.inits[c1.input[2]] = bias / s
            shape = (-1,) + (1,) * (w2.ndim - 1) if depthwise else (1, -1) + (1,) * (w2.ndim - 2)
            g.inits[c2.input[1]] = w2 * s.reshape(shape)
    g.save_into(model)
    return [(c1.name, c2.name) for c1, c2, _ in pairs]


def _quant_error(w: np.ndarray) -> np.ndarray:
    s = pow2_weight_scale(w)
    return np.clip(np.round(w / s), -127, 127) * s - w


def _input_means(model, tensors: list[str], batch: np.ndarray, input_name: str) -> dict[str, np.ndarray]:
    """Mean of each channel (axis 1) of ``tensors`` over ``batch`` (and over space)."""
    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    wanted = [t for t in tensors if t != input_name]
    for t in wanted:
        if t not in existing:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    sums: dict[str, np.ndarray] = {}
    count = 0
    for start in range(0, len(batch), _CHUNK):
        x = batch[start:start + _CHUNK]
        values = dict(zip(wanted, session.run(wanted, {input_name: x}))) if wanted else {}
        values[input_name] = x
        for t in tensors:
            v = values[t].astype(np.float64)
            axes = (0,) + tuple(range(2, v.ndim))
            sums[t] = sums.get(t, 0.0) + v.sum(axis=axes) / int(np.prod([v.shape[a] for a in axes[1:]] or [1]))
        count += len(x)
    return {t: (s / count).astype(np.float64) for t, s in sums.items()}


def _bias_name(model, node, g: _Graph, out_channels: int) -> str:
    """The node's bias initializer, added (zeros) when the node has none."""
    from onnx import numpy_helper  # noqa: PLC0415

    index = 2
    if len(node.input) > index and node.input[index]:
        return node.input[index]
    name = f"{node.name or node.output[0]}_bias_correction"
    zeros = np.zeros(out_channels, np.float32)
    model.graph.initializer.append(numpy_helper.from_array(zeros, name))
    g.inits[name] = zeros
    while len(node.input) < index:
        node.input.append("")
    node.input.append(name)
    return name


def bias_correct(model, batch: np.ndarray, input_name: str) -> list[str]:
    """Subtract each Conv's and Gemm's expected output shift from power-of-two weight rounding, in place.

    Returns:
        the names of the nodes whose bias was corrected.
    """
    g = _Graph(model)
    nodes = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2 or node.input[1] not in g.inits:
            continue
        if node.op_type == "Gemm" and (_attr(node, "transA", 0) or float(_attr(node, "beta", 1.0)) != 1.0):
            continue
        if len(node.input) > 2 and node.input[2] and g.private(node, 2) is None:
            continue
        nodes.append(node)
    if not nodes:
        return []
    means = _input_means(model, sorted({n.input[0] for n in nodes}), batch[:MEAN_IMAGES], input_name)
    done = []
    for node in nodes:
        w = g.inits[node.input[1]]
        err = _quant_error(w).astype(np.float64)
        mean = means[node.input[0]]
        if node.op_type == "Gemm":
            shift = err @ mean if _attr(node, "transB", 0) else mean @ err
        else:
            groups = _attr(node, "group", 1)
            out_c, in_per_group = w.shape[0], w.shape[1]
            per_out = err.reshape(out_c, in_per_group, -1).sum(2)          # O x C/g
            group_of = np.arange(out_c) // (out_c // groups)
            channel = group_of[:, None] * in_per_group + np.arange(in_per_group)[None, :]
            shift = (per_out * mean[channel]).sum(1)
        name = _bias_name(model, node, g, len(shift))
        g.inits[name] = (g.inits[name] - shift).astype(np.float32)
        done.append(node.name)
    g.save_into(model)
    return done


def prepare_fpga_fp32(fp32: str | Path, dest: str | Path, batch: np.ndarray, input_name: str, *,
                      equalization: bool, bias_correction: bool) -> Adjustments:
    """Write ``dest``: ``fp32`` equalized and/or bias-corrected for the power-of-two DPU model.

    Raises:
        CalibrationError: the model could not be read or written.
    """
    import onnx  # noqa: PLC0415

    try:
        model = onnx.load(str(fp32))
    except Exception as exc:
        raise CalibrationError(f"{fp32}: cannot read the model to equalize: {exc}") from exc
    adj = Adjustments()
    if equalization:
        adj.equalized_pairs = equalize(model)
    if bias_correction:
        adj.bias_corrected = bias_correct(model, batch, input_name)
    onnx.save(model, str(dest))
    logger.info("FPGA model prep: %d conv pair(s) equalized, %d bias(es) corrected", len(adj.equalized_pairs),
                len(adj.bias_corrected))
    return adj
