"""What the imported ``tensorrt`` module can do, decided by what it has, not by its version string.

Three API generations matter on the devices gemsight runs on (NVIDIA's API references and the
"TensorRT 10.x to 11.x" migration guide):

* network creation: 8.6 needs ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``; 10.x offers
  ``STRONGLY_TYPED`` (explicit batch is implied, the old flag deprecated); 11.x is always strongly
  typed (the flag is kept and ignored);
* precision flags ``BuilderFlag.INT8``/``FP16``: 8.6 and 10.x (weak typing deprecated in 10.12);
  removed in 11.x;
* the calibration-cache path (``IBuilderConfig.int8_calibrator``, ``IInt8EntropyCalibrator2``,
  ``set_calibration_profile``): 8.6, deprecated in 10.1, removed in 11.x;
* ``Builder.platform_has_fast_int8/fp16``: deprecated in 10.5, removed in 11.x (gemsight reads the
  compute capability instead, everywhere);
* the engine inspector's context attribute: ``context`` in 8.x, ``execution_context`` from 10.

:class:`TrtApi` records those facts once; the builder (:mod:`calibration.tensorrt`) asks it, so
one code path serves every generation. Nothing here imports TensorRT: it is handed the module.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

from edge.errors import CalibrationError, GemsightError


@dataclass(frozen=True)
class TrtApi:
    """Capabilities of one ``tensorrt`` module."""

    version: str
    strongly_typed: bool        # NetworkDefinitionCreationFlag.STRONGLY_TYPED (>= 10; always on in 11)
    explicit_batch_flag: bool   # the flag an 8.x network needs for an explicit batch dimension
    int8_flag: bool             # BuilderFlag.INT8 (weakly typed INT8; removed in 11)
    fp16_flag: bool             # BuilderFlag.FP16 (weakly typed FP16; removed in 11)
    calibrator: bool            # IBuilderConfig.int8_calibrator + IInt8EntropyCalibrator2 (removed in 11)
    calibration_profile: bool   # IBuilderConfig.set_calibration_profile (removed in 11)
    memory_pool: bool           # IBuilderConfig.set_memory_pool_limit (>= 8.4)
    dla: bool                   # DeviceType.DLA and IBuilderConfig.DLA_core
    gpu_fallback: bool          # BuilderFlag.GPU_FALLBACK
    tensor_io: bool             # IExecutionContext.set_input_shape (>= 8.5)

    @classmethod
    def of(cls, trt: Any) -> "TrtApi":
        """Read the capabilities of a ``tensorrt`` module (real, or a test's stand-in)."""
        flags = getattr(trt, "NetworkDefinitionCreationFlag", None)
        builder_flags = getattr(trt, "BuilderFlag", None)
        config = getattr(trt, "IBuilderConfig", None)
        strongly = hasattr(flags, "STRONGLY_TYPED")
        return cls(
            version=str(getattr(trt, "__version__", "0")),
            strongly_typed=strongly,
            explicit_batch_flag=hasattr(flags, "EXPLICIT_BATCH") and not strongly,
            int8_flag=hasattr(builder_flags, "INT8"),
            fp16_flag=hasattr(builder_flags, "FP16"),
            calibrator=hasattr(config, "int8_calibrator") and hasattr(trt, "IInt8EntropyCalibrator2")
            and hasattr(builder_flags, "INT8"),
            calibration_profile=hasattr(config, "set_calibration_profile"),
            memory_pool=hasattr(config, "set_memory_pool_limit"),
            dla=hasattr(getattr(trt, "DeviceType", None), "DLA") and hasattr(config, "DLA_core"),
            gpu_fallback=hasattr(builder_flags, "GPU_FALLBACK"),
            tensor_io=hasattr(getattr(trt, "IExecutionContext", None), "set_input_shape"),
        )

    def network_flags(self, trt: Any, strongly_typed: bool) -> int:
        """``create_network`` flags: strongly typed where asked (and offered), explicit batch on 8.x."""
        if strongly_typed and self.strongly_typed:
            return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        if self.explicit_batch_flag:
            return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        return 0


@contextlib.contextmanager
def trt_step(step: str) -> Iterator[None]:
    """Turn anything TensorRT (or its Python bindings) raises into a :class:`CalibrationError` naming ``step``.

    TensorRT's bindings raise ``TypeError``/``RuntimeError``/``AttributeError`` (an API another
    generation removed); a ``main`` must see a one-line :class:`CalibrationError`, never a traceback.
    """
    try:
        yield
    except GemsightError:
        raise
    except Exception as exc:  # TensorRT raises its bindings' own types
        raise CalibrationError(f"TensorRT failed while {step}: {type(exc).__name__}: {exc}") from exc


def set_inspector_context(inspector: Any, context: Any) -> bool:
    """Point an engine inspector at an execution context (``execution_context`` from TensorRT 10,
    ``context`` before); False when this inspector has neither."""
    for attr in ("execution_context", "context"):
        if hasattr(inspector, attr):
            setattr(inspector, attr, context)
            return True
    return False
