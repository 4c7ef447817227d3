"""The validation photos a model gets wrong: what it calls them, and the training photo each looks most like.

A per-class recall says *that* a class is weak; the misses say *which* photos, and the nearest training
photo (by the features the model's last layer reads) shows *why*, to whoever looks at the pair: on the
real-photo benchmark the missed necklaces are wire collars shot whole, and their nearest training photos
chain bracelets shot whole, with the same silhouette. (The neighbour's label alone says little: a misread
photo's features lie among the class it was called.)

``report.json`` lists them (``misses``, most confident first) and ``misses.png`` shows each beside its
nearest training photo; ``gemsight-train evaluate --misses-png`` draws the same sheet for any model the
edge runs (without the nearest photo: a runtime gives logits, not features).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np

from edge.errors import DataError
from edge.preprocess import load_image

logger = logging.getLogger(__name__)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
THUMB = 112        # thumbnail side in the sheet, pixels
PER_ROW = 4        # misses per row of the sheet


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``N x K`` logits, in float64."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def shown_path(path: str | Path, root: str | Path | None) -> str:
    """``path`` relative to ``root`` when it lies under it (so a report reads the same on any machine)."""
    path = Path(path)
    if root is not None:
        try:
            return path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def list_misses(paths: Sequence[str | Path], labels: Sequence[int], probs: np.ndarray, classes: Sequence[str],
                limit: int) -> list[dict[str, Any]]:
    """The ``limit`` misses the model is surest of, surest first (ties in input order).

    Each is ``{"index", "path", "label", "predicted", "confidence", "label_probability"}``, where
    ``confidence`` is the probability of the predicted class and ``index`` the photo's position in
    ``paths``.

    Raises:
        DataError: ``paths``, ``labels`` and ``probs`` of different lengths, or ``probs`` not ``N x classes``.
    """
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    if probs.ndim != 2 or probs.shape[1] != len(classes) or not len(paths) == len(labels) == len(probs):
        raise DataError(f"misses: {len(paths)} paths, {len(labels)} labels and probabilities of shape "
                        f"{probs.shape} do not match {len(classes)} classes")
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:max(limit, 0)]
    return [{"index": int(i), "path": str(paths[i]), "label": classes[labels[i]], "predicted": classes[predicted[i]],
             "confidence": round(float(probs[i, predicted[i]]), 4),
             "label_probability": round(float(probs[i, labels[i]]), 4)} for i in order]


def add_nearest(misses: list[dict[str, Any]], features: np.ndarray, train_features: Iterable[np.ndarray],
                train_paths: Sequence[str | Path], train_labels: Sequence[int], classes: Sequence[str]) -> None:
    """Give each miss ``nearest_train``: the training photo whose features are closest (cosine similarity).

    ``features`` are the validation photos' (row ``miss["index"]``); ``train_features`` the training photos'
    in batches, in the order of ``train_paths`` (one pass, so no more than a batch of them is held at once).
    """
    if not misses:
        return
    query = _unit(features[[m["index"] for m in misses]])
    best_sim = np.full(len(misses), -np.inf, np.float32)
    best = np.zeros(len(misses), np.int64)
    start = 0
    for batch in train_features:
        sims = query @ _unit(batch).T
        top = sims.argmax(axis=1)
        value = sims[np.arange(len(misses)), top]
        better = value > best_sim
        best_sim[better], best[better] = value[better], start + top[better]
        start += len(batch)
    if start != len(train_paths):
        raise DataError(f"misses: features of {start} training photos for {len(train_paths)} paths")
    for miss, j, sim in zip(misses, best, best_sim):
        if np.isfinite(sim):
            miss["nearest_train"] = {"path": str(train_paths[j]), "label": classes[train_labels[j]],
                                     "similarity": round(float(sim), 4)}


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def for_report(misses: list[dict[str, Any]], data: str | Path | None) -> list[dict[str, Any]]:
    """The misses as ``report.json`` keeps them: paths relative to the data (a folder, or a CSV's folder), no
    internal index."""
    root = None if data is None else Path(data).parent if Path(data).is_file() else Path(data)
    out = []
    for miss in misses:
        entry = {k: v for k, v in miss.items() if k != "index"}
        entry["path"] = shown_path(miss["path"], root)
        if "nearest_train" in miss:
            entry["nearest_train"] = {**miss["nearest_train"], "path": shown_path(miss["nearest_train"]["path"], root)}
        out.append(entry)
    return out


def _thumb(path: str | Path) -> np.ndarray:
    image = load_image(path)
    h, w = image.shape[:2]
    scale = THUMB / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    out = np.full((THUMB, THUMB, 3), 255, np.uint8)
    y, x = (THUMB - small.shape[0]) // 2, (THUMB - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


def plot_misses(misses: Sequence[dict[str, Any]], path: str | Path, *, total: int, images: int) -> Path:
    """A PNG of the misses, surest first: each photo with "true > predicted (confidence)" under it and, when
    the misses have ``nearest_train``, the nearest training photo beside it with its class and similarity.

    Args:
        misses: from :func:`list_misses` (paths as loadable files).
        path: where to write the PNG.
        total: how many photos were missed in all (the sheet may show fewer).
        images: how many photos were evaluated.

    Raises:
        DataError: no misses to draw, a photo that cannot be read, or a PNG that cannot be written (its folder
            cannot be made, or it is a folder).
    """
    if not misses:
        raise DataError(f"{path}: no misses to draw")
    pair = all("nearest_train" in m for m in misses)
    gap, text_h, head = 6, 36, 34
    cell_w = THUMB * (2 if pair else 1) + (gap if pair else 0)
    cols = min(PER_ROW if pair else 2 * PER_ROW, len(misses))
    rows = math.ceil(len(misses) / cols)
    sheet = np.full((head + rows * (THUMB + text_h + gap), gap + cols * (cell_w + 2 * gap), 3), 245, np.uint8)
    title = f"{total} of {images} validation photos missed" + \
        (f", the {len(misses)} the model is surest of" if len(misses) < total else "") + ", surest first" + \
        ("; right of each: its nearest training photo" if pair else "")
    cv2.putText(sheet, title, (8, 22), _FONT, 0.5, (40, 40, 40), 1, cv2.LINE_AA)
    for n, miss in enumerate(misses):
        r, c = divmod(n, cols)
        x, y = gap + c * (cell_w + 2 * gap), head + r * (THUMB + text_h + gap)
        sheet[y:y + THUMB, x:x + THUMB] = _thumb(miss["path"])
        cv2.putText(sheet, f"{miss['label']} > {miss['predicted']}", (x, y + THUMB + 14), _FONT, 0.42, (0, 0, 170),
                    1, cv2.LINE_AA)
        cv2.putText(sheet, f"{miss['confidence']:.0%}", (x, y + THUMB + 30), _FONT, 0.42, (60, 60, 60), 1, cv2.LINE_AA)
        if pair:
            near = miss["nearest_train"]
            nx = x + THUMB + gap
            sheet[y:y + THUMB, nx:nx + THUMB] = _thumb(near["path"])
            cv2.putText(sheet, f"train: {near['label']}", (nx, y + THUMB + 14), _FONT, 0.42, (0, 110, 0), 1,
                        cv2.LINE_AA)
            cv2.putText(sheet, f"sim {near['similarity']:.2f}", (nx, y + THUMB + 30), _FONT, 0.42, (60, 60, 60), 1,
                        cv2.LINE_AA)
    path = writable(path, "misses sheet")
    if not cv2.imwrite(str(path), sheet):
        raise DataError(f"{path}: cannot write PNG")
    logger.info("%d misses drawn in %s", len(misses), path)
    return path


def writable(path: str | Path, what: str) -> Path:
    """``path`` with its folder made, checked before any work is done for it.

    Raises:
        DataError: the folder cannot be made, or ``path`` is a folder (the message names ``what`` and the path).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{what} {path}: cannot make its folder ({exc.strerror or exc})") from exc
    if path.is_dir():
        raise DataError(f"{what} {path}: is a folder, not a file")
    return path


def outputs(model, loader, device) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per batch of ``loader``, in order: softmax probabilities and the features the model's last linear layer
    reads (float64 and float32 arrays)."""
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    from trainer.epoch import to_device  # noqa: PLC0415
    from trainer.recipe import head_output  # noqa: PLC0415

    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise DataError(f"{type(model).__name__}: no linear layer to read features from")
    seen: list[torch.Tensor] = []
    handle = last[-1].register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].flatten(1)))
    model.eval()
    try:
        with torch.inference_mode():
            for images, _ in loader:
                logits = head_output(model(to_device(images, device))).float()
                features = seen.pop().float().cpu().numpy()
                yield torch.softmax(logits, dim=1).double().cpu().numpy(), features
    finally:
        handle.remove()


def model_outputs(model, loader, device) -> tuple[np.ndarray, np.ndarray]:
    """:func:`outputs` of every batch, stacked: ``N x K`` probabilities and ``N x D`` features."""
    probs, features = zip(*outputs(model, loader, device))
    return np.concatenate(probs), np.concatenate(features)
