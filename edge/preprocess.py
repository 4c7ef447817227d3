"""Image loading and preprocessing: the one implementation shared by trainer, calibration and device.

Images travel as OpenCV arrays: ``uint8``, ``H x W x 3``, BGR (what a camera and ``cv2.imread``
give). :func:`preprocess_batch` turns crops into the model's ``N x C x H x W`` float32 input exactly
as the manifest's :class:`~edge.manifest.InputSpec` says.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edge.errors import DataError
from edge.manifest import InputSpec

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_INTERP = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


def to_bgr8(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Normalise any decoded image to ``uint8`` BGR with 3 channels.

    Handles grayscale (2-D or 1 channel), BGRA (alpha composited onto black is not wanted for
    product photos, so alpha is simply dropped), 16-bit and float images.
    """
    if image is None or not isinstance(image, np.ndarray) or image.size == 0:
        raise DataError(f"{source}: empty image")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DataError(f"{source}: unsupported pixel type {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise DataError(f"{source}: unsupported image shape {image.shape}")


def load_image(path: str | Path) -> np.ndarray:
    """Read a photo as ``uint8`` BGR, whatever its container says.

    The format is sniffed from the bytes (a PNG named ``.jpg`` loads), EXIF orientation is applied,
    and grayscale, RGBA and 16-bit images are converted.

    Raises:
        DataError: the file is missing, truncated or not an image; the message names the path.
    """
    path = Path(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if data.size == 0:
        raise DataError(f"{path}: empty file")
    # ANYDEPTH|ANYCOLOR keeps 16-bit and alpha for to_bgr8 to convert; OpenCV applies the EXIF
    # orientation for any flags but IMREAD_UNCHANGED / IMREAD_IGNORE_ORIENTATION.
    image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if image is None:
        raise DataError(f"{path}: not a decodable image (corrupt, truncated or another kind of file)")
    return to_bgr8(image, str(path))


def resize_to(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Bring an image of any aspect to the model's input size by the manifest's resize rule."""
    h, w = spec.size
    interp = _INTERP[spec.interpolation]
    ih, iw = image.shape[:2]
    if spec.resize == "stretch":
        return cv2.resize(image, (w, h), interpolation=interp)
    if spec.resize == "shorter_center_crop":
        scale = max(h / ih, w / iw)
        rh, rw = max(h, round(ih * scale)), max(w, round(iw * scale))
        resized = cv2.resize(image, (rw, rh), interpolation=interp)
        y0, x0 = (rh - h) // 2, (rw - w) // 2
        return resized[y0:y0 + h, x0:x0 + w]
    # letterbox: fit inside, pad with the mean colour so padding normalises to zero.
    scale = min(h / ih, w / iw)
    rh, rw = max(1, round(ih * scale)), max(1, round(iw * scale))
    resized = cv2.resize(image, (rw, rh), interpolation=interp)
    pad_rgb = [round(m * 255) for m in spec.mean]
    out = np.empty((h, w, 3), np.uint8)
    out[:] = pad_rgb[::-1]
    y0, x0 = (h - rh) // 2, (w - rw) // 2
    out[y0:y0 + rh, x0:x0 + rw] = resized
    return out


def normalize(batch_hwc: np.ndarray, spec: InputSpec) -> np.ndarray:
    """``N x H x W x 3`` uint8 BGR → ``N x 3 x H x W`` float32, colour order, mean and std applied."""
    if spec.color == "RGB":
        batch_hwc = batch_hwc[..., ::-1]
    scale = np.float32(1.0 / 255.0)
    mean = np.asarray(spec.mean if spec.color == "RGB" else spec.mean[::-1], np.float32)
    std = np.asarray(spec.std if spec.color == "RGB" else spec.std[::-1], np.float32)
    out = batch_hwc.astype(np.float32) * scale
    out -= mean
    out /= std
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def normalize_lut(spec: InputSpec) -> np.ndarray:
    """``3 x 256`` float32 table: row ``c`` maps a uint8 value of the model's input channel ``c`` (in
    its colour order) to ``(v / 255 - mean) / std`` of that channel, with the float32 arithmetic of
    :func:`normalize`, so a table lookup gives the same bits (manifest means are in RGB order)."""
    values = np.arange(256, dtype=np.float32) * np.float32(1.0 / 255.0)
    mean = np.asarray(spec.mean if spec.color == "RGB" else spec.mean[::-1], np.float32)
    std = np.asarray(spec.std if spec.color == "RGB" else spec.std[::-1], np.float32)
    return np.stack([(values - mean[c]) / std[c] for c in range(3)]).astype(np.float32)


class BatchWriter:
    """Preprocesses crops straight into slots of a preallocated ``N x 3 x H x W`` float32 batch.

    The crop is resized first (a few hundred pixels a side, not the frame), into a uint8 scratch
    image reused by each calling thread (several threads may fill rows of one batch); each of its
    channels is then extracted into a scratch plane and mapped by :func:`normalize_lut`'s table
    (``cv2.LUT``, vectorised) straight into the batch row's plane in the model's colour order: no
    per-slot array is allocated (for the ``stretch`` rule; ``letterbox`` and
    ``shorter_center_crop`` resize through :func:`resize_to`). Values are bit-identical to
    :func:`normalize` of :func:`resize_to`.

    With ``uint8=True`` the batch is ``N x H x W x 3`` BGR ``uint8``: each crop is resized straight into
    its row and nothing else, for a runtime that does the rest inside its model
    (:attr:`edge.runtimes.base.Runtime.input_kind` ``uint8``).

    Args:
        spec: the manifest's input spec.
        uint8: write resized ``uint8`` images instead of normalised float32 planes.
    """

    def __init__(self, spec: InputSpec, uint8: bool = False) -> None:
        self.spec = spec
        self.uint8 = uint8
        self.size = tuple(spec.size)
        h, w = self.size
        #: One batch row's shape and the batch's type.
        self.row, self.dtype = ((h, w, 3), np.dtype(np.uint8)) if uint8 else ((3, h, w), np.dtype(np.float32))
        self.lut = normalize_lut(spec)
        self._luts = [np.ascontiguousarray(row).reshape(1, 256) for row in self.lut]  # cv2.LUT's shape
        # Model channel c reads BGR channel src[c]: RGB models read 2, 1, 0.
        self.src = (2, 1, 0) if spec.color == "RGB" else (0, 1, 2)
        self._local = threading.local()
        self._interp = _INTERP[spec.interpolation]

    def _scratch(self) -> tuple[np.ndarray, np.ndarray]:
        """This thread's resized image and single-channel plane (allocated once per thread)."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            h, w = self.size
            scratch = self._local.scratch = (np.empty((h, w, 3), np.uint8), np.empty((h, w), np.uint8))
        return scratch

    def allocate(self, n: int) -> np.ndarray:
        """A batch buffer for up to ``n`` images (rows are filled by :meth:`write`)."""
        return np.empty((max(1, n), *self.row), self.dtype)

    def write(self, out: np.ndarray, image: np.ndarray, index: int = 0) -> None:
        """Preprocess one BGR uint8 image into ``out[index]`` (``out``: a buffer from :meth:`allocate`).

        Raises:
            DataError: the image is empty or cannot be converted to 3-channel uint8.
        """
        if image is None or not isinstance(image, np.ndarray) or image.size == 0:
            raise DataError(f"preprocess: image {index} is empty")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            image = to_bgr8(image, f"image {index}")
        h, w = self.size
        if self.uint8:
            if self.spec.resize == "stretch":
                cv2.resize(image, (w, h), dst=out[index], interpolation=self._interp)
            else:
                out[index] = resize_to(image, self.spec)
            return
        scratch, plane = self._scratch()
        if self.spec.resize == "stretch":
            resized = cv2.resize(image, (w, h), dst=scratch, interpolation=self._interp)
        else:
            resized = resize_to(image, self.spec)
        row = out[index]
        for c in range(3):
            cv2.extractChannel(resized, self.src[c], dst=plane)
            cv2.LUT(plane, self._luts[c], dst=row[c])

    def batch(self, images: Sequence[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
        """Preprocess BGR images (any sizes) into one batch of this writer's form.

        Args:
            images: BGR uint8 images (other layouts are converted).
            out: a buffer of the batch's form with at least ``len(images)`` rows to write into; the
                returned batch is then its first ``len(images)`` rows (a view, no copy). Default: a new one.

        Raises:
            DataError: an image is empty or not convertible to 3-channel uint8, or ``out`` does not fit.
        """
        if len(images) == 0:
            raise DataError("preprocess: no images in the batch")
        if out is None:
            out = self.allocate(len(images))
        elif (out.dtype != self.dtype or not out.flags.c_contiguous or out.shape[1:] != self.row
              or len(out) < len(images)):
            raise DataError(f"preprocess: the output buffer is {out.dtype} {out.shape}"
                            f"{'' if out.flags.c_contiguous else ' (not contiguous)'}; {len(images)} images need a "
                            f"contiguous {self.dtype.name} buffer of at least {len(images)} x "
                            f"{' x '.join(map(str, self.row))}")
        for i, img in enumerate(images):
            self.write(out, img, i)
        return out[:len(images)]


def preprocess_batch(images: Sequence[np.ndarray], spec: InputSpec, out: np.ndarray | None = None,
                     uint8: bool = False) -> np.ndarray:
    """Preprocess BGR images (any sizes) into one ``N x 3 x H x W`` float32 batch (with ``uint8``: the
    images resized, ``N x H x W x 3`` BGR uint8, for a runtime that normalises inside its model):
    :meth:`BatchWriter.batch`."""
    return BatchWriter(spec, uint8=uint8).batch(images, out)


def preprocess(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Preprocess one BGR image into a ``3 x H x W`` float32 array (the trainer's validation transform)."""
    return preprocess_batch([image], spec)[0]


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in a folder, sorted, by suffix (content is checked when loaded)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
