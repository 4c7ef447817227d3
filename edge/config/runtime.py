"""The ``runtime`` section of the device config: which inference backend runs, and with which options.

Each backend's options are what the device runs with; the defaults are the settings
``bench/runtimes.py`` measured against the raw runtime (threads, spinning, performance and precision
hints), and :func:`runtime_options` hands them to :func:`edge.runtimes.registry.create_runtime` unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field

from edge.contracts import DEFAULT_WORKSPACE_MB
from edge.validation import Strict


# The values the backends accept, one home for the config's validation and the adapters' own checks.
OPENVINO_HINTS = ("LATENCY", "THROUGHPUT")
OPENVINO_PRECISIONS = ("f32", "bf16", "f16")


class OnnxRuntimeOptions(Strict):
    threads: int | None = Field(None, strict=True,
                                ge=1, le=256, description="Intra-op threads (default: ONNX Runtime's, one "
                                                          "per physical core).")
    providers: tuple[str, ...] | None = Field(None, description="Execution providers, in order (default: CPU).")
    allow_spinning: bool = Field(
        True, strict=True,
        description="Let worker threads busy-wait between the operators of a run instead of sleeping "
                    "(ONNX Runtime's default; turning it off costs ~15% at batch 1, bench/runtimes.py).")
    spin_between_runs: bool = Field(
        False, strict=True, description="Keep spinning after a run returns (ONNX Runtime's default). Off here "
                                        "(session.force_spinning_stop): between batches the cores go to decoding and "
                                        "preprocessing, and a run costs no more than with spinning on.")
    exact_int8: bool | None = Field(
        None, strict=True,
        description="session.x64quantprecision: run INT8 layers with ONNX Runtime's U8U8 kernels instead of its "
                    "U8S8 ones, which saturate on x86 CPUs without VNNI (SSE4.1, AVX2, AVX-512 without VNNI: an "
                    "INT8 ResNet-18 of real photos agreed with FP32 on 89% with U8S8, 100% with U8U8). Default: on "
                    "exactly where the CPU lacks VNNI. Where it has VNNI U8S8 is already exact and U8U8 only "
                    "slower (2.8x on a batch of 12 here, bench/loop.py); no effect on ARM or FP32 models.")


class OpenVinoOptions(Strict):
    device: str = Field("CPU", description="OpenVINO device (CPU, GPU, NPU, AUTO ...).")
    threads: int | None = Field(None, strict=True,
                                ge=1, le=256, description="Inference threads (default: OpenVINO's choice, "
                                                          "every physical core).")
    hint: Literal[OPENVINO_HINTS] = Field(
        "LATENCY", description="PERFORMANCE_HINT. LATENCY: one stream using every thread, what the loop needs (it "
                               "waits for each batch); THROUGHPUT splits the cores into streams that only pay off "
                               "with several requests in flight.")
    inference_precision: Literal[OPENVINO_PRECISIONS] = Field(
        "f32", description="INFERENCE_PRECISION_HINT for layers left in floating point. f32 keeps an FP32 model "
                           "exact (the calibration gate's reference) and in an INT8 model only touches the final "
                           "classifier, at no cost in speed; bf16/f16 trade exactness for speed (FP32 ~5x faster "
                           "on a CPU with AMX).")
    uint8_input: bool = Field(
        True, strict=True,
        description="Hand OpenVINO the crops resized to the input (uint8 BGR) and let the compiled model "
                    "convert, reorder the colours, normalise and transpose them (OpenVINO's preprocessing, "
                    "fused with the first layer): the same logits as the float batch, without building that "
                    "batch on the CPU. false: the loop normalises, as for the other runtimes.")


class TensorRtOptions(Strict):
    # The builder options (workspace_mb, fp16_fallback, dla_core) are part of the engine cache key:
    # build-engine, flash and the edge all read them from here (edge.runtimes.engine_cache.BuildOptions).
    engine_cache: Path | None = Field(
        None, description="Directory of built engines (default: $GEMSIGHT_ENGINE_CACHE, /var/lib/gemsight/engines "
                          "on an installed device).")
    workspace_mb: int = Field(DEFAULT_WORKSPACE_MB, strict=True, ge=16, le=65536,
                              description="Builder workspace pool limit in MiB (lower it on a 4 GB Orin Nano).")
    max_batch: int | None = Field(
        None, strict=True,
        ge=1, le=256, description="Largest batch of the engine's optimisation profile (part of the engine "
                                  "cache key; default: every slot of every camera, the loop's one batch).")
    fp16_fallback: bool = Field(True, strict=True,
                                description="Where INT8 cannot be built (no fast INT8) build FP16, not FP32, "
                                            "and say so; weakly typed INT8 builds may run unquantized layers "
                                            "in FP16.")
    device: int = Field(0, strict=True, ge=0, description="CUDA device index.")
    dla_core: int | None = Field(None, strict=True,
                                 ge=0, le=7, description="Run the engine on this DLA core (Jetson AGX/NX "
                                                         "Orin; GPU fallback on); null: the GPU.")


class OnnxRuntimeConfig(Strict):
    name: Literal["onnxruntime"] = Field(description="Backend name.")
    options: OnnxRuntimeOptions = Field(default_factory=OnnxRuntimeOptions, description="ONNX Runtime options.")


class OpenVinoConfig(Strict):
    name: Literal["openvino"] = Field(description="Backend name.")
    options: OpenVinoOptions = Field(default_factory=OpenVinoOptions, description="OpenVINO options.")


class TensorRtConfig(Strict):
    name: Literal["tensorrt"] = Field(description="Backend name.")
    options: TensorRtOptions = Field(default_factory=TensorRtOptions, description="TensorRT options.")


class AutoOptions(Strict):
    """Per-backend options for ``auto``: the block of the backend it picks is used."""

    onnxruntime: OnnxRuntimeOptions = Field(default_factory=OnnxRuntimeOptions,
                                            description="If ONNX Runtime is picked.")
    openvino: OpenVinoOptions = Field(default_factory=OpenVinoOptions, description="If OpenVINO is picked.")
    tensorrt: TensorRtOptions = Field(default_factory=TensorRtOptions, description="If TensorRT is picked.")


class AutoRuntimeConfig(Strict):
    name: Literal["auto"] = Field(description="Take the best available backend (TensorRT, OpenVINO, ONNX Runtime).")
    options: AutoOptions = Field(default_factory=AutoOptions, description="Options per candidate backend.")


RuntimeConfig = Annotated[Union[AutoRuntimeConfig, OnnxRuntimeConfig, OpenVinoConfig, TensorRtConfig],
                          Field(discriminator="name")]
RUNTIME_NAMES = ("auto", "onnxruntime", "openvino", "tensorrt")


def runtime_options(runtime: AutoRuntimeConfig | OnnxRuntimeConfig | OpenVinoConfig | TensorRtConfig,
                    resolved: str) -> dict[str, Any]:
    """The keyword options for ``create_runtime`` once ``auto`` is resolved to a backend name."""
    opts = getattr(runtime.options, resolved) if runtime.name == "auto" else runtime.options
    return {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
            for k, v in opts.model_dump().items() if v is not None}
