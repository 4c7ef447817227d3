"""A three-layer ONNX classifier built in a few milliseconds, for the --auto tests.

``conv1 → relu → conv2 → relu → global pool → fc``. With ``unbalanced`` the output channels of
conv1 span four decades of weight range and conv2's input channels compensate, so the float
function is ordinary but one power-of-two scale per tensor rounds the small channels away: what
cross-layer equalization is for.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ("ring", "watch", "necklace", "earring")
SIZE = 16


def build_tiny(path: Path, *, unbalanced: bool = False, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edge.manifest import InputSpec, Manifest, embed_manifest

    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0.1, 0.1, 8).astype(np.float32)
    w2 = rng.normal(0, 0.2, (8, 8, 3, 3)).astype(np.float32)
    b2 = rng.normal(0.0, 0.05, 8).astype(np.float32)
    if unbalanced:
        s = (10.0 ** np.linspace(-2.5, 1.5, 8)).astype(np.float32)
        w1, b1 = w1 * s[:, None, None, None], b1 * s
        w2 = w2 / s[None, :, None, None]
    wf = rng.normal(0, 0.5, (len(CLASSES), 8)).astype(np.float32)
    bf = np.zeros(len(CLASSES), np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (wf, "wf"), (bf, "bf"))]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gp"], name="pool"),
        helper.make_node("Flatten", ["gp"], ["feat"], name="flatten"),
        helper.make_node("Gemm", ["feat", "wf", "bf"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(CLASSES)])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    manifest = Manifest(name="tiny", version="0.0.1", arch="tiny", classes=CLASSES, input=InputSpec(size=(SIZE, SIZE)))
    onnx.save(embed_manifest(model, manifest), str(path))
    return path
