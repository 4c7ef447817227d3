"""Decode, crop and scale before Python: the Jetson's hardware pipeline (``nvv4l2decoder`` → ``nvvidconv``),
its software twin, and ``crop=`` on every platform (the grabber cuts the frame where no pipeline does).

There is no Jetson here: the pipelines are checked against a fake of the documented elements (each
element and property named in NVIDIA's Jetson Linux "Accelerated GStreamer" guide or GStreamer's own
plugin docs, with the meaning of its crop properties), and the software twin runs for real where this
OpenCV has GStreamer.
"""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from edge import platform as engine_platform
from edge.capture import uri as source_uri
from edge.capture.gst import crop_for, file_source, hardware_pipeline, slots_box, software_pipeline
from edge.capture.sources import CameraSource, Status
from edge.capture.uri import opencv_has_gstreamer, parse_source
from edge.config.device import SlotConfig
from edge.errors import ConfigError
from edge.loop.slots import SlotMap, remap_slots

# The elements these pipelines may use, and the properties each documents. nvvidconv's left/right/top/bottom
# are the kept rectangle's edges (the guide: "nvvidconv left=400 right=1520 top=200 bottom=880" keeps
# 1120x680 of a 1080p frame); videocrop's are the pixels removed at each edge.
DOCUMENTED = {
    "filesrc": {"location"}, "qtdemux": set(), "h264parse": set(), "h265parse": set(), "nvv4l2decoder": set(),
    "nvvidconv": {"left", "right", "top", "bottom", "flip-method"}, "videoconvert": set(),
    "appsink": {"drop", "max-buffers", "sync"}, "rtspsrc": {"location", "latency", "user-id", "user-pw"},
    "rtph264depay": set(), "rtph265depay": set(), "decodebin": set(), "videocrop": {"left", "right", "top", "bottom"},
    "videoscale": set(),
}


def elements(pipeline: str) -> list[tuple[str, dict[str, str]]]:
    """``[(element or caps, {property: value})]``, checked against :data:`DOCUMENTED`."""
    out = []
    for part in (p.strip() for p in pipeline.split(" ! ")):
        if part.startswith("video/x-raw"):
            out.append(("caps", dict(kv.strip().split("=", 1) for kv in part.split(",")[1:])))
            continue
        name, *props = re.findall(r'[^\s"]+(?:"(?:[^"\\]|\\.)*")?', part)
        assert name in DOCUMENTED, f"{name} is not a documented element"
        kv = dict(p.split("=", 1) for p in props)
        assert set(kv) <= DOCUMENTED[name], f"{name}: undocumented {set(kv) - DOCUMENTED[name]}"
        out.append((name, kv))
    return out


def _jetson(monkeypatch, jetson: bool = True) -> None:
    monkeypatch.setattr(engine_platform, "is_jetson", lambda root="/": jetson)
    monkeypatch.setattr(source_uri, "opencv_has_gstreamer", lambda: True)


def test_a_file_on_a_jetson_is_decoded_cropped_and_converted_in_hardware(monkeypatch):
    _jetson(monkeypatch)
    spec = parse_source("file:///data/case.mp4?loop=1&crop=0.25,0.1,0.75,0.9&frame=1920x1080")
    assert spec.api == "CAP_GSTREAMER" and spec.crop_in_pipeline and spec.crop == (0.25, 0.1, 0.75, 0.9)
    assert spec.loop and spec.file == "/data/case.mp4"
    parts = elements(spec.target)
    assert [n for n, _ in parts] == ["filesrc", "qtdemux", "h264parse", "nvv4l2decoder", "nvvidconv", "caps",
                                     "videoconvert", "caps", "appsink"]
    assert parts[0][1] == {"location": '"/data/case.mp4"'}
    # The kept rectangle's edges, in pixels (even: NV12's chroma is 2x2), and the caps say its size.
    assert parts[4][1] == {"left": "480", "right": "1440", "top": "108", "bottom": "972"}
    assert parts[5][1] == {"width": "(int)960", "height": "(int)864", "format": "(string)BGRx"}
    assert parts[7][1] == {"format": "(string)BGR"}


