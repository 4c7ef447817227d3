"""TensorRT backend (Jetson, NVIDIA GPUs). Placeholder until the TensorRT work lands: reports unavailable."""
from __future__ import annotations

import numpy as np

from edge.runtimes.base import Runtime, register_runtime


@register_runtime("tensorrt")
class TensorRtRuntime(Runtime):
    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import tensorrt  # noqa: F401,PLC0415
            import pycuda.driver  # noqa: F401,PLC0415
        except ImportError as exc:
            return f"TensorRT/pycuda not installed ({exc.name}); they come with JetPack ('gemsight[jetson]')"
        return "TensorRT runtime not implemented yet"

    def _infer(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError
