"""Which file in a model directory a backend runs.

A model directory is a calibration output or an installed bundle::

    manifest.json            FP32 manifest (with metrics)
    model.onnx               FP32
    model.int8.onnx          QDQ INT8, uint8 activations (ONNX Runtime, OpenVINO)
    model.int8.trt.onnx      QDQ INT8, symmetric int8 activations (TensorRT explicit quantization)
    calib.cache              TensorRT calibration cache (implicit INT8; TensorRT 8.x/10.x only)
    openvino/model.xml       OpenVINO IR, FP32
    openvino/model.int8.xml  OpenVINO IR, INT8
    model.fpga.onnx          power-of-two QDQ for FPGA DPU compilers (not run here)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.errors import ManifestError
from edge.manifest import MANIFEST_FILENAME

FP32_ONNX = "model.onnx"
INT8_ONNX = "model.int8.onnx"
TRT_INT8_ONNX = "model.int8.trt.onnx"
FPGA_ONNX = "model.fpga.onnx"
CALIB_CACHE = "calib.cache"
OPENVINO_DIR = "openvino"
OPENVINO_FP32 = "openvino/model.xml"
OPENVINO_INT8 = "openvino/model.int8.xml"

_CANDIDATES = {
    # backend → precision → files to try, in order
    "onnxruntime": {"int8": [INT8_ONNX], "fp32": [FP32_ONNX]},
    "openvino": {"int8": [OPENVINO_INT8, INT8_ONNX], "fp32": [OPENVINO_FP32, FP32_ONNX]},
    # TensorRT builds its engine from these (explicit Q/DQ since TensorRT 8.0; calibration.tensorrt
    # takes model.onnx + calib.cache only where no Q/DQ model exists and the API still has a calibrator).
    "tensorrt": {"int8": [TRT_INT8_ONNX, INT8_ONNX], "fp16": [FP32_ONNX], "fp32": [FP32_ONNX]},
}


@dataclass(frozen=True)
class Artifact:
    path: Path
    precision: str | None  # None: take the manifest's word
    manifest_source: Path   # where load_manifest_for finds its manifest


def select_artifact(model: str | Path, backend: str, precision: str = "auto") -> Artifact:
    """Pick the file ``backend`` should load from a model file or directory.

    Args:
        model: a file (used as is) or a model directory (layout above).
        backend: registered runtime name.
        precision: ``auto`` (INT8 where it exists, else FP32), ``int8``, ``fp16`` or ``fp32``.

    Raises:
        ManifestError: nothing suitable in the directory (the message lists what was looked for).
    """
    model = Path(model)
    if not model.exists():
        raise ManifestError(f"{model}: model not found")
    if model.is_file():
        source = model
        if model.suffix == ".xml":
            onnx_twin = model.parent.parent / (model.stem + ".onnx")
            source = onnx_twin if onnx_twin.is_file() else model.parent.parent
            if not (source.is_file() or (source / MANIFEST_FILENAME).is_file()):
                source = model.parent
        return Artifact(model, None if precision == "auto" else precision, source)
    table = _CANDIDATES.get(backend, {"int8": [INT8_ONNX], "fp32": [FP32_ONNX]})
    order = ["int8", "fp32"] if precision == "auto" else [precision]
    tried = []
    for prec in order:
        for rel in table.get(prec, []):
            tried.append(rel)
            path = model / rel
            if path.is_file():
                onnx_twin = model / (Path(rel).stem + ".onnx")
                source = onnx_twin if onnx_twin.is_file() else model
                return Artifact(path, prec, source)
    raise ManifestError(f"{model}: no {precision} model for {backend} (looked for {', '.join(tried)})")
