"""OpenVINO IR of the FP32 and the INT8 (QDQ) model: ``openvino/model.xml`` and ``model.int8.xml``.

OpenVINO reads the QDQ pairs as FakeQuantize and runs the INT8 kernels; no second calibration. The
INT8 IR is converted from the QDQ form with 7-bit weights by default (``--openvino-weight-bits``):
on an x86 CPU without VNNI OpenVINO's int8 kernels sum pairs of uint8 × int8 products into 16-bit
integers, which 8-bit weights can saturate (OpenVINO's "saturation issue"), and the same IR must
hold on every store PC.
Weights stay as they are (``compress_to_fp16=False``): the FP32 IR must match FP32 ONNX Runtime.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from edge.errors import CalibrationError

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'gemsight[calibrate]'"


def require_openvino():
    """Import openvino, or stop the ``openvino`` target with the extra to install.

    Raises:
        CalibrationError: openvino is not importable.
    """
    try:
        import openvino as ov  # noqa: PLC0415
    except ImportError as exc:
        raise CalibrationError(
            f"target 'openvino' needs the openvino package, which is not installed: {INSTALL_HINT} "
            "(or drop openvino from --targets)") from exc
    return ov


def export_ir(onnx_path: str | Path, xml_path: str | Path) -> Path:
    """Convert one ONNX model to OpenVINO IR (``.xml`` + ``.bin``).

    Raises:
        CalibrationError: openvino is missing or the conversion failed.
    """
    ov = require_openvino()
    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        model = ov.convert_model(str(onnx_path))
        ov.save_model(model, str(xml_path), compress_to_fp16=False)
    except Exception as exc:
        raise CalibrationError(f"openvino: converting {onnx_path} to {xml_path} failed: {exc}") from exc
    size = xml_path.stat().st_size + xml_path.with_suffix(".bin").stat().st_size
    logger.info("wrote %s from %s in %.1fs (%.1f MB)", xml_path, Path(onnx_path).name,
                time.perf_counter() - started, size / 1e6)
    return xml_path


def export_openvino(fp32_onnx: str | Path, int8_onnx: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``out_dir/model.xml`` (FP32) and ``out_dir/model.int8.xml`` (INT8)."""
    out_dir = Path(out_dir)
    return export_ir(fp32_onnx, out_dir / "model.xml"), export_ir(int8_onnx, out_dir / "model.int8.xml")
