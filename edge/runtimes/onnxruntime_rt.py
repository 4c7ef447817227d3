"""ONNX Runtime backend (CPU, or CUDA where onnxruntime-gpu is installed)."""
from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from edge.errors import InferenceError
from edge.runtimes.base import Runtime, register_runtime

logger = logging.getLogger(__name__)


@register_runtime("onnxruntime")
class OnnxRuntime(Runtime):
    """Options: ``threads`` (intra-op threads, default: all cores), ``providers`` (list),
    ``allow_spinning`` (bool; default ONNX Runtime's, which spins: ``False`` stops idle worker threads
    from busy-waiting, which on a small CPU shared with camera decoding is faster overall)."""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import onnxruntime  # noqa: F401,PLC0415
        except ImportError:
            return "onnxruntime is not installed (pip install 'gemsight[calibrate]' or onnxruntime)"
        return None

    def __init__(self, model_path, manifest, **options: Any) -> None:
        super().__init__(model_path, manifest, **options)
        import onnxruntime as ort  # noqa: PLC0415

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = int(options.get("threads") or os.cpu_count() or 1)
        so.log_severity_level = 3
        if options.get("allow_spinning") is not None:
            flag = "1" if options["allow_spinning"] else "0"
            so.add_session_config_entry("session.intra_op.allow_spinning", flag)
            so.add_session_config_entry("session.inter_op.allow_spinning", flag)
        providers = options.get("providers") or ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(self.model_path), so, providers=providers)
        except Exception as exc:
            raise InferenceError(f"onnxruntime: cannot load {self.model_path}: {exc}") from exc
        names = [i.name for i in self._session.get_inputs()]
        if self.input_name not in names:
            raise InferenceError(f"onnxruntime: {self.model_path} has inputs {names}, manifest says '{self.input_name}'")
        outs = [o.name for o in self._session.get_outputs()]
        if self.output_name not in outs:
            raise InferenceError(f"onnxruntime: {self.model_path} has outputs {outs}, manifest says '{self.output_name}'")

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([self.output_name], {self.input_name: batch})[0]

    def close(self) -> None:
        self._session = None