def test_without_the_frame_size_a_jetson_decodes_in_hardware_and_the_grabber_crops(monkeypatch):
    _jetson(monkeypatch)
    spec = parse_source("file:///data/case.mp4?codec=h265&crop=0.25,0.1,0.75,0.9")
    assert spec.api == "CAP_GSTREAMER" and not spec.crop_in_pipeline and spec.crop == (0.25, 0.1, 0.75, 0.9)
    names = [n for n, _ in elements(spec.target)]
    assert names[2:5] == ["h265parse", "nvv4l2decoder", "nvvidconv"] and dict(elements(spec.target))["nvvidconv"] == {}


def test_rtsp_on_a_jetson_crops_in_nvmm_when_told_the_frame_size(monkeypatch):
    _jetson(monkeypatch)
    spec = parse_source("rtsp://cam.local/s1#crop=0,0,0.5,0.5&frame=1280x720")
    parts = dict(elements(spec.target))
    assert parts["nvvidconv"] == {"left": "0", "right": "640", "top": "0", "bottom": "360"}
    assert spec.crop_in_pipeline and spec.target.startswith('rtspsrc location="rtsp://cam.local/s1" latency=200 ! '
                                                            "rtph264depay ! h264parse ! nvv4l2decoder ! nvvidconv left=0")


def test_elsewhere_ffmpeg_decodes_and_the_crop_is_kept_for_the_grabber(monkeypatch):
    _jetson(monkeypatch, jetson=False)
    spec = parse_source("file:///data/case.mp4?crop=0.25,0.1,0.75,0.9&frame=1920x1080")
    assert spec.api == "CAP_FFMPEG" and spec.target == "/data/case.mp4"
    assert spec.crop == (0.25, 0.1, 0.75, 0.9) and not spec.crop_in_pipeline


def test_the_software_twin_has_the_same_shape_with_videocrop_margins():
    crop = crop_for((0.25, 0.1, 0.75, 0.9), 1920, 1080)
    parts = elements(software_pipeline(file_source("/data/case.mp4", demux=False), crop))
    assert [n for n, _ in parts] == ["filesrc", "decodebin", "videoconvert", "videocrop", "videoscale", "caps",
                                     "videoconvert", "caps", "appsink"]
    # videocrop removes pixels at each edge: the same rectangle as nvvidconv's left=480 right=1440 top=108 bottom=972.
    assert parts[3][1] == {"left": "480", "right": "480", "top": "108", "bottom": "108"}
    assert parts[5][1] == {"width": "(int)960", "height": "(int)864"}
    hw = dict(elements(hardware_pipeline(file_source("/x.mp4"), "h264", crop, size=(480, 432))))
    assert hw["nvvidconv"]["right"] == "1440"     # scaled: the crop is unchanged, the caps halve it


@pytest.mark.parametrize(("box", "size", "pixels"), [
    ((0.0, 0.0, 1.0, 1.0), (1280, 720), (0, 0, 1280, 720)),
    ((0.171, 0.065, 0.829, 0.935), (1280, 720), (218, 46, 1062, 674)),   # odd edges widen outwards to even
    ((0.5, 0.5, 1.0, 1.0), (641, 481), (320, 240, 641, 481)),            # the frame's own (odd) edge is kept
])
def test_crops_snap_outwards_to_even_pixels(box, size, pixels):
    c = crop_for(box, *size)
    assert (c.x0, c.y0, c.x1, c.y1) == pixels


