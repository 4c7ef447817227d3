"""Datasets: find labelled photos (image folders or a CSV), check every file once, split, load.

Layouts accepted for ``DIR``:

* ``DIR/<class>/*`` (validation split off with ``val_split``),
* ``DIR/train/<class>/*`` and ``DIR/val/<class>/*``,
* a CSV file of ``path,label`` rows (paths relative to the CSV's folder; a ``path,label`` header is
  optional).

Every file is decoded once up front with :func:`edge.preprocess.load_image` so that unreadable,
truncated or non-image files are listed (log and ``report.json``) before training starts, not
discovered mid-epoch.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edge.errors import ConfigError, DataError
from edge.contracts import COLLECT_MANIFEST
from edge.preprocess import load_image

logger = logging.getLogger(__name__)

Sample = tuple[Path, int]


@dataclass
class LabelledFiles:
    """Files with class names, before they are checked. ``folders`` maps class → its folder (if any)."""

    items: list[tuple[Path, str]]
    classes: list[str]
    folders: dict[str, Path] = field(default_factory=dict)
    source: str = ""


@dataclass
class DatasetSplit:
    """A checked dataset: class names in output order, train/val samples, the files left out."""

    classes: tuple[str, ...]
    train: list[Sample]
    val: list[Sample]
    skipped: list[dict[str, str]]
    digest: str
    sources: list[dict] = field(default_factory=list)   # photos per source (trainer.finetune.load_sources)

    def counts(self, which: str = "train") -> list[int]:
        """Images per class in ``train`` or ``val``."""
        counts = [0] * len(self.classes)
        for _, label in getattr(self, which):
            counts[label] += 1
        return counts


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def read_folder(folder: Path) -> LabelledFiles:
    """``folder/<class>/*``: every visible file of every class folder (checked later, not by suffix)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found")
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))
    items: list[tuple[Path, str]] = []
    for d in class_dirs:
        items.extend((p, d.name) for p in sorted(d.iterdir()) if p.is_file() and _visible(p))
    # A folder of collected crops (gemsight-deploy pull-crops) has its manifest beside the class folders.
    stray = [p.name for p in folder.iterdir() if p.is_file() and _visible(p) and p.name != COLLECT_MANIFEST]
    if stray:
        logger.warning("%s: ignoring %d file(s) outside class folders (e.g. %s)", folder, len(stray), stray[0])
    return LabelledFiles(items, [d.name for d in class_dirs], {d.name: d for d in class_dirs}, str(folder))


def read_csv(path: Path) -> LabelledFiles:
    """A CSV of ``path,label`` rows; relative paths are taken from the CSV's folder."""
    if not path.is_file():
        raise DataError(f"{path}: CSV file not found")
    items: list[tuple[Path, str]] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 2 or not row[1].strip():
                raise DataError(f"{path}:{lineno}: expected 'path,label', got {','.join(row)!r}")
            p, label = row[0].strip(), row[1].strip()
            if lineno == 1 and (p.lower(), label.lower()) == ("path", "label"):
                continue
            file = Path(p) if Path(p).is_absolute() else path.parent / p
            items.append((file, label))
    return LabelledFiles(items, sorted({label for _, label in items}), {}, str(path))


def read_source(path: str | Path) -> LabelledFiles:
    """A folder of class folders, or a CSV file."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_csv(path)
    return read_folder(path)


def _check_one(path: Path) -> tuple[str | None, bytes]:
    """Decode one file; return (reason it is unusable or None, its content digest)."""
    try:
        load_image(path)
    except DataError as exc:
        return str(exc).removeprefix(f"{path}: "), b""
    except Exception as exc:  # a decoder crash on a hostile file must not stop the scan
        return f"{type(exc).__name__}: {exc}", b""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return None, h.digest()


def scan(files: LabelledFiles, workers: int | None = None) -> tuple[list[tuple[Path, str]], list[dict[str, str]],
                                                                      dict[Path, bytes]]:
    """Decode every file once. Returns (usable items, skipped [{path, reason}], digest per usable file)."""
    workers = workers or min(8, os.cpu_count() or 1)
    # OpenCV decodes without the GIL, so threads scale across cores.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(_check_one, [p for p, _ in files.items]))
    good, skipped, digests = [], [], {}
    for (path, label), (reason, digest) in zip(files.items, results):
        if reason is None:
            good.append((path, label))
            digests[path] = digest
        else:
            skipped.append({"path": str(path), "label": label, "reason": reason})
            logger.warning("skipping %s: %s", path, reason)
    return good, skipped, digests


def _require_usable(files: LabelledFiles, good: list[tuple[Path, str]], role: str) -> None:
    present = {label for _, label in good}
    for name in files.classes:
        if name not in present:
            where = files.folders.get(name, f"label '{name}' in {files.source}")
            raise DataError(f"{where}: {role} class '{name}' has no usable image")


def stratified_split(items: Sequence[tuple[Path, str]], fraction: float, seed: int
                     ) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Split each class by ``fraction`` (at least one image stays in training)."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[tuple[Path, str]]] = {}
    for item in items:
        by_class.setdefault(item[1], []).append(item)
    train, val = [], []
    for name in sorted(by_class):
        group = by_class[name]
        order = rng.permutation(len(group))
        n_val = min(len(group) - 1, int(round(len(group) * fraction)))
        val.extend(group[i] for i in order[:n_val])
        train.extend(group[i] for i in order[n_val:])
    return train, val


def _digest(classes: Sequence[str], parts: dict[str, list[tuple[Path, str]]], digests: dict[Path, bytes]) -> str:
    """SHA-256 over class names and, per split, each file's label and content (not its location)."""
    h = hashlib.sha256("\n".join(classes).encode())
    for role in sorted(parts):
        for path, label in sorted(parts[role], key=lambda item: (item[1], digests[item[0]])):
            h.update(f"{role}:{label}:".encode() + digests[path])
    return h.hexdigest()


def load_dataset(data: str | Path, *, val: str | Path | None = None, val_split: float = 0.2, seed: int = 0,
                 workers: int | None = None) -> DatasetSplit:
    """Find, check and split a training set.

    Args:
        data: ``DIR`` (class folders, or ``train``/``val`` folders) or a CSV of ``path,label``.
        val: a separate validation folder or CSV (overrides ``DIR/val`` and ``val_split``).
        val_split: fraction of each class held out when there is no separate validation set.
        seed: seed of the split.
        workers: threads for the up-front decode check.

    Raises:
        DataError: a class with no usable image, a validation class unknown to training, fewer than
            two classes, no images at all; the message names the folder or class.
        ConfigError: ``val_split`` outside (0, 1) where a split is needed.
    """
    data = Path(data)
    if val is None and data.is_dir() and (data / "train").is_dir() and (data / "val").is_dir():
        train_files, val_files = read_folder(data / "train"), read_folder(data / "val")
    else:
        train_files = read_source(data)
        val_files = read_source(val) if val is not None else None
    if len(train_files.classes) < 2:
        raise DataError(f"{train_files.source}: need at least 2 classes to train, found "
                        f"{len(train_files.classes)} ({', '.join(train_files.classes) or 'none'})")
    if val_files is not None:
        unknown = [c for c in val_files.classes if c not in train_files.classes]
        if unknown:
            raise DataError(f"{val_files.source}: validation class '{unknown[0]}' is not in the training set "
                            f"({train_files.source} has {', '.join(train_files.classes)})")
    logger.info("checking %d training file(s) in %s", len(train_files.items), train_files.source)
    good, skipped, digests = scan(train_files, workers)
    _require_usable(train_files, good, "training")
    if val_files is not None:
        logger.info("checking %d validation file(s) in %s", len(val_files.items), val_files.source)
        val_good, val_skipped, val_digests = scan(val_files, workers)
        _require_usable(val_files, val_good, "validation")
        skipped += val_skipped
        digests.update(val_digests)
        train_items, val_items = good, val_good
    else:
        if not 0.0 < val_split < 1.0:
            raise ConfigError(f"--val-split must be between 0 and 1 when there is no validation set, got {val_split}")
        train_items, val_items = stratified_split(good, val_split, seed)
        if not val_items:
            raise DataError(f"{train_files.source}: too few images to hold out a validation set")
    classes = tuple(train_files.classes)
    index = {name: i for i, name in enumerate(classes)}
    split = DatasetSplit(
        classes=classes,
        train=[(p, index[c]) for p, c in train_items],
        val=[(p, index[c]) for p, c in val_items],
        skipped=skipped,
        digest=_digest(classes, {"train": train_items, "val": val_items}, digests),
    )
    logger.info("dataset: %d classes, %d training and %d validation images, %d file(s) skipped",
                len(classes), len(split.train), len(split.val), len(skipped))
    return split


def load_eval_set(data: str | Path, classes: Sequence[str], workers: int | None = None
                  ) -> tuple[list[Sample], list[dict[str, str]]]:
    """Labelled images for evaluating a model with ``classes`` (``DIR/val`` is used when present).

    Raises:
        DataError: a class the model does not know, or no usable image; the message names it.
    """
    data = Path(data)
    if data.is_dir() and (data / "val").is_dir() and (data / "train").is_dir():
        logger.info("%s has train/ and val/: evaluating on %s", data, data / "val")
        data = data / "val"
    files = read_source(data)
    unknown = [c for c in files.classes if c not in classes]
    if unknown:
        raise DataError(f"{data}: class '{unknown[0]}' is not one of the model's classes ({', '.join(classes)})")
    good, skipped, _ = scan(files, workers)
    if not good:
        raise DataError(f"{data}: no usable image to evaluate on")
    index = {name: i for i, name in enumerate(classes)}
    return [(p, index[c]) for p, c in good], skipped


def class_weights(counts: Sequence[int], spec: str = "auto") -> list[float]:
    """Cross-entropy weights: ``auto`` = N / (K * n_c) (inverse frequency), ``none`` = 1, or ``w1,w2,...``.

    Raises:
        ConfigError: a list of the wrong length, or a value that is not a positive number.
    """
    k = len(counts)
    if spec == "none":
        return [1.0] * k
    if spec == "auto":
        total = float(sum(counts))
        return [total / (k * n) if n else 0.0 for n in counts]
    try:
        weights = [float(w) for w in spec.split(",")]
    except ValueError as exc:
        raise ConfigError(f"--class-weights: expected auto, none or {k} comma-separated numbers, got {spec!r}") from exc
    if len(weights) != k or any(w <= 0 for w in weights):
        raise ConfigError(f"--class-weights: expected {k} positive numbers (one per class), got {spec!r}")
    return weights


class ImageDataset:
    """A map-style dataset (works with ``torch.utils.data.DataLoader``): ``(tensor, label)`` per sample.

    Args:
        samples: (path, label index) pairs, already checked by :func:`load_dataset`.
        transform: BGR uint8 image → ``3 x H x W`` float32 array.
        prepare: applied once to each decoded image before ``transform`` (the resize to the model's input);
            with ``cache``, its result is kept in memory, so later epochs neither read nor decode the file.
            ``transform`` must give the same result on the prepared image as on the original (the
            recipe's transforms start with that same resize, which leaves an image of the input size as is).
        cache: keep prepared images in memory (per process: each data-loading worker keeps its own).
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable[[np.ndarray], np.ndarray], *,
                 prepare: Callable[[np.ndarray], np.ndarray] | None = None, cache: bool = False) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.prepare = prepare
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def _image(self, index: int) -> np.ndarray:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image = load_image(self.samples[index][0])
        if self.prepare is not None:
            image = self.prepare(image)
        if self._cache is not None:
            self._cache[index] = image
        return image

    def __getitem__(self, index: int):
        import torch  # noqa: PLC0415 - keeps this module importable for listing data without torch

        return torch.from_numpy(self.transform(self._image(index))), self.samples[index][1]
