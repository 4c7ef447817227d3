"""Evaluate a trained model (checkpoint or ONNX) on labelled photos and compute the report metrics.

ONNX models run through :func:`edge.runtimes.registry.create_runtime` and
:func:`edge.preprocess.preprocess_batch`, exactly as on the device; checkpoints through PyTorch with
the same preprocessing.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge.errors import ConfigError, DataError, ManifestError
from edge.manifest import Manifest
from edge.preprocess import load_image, preprocess_batch

from trainer.data import load_eval_set
from trainer.misses import for_report, list_misses, plot_misses, softmax, writable

logger = logging.getLogger(__name__)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """``K x K`` counts, rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def classification_report(confusion: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support from a confusion matrix.

    Classes with no validation image are left out of the macro average (their F1 is undefined).
    """
    cm = np.asarray(confusion, np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    total = cm.sum()
    present = support > 0
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "images": int(total),
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, name in enumerate(classes)},
        "confusion_matrix": confusion.astype(np.int64).tolist(),
        "classes": list(classes),
    }


def _runtime_predictor(path: Path, runtime_name: str, threads: int | None
                       ) -> tuple[Manifest, Callable[[np.ndarray], np.ndarray], Any]:
    from edge.runtimes.registry import create_runtime  # noqa: PLC0415

    runtime = create_runtime(runtime_name, path, **({"threads": threads} if threads else {}))
    return runtime.manifest, runtime, runtime


def _checkpoint_predictor(path: Path) -> tuple[Manifest, Callable[[np.ndarray], np.ndarray], Any]:
    import torch  # noqa: PLC0415

    from trainer.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: PLC0415

    ckpt = load_checkpoint(path)
    model, manifest = model_from_checkpoint(ckpt, str(path))

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).float().numpy()

    return manifest, predict, None


def evaluate_model(model_path: str | Path, data_dir: str | Path, batch_size: int = 32, *,
                   threads: int | None = None, runtime: str = "onnxruntime", misses: int = 48,
                   misses_png: str | Path | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class metrics and confusion matrix of a model on labelled photos.

    Args:
        model_path: a gemsight checkpoint (``.pt``), an ONNX model with its manifest (``.onnx``; a model
            directory means its FP32 ``model.onnx``), or another artifact ``runtime`` loads (OpenVINO ``.xml``).
        data_dir: image-folder layout or CSV (``DIR/val`` is used when ``DIR`` has ``train``/``val``).
        batch_size: images per inference call.
        threads: runtime intra-op threads (default: all cores).
        runtime: the edge runtime that runs non-checkpoint models, exactly as on a device.
        misses: how many of the photos the model gets wrong to list (surest first; ``0``: none).
        misses_png: draw those misses in this PNG (nothing is written when there are none).

    Returns:
        The report dict (:func:`classification_report` plus ``model``, ``data``, ``skipped``,
        ``seconds``, ``backend``, ``missed`` and ``misses``: :func:`trainer.misses.list_misses`, paths
        relative to ``data_dir``).

    Raises:
        ConfigError: an unknown model file type, a bad batch size, a negative ``misses`` or a ``misses_png``
            that cannot be written.
        ManifestError: an ONNX model without a readable manifest.
        DataError: no usable image, or a class the model does not know.
    """
    path = Path(model_path)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if misses < 0:
        raise ConfigError(f"--misses must not be negative, got {misses}")
    if misses_png is not None:
        try:
            writable(misses_png, "--misses-png")   # before the evaluation, not after it
        except DataError as exc:
            raise ConfigError(str(exc)) from exc
    if path.is_dir():
        path = path / "model.onnx"
    if not path.exists():
        raise ConfigError(f"{path}: model file not found")
    if path.suffix in (".pt", ".pth"):
        manifest, predict, closer = _checkpoint_predictor(path)
        backend = "pytorch"
    elif path.suffix in (".onnx", ".xml"):
        manifest, predict, closer = _runtime_predictor(path, runtime, threads)
        backend = runtime
    else:
        raise ConfigError(f"{path}: expected a .pt checkpoint, an .onnx model or an OpenVINO .xml")
    samples, skipped = load_eval_set(data_dir, manifest.classes)
    start = time.perf_counter()
    y_true, probs = [], []
    try:
        for i in range(0, len(samples), batch_size):
            chunk = samples[i:i + batch_size]
            batch = preprocess_batch([load_image(p) for p, _ in chunk], manifest.input)
            logits = predict(batch)
            if logits.shape != (len(chunk), manifest.num_classes):
                raise ManifestError(f"{path}: output shape {logits.shape}, "
                                    f"expected ({len(chunk)}, {manifest.num_classes})")
            probs.append(softmax(logits))
            y_true.extend(label for _, label in chunk)
    finally:
        if closer is not None:
            closer.close()
    seconds = time.perf_counter() - start
    if not y_true:
        raise DataError(f"{data_dir}: nothing was evaluated")
    probs = np.concatenate(probs)
    y_pred = probs.argmax(axis=1)
    report = classification_report(confusion_matrix(y_true, y_pred, manifest.num_classes), manifest.classes)
    found = list_misses([p for p, _ in samples], y_true, probs, manifest.classes, misses)
    missed = int(np.count_nonzero(y_pred != np.asarray(y_true)))
    report.update({"model": str(path), "backend": backend, "data": str(data_dir), "skipped": skipped,
                   "seconds": round(seconds, 3), "images_per_s": round(len(samples) / max(seconds, 1e-9), 1),
                   "missed": missed, "misses": for_report(found, data_dir)})
    logger.info("%s on %s: accuracy %.4f, macro-F1 %.4f over %d images (%d skipped)", path.name, data_dir,
                report["accuracy"], report["macro_f1"], report["images"], len(skipped))
    if misses_png is not None and found:
        plot_misses(found, misses_png, total=missed, images=len(y_true))
    return report