@pytest.mark.parametrize(("uri", "message"), [
    ("file:///a.mp4?crop=0.1,0.1,0.9", r"crop=0.1,0.1,0.9 must be four numbers x0,y0,x1,y1"),
    ("file:///a.mp4?crop=a,b,c,d", r"must be four numbers"),
    ("file:///a.mp4?crop=0.5,0.1,0.4,0.9", r"must be x0 < x1 and y0 < y1, all within 0..1"),
    ("file:///a.mp4?crop=0,0,1.5,1", r"must be x0 < x1 and y0 < y1, all within 0..1"),
    ("file:///a.mp4?frame=1920x1080", r"frame= is the frame size for crop=; crop= is missing"),
    ("file:///a.mp4?crop=0,0,1,1&frame=1920", r"frame=1920 must be WIDTHxHEIGHT"),
    ("file:///a.mp4?crop=0,0,0.0001,1&frame=1920x1080", r"under 8 pixels a side in a 1920x1080 frame"),
    ("file:///a.mp4?codec=vp9", r"codec=vp9 must be h264 or h265"),
    ("rtsp://cam.local/s1#crop=0,0,1", r"must be four numbers"),
])
def test_bad_crop_options_are_named(uri, message):
    with pytest.raises(ConfigError, match=message):
        parse_source(uri, hardware_decode=True)


def test_slots_move_into_the_crop_and_cut_the_same_pixels():
    """A slot cut from the cropped frame is the one cut from the whole frame: the loop sees no difference."""
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    slots = [SlotConfig(name="a", rect=(0.3, 0.3, 0.5, 0.5)), SlotConfig(name="b", rect=(0.5, 0.25, 0.75, 0.75)),
             SlotConfig(name="c", polygon=((0.3, 0.55), (0.45, 0.55), (0.3, 0.7)))]
    box = slots_box([s.rect for s in slots])
    assert box == (0.3, 0.25, 0.75, 0.75)
    c = crop_for(box, 320, 240)
    cut = frame[c.y0:c.y1, c.x0:c.x1]
    whole = SlotMap(slots).crop(frame)
    moved = SlotMap(remap_slots(slots, c.normalised())).crop(cut)
    for a, b in zip(whole, moved):
        assert a.shape == b.shape and np.array_equal(a, b)


def test_a_slot_outside_the_crop_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"camera cam0: slot 'b' \(rect \[0.5, 0.5, 0.9, 0.9\]\) reaches outside"):
        remap_slots([SlotConfig(name="a", rect=(0.1, 0.1, 0.2, 0.2)), SlotConfig(name="b", rect=(0.5, 0.5, 0.9, 0.9))],
                    (0.0, 0.0, 0.6, 0.6), "cam0")


def _video(tmp_path, n: int = 4):
    path = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    rng = np.random.default_rng(1)
    for _ in range(n):
        writer.write(cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (9, 9), 3))
    writer.release()
    return path


def test_the_grabber_hands_over_only_the_crop(tmp_path):
    path = _video(tmp_path)
    first = cv2.VideoCapture(str(path)).read()[1]
    with CameraSource("cam0", f"file://{path}?realtime=0&crop=0.25,0.25,0.75,0.75") as src:
        status, frame = src.read(5.0)
    assert status is Status.OK
    assert frame.image.shape == (120, 160, 3) and np.array_equal(frame.image, first[60:180, 80:240])


@pytest.mark.skipif(not opencv_has_gstreamer(), reason="this OpenCV was built without GStreamer (the pip wheels are); "
                                                       "JetPack's OpenCV has it")
def test_the_software_twin_runs_for_real(tmp_path):
    path = _video(tmp_path)
    full = cv2.VideoCapture(str(path)).read()[1]
    crop = crop_for((0.25, 0.25, 0.75, 0.75), 320, 240)
    cap = cv2.VideoCapture(software_pipeline(file_source(str(path), demux=False), crop), cv2.CAP_GSTREAMER)
    ok, image = cap.read()
    cap.release()
    assert ok and image.shape == (120, 160, 3)
    assert np.abs(image.astype(int) - full[60:180, 80:240].astype(int)).mean() < 4   # two decoders, one picture
