"""Calibration and validation images: chosen deterministically, loaded through edge's preprocessing.

The calibration sample is stratified by class when the folder has class sub-folders (round-robin
over classes, each class in a seeded shuffle, so a rare class is represented and the same folder
always gives the same sample). Corrupt images are skipped, listed, and replaced by the next
candidate of the same draw. The file list and a digest over names and contents are recorded.
"""
from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.errors import CalibrationError, DataError
from edge.manifest import InputSpec, file_digest
from edge.preprocess import list_images, load_image, preprocess_batch

logger = logging.getLogger(__name__)

MIN_IMAGES = 32
SEED = 0


@dataclass
class ImageSet:
    """Preprocessed images with where they came from."""

    root: Path
    batch: np.ndarray                      # N x 3 x H x W float32
    files: list[Path]                      # absolute paths, in batch order
    file_digests: list[str]
    labels: np.ndarray | None = None       # class index per image (validation sets)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    stratified: bool = False

    @property
    def digest(self) -> str:
        """SHA-256 over (relative path, file SHA-256) of every image, in order."""
        h = hashlib.sha256()
        for path, digest in zip(self.files, self.file_digests):
            h.update(f"{self._rel(path)}\0{digest}\n".encode())
        return h.hexdigest()

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def describe(self) -> dict:
        """What calibration.json records about this set."""
        return {
            "root": str(self.root),
            "count": len(self.files),
            "stratified": self.stratified,
            "digest": self.digest,
            "images": [{"path": self._rel(p), "sha256": d} for p, d in zip(self.files, self.file_digests)],
            "skipped": [{"path": self._rel(p), "reason": r} for p, r in self.skipped],
        }


def class_folders(root: Path) -> dict[str, list[Path]]:
    """Sub-folder name → its images (only folders that hold images); ``{}`` for a flat folder."""
    groups = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = list_images(sub)
        if images:
            groups[sub.name] = images
    return groups


def candidate_order(root: str | Path, seed: int = SEED) -> tuple[list[Path], bool]:
    """Every image under ``root`` in the deterministic order the sample draws them.

    Returns:
        (paths, stratified): with class folders, a round-robin over the classes (sorted by name),
        each class seeded-shuffled; images directly in ``root`` count as one more group.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    groups = class_folders(root)
    top = list_images(root)
    if not groups:
        ordered = list(top)
        random.Random(f"{seed}:.").shuffle(ordered)
        return ordered, False
    if top:
        groups["."] = top
    shuffled = []
    for name in sorted(groups):
        items = list(groups[name])
        random.Random(f"{seed}:{name}").shuffle(items)
        shuffled.append(items)
    ordered = []
    for i in range(max(len(g) for g in shuffled)):
        ordered.extend(g[i] for g in shuffled if i < len(g))
    return ordered, True


def _load_into(paths: list[Path], spec: InputSpec,
               count: int | None) -> tuple[np.ndarray, list[Path], list[tuple[Path, str]]]:
    """Load and preprocess paths in order until ``count`` good ones (all if ``None``)."""
    h, w = spec.size
    wanted = len(paths) if count is None else min(count, len(paths))
    out = np.empty((wanted, 3, h, w), np.float32)
    good: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        if len(good) == wanted:
            break
        try:
            image = load_image(path)
        except DataError as exc:
            logger.warning("skipping unreadable image %s", exc)
            skipped.append((path, str(exc).removeprefix(f"{path}: ")))
            continue
        out[len(good)] = preprocess_batch([image], spec)[0]
        good.append(path)
    return out[:len(good)], good, skipped


def load_calibration_set(root: str | Path, spec: InputSpec, count: int, seed: int = SEED,
                         min_images: int = MIN_IMAGES) -> ImageSet:
    """The calibration sample: ``count`` images drawn as :func:`candidate_order` says.

    Raises:
        CalibrationError: fewer than ``min_images`` readable images (fewer than ``count`` only warns).
        DataError: the folder does not exist.
    """
    root = Path(root)
    if count < min_images:
        raise CalibrationError(f"--count {count} is too small: calibration needs at least {min_images} images")
    order, stratified = candidate_order(root, seed)
    batch, files, skipped = _load_into(order, spec, count)
    if skipped:
        logger.warning("skipped %d unreadable calibration image(s): %s", len(skipped),
                       ", ".join(str(p) for p, _ in skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
    if len(files) < min_images:
        raise CalibrationError(
            f"{root}: only {len(files)} readable calibration image(s) (at least {min_images} needed"
            f"{f', {len(skipped)} unreadable' if skipped else ''})")
    if len(files) < count:
        logger.warning("only %d calibration images in %s (asked for --count %d); using them all",
                       len(files), root, count)
    logger.info("calibration sample: %d images from %s%s", len(files), root,
                " (stratified by class folder)" if stratified else "")
    return ImageSet(root, batch, files, [file_digest(p) for p in files], None, skipped, stratified)


def load_labelled_set(root: str | Path, spec: InputSpec, classes: tuple[str, ...]) -> ImageSet:
    """A validation set: every image in ``root/<class>/``, labelled by folder name.

    Raises:
        DataError: no class folders, or a folder name that is not one of the manifest's classes.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: validation folder not found")
    groups = class_folders(root)
    if not groups:
        raise DataError(f"{root}: a validation set needs one folder per class ({', '.join(classes)})")
    unknown = sorted(set(groups) - set(classes))
    if unknown:
        raise DataError(f"{root}: folder(s) {', '.join(unknown)} are not classes of this model "
                        f"({', '.join(classes)})")
    paths, labels = [], []
    for name, images in groups.items():
        paths.extend(images)
        labels.extend([classes.index(name)] * len(images))
    batch, files, skipped = _load_into(paths, spec, None)
    label_of = dict(zip(paths, labels))
    if not files:
        raise DataError(f"{root}: no readable validation images")
    if skipped:
        logger.warning("skipped %d unreadable validation image(s)", len(skipped))
    return ImageSet(root, batch, files, [file_digest(p) for p in files],
                    np.array([label_of[p] for p in files], np.int64), skipped, True)
