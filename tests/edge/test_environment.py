"""gemsight-edge check says which TensorRT, OpenCV (with or without GStreamer) and runtimes it found."""
from __future__ import annotations

import sys
import types

import pytest

from edge.cli import environment
from edge.cli.check import check_device
from edge.config.device import parse_config
from edge.errors import RuntimeUnavailable
from tests.fake_tensorrt import make_tensorrt
from tests.helpers import device_config, loopback_publish


def test_tensorrt_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert environment.tensorrt_line() == "tensorrt: not importable (tensorrt)"
    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt("10")[0])
    assert environment.tensorrt_line() == "tensorrt 10.3.0.30"


def test_opencv_line_says_whether_gstreamer_is_there(monkeypatch):
    import cv2

    with_gst = types.SimpleNamespace(__version__="4.8.0", getBuildInformation=lambda: (
        "  Video I/O:\n    FFMPEG:                      NO\n    GStreamer:                   YES (1.20.3)\n"))
    monkeypatch.setitem(sys.modules, "cv2", with_gst)
    assert environment.opencv_line() == "opencv 4.8.0 with GStreamer 1.20.3"
    monkeypatch.setitem(sys.modules, "cv2", cv2)
    has = "GStreamer:                   YES" in cv2.getBuildInformation()
    assert ("with GStreamer" if has else "without GStreamer") in environment.opencv_line()


def test_jetson_venv_hiding_system_packages_is_named(monkeypatch):
    monkeypatch.setattr(environment, "is_jetson", lambda root="/": True)
    monkeypatch.setattr(environment, "system_release", lambda root="/": "L4T R36.4.3")
    monkeypatch.setattr(environment, "_venv_sees_system", lambda: False)
    line = environment.python_line()
    assert "on L4T R36.4.3" in line and "--system-site-packages" in line


def test_check_names_what_it_found_when_a_runtime_cannot_run(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    cfg = parse_config(device_config("model.onnx", [{"id": "cam0", "source": "file:///data/case.mp4"}],
                                     runtime={"name": "tensorrt"}, publish=loopback_publish(snapshot_endpoint=None)))
    with pytest.raises(RuntimeUnavailable, match=r"runtime 'tensorrt' is not available here.*\[found: python .*"
                                                 r"tensorrt: not importable \(tensorrt\); opencv .*; runtimes: "):
        check_device(cfg, "edge.yaml")
