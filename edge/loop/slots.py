"""The slot map in pixels: normalised slot rectangles (or polygons) become crops of each frame.

Slots are normalised, so a frame of another size simply rescales them (the pixel rects are cached
per frame size). A polygon slot is cropped by its bounding box and the pixels outside the polygon
are filled with a constant colour (the model's mean colour, which normalises to zero).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from edge.config.device import SlotConfig
from edge.errors import ConfigError, DataError
from edge.preprocess import to_bgr8

logger = logging.getLogger(__name__)

_EPS = 1e-6
MIN_SLOT_PX = 4


@dataclass(frozen=True)
class PixelSlot:
    """A slot for one frame size: ``frame[y0:y1, x0:x1]``, and an optional polygon mask of that crop."""

    name: str
    x0: int
    y0: int
    x1: int
    y1: int
    mask: np.ndarray | None = None  # bool, (y1 - y0) x (x1 - x0); True inside the polygon

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.x1, self.y1


class SlotMap:
    """A camera's slots, cropped from frames of any size.

    Args:
        slots: the configured slots (``CameraConfig.slot_list()``).
        camera: camera id, for messages.
        fill_bgr: colour for pixels outside a polygon slot.

    Raises:
        ConfigError: no slots, repeated names, or a slot outside the frame (named).
    """

    def __init__(self, slots: Sequence[SlotConfig], *, camera: str = "camera",
                 fill_bgr: tuple[int, int, int] = (0, 0, 0)) -> None:
        if not slots:
            raise ConfigError(f"camera {camera}: no slots")
        names = [s.name for s in slots]
        if len(set(names)) != len(names):
            raise ConfigError(f"camera {camera}: slot names repeat: {sorted({n for n in names if names.count(n) > 1})}")
        for s in slots:
            coords = list(s.rect) + [c for p in (s.polygon or ()) for c in p]
            if any(not math.isfinite(c) or c < -_EPS or c > 1 + _EPS for c in coords):
                raise ConfigError(f"camera {camera}: slot '{s.name}' lies outside the frame "
                                  f"(rect {list(s.rect)}; coordinates are normalised to 0..1)")
        self.camera = camera
        self.slots = tuple(slots)
        self.fill = np.array(fill_bgr, np.uint8)
        self._cache: dict[tuple[int, int], list[PixelSlot]] = {}
        self._last_size: tuple[int, int] | None = None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.slots]

    def __len__(self) -> int:
        return len(self.slots)

    def rects(self, width: int, height: int) -> list[PixelSlot]:
        """The slots in pixels for a ``width`` x ``height`` frame.

        Raises:
            ConfigError: a slot is smaller than a few pixels at this size (named).
        """
        key = (int(width), int(height))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if width <= 0 or height <= 0:
            raise DataError(f"camera {self.camera}: frame size {width}x{height}")
        out = []
        for s in self.slots:
            x0, y0, x1, y1 = (min(max(c, 0.0), 1.0) for c in s.rect)
            px0, py0 = int(math.floor(x0 * width + _EPS)), int(math.floor(y0 * height + _EPS))
            px1, py1 = int(math.ceil(x1 * width - _EPS)), int(math.ceil(y1 * height - _EPS))
            px1, py1 = min(px1, width), min(py1, height)
            if px1 - px0 < MIN_SLOT_PX or py1 - py0 < MIN_SLOT_PX:
                raise ConfigError(f"camera {self.camera}: slot '{s.name}' is only {px1 - px0}x{py1 - py0} px "
                                  f"in a {width}x{height} frame (at least {MIN_SLOT_PX}x{MIN_SLOT_PX})")
            mask = None
            if s.polygon:
                pts = np.array([[x * width - px0, y * height - py0] for x, y in s.polygon], np.float64)
                canvas = np.zeros((py1 - py0, px1 - px0), np.uint8)
                cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
                mask = canvas.astype(bool)
            out.append(PixelSlot(s.name, px0, py0, px1, py1, mask))
        if self._last_size is not None and self._last_size != key:
            logger.info("camera %s: frame size changed from %dx%d to %dx%d; slot rects rescaled",
                        self.camera, *self._last_size, *key)
        self._last_size = key
        self._cache[key] = out
        return out

    def crop(self, frame: np.ndarray) -> list[np.ndarray]:
        """Every slot's crop of ``frame`` (BGR uint8), in slot order.

        Crops are views of the frame. A grayscale, BGRA or 16-bit frame is cropped first and only
        the crops are converted to 8-bit BGR (the slots are a fraction of the frame).

        Raises:
            DataError: the frame is empty or has a layout that cannot be converted.
        """
        if not isinstance(frame, np.ndarray) or frame.ndim < 2 or frame.size == 0:
            raise DataError(f"camera {self.camera}: empty frame")
        if frame.dtype.kind == "f" or not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3, 4))):
            # Float frames scale by their maximum (the whole frame's, not a crop's); a layout that
            # cannot be converted is reported with the frame's own shape.
            frame = as_bgr(frame, self.camera)
        h, w = frame.shape[:2]
        crops = []
        for ps in self.rects(w, h):
            crop = as_bgr(frame[ps.y0:ps.y1, ps.x0:ps.x1], self.camera)
            if ps.mask is not None:
                crop = crop.copy()
                crop[~ps.mask] = self.fill
            crops.append(crop)
        return crops


def as_bgr(frame: np.ndarray, camera: str = "camera") -> np.ndarray:
    """A frame as ``uint8`` BGR with 3 channels; other layouts are converted or reported.

    Raises:
        DataError: empty, or a channel count/pixel type that cannot be converted (names the camera).
    """
    if isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3:
        if frame.size == 0:
            raise DataError(f"camera {camera}: empty frame")
        return frame
    return to_bgr8(frame, f"camera {camera} frame")


def remap_slots(slots: Sequence[SlotConfig], box: tuple[float, float, float, float],
                camera: str = "camera") -> tuple[SlotConfig, ...]:
    """Slots given in the whole frame, in the coordinates of the part ``box`` of it (a source's ``crop=``:
    the frame the loop gets is that part only).

    Raises:
        ConfigError: a slot reaches outside the box (named, with the box).
    """
    bx0, by0, bx1, by1 = box
    w, h = bx1 - bx0, by1 - by0

    def inside(x: float, y: float) -> tuple[float, float]:
        return min(max((x - bx0) / w, 0.0), 1.0), min(max((y - by0) / h, 0.0), 1.0)

    out = []
    for s in slots:
        x0, y0, x1, y1 = s.rect
        if x0 < bx0 - _EPS or y0 < by0 - _EPS or x1 > bx1 + _EPS or y1 > by1 + _EPS:
            raise ConfigError(f"camera {camera}: slot '{s.name}' (rect {list(s.rect)}) reaches outside the source's "
                              f"crop {list(box)}; widen crop= or move the slot")
        polygon = tuple(inside(x, y) for x, y in s.polygon) if s.polygon else None
        out.append(SlotConfig(name=s.name, rect=(*inside(x0, y0), *inside(x1, y1)), polygon=polygon))
    return tuple(out)
