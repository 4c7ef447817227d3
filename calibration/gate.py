"""Measure every artifact against FP32 and apply the accuracy gate.

Each target is run through edge's own runtimes (the same code the device runs). TensorRT and FPGA
artifacts cannot run on this CPU as they will on their hardware, so their QDQ models are run in
ONNX Runtime: the accuracy of the quantized arithmetic is measured, their speed is not.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from calibration.openvino_export import require_openvino
from edge.errors import CalibrationError
from edge.runtimes.artifacts import FP32_ONNX, FPGA_ONNX, INT8_ONNX, OPENVINO_FP32, OPENVINO_INT8, TRT_INT8_ONNX
from edge.runtimes.registry import create_runtime

logger = logging.getLogger(__name__)

TARGETS = ("onnxruntime", "tensorrt", "openvino", "fpga")
EVAL_CHUNK = 32


class AccuracyGateError(CalibrationError):
    """A target lost more top-1 accuracy than ``--max-drop`` allows."""

    exit_code = 3


@dataclass(frozen=True)
class Row:
    """One line of the report: an artifact, how it is run, whether it is gated."""

    name: str          # report row name
    target: str | None  # the --targets entry it belongs to (None: FP32 reference rows)
    artifact: str      # path relative to OUT
    backend: str       # edge runtime that runs it here
    timed: bool        # is its CPU throughput meaningful?
    gated: bool
    note: str = ""


def rows_for(targets: tuple[str, ...]) -> list[Row]:
    """The report rows for the chosen targets (FP32 ONNX Runtime is always the reference)."""
    rows = [Row("fp32", None, FP32_ONNX, "onnxruntime", True, False, "reference")]
    if "onnxruntime" in targets:
        rows.append(Row("onnxruntime", "onnxruntime", INT8_ONNX, "onnxruntime", True, True))
    if "openvino" in targets:
        rows.append(Row("openvino_fp32", None, OPENVINO_FP32, "openvino", True, False, "FP32 IR"))
        rows.append(Row("openvino", "openvino", OPENVINO_INT8, "openvino", True, True))
    if "tensorrt" in targets:
        rows.append(Row("tensorrt", "tensorrt", TRT_INT8_ONNX, "onnxruntime", False, True,
                        "INT8 arithmetic simulated in ONNX Runtime; the engine is built on the device"))
    if "fpga" in targets:
        rows.append(Row("fpga", "fpga", FPGA_ONNX, "onnxruntime", False, True,
                        "power-of-two INT8 simulated in ONNX Runtime"))
    return rows


@dataclass
class Result:
    name: str
    target: str | None
    artifact: str
    backend: str
    gated: bool
    note: str
    size_bytes: int
    top1: float                 # percent
    macro_f1: float             # percent
    agreement: float            # percent of images whose top-1 equals FP32's
    max_logit_error: float
    mean_logit_error: float
    drop: float                 # FP32 top-1 minus this top-1, in points
    embedding_cosine: float | None = None  # median cosine of each image's embedding to FP32's (None: no embedding)
    throughput: dict[str, float | None] = field(default_factory=dict)  # "b1"/"b8" → img/s
    speedup: dict[str, float | None] = field(default_factory=dict)     # vs FP32 ONNX Runtime
    passed: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def top1_percent(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(pred == labels) * 100.0) if len(labels) else 0.0


def macro_f1_percent(pred: np.ndarray, labels: np.ndarray) -> float:
    """Macro-averaged F1 over every class that appears in the labels or the predictions."""
    scores = []
    for c in np.union1d(np.unique(labels), np.unique(pred)):
        tp = np.sum((pred == c) & (labels == c))
        fp = np.sum((pred == c) & (labels != c))
        fn = np.sum((pred != c) & (labels == c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores) * 100.0) if scores else 0.0


def artifact_size(out_dir: Path, rel: str) -> int:
    path = out_dir / rel
    size = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        size += path.with_suffix(".bin").stat().st_size
    return size


def run_all(runtime, batch: np.ndarray) -> np.ndarray:
    return run_outputs(runtime, batch)[0]


def run_outputs(runtime, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits of every image of ``batch``, and their embeddings where the model has them (else ``None``)."""
    chunks = [runtime.infer({runtime.input_name: batch[i:i + EVAL_CHUNK]}) for i in range(0, len(batch), EVAL_CHUNK)]
    logits = np.concatenate([c[runtime.output_name] for c in chunks])
    spec = runtime.manifest.embedding
    return logits, (np.concatenate([c[spec.name] for c in chunks]) if spec is not None else None)


