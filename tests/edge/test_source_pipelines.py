"""Which pipeline a camera URI becomes on each platform: FFmpeg on the CPU here, the Jetson's
hardware decoder and converter (GStreamer) on a Jetson whose OpenCV has GStreamer.

There is no Jetson here: the platform is what ``edge.platform.is_jetson`` and OpenCV's build
information say, and the tests set them; the strings are checked element by element.
"""
from __future__ import annotations

import pytest

from edge import platform as engine_platform
from edge.capture import uri as source_uri
from edge.capture.uri import csi_pipeline, hardware_decode_available, parse_source, rtsp_pipeline
from edge.config.credentials import redact
from edge.errors import ConfigError

HW_RTSP = ("rtspsrc location=\"rtsp://cam.local:554/s1\" latency=200 ! rtph264depay ! h264parse ! nvv4l2decoder ! "
           "nvvidconv ! video/x-raw, format=(string)BGRx ! videoconvert ! video/x-raw, format=(string)BGR ! "
           "appsink drop=true max-buffers=1 sync=false")


def _platform(monkeypatch, jetson: bool, gstreamer: bool) -> None:
    monkeypatch.setattr(engine_platform, "is_jetson", lambda root="/": jetson)
    monkeypatch.setattr(source_uri, "opencv_has_gstreamer", lambda: gstreamer)


@pytest.mark.parametrize(("jetson", "gstreamer", "hardware"),
                         [(False, False, False), (False, True, False), (True, False, False), (True, True, True)])
def test_rtsp_uses_the_hardware_decoder_only_on_a_jetson_with_gstreamer(monkeypatch, jetson, gstreamer, hardware):
    _platform(monkeypatch, jetson, gstreamer)
    spec = parse_source("rtsp://cam.local:554/s1")
    if hardware:
        assert spec.api == "CAP_GSTREAMER" and spec.target == HW_RTSP
    else:
        assert spec.api == "CAP_FFMPEG" and spec.target == "rtsp://cam.local:554/s1"


def test_this_machine_is_no_jetson():
    assert hardware_decode_available() is False
    assert parse_source("rtsp://cam.local/s1").api == "CAP_FFMPEG"


def test_h265_latency_and_credentials_in_the_jetson_pipeline(tmp_path):
    cred = tmp_path / "cam.cred"
    cred.write_text('bob:p@ss "word"\n')
    spec = parse_source("rtsp://cam.local/s1#codec=h265&latency=100", str(cred), hardware_decode=True)
    assert spec.target.startswith('rtspsrc location="rtsp://cam.local/s1" latency=100 user-id="bob" '
                                  'user-pw="p@ss \\"word\\"" ! rtph265depay ! h265parse ! nvv4l2decoder ! nvvidconv ! ')
    assert "p@ss" not in redact(spec.target) and "word" not in redact(spec.target)
    # The fragment is gemsight's: FFmpeg never sees it either.
    assert parse_source("rtsp://cam.local/s1#codec=h265", hardware_decode=False).target == "rtsp://cam.local/s1"


@pytest.mark.parametrize(("uri", "message"), [
    ("rtsp://cam.local/s1#codec=mjpeg", "codec=mjpeg must be h264 or h265"),
    ("rtsp://cam.local/s1#latency=-5", "latency=-5 must be a positive integer"),
    ("rtsp://cam.local/s1#fps=5", r"unknown parameter\(s\) \['fps'\]"),
    ("http://cam.local/mjpeg#codec=h264", "'#' options are for rtsp:// cameras only"),
])
def test_bad_rtsp_options_are_named(uri, message):
    with pytest.raises(ConfigError, match=message):
        parse_source(uri, hardware_decode=True)


def test_csi_pipeline_is_argus_to_nvvidconv():
    assert parse_source("csi://1?width=1280&height=720&fps=60&flip=2").target == csi_pipeline(1, 1280, 720, 60, 2)
    assert csi_pipeline(1, 1280, 720, 60, 2) == (
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), width=(int)1280, height=(int)720, "
        "framerate=(fraction)60/1, format=(string)NV12 ! nvvidconv flip-method=2 ! video/x-raw, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false")
    assert rtsp_pipeline("rtsp://h/s") == HW_RTSP.replace("cam.local:554/s1", "h/s")
