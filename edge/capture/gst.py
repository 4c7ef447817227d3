"""GStreamer pipelines that decode, crop and scale before a frame reaches Python.

On a Jetson the work is done by the hardware, with the elements of NVIDIA's Jetson Linux
"Accelerated GStreamer" guide: ``nvv4l2decoder`` decodes H.264/H.265 on the decoder engine into
NV12 in NVMM (device) memory, and ``nvvidconv`` crops (its ``left``/``right``/``top``/``bottom``
properties: the crop *rectangle's* edges in pixels, as in the guide's cropping example
``nvvidconv left=400 right=1520 top=200 bottom=880``), scales (the output caps' width and height) and
converts to BGRx on the VIC, reading NVMM memory: the frame is never copied whole to the CPU. One
``videoconvert`` drops the fourth byte into the BGR appsink OpenCV reads (``appsink`` keeps only the
newest buffer).

The software twin has the same shape with GStreamer's own elements (``decodebin``, ``videocrop`` whose
``left``/``right``/``top``/``bottom`` are the *pixels removed* at each edge, ``videoscale``,
``videoconvert``), so the path runs where OpenCV has GStreamer but no Jetson (tests).

Why the slots' bounding box and not each slot: OpenCV reads one appsink per capture, and a batch of
per-slot crops would need one branch and sink per slot; cropping the case in hardware removes the
frame outside it (and the decode), and the CPU then cuts the slots from the smaller image and resizes
them by the manifest's rule (the interpolation the model was trained with).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from edge.errors import ConfigError

APPSINK = "appsink drop=true max-buffers=1 sync=false"
BGR = "video/x-raw, format=(string)BGR"
MIN_CROP_PX = 8   # a crop smaller than this is a mistake, not a display case
PARSERS = {"h264": "h264parse", "h265": "h265parse"}   # what nvv4l2decoder takes: byte-stream access units


@dataclass(frozen=True)
class Crop:
    """A pixel rectangle of a ``width`` x ``height`` frame: ``frame[y0:y1, x0:x1]``."""

    width: int
    height: int
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def size(self) -> tuple[int, int]:
        """The crop's (width, height)."""
        return self.x1 - self.x0, self.y1 - self.y0

    def normalised(self) -> tuple[float, float, float, float]:
        """The rectangle as fractions of the frame (what the slot map is remapped into)."""
        return self.x0 / self.width, self.y0 / self.height, self.x1 / self.width, self.y1 / self.height


def crop_for(box: tuple[float, float, float, float], width: int, height: int, *, where: str = "crop") -> Crop:
    """The pixel crop of a normalised ``box`` in a ``width`` x ``height`` frame, widened outwards to even
    pixels (NV12 is subsampled 2x2: an odd edge would shift the chroma by half a pixel).

    Raises:
        ConfigError: the frame size or the box is not a rectangle inside the frame (``where`` names it).
    """
    if width < 2 or height < 2:
        raise ConfigError(f"{where}: frame size {width}x{height} must be at least 2x2")
    x0, y0, x1, y1 = box
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise ConfigError(f"{where}: box {list(box)} must be x0 < x1 and y0 < y1, all within 0..1")
    px0, py0 = int(x0 * width + 1e-9) // 2 * 2, int(y0 * height + 1e-9) // 2 * 2
    px1, py1 = math.ceil(x1 * width - 1e-9), math.ceil(y1 * height - 1e-9)
    px1, py1 = min(width, px1 + px1 % 2), min(height, py1 + py1 % 2)
    if px1 - px0 < MIN_CROP_PX or py1 - py0 < MIN_CROP_PX:
        raise ConfigError(f"{where}: box {list(box)} is under {MIN_CROP_PX} pixels a side in a {width}x{height} frame")
    return Crop(width, height, px0, py0, px1, py1)


def slots_box(rects: list[tuple[float, float, float, float]], margin: float = 0.0) -> tuple[float, float, float, float]:
    """The normalised bounding box of slot rectangles, grown by ``margin`` (a fraction of the frame) and clamped."""
    if not rects:
        raise ConfigError("no slots: nothing to crop to")
    return (max(0.0, min(r[0] for r in rects) - margin), max(0.0, min(r[1] for r in rects) - margin),
            min(1.0, max(r[2] for r in rects) + margin), min(1.0, max(r[3] for r in rects) + margin))


def _caps(size: tuple[int, int] | None, fmt: str | None) -> str:
    parts = ["video/x-raw"]
    if size is not None:
        parts += [f"width=(int){size[0]}", f"height=(int){size[1]}"]
    if fmt is not None:
        parts.append(f"format=(string){fmt}")
    return ", ".join(parts)


def hardware_pipeline(source: str, codec: str = "h264", crop: Crop | None = None,
                      size: tuple[int, int] | None = None) -> str:
    """The Jetson pipeline: ``source`` (demuxed or depayloaded, e.g. ``filesrc ... ! qtdemux``) → parser →
    ``nvv4l2decoder`` (NVMM) → ``nvvidconv`` (crop, scale, BGRx) → ``videoconvert`` → BGR appsink.

    Args:
        source: the elements before the parser, without a trailing ``!``.
        codec: ``h264`` or ``h265``.
        crop: the rectangle ``nvvidconv`` keeps (``None``: the whole frame).
        size: the output's (width, height) (``None``: the crop's own size, no scaling).
    """
    if codec not in PARSERS:
        raise ConfigError(f"codec={codec} must be one of {', '.join(PARSERS)}")
    conv = "nvvidconv"
    if crop is not None:
        conv += f" left={crop.x0} right={crop.x1} top={crop.y0} bottom={crop.y1}"
    out = size or (crop.size if crop is not None else None)
    return (f"{source} ! {PARSERS[codec]} ! nvv4l2decoder ! {conv} ! {_caps(out, 'BGRx')} ! videoconvert ! "
            f"{BGR} ! {APPSINK}")


def software_pipeline(source: str, crop: Crop | None = None, size: tuple[int, int] | None = None) -> str:
    """The same shape with GStreamer's software elements: ``source`` → ``decodebin`` → ``videoconvert`` →
    ``videocrop`` (pixels removed at each edge) → ``videoscale`` → BGR appsink."""
    steps = [source, "decodebin", "videoconvert"]
    if crop is not None:
        steps.append(f"videocrop left={crop.x0} right={crop.width - crop.x1} top={crop.y0} "
                     f"bottom={crop.height - crop.y1}")
    out = size or (crop.size if crop is not None else None)
    if out is not None:
        steps += ["videoscale", _caps(out, None)]
    steps += ["videoconvert", BGR, APPSINK]
    return " ! ".join(steps)


def quote(value: str) -> str:
    """A value for a gst-launch pipeline string: double-quoted, backslash and quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def file_source(path: str, demux: bool = True) -> str:
    """``filesrc`` for a video file, with the MP4/QuickTime demuxer when a parser and decoder follow
    (``decodebin`` finds its own demuxer)."""
    return f"filesrc location={quote(path)}" + (" ! qtdemux" if demux else "")
