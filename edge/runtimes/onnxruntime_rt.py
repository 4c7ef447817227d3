"""ONNX Runtime backend (CPU, or CUDA where onnxruntime-gpu is installed)."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge.errors import ConfigError, InferenceError
from edge.platform import int8_saturates
from edge.runtimes.base import Runtime, register_runtime

logger = logging.getLogger(__name__)

# Session config keys (onnxruntime_session_options_config_keys.h).
ALLOW_INTRA_OP_SPINNING = "session.intra_op.allow_spinning"
ALLOW_INTER_OP_SPINNING = "session.inter_op.allow_spinning"
FORCE_SPINNING_STOP = "session.force_spinning_stop"
#: U8U8 instead of U8S8 integer kernels on x86 CPUs without VNNI (SSE4.1, AVX2, AVX-512 without VNNI),
#: where U8S8 sums pairs of products into saturating 16-bit intermediates.
X64_QUANT_PRECISION = "session.x64quantprecision"


def exact_int8(setting: bool | None) -> bool:
    """Whether to ask for U8U8 kernels: as set, else (``None``) exactly where this CPU's U8S8 ones saturate."""
    return int8_saturates() if setting is None else bool(setting)


@register_runtime("onnxruntime")
class OnnxRuntime(Runtime):
    """Options: ``threads`` (intra-op threads; default ONNX Runtime's own: one per physical core, pinned),
    ``providers`` (list), ``allow_spinning`` (bool, default ONNX Runtime's, on: worker threads busy-wait
    between the operators of one run instead of sleeping, which at batch 1 is ~15% faster),
    ``spin_between_runs`` (bool, default ONNX Runtime's, on: ``False`` sets ``session.force_spinning_stop``
    so the workers stop spinning the moment a run returns and leave the cores to decoding and
    preprocessing until the next batch), ``exact_int8`` (bool; default: on exactly where the x86 CPU
    lacks VNNI: ``session.x64quantprecision``, so that an INT8 model gives the same labels there as on a
    CPU with VNNI. ONNX Runtime's faster U8S8 kernels saturate on such CPUs, and an INT8 ResNet-18
    trained on real photos agreed with FP32 on 89% of images instead of 100%. Where the CPU has VNNI,
    U8S8 is exact and U8U8 only slower: 2.8x on a batch of 12 at 224 px, identical logits. No effect on
    ARM or on FP32 models)."""

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
        threads = options.get("threads")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"onnxruntime: threads must be a whole number of at least 1, got {threads!r}")
        so.intra_op_num_threads = threads or 0   # 0: ONNX Runtime's default, one per physical core
        so.log_severity_level = 3
        for name in ("allow_spinning", "spin_between_runs", "exact_int8"):
            if options.get(name) is not None and not isinstance(options[name], bool):
                raise ConfigError(f"onnxruntime: {name} must be true or false, got {options[name]!r}")
        if options.get("allow_spinning") is not None:
            flag = "1" if options["allow_spinning"] else "0"
            so.add_session_config_entry(ALLOW_INTRA_OP_SPINNING, flag)
            so.add_session_config_entry(ALLOW_INTER_OP_SPINNING, flag)
        if options.get("spin_between_runs") is not None:
            so.add_session_config_entry(FORCE_SPINNING_STOP, "0" if options["spin_between_runs"] else "1")
        if exact_int8(options.get("exact_int8")):
            so.add_session_config_entry(X64_QUANT_PRECISION, "1")
        providers = options.get("providers") or ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(self.model_path), so, providers=providers)
        except Exception as exc:
            raise InferenceError(f"onnxruntime: cannot load {self.model_path}: {exc}") from exc
        names = [i.name for i in self._session.get_inputs()]
        if self.input_name not in names:
            raise InferenceError(f"onnxruntime: {self.model_path} has inputs {names}, "
                                 f"manifest says '{self.input_name}'")
        outs = [o.name for o in self._session.get_outputs()]
        missing = [n for n in self.output_names if n not in outs]
        if missing:
            raise InferenceError(f"onnxruntime: {self.model_path} has outputs {outs}, manifest says "
                                 f"{', '.join(repr(n) for n in self.output_names)}")
        self._output_names = list(self.output_names)
        logger.info("onnxruntime %s: %s", self.model_path.name,
                    ", ".join(f"{k}={v}" for k, v in self.settings().items()))

    @property
    def session(self):
        """The ``onnxruntime.InferenceSession`` (its options can be read back with ``get_session_options``)."""
        return self._session

    def settings(self) -> dict[str, str]:
        """Threads, spinning and integer precision as the session holds them (a key not set reads as ONNX
        Runtime's default)."""
        so = self._session.get_session_options()
        out = {"intra_op_num_threads": str(so.intra_op_num_threads),
               "graph_optimization_level": str(so.graph_optimization_level).rsplit(".", 1)[-1]}
        for key in (ALLOW_INTRA_OP_SPINNING, FORCE_SPINNING_STOP, X64_QUANT_PRECISION):
            try:
                out[key] = so.get_session_config_entry(key)
            except RuntimeError:  # not set: the runtime's default
                out[key] = "default"
        return out

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        # A C-contiguous float32 array is handed to ONNX Runtime without a copy (checked in Runtime.infer).
        return self._session.run(self._output_names, {self.input_name: batch})

    def close(self) -> None:
        self._session = None
