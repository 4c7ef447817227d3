"""``--auto``: choose the range method, find the layers that must stay in float, measure their cost.

Everything here is measured on a **held-out part of the calibration sample** (every
``HOLDOUT_EVERY``-th image of the stratified draw), never on the ``--val`` photos the gate judges:
ranges come from the rest of the sample, and each candidate is scored by top-1 agreement with FP32
on the held-out images (ties broken by the mean KL divergence of the softmax from FP32's).

The held-out images are scored in several **views** each (:func:`views`; by default two: as drawn
and a zoomed crop). The calibration photos are usually training photos, which a model has learnt so well
that almost no quantization error flips their top-1: on the benchmark's real-photo models a TensorRT
form agreed 99–100% on the held-out photos as drawn and 98.8% on unseen val photos. A zoomed or
mirrored view is the kind of image the model saw in training but never exactly, so its margins there
are closer to those on new photos, and a form that would flip new photos flips some views.

* :func:`search_method` tries each range method (:data:`calibration.ranges.AUTO_CANDIDATES`) on
  every QDQ form the targets need (``cpu``: ``model.int8.onnx``, also what OpenVINO converts;
  ``tensorrt``: ``model.int8.trt.onnx``; ``fpga``: ``model.fpga.onnx``) and keeps the method whose
  worst form agrees best.
* :func:`sensitivity` leaves one layer at a time in float, all others int8, and records how much
  that recovers (agreement, KL).
* :func:`fallback` adds layers in order of sensitivity until the held-out agreement reaches the
  target, then puts back into int8 every layer the target does not need: no single layer of the
  set can return to int8 without missing it. The FPGA form has no fallback (a DPU runs int8 only).
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from calibration import fpga, qdq
from calibration.ranges import AUTO_CANDIDATES, Ranges, candidate_ranges
from edge.runtimes.onnxruntime_rt import X64_QUANT_PRECISION, exact_int8

logger = logging.getLogger(__name__)

HOLDOUT_EVERY = 4          # every 4th image of the sample is held out (25%)
MIN_HOLDOUT = 16
QUANT_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
KINDS = {"onnxruntime": "cpu", "openvino": "cpu", "tensorrt": "tensorrt", "fpga": "fpga"}
FALLBACK_KINDS = ("cpu", "tensorrt")
EVAL_CHUNK = 32
VIEWS = 2                  # views of each held-out image (see :func:`views`): as drawn, zoomed
VIEW_ZOOM = 0.8            # side of a zoomed view's crop, as a fraction of the image's


def kinds_for(targets: tuple[str, ...]) -> tuple[str, ...]:
    """The QDQ forms the targets need, in a fixed order."""
    wanted = {KINDS[t] for t in targets}
    return tuple(k for k in ("cpu", "tensorrt", "fpga") if k in wanted)


def split_sample(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ranges part, held-out part): every ``HOLDOUT_EVERY``-th image held out, or every 3rd or 2nd
    when that leaves fewer than ``MIN_HOLDOUT`` (the draw is round-robin over classes, so both parts
    keep the class mix)."""
    every = max(2, min(HOLDOUT_EVERY, len(batch) // MIN_HOLDOUT))
    held = np.arange(len(batch)) % every == every - 1
    return batch[~held], batch[held]


def views(batch: np.ndarray, count: int = VIEWS) -> np.ndarray:
    """``count`` views of each image of ``batch`` (N, C, H, W, preprocessed), in this order: as it is;
    a zoomed crop (``VIEW_ZOOM`` of each side, from the top-left corner) scaled back to H×W; the image
    mirrored; a zoomed crop from the bottom-right corner, mirrored. The views of image i are rows
    i, N + i, 2N + i, ...

    Raises:
        ValueError: ``count`` is not 1–4.
    """
    import cv2  # noqa: PLC0415

    if not 1 <= count <= 4:
        raise ValueError(f"held-out views: count must be 1-4, got {count}")
    n, c, h, w = batch.shape
    ch, cw = max(1, round(h * VIEW_ZOOM)), max(1, round(w * VIEW_ZOOM))

    def zoom(y: int, x: int) -> np.ndarray:
        hwc = np.ascontiguousarray(batch[:, :, y:y + ch, x:x + cw].transpose(0, 2, 3, 1))
        return np.stack([cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, c)
                         for img in hwc]).transpose(0, 3, 1, 2)

    makers = [lambda: batch, lambda: zoom(0, 0), lambda: batch[..., ::-1], lambda: zoom(h - ch, w - cw)[..., ::-1]]
    return np.ascontiguousarray(np.concatenate([make() for make in makers[:count]]), dtype=np.float32)


def run_model(path: str | Path, batch: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Logits of an ONNX model on ``batch`` with ONNX Runtime on the CPU."""
    session = _session(path, threads)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: batch[i:i + EVAL_CHUNK]})[0]
                           for i in range(0, len(batch), EVAL_CHUNK)])


def _session(path: str | Path, threads: int | None):
    import onnxruntime as ort  # noqa: PLC0415

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    # As the device runs it (edge's exact_int8 by default): no U8S8 saturation on a CPU without VNNI.
    if exact_int8(None):
        so.add_session_config_entry(X64_QUANT_PRECISION, "1")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def agreement(logits: np.ndarray, ref: np.ndarray) -> float:
    """Percent of images whose top-1 equals the reference's."""
    return float(np.mean(logits.argmax(1) == ref.argmax(1)) * 100.0)


def kl_divergence(logits: np.ndarray, ref: np.ndarray) -> float:
    """Mean KL(softmax(ref) || softmax(logits)) in nats."""
    def log_softmax(z):
        z = z.astype(np.float64) - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))
    lp, lq = log_softmax(ref), log_softmax(logits)
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1)))


