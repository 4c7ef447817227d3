"""The raw runtimes that gemsight's adapters are measured against (bench/runtimes.py).

Each runs the same artifact as the adapter through the runtime's own Python API, with the settings the
runtime's documentation recommends, and nothing of gemsight in the call path:

* ONNX Runtime: ``SessionOptions`` at its defaults (``ORT_ENABLE_ALL`` graph optimisations, sequential
  execution, worker threads allowed to spin), ``intra_op_num_threads`` as given (0: one per physical
  core), and an ``IOBinding`` whose output is a preallocated ``OrtValue`` per batch size: the input is
  bound from the caller's array without a copy and nothing is allocated per call.
* OpenVINO: ``Core.compile_model`` with a ``PERFORMANCE_HINT`` (``LATENCY`` for one synchronous
  request, the hint that fits one caller waiting for each batch), one ``InferRequest`` reused,
  ``share_inputs=True`` and ``share_outputs=True`` (zero-copy on both sides). The precision hint is the
  runtime's default (``bf16`` on a CPU with AMX/AVX-512-BF16) unless one is given.

Both return the logits as an array the runtime may overwrite on the next call: a benchmark reads
nothing from it, an application that keeps the result would copy it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.runtimes.onnxruntime_rt import X64_QUANT_PRECISION, exact_int8


class RawOnnxRuntime:
    """ONNX Runtime through ``InferenceSession.run_with_iobinding`` with a preallocated output."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort  # noqa: PLC0415

        self._ort = ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = int(threads or 0)
        so.log_severity_level = 3
        # The same integer precision as gemsight's adapter (exact_int8's default): U8U8 where the CPU lacks VNNI.
        if exact_int8(None):
            so.add_session_config_entry(X64_QUANT_PRECISION, "1")
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._binding = self.session.io_binding()
        self._outputs: dict[int, Any] = {}

    def settings(self) -> dict[str, Any]:
        """What this session runs with, as the runtime reports it."""
        so = self.session.get_session_options()
        return {"intra_op_num_threads": so.intra_op_num_threads, "graph_optimization_level": str(so.graph_optimization_level),
                "execution_mode": str(so.execution_mode), "allow_spinning": "runtime default (1)",
                X64_QUANT_PRECISION: "1" if exact_int8(None) else "default",
                "call": "run_with_iobinding, output preallocated per batch size"}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        out = self._outputs.get(n)
        if out is None:
            width = self.session.get_outputs()[0].shape[1]
            out = self._outputs[n] = self._ort.OrtValue.ortvalue_from_numpy(np.empty((n, width), np.float32))
        self._binding.bind_cpu_input(self.input_name, x)
        self._binding.bind_ortvalue_output(self.output_name, out)
        self.session.run_with_iobinding(self._binding)
        return out.numpy()

    def close(self) -> None:
        self.session = None


class RawOpenVino:
    """OpenVINO through one reused ``InferRequest``, inputs and outputs shared with numpy."""

    def __init__(self, path: Path, threads: int | None = None, hint: str = "LATENCY",
                 inference_precision: str | None = None) -> None:
        import openvino as ov  # noqa: PLC0415

        config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if inference_precision:
            config["INFERENCE_PRECISION_HINT"] = inference_precision
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def settings(self) -> dict[str, Any]:
        """The compiled model's properties that decide its speed, read back from OpenVINO."""
        from edge.runtimes.openvino_rt import compiled_settings  # noqa: PLC0415 - the same read-back as the adapter

        out = compiled_settings(self.compiled)
        out["call"] = "InferRequest.infer(share_inputs=True, share_outputs=True)"
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.request.infer({0: x}, share_inputs=True, share_outputs=True)[0]

    def close(self) -> None:
        self.request = None
        self.compiled = None


class CopyingOpenVinoCall:
    """gemsight's OpenVINO call before issue 16, on the adapter's own compiled model: the batch copied
    into the request's tensor (``share_inputs=False``) and the logits copied twice. Kept to measure
    what sharing the input saves (``bench/runtimes.py --copying-call``)."""

    def __init__(self, adapter: Any) -> None:
        self.request = adapter._compiled.create_infer_request()
        self.input_name, self.output = adapter.input_name, adapter._output

    def __call__(self, x: np.ndarray) -> np.ndarray:
        result = self.request.infer({self.input_name: x})
        return np.array(result[self.output], copy=True)

    def close(self) -> None:
        self.request = None


def open_raw(backend: str, path: Path, threads: int | None, **kw: Any):
    """The raw runner for ``backend`` on ``path``."""
    if backend == "onnxruntime":
        return RawOnnxRuntime(path, threads)
    if backend == "openvino":
        return RawOpenVino(path, threads, **kw)
    raise ValueError(f"no raw runner for backend '{backend}'")


def interleaved(runners: dict[str, Any], x: np.ndarray, rounds: int, iters: int, warmup: int = 2,
                settle_s: float = 0.0) -> dict[str, list[float]]:
    """Images/s of each runner in ``rounds`` interleaved rounds on the same batch.

    Each round runs every runner for ``iters`` timed calls (after ``warmup`` untimed ones) and keeps the
    median call time; the order of the runners is rotated every round so that neither always goes
    first. A ratio taken round by round then compares runs made seconds apart, under the same load.
    ``settle_s`` is slept before each block: two runtimes in one process each have their own worker
    threads, and ONNX Runtime's keep spinning for a while after a run (unless told to stop), which
    would slow whichever runner comes next.
    """
    import time  # noqa: PLC0415

    names = list(runners)
    speeds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn = runners[name]
            time.sleep(settle_s)
            for _ in range(warmup):
                fn(x)
            times = []
            for _ in range(iters):
                started = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - started)
            speeds[name].append(len(x) / float(np.median(times)))
    return speeds


def ratio_summary(num: list[float], den: list[float]) -> dict[str, Any]:
    """Round-by-round ``num / den``: median, min, max and every round's value."""
    ratios = [a / b for a, b in zip(num, den)]
    return {"median": round(float(np.median(ratios)), 3), "min": round(min(ratios), 3),
            "max": round(max(ratios), 3), "rounds": [round(v, 3) for v in ratios]}
