"""OpenVINO backend: runs OpenVINO IR (``.xml``) or ONNX directly on the CPU (or another device)."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge.config.runtime import OPENVINO_HINTS, OPENVINO_PRECISIONS
from edge.errors import ConfigError, InferenceError
from edge.runtimes.base import Runtime, register_runtime

logger = logging.getLogger(__name__)

# Compiled-model properties that decide speed and precision, read back for the log and the benchmark.
REPORTED_PROPERTIES = ("PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS",
                       "EXECUTION_DEVICES")


@register_runtime("openvino")
class OpenVinoRuntime(Runtime):
    """Options: ``device`` (default ``CPU``), ``threads`` (``INFERENCE_NUM_THREADS``; default OpenVINO's
    choice, every physical core), ``hint`` (``PERFORMANCE_HINT``: ``LATENCY``, the default, one stream
    with every thread, what one caller waiting for each batch needs; ``THROUGHPUT`` splits the cores into
    streams that only pay off with several requests in flight), ``inference_precision``
    (``INFERENCE_PRECISION_HINT``: ``f32``, the default, keeps floating-point layers exact, which the
    FP32 reference of the calibration gate needs and which in an INT8 IR only touches the final
    classifier; ``bf16``/``f16`` let OpenVINO run them in lower precision, ~5x faster for FP32 on a CPU
    with AMX, at the cost of exactness), ``uint8_input`` (default off: the manifest's float32 batch; on:
    the batch is the crops resized to the input, ``N x H x W x 3`` BGR ``uint8``, and OpenVINO's
    preprocessing converts, reorders the colours, applies the manifest's mean and std and transposes
    inside the compiled model, where the CPU plugin fuses them with the first layer; the logits are
    those of the float path, and the CPU side skips a float batch four times the size).

    Inputs are shared with OpenVINO (no copy into the request's tensor); outputs come back as a copy
    the next batch does not overwrite.
    """

    takes_uint8 = True

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

        # On CPUs with BF16/AMX OpenVINO would silently run FP32 layers in bf16; keep f32 unless asked.
        hint = options.get("hint") or "LATENCY"
        precision = options.get("inference_precision") or "f32"
        if hint not in OPENVINO_HINTS:
            raise ConfigError(f"openvino: hint must be one of {', '.join(OPENVINO_HINTS)}, got {hint!r}")
        if precision not in OPENVINO_PRECISIONS:
            raise ConfigError(f"openvino: inference_precision must be one of {', '.join(OPENVINO_PRECISIONS)}, "
                              f"got {precision!r}")
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision}
        if options.get("threads") is not None:
            config["INFERENCE_NUM_THREADS"] = _positive_int("threads", options["threads"])
        core = ov.Core()
        try:
            model = core.read_model(str(self.model_path))
            if self.input_kind == "uint8":
                model = self._with_preprocessing(model)
            self._compiled = core.compile_model(model, options.get("device") or "CPU", config)
        except Exception as exc:
            raise InferenceError(f"openvino: cannot load {self.model_path}: {exc}") from exc
        self._request = self._compiled.create_infer_request()
        self._input = next((p for p in self._compiled.inputs if self.input_name in p.get_names()), None)
        if self._input is None:
            names = sorted(n for p in self._compiled.inputs for n in p.get_names())
            raise InferenceError(f"openvino: {self.model_path} has inputs {names}, manifest says '{self.input_name}'")
        self._outputs_ov = [next((p for p in self._compiled.outputs if name in p.get_names()), None)
                            for name in self.output_names]
        if any(port is None for port in self._outputs_ov):
            outs = sorted(n for p in self._compiled.outputs for n in p.get_names())
            raise InferenceError(f"openvino: {self.model_path} has outputs {outs}, manifest says "
                                 f"{', '.join(repr(n) for n in self.output_names)}")
        logger.info("openvino %s: %s", self.model_path.name,
                    ", ".join(f"{k}={v}" for k, v in self.settings().items()))

    def _with_preprocessing(self, model: Any) -> Any:
        """``model`` with the manifest's preprocessing built in: a ``u8`` NHWC BGR input, converted to
        f32, put in the model's colour order, ``(x - 255 mean) / (255 std)``, transposed to NCHW."""
        import openvino as ov  # noqa: PLC0415
        from openvino.preprocess import ColorFormat, PrePostProcessor  # noqa: PLC0415

        spec = self.manifest.input
        ppp = PrePostProcessor(model)
        try:
            port = ppp.input(self.input_name)
        except RuntimeError as exc:
            raise InferenceError(f"openvino: {self.model_path} has no input '{self.input_name}' ({exc})") from exc
        port.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
        port.model().set_layout(ov.Layout("NCHW"))
        steps = port.preprocess().convert_element_type(ov.Type.f32)
        if spec.color == "RGB":
            steps.convert_color(ColorFormat.RGB)
        # In the model's colour order, which is the manifest's (its mean and std are listed in RGB order).
        mean = [255.0 * m for m in (spec.mean if spec.color == "RGB" else spec.mean[::-1])]
        std = [255.0 * s for s in (spec.std if spec.color == "RGB" else spec.std[::-1])]
        steps.mean(mean).scale(std)
        return ppp.build()

    def settings(self) -> dict[str, str]:
        """The compiled model's performance and precision properties, as OpenVINO reports them."""
        return compiled_settings(self._compiled)

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        # share_inputs: OpenVINO reads the caller's (C-contiguous float32) batch in place, no copy;
        # share_outputs=False: the outputs are copied out once, so the caller may keep them.
        result = self._request.infer({self._input: batch}, share_inputs=True, share_outputs=False)
        return [result[port] for port in self._outputs_ov]

    def close(self) -> None:
        self._request = None
        self._compiled = None


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"openvino: {name} must be a whole number of at least 1, got {value!r}")
    return value


def compiled_settings(compiled: Any) -> dict[str, str]:
    """``REPORTED_PROPERTIES`` of an ``openvino.CompiledModel`` as plain strings (``f32``, not ``<Type: ...>``)."""
    out = {}
    for key in REPORTED_PROPERTIES:
        try:
            value = compiled.get_property(key)
        except RuntimeError:  # a device plugin without this property
            continue
        if hasattr(value, "to_string"):   # an openvino.Type
            value = value.to_string()
        elif isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        out[key] = str(value)
    return out