@dataclass
class Models:
    """What the QDQ forms are made from: the FP32 model(s) and the ranges on them."""

    fp32: Path
    ranges: Ranges
    fpga_fp32: Path | None = None
    fpga_ranges: Ranges | None = None

    def build(self, kind: str, out: Path, exclude: tuple[str, ...] = ()) -> Path:
        if kind == "cpu":
            return qdq.cpu_qdq(self.fp32, out, self.ranges, exclude)
        if kind == "tensorrt":
            return qdq.tensorrt_qdq(self.fp32, out, self.ranges, exclude)
        return fpga.fpga_qdq(self.fpga_fp32 or self.fp32, out, self.fpga_ranges or self.ranges, exclude)


@dataclass
class Score:
    agreement: float
    kl: float

    def to_json(self) -> dict:
        return {"agreement": round(self.agreement, 3), "kl": round(self.kl, 6)}


class Evaluator:
    """Build a QDQ form in a scratch directory and score it against FP32 on the held-out images."""

    def __init__(self, held: np.ndarray, ref: np.ndarray, threads: int | None = None) -> None:
        self.held, self.ref, self.threads = held, ref, threads
        self._tmp = tempfile.TemporaryDirectory(prefix="gemsight-search-")
        self.builds = 0

    def __enter__(self) -> "Evaluator":
        return self

    def __exit__(self, *exc) -> None:
        self._tmp.cleanup()

    def score(self, models: Models, kind: str, exclude: tuple[str, ...] = ()) -> Score:
        path = Path(self._tmp.name) / f"{kind}-{self.builds}.onnx"
        self.builds += 1
        models.build(kind, path, exclude)
        logits = run_model(path, self.held, self.threads)
        path.unlink()
        return Score(agreement(logits, self.ref), kl_divergence(logits, self.ref))


@dataclass
class MethodSearch:
    chosen: str
    scores: dict[str, dict[str, Score]]          # method → kind → score
    ranges: dict[str, Ranges]
    fpga_ranges: dict[str, Ranges] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"chosen": self.chosen, "held_out_scores": {
            m: {k: s.to_json() for k, s in by_kind.items()} for m, by_kind in self.scores.items()}}


def search_method(fp32: Path, calib: np.ndarray, evaluator: Evaluator, input_name: str, kinds: tuple[str, ...],
                  fpga_fp32: Path | None = None, candidates: tuple[str, ...] = AUTO_CANDIDATES) -> MethodSearch:
    """Score every candidate method on every form; keep the best worst-form agreement.

    Ranges come from ``calib`` (the part of the sample not held out); ties in the worst agreement
    go to the better mean agreement, then the lower mean KL, then the earlier candidate.
    """
    started = time.perf_counter()
    ranges = candidate_ranges(fp32, calib, input_name, candidates)
    fpga_ranges = (candidate_ranges(fpga_fp32, calib, input_name, candidates)
                   if fpga_fp32 is not None and "fpga" in kinds else {})
    scores: dict[str, dict[str, Score]] = {}
    for m in candidates:
        models = Models(fp32, ranges[m], fpga_fp32, fpga_ranges.get(m))
        scores[m] = {k: evaluator.score(models, k) for k in kinds}
        logger.info("method %-16s %s", m, "  ".join(f"{k} {s.agreement:.2f}% kl {s.kl:.4f}"
                                                     for k, s in scores[m].items()))

    def key(m):
        s = list(scores[m].values())
        return (min(x.agreement for x in s), float(np.mean([x.agreement for x in s])),
                -float(np.mean([x.kl for x in s])), -candidates.index(m))
    chosen = max(candidates, key=key)
    logger.info("method search chose %s in %.1fs", chosen, time.perf_counter() - started)
    return MethodSearch(chosen, scores, ranges, fpga_ranges)


