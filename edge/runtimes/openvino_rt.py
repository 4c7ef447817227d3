"""OpenVINO backend: runs OpenVINO IR (``.xml``) or ONNX directly on the CPU (or another device)."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge.errors import InferenceError
from edge.runtimes.base import Runtime, register_runtime

logger = logging.getLogger(__name__)


@register_runtime("openvino")
class OpenVinoRuntime(Runtime):
    """Options: ``device`` (default ``CPU``), ``threads``, ``hint`` (``LATENCY`` or ``THROUGHPUT``),
    ``inference_precision`` (``f32`` default, ``bf16``/``f16`` to allow lower-precision FP layers)."""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import openvino  # noqa: F401,PLC0415
        except ImportError:
            return "openvino is not installed (pip install 'gemsight[calibrate]' or openvino)"
        return None

    def __init__(self, model_path, manifest, **options: Any) -> None:
        super().__init__(model_path, manifest, **options)
        import openvino as ov  # noqa: PLC0415

        core = ov.Core()
        # On CPUs with BF16/AMX OpenVINO would silently run FP32 layers in bf16; keep f32 unless asked.
        config: dict[str, Any] = {"PERFORMANCE_HINT": options.get("hint", "LATENCY"),
                                  "INFERENCE_PRECISION_HINT": options.get("inference_precision", "f32")}
        if options.get("threads"):
            config["INFERENCE_NUM_THREADS"] = int(options["threads"])
        try:
            model = core.read_model(str(self.model_path))
            self._compiled = core.compile_model(model, options.get("device", "CPU"), config)
        except Exception as exc:
            raise InferenceError(f"openvino: cannot load {self.model_path}: {exc}") from exc
        self._request = self._compiled.create_infer_request()
        names = {n for port in self._compiled.inputs for n in port.get_names()}
        if self.input_name not in names:
            raise InferenceError(f"openvino: {self.model_path} has inputs {sorted(names)}, manifest says '{self.input_name}'")
        self._output = next((p for p in self._compiled.outputs if self.output_name in p.get_names()), None)
        if self._output is None:
            outs = sorted(n for p in self._compiled.outputs for n in p.get_names())
            raise InferenceError(f"openvino: {self.model_path} has outputs {outs}, manifest says '{self.output_name}'")

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        result = self._request.infer({self.input_name: batch})
        return np.array(result[self._output], copy=True)

    def close(self) -> None:
        self._request = None
        self._compiled = None
