"""Real product photos as display-case pieces: their plain background keyed out, read in place.

A photo folder is laid out ``DIR/<class>/*.jpg`` (``png`` too), each class one the model knows.
A product shot stands on a plain, usually white, background: its colour is read from the photo's
border, every pixel near it is keyed out (a threshold, then morphology to drop specks and keep the
piece's bright stones), and the alpha is feathered when the piece is scaled into a slot. A photo
whose border is not plain, whose piece covers almost nothing or almost everything of it, or which at
the case's scale would cover under 3% of its slot (a hair-thin chain: nothing a camera sees) is not
usable and is skipped with a log line.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.contracts import DEFAULT_CLASSES
from edge.errors import ConfigError

logger = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
BORDER = 4              # px of the photo's edge that tell the background's colour
PLAIN_SHARE = 0.6       # this share of the border must be near that colour for the key to be trusted
BORDER_TOL = 24         # "near": every channel within this many levels
KEY_TOL = 30            # a pixel further than this from the background is the piece
MIN_COVER, MAX_COVER = 0.01, 0.95
MAX_SIDE = 320          # keyed photos are kept at most this large (a slot is far smaller)
HOLE_SHARE = 0.004      # background islands inside the piece smaller than this share are its highlights
#: How long a photographed piece's longest side is, as a share of the slot's side (the drawers' scales).
PHOTO_SCALE = {"ring": 0.42, "earring": 0.62, "necklace": 0.9, "pendant": 0.7, "bracelet": 0.8, "brooch": 0.5,
               "watch": 0.85}
MIN_SLOT_COVER = 0.03   # a piece covering less of its slot (a hair-thin chain) all but vanishes on camera


@dataclass(frozen=True)
class KeyedPhoto:
    """One usable photo: the piece cropped to its box, BGR ``uint8`` and alpha ``uint8``."""

    cls: str
    source: str          # the path relative to the photo folder, for the truth file
    bgr: np.ndarray
    alpha: np.ndarray


def _background(img: np.ndarray) -> tuple[np.ndarray, float]:
    """The border's median colour and the share of border pixels near it."""
    b = BORDER
    ring = np.concatenate([img[:b].reshape(-1, 3), img[-b:].reshape(-1, 3), img[:, :b].reshape(-1, 3),
                           img[:, -b:].reshape(-1, 3)])
    bg = np.median(ring, axis=0)
    near = np.abs(ring.astype(np.int16) - bg.astype(np.int16)).max(axis=1) <= BORDER_TOL
    return bg, float(near.mean())


def key_photo(img: np.ndarray) -> tuple[np.ndarray, str]:
    """The piece's mask (``uint8`` 0/255) in a product photo, or an empty array and why not.

    Args:
        img: BGR ``uint8``.

    Returns:
        ``(mask, "")`` or ``(empty array, reason)``.
    """
    if img.ndim != 3 or min(img.shape[:2]) < 4 * BORDER:
        return np.zeros(0, np.uint8), "too small"
    bg, plain = _background(img)
    if plain < PLAIN_SHARE:
        return np.zeros(0, np.uint8), f"background not plain ({plain:.0%} of the border is one colour)"
    dist = cv2.absdiff(img, np.full_like(img, bg.astype(np.uint8))).max(axis=2)
    mask = np.where(dist > KEY_TOL, 255, 0).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    # Small background islands inside the piece are its white stones and highlights: fill them. Large
    # ones (the inside of a ring or a necklace's loop) stay transparent so the lining shows through.
    n, labels, stats, _ = cv2.connectedComponentsWithStats(255 - mask, connectivity=4)
    small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < HOLE_SHARE * mask.size)
    mask[np.isin(labels, small)] = 255
    # Specks far smaller than the piece are dust or noise on the backdrop.
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n > 1:
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep = 1 + np.flatnonzero(areas >= 0.02 * areas.max())
        mask = np.where(np.isin(labels, keep), 255, 0).astype(np.uint8)
    cover = np.count_nonzero(mask) / mask.size
    if not MIN_COVER <= cover <= MAX_COVER:
        return np.zeros(0, np.uint8), f"the piece covers {cover:.0%} of the photo"
    return mask, ""


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise ConfigError(f"--photos: {root} is not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ConfigError(f"--photos: {root} has no class folders (expected {root}/<class>/*.jpg)")
    known = [c for c in DEFAULT_CLASSES if c != "empty"]
    for folder in folders:
        if folder.name not in known:
            raise ConfigError(f"--photos: {folder} is not a class the model knows ({', '.join(known)})")
    return folders


def load_photos(root, max_side: int = MAX_SIDE) -> dict[str, list[KeyedPhoto]]:
    """Key every photo of a ``DIR/<class>/*.jpg`` folder; returns the usable ones per class, in name order.

    Raises:
        ConfigError: no folder, no class folders, an unknown class, or no usable photo at all (names
            ``--photos``).
    """
    root = Path(root)
    out: dict[str, list[KeyedPhoto]] = {}
    skipped = 0
    for folder in _class_folders(root):
        keyed = []
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES):
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                logger.warning("--photos: %s cannot be read, skipped", path)
                skipped += 1
                continue
            scale = max_side / max(img.shape[:2])
            if scale < 1:
                img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            mask, why = key_photo(img)
            if why:
                logger.info("--photos: %s skipped: %s", path, why)
                skipped += 1
                continue
            x, y, w, h = cv2.boundingRect(mask)
            slot_cover = np.count_nonzero(mask) * (PHOTO_SCALE[folder.name] / max(w, h)) ** 2
            if slot_cover < MIN_SLOT_COVER:
                logger.info("--photos: %s skipped: at the case's scale the piece covers %.1f%% of its slot", path,
                            100 * slot_cover)
                skipped += 1
                continue
            keyed.append(KeyedPhoto(folder.name, f"{folder.name}/{path.name}", img[y:y + h, x:x + w].copy(),
                                    mask[y:y + h, x:x + w].copy()))
        if keyed:
            out[folder.name] = keyed
    if not out:
        raise ConfigError(f"--photos: no usable photo in {root} ({skipped} skipped: unreadable, or not on a "
                          "plain background)")
    logger.info("photos from %s: %s usable, %d skipped", root,
                ", ".join(f"{len(v)} {k}" for k, v in out.items()), skipped)
    return out
