"""The synthetic display-case generator: image-folder datasets, case videos and pictures of both.

Tests, the demo and the benchmarks make their own data here instead of downloading any. Output is
deterministic: each image's generator is seeded from ``(seed, class index, image index)``, so the
same arguments give byte-identical files whatever the number of worker processes.

Public API::

    DEFAULT_CLASSES
    render_item(cls, rng, size)                # one slot, BGR uint8
    make_images(out, classes, per_class, size, val_fraction, seed, workers)   # OUT/{train,val}/<class>/*.jpg
    make_video(out, slots, seconds, fps, size, seed, classes)                 # .mp4 + .slots.yaml + .truth.jsonl
    contact_sheet(dataset_dir, out_png, per_class)
    preview_frame(video, slots_yaml, out_png, frame_index)

The modules: ``paint`` (drawing primitives), ``items`` (one drawer per class), ``tray`` (linings,
light, glass, sensor), ``render`` (one slot), ``hands`` (hands over the case), ``video`` (the case
video), ``preview`` (contact sheets and annotated frames), ``cli`` (``gemsight-synth``).
"""
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edge.contracts import DEFAULT_CLASSES
from edge.errors import ConfigError
from trainer.synth.preview import contact_sheet, preview_frame
from trainer.synth.render import MIN_SIZE, check_class, render_item
from trainer.synth.video import make_video

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_CLASSES", "render_item", "make_images", "make_video", "contact_sheet", "preview_frame",
           "image_rng", "encode_jpeg", "split_counts"]

GENERATOR_VERSION = 1


def image_rng(seed: int, class_index: int, image_index: int) -> np.random.Generator:
    """The generator for one dataset image: independent of how the work is split across processes."""
    return np.random.default_rng([int(seed), int(class_index), int(image_index), GENERATOR_VERSION])


def encode_jpeg(image: np.ndarray, rng: np.random.Generator) -> bytes:
    """JPEG-encode at a random quality: compression artefacts are part of what a camera delivers."""
    quality = int(rng.integers(60, 96))
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV only fails here on a broken build
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return buf.tobytes()


def split_counts(per_class: int, val_fraction: float) -> tuple[int, int]:
    """(train, val) images per class; a non-zero fraction always leaves one image on each side."""
    n_val = int(round(per_class * val_fraction))
    if val_fraction > 0 and per_class >= 2:
        n_val = min(max(n_val, 1), per_class - 1)
    return per_class - n_val, n_val


def validate_image_args(classes: Sequence[str], per_class: int, size: int, val_fraction: float,
                        workers: int = 1) -> tuple[str, ...]:
    """Check :func:`make_images` arguments; raises :class:`ConfigError` naming the argument."""
    classes = tuple(classes)
    if not classes:
        raise ConfigError("--classes: no classes given")
    for cls in classes:
        check_class(cls)
    if len(set(classes)) != len(classes):
        raise ConfigError(f"--classes: a class is listed twice ({','.join(classes)})")
    if not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ConfigError(f"--per-class: must be a positive count, got {per_class}")
    if not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ConfigError(f"--size: {size} px is below the minimum of {MIN_SIZE} px")
    if not (0.0 <= float(val_fraction) < 1.0):
        raise ConfigError(f"--val-fraction: must be in [0, 1), got {val_fraction}")
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {workers}")
    return classes


def _render_chunk(out: str, cls: str, class_index: int, indices: Sequence[int], n_train: int, size: int,
                  seed: int) -> int:
    """Render and write some images of one class (runs in a worker process)."""
    root = Path(out)
    for i in indices:
        rng = image_rng(seed, class_index, i)
        img = render_item(cls, rng, size)
        split = "train" if i < n_train else "val"
        (root / split / cls / f"{cls}_{i:05d}.jpg").write_bytes(encode_jpeg(img, rng))
    return len(indices)


def make_images(out, classes: Sequence[str] = DEFAULT_CLASSES, per_class: int = 100, size: int = 128,
                val_fraction: float = 0.2, seed: int = 0, workers: int = 1) -> Path:
    """Write an image-folder dataset ``OUT/{train,val}/<class>/<class>_NNNNN.jpg``.

    Image ``i`` of a class goes to ``train`` when ``i < n_train`` else to ``val``. JPEGs left in the
    class folders by an earlier run are removed first, so counts always match the arguments. A
    ``synth.json`` beside the splits records the arguments (and lets a caller skip regeneration).

    Args:
        out: dataset root.
        classes: class names (each must be one the renderer knows).
        per_class: images per class, train and val together.
        size: square image side in pixels (>= 32).
        val_fraction: share of each class held out for validation, in [0, 1).
        seed: the dataset's seed.
        workers: processes to render with; the output does not depend on it.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: a bad argument (the message names it).
    """
    classes = validate_image_args(classes, per_class, size, val_fraction, workers)
    out = Path(out)
    n_train, n_val = split_counts(int(per_class), float(val_fraction))
    for split in ("train", "val"):
        for cls in classes:
            d = out / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for old in d.glob("*.jpg"):
                old.unlink()
    t0 = time.perf_counter()
    jobs = []
    chunk = max(8, int(per_class) // max(1, 4 * int(workers)))
    for ci, cls in enumerate(classes):
        cidx = DEFAULT_CLASSES.index(cls)
        for start in range(0, int(per_class), chunk):
            jobs.append((str(out), cls, cidx, list(range(start, min(int(per_class), start + chunk))), n_train,
                         int(size), int(seed)))
    if workers == 1:
        done = sum(_render_chunk(*job) for job in jobs)
    else:
        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            done = sum(pool.map(_render_chunk, *zip(*jobs)))
    dt = time.perf_counter() - t0
    meta = {"generator_version": GENERATOR_VERSION, "classes": list(classes), "per_class": int(per_class),
            "size": int(size), "val_fraction": float(val_fraction), "seed": int(seed),
            "train_per_class": n_train, "val_per_class": n_val}
    (out / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
    logger.info("wrote %d images (%d classes, %d train + %d val each, %d px) to %s in %.1f s (%.0f images/s)",
                done, len(classes), n_train, n_val, size, out, dt, done / max(dt, 1e-9))
    return out