def quantizable_layers(fp32: str | Path, kind: str) -> list[str]:
    """Nodes that carry int8 weights in the form ``kind`` (the float head is not one of them)."""
    import onnx  # noqa: PLC0415

    model = onnx.load(str(fp32), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    head = set(qdq.output_nodes(fp32)) if kind in FALLBACK_KINDS else set()
    return [n.name for n in model.graph.node
            if n.op_type in QUANT_OPS and n.name and n.name not in head and any(i in inits for i in n.input[1:2])]


def sensitivity(models: Models, kind: str, evaluator: Evaluator, layers: list[str] | None = None,
                base: Score | None = None) -> tuple[Score, list[dict]]:
    """Each layer's effect: the form with only that layer left in float, all others int8.

    Returns:
        (the all-int8 score, one entry per layer sorted most sensitive first: layer, agreement,
        kl, gain_agreement (points), gain_kl (fraction of the all-int8 KL removed)).
    """
    layers = layers if layers is not None else quantizable_layers(models.fpga_fp32 or models.fp32
                                                                  if kind == "fpga" else models.fp32, kind)
    base = base or evaluator.score(models, kind)
    rows = []
    for layer in layers:
        s = evaluator.score(models, kind, (layer,))
        rows.append({"layer": layer, **s.to_json(), "gain_agreement": round(s.agreement - base.agreement, 3),
                     "gain_kl": round((base.kl - s.kl) / base.kl, 4) if base.kl > 0 else 0.0})
    rows.sort(key=lambda r: (-r["gain_kl"], -r["gain_agreement"]))
    return base, rows


def fallback(models: Models, kind: str, evaluator: Evaluator, ranked: list[str], target: float,
             base: Score | None = None) -> tuple[list[str], Score, bool]:
    """The layers to leave in float so the held-out agreement reaches ``target`` percent.

    Greedy in the order of ``ranked`` (most sensitive first), then pruned: a layer is put back into
    int8 whenever the target still holds without it, so the set is minimal in that no single layer
    can leave it.

    Returns:
        (layers in float, their score, whether the target was reached).
    """
    score = base or evaluator.score(models, kind)
    chosen: list[str] = []
    for layer in ranked:
        if score.agreement >= target:
            break
        chosen.append(layer)
        score = evaluator.score(models, kind, tuple(chosen))
    if score.agreement < target:
        return chosen, score, False
    for layer in list(reversed(chosen)):
        trial = [c for c in chosen if c != layer]
        s = evaluator.score(models, kind, tuple(trial))
        if s.agreement >= target:
            chosen, score = trial, s
    return chosen, score, True


def speed_cost(models: Models, exclude: list[str], batch: np.ndarray, iters: int,
               throughput: Callable, threads: int | None = None) -> dict:
    """Images/s of the all-int8 CPU model, the mixed model, and the all-int8 model with each
    fallback layer alone in float (ONNX Runtime on this CPU, batch 1 and 8)."""
    def speed(path):
        session = _session(path, threads)
        name = session.get_inputs()[0].name
        run = lambda x: session.run(None, {name: x})[0]  # noqa: E731
        return {f"b{bs}": round(throughput(run, batch, bs, iters), 2) for bs in (1, 8)}
    out = {}
    with tempfile.TemporaryDirectory(prefix="gemsight-speed-") as tmp:
        variants = {"int8": (), "mixed": tuple(exclude), **{f"float:{layer}": (layer,) for layer in exclude}}
        for label, ex in variants.items():
            path = models.build("cpu", Path(tmp) / "m.onnx", ex)
            out[label] = speed(path)
        out["fp32"] = speed(models.fp32)
    return out


def plot_sensitivity(rows_by_kind: dict[str, list[dict]], fallback_by_kind: dict[str, list[str]],
                     path: Path) -> Path | None:
    """A bar chart of each layer's sensitivity per form (PNG); None when matplotlib is missing."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        logger.warning("matplotlib is not installed; report.md gets the sensitivity as a table only")
        return None
    kinds = [k for k, rows in rows_by_kind.items() if rows]
    if not kinds:
        return None
    order = [r["layer"] for r in rows_by_kind[kinds[0]]]
    def short(name):  # "/layer2/layer2.0/conv1/Conv" → "layer2.0/conv1"
        parts = [p for p in name.strip("/").split("/") if p not in ("Conv", "Gemm", "MatMul")]
        return "/".join(parts[-2:]) or name
    fig, axes = plt.subplots(len(kinds), 1, figsize=(max(6.0, 0.32 * len(order) + 2), 3.4 * len(kinds)),
                             squeeze=False, layout="constrained")
    for ax, kind in zip(axes[:, 0], kinds):
        by_layer = {r["layer"]: r for r in rows_by_kind[kind]}
        names = [n for n in order if n in by_layer] + [n for n in by_layer if n not in order]
        values = [100 * by_layer[n]["gain_kl"] for n in names]
        colours = ["tab:red" if n in fallback_by_kind.get(kind, []) else "tab:blue" for n in names]
        ax.bar(range(len(names)), values, color=colours)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([short(n) for n in names], rotation=90, fontsize=6)
        ax.set_ylabel("% of KL removed")
        ax.set_title(f"{kind}: layer left in float, all others int8 (red: fallback set)", fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