def median_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Median over rows of the cosine similarity of ``a``'s and ``b``'s rows."""
    na = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.median(np.sum(a.astype(np.float64) * b, axis=1) / np.maximum(na, 1e-12)))


def throughput(runtime, batch: np.ndarray, batch_size: int, iters: int) -> float:
    """Images per second at ``batch_size``: 2 warm-up runs, then the median of ``iters`` timed runs
    (the median shrugs off the moments another process takes the CPU)."""
    x = np.ascontiguousarray(np.resize(batch, (batch_size,) + batch.shape[1:]))
    for _ in range(2):
        runtime(x)
    times = []
    for _ in range(iters):
        started = time.perf_counter()
        runtime(x)
        times.append(time.perf_counter() - started)
    return batch_size / float(np.median(times))


def evaluate(out_dir: str | Path, targets: tuple[str, ...], batch: np.ndarray, labels: np.ndarray,
             bench_iters: int = 20, threads: int | None = None) -> list[Result]:
    """Run every row's artifact on ``batch`` and compare with FP32.

    Args:
        out_dir: the (staging) model directory holding the artifacts.
        targets: the chosen targets.
        batch: preprocessed evaluation images.
        labels: their class indices (real labels, or FP32's predictions when there is no --val).
        bench_iters: timed runs per throughput figure (0 skips timing).
        threads: intra-op threads for every runtime (None: the runtime default, all cores).
    """
    out_dir = Path(out_dir)
    if "openvino" in targets:
        require_openvino()
    options = {"threads": threads} if threads else {}
    results: list[Result] = []
    ref_logits = ref_emb = None
    base_speed: dict[str, float | None] = {}
    for row in rows_for(targets):
        path = out_dir / row.artifact
        if not path.is_file():
            raise CalibrationError(f"{path}: artifact for target '{row.name}' was not written")
        with create_runtime(row.backend, path, **options) as rt:
            logits, emb = run_outputs(rt, batch)
            speed = {}
            for bs in (1, 8):
                speed[f"b{bs}"] = throughput(rt, batch, bs, bench_iters) if (row.timed and bench_iters) else None
        if ref_logits is None:
            ref_logits, ref_emb, base_speed = logits, emb, speed
        pred, ref_pred = logits.argmax(1), ref_logits.argmax(1)
        err = np.abs(logits.astype(np.float64) - ref_logits)
        top1 = top1_percent(pred, labels)
        result = Result(
            name=row.name, target=row.target, artifact=row.artifact, backend=row.backend, gated=row.gated,
            note=row.note, size_bytes=artifact_size(out_dir, row.artifact), top1=top1,
            macro_f1=macro_f1_percent(pred, labels), agreement=top1_percent(pred, ref_pred),
            max_logit_error=float(err.max()), mean_logit_error=float(err.mean()),
            drop=(results[0].top1 - top1) if results else 0.0, throughput=speed,
            embedding_cosine=median_cosine(emb, ref_emb) if emb is not None and ref_emb is not None else None,
            speedup={k: (v / base_speed[k] if v and base_speed.get(k) else None) for k, v in speed.items()})
        logger.info("%-14s top-1 %.2f%% (drop %+.2f) agreement %.2f%% max|dlogit| %.4f%s %s", row.name, top1,
                    result.drop, result.agreement, result.max_logit_error,
                    "" if result.embedding_cosine is None else f" embedding cos {result.embedding_cosine:.4f}",
                    " ".join(f"{k} {v:.1f} img/s" for k, v in speed.items() if v))
        results.append(result)
    return results


MIN_EMBEDDING_COSINE = 0.98  # slot states compare INT8 embeddings with references: they must stay FP32's


def apply_gate(results: list[Result], max_drop: float, min_cosine: float = MIN_EMBEDDING_COSINE) -> list[Result]:
    """Mark every gated result whose top-1 drop exceeds ``max_drop`` points, or whose embeddings' median
    cosine to FP32's is below ``min_cosine``; return the failures."""
    failures = []
    for r in results:
        low_cosine = r.embedding_cosine is not None and r.embedding_cosine < min_cosine
        r.passed = not (r.gated and (r.drop > max_drop or low_cosine))
        if not r.passed:
            failures.append(r)
    return failures


def gate_message(failures: list[Result], max_drop: float, min_cosine: float = MIN_EMBEDDING_COSINE) -> str:
    def why(r: Result) -> str:
        if r.drop > max_drop:
            return (f"target '{r.target}' top-1 dropped {r.drop:.2f} points ({r.top1:.2f}% vs FP32 "
                    f"{r.top1 + r.drop:.2f}%), more than --max-drop {max_drop:g}")
        return (f"target '{r.target}' embeddings agree with FP32's at median cosine {r.embedding_cosine:.4f}, "
                f"below {min_cosine:g} (slot states would drift)")
    return "accuracy gate failed: " + "; ".join(why(r) for r in failures)
