"""Camera sources: URIs, credentials, the grabber thread, EOS, drops, and reopening with backoff."""
import logging
import shutil
import time

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError, SourceError
from edge.sources import CameraSource, Status, parse_source, read_credentials, redact, substituted
from tests.helpers import MjpegServer, write_video


def _wait(pred, timeout=10.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def _drain(src, timeout=10.0):
    """Read until EOS: the frames' indexes."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, frame = src.read(0.5)
        if status is Status.OK:
            got.append(frame.index)
        elif status is Status.EOS:
            return got
    raise AssertionError(f"no EOS within {timeout}s (got {len(got)} frames)")


def test_parse_uris():
    spec = parse_source("file:///data/a.mp4?loop=1&realtime=0")
    assert (spec.kind, spec.target, spec.loop, spec.realtime) == ("file", "/data/a.mp4", True, False)
    assert parse_source("file:///a.mp4").realtime is True
    spec = parse_source("v4l2:///dev/video2?width=1280&height=720&fourcc=MJPG")
    assert (spec.kind, spec.target, spec.api) == ("v4l2", 2, "CAP_V4L2")
    assert ("CAP_PROP_FRAME_WIDTH", 1280) in spec.props
    spec = parse_source("csi://1?width=1280&height=720&fps=60")
    assert spec.api == "CAP_GSTREAMER" and "nvarguscamerasrc sensor-id=1" in spec.target
    assert "width=(int)1280" in spec.target and "framerate=(fraction)60/1" in spec.target
    assert spec.target.endswith("appsink drop=true max-buffers=1 sync=false")
    spec = parse_source("gst://videotestsrc ! videoconvert ! appsink")
    assert spec.target == "videotestsrc ! videoconvert ! appsink"
    spec = parse_source("rtsp://cam.local:554/stream?channel=1")
    assert spec.api == "CAP_FFMPEG" and spec.target == "rtsp://cam.local:554/stream?channel=1"
    assert cv2.CAP_PROP_READ_TIMEOUT_MSEC in spec.params


@pytest.mark.parametrize("uri, match", [
    ("file:///a.mp4?loop=2", "loop=2 must be 0 or 1"),
    ("file:///a.mp4?pace=2", r"unknown parameter\(s\) \['pace'\]"),
    ("file:///a.mp4?speed=0", "speed=0 must be a number from 0.01 to 1000"),
    ("file:///a.mp4?speed=nan", "speed=nan must be a number"),
    ("file:///a.mp4?every=0", "every=0 must be a whole number from 1 to 100"),
    ("file:///a.mp4?every=1.5", "every=1.5 must be a whole number"),
    ("v4l2:///dev/video0?width=-5", "width=-5 must be a positive integer"),
    ("csi://front", "needs a sensor number"),
    ("gst://videotestsrc ! autovideosink", "must end in appsink"),
    ("smb://server/share", "unsupported scheme"),
    ("/data/a.mp4", "not a URI"),
])
def test_bad_uris(uri, match):
    with pytest.raises(ConfigError, match=match):
        parse_source(uri)


def test_redact():
    assert redact("rtsp://admin:s3cret@10.0.0.5:554/s") == "rtsp://***@10.0.0.5:554/s"
    pipeline = "rtspsrc location=rtsp://u:pw@h/s user-pw=pw2 ! appsink"
    assert "pw" not in redact(pipeline).replace("user-pw", "")
    assert redact("http://cam/mjpeg?user=a&password=xyz") == "http://cam/mjpeg?user=a&password=***"
    assert redact("file:///data/a.mp4") == "file:///data/a.mp4"


def test_credentials_from_file_and_credentials_directory(tmp_path, monkeypatch):
    (tmp_path / "cam1-login").write_text("viewer:p@ss:word\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_credentials("cam1-login") == ("viewer", "p@ss:word")
    assert read_credentials(str(tmp_path / "cam1-login")) == ("viewer", "p@ss:word")
    spec = parse_source("rtsp://10.0.0.5/s", credentials="cam1-login")
    assert spec.target == "rtsp://viewer:p%40ss%3Aword@10.0.0.5/s"
    assert "word" not in spec.redacted
    (tmp_path / "bad").write_text("no-colon-here")
    with pytest.raises(SourceError) as info:
        read_credentials("bad")
    assert "no-colon-here" not in str(info.value) and "expected one line 'user:password'" in str(info.value)
    with pytest.raises(SourceError, match="cannot read"):
        read_credentials("missing")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(SourceError, match=r"\$CREDENTIALS_DIRECTORY is not set"):
        read_credentials("cam1-login")


def test_substituted_black_frame():
    assert substituted(np.zeros((120, 160, 3), np.uint8))
    nearly = np.zeros((120, 160, 3), np.uint8)
    nearly[7, 9, 1] = 1  # a dark real scene still has some signal
    assert not substituted(nearly)


def test_file_as_fast_as_possible_hands_over_every_frame(tmp_path):
    video = write_video(tmp_path / "v.avi", frames=25)
    with CameraSource("cam0", f"file://{video}?realtime=0") as src:
        time.sleep(0.3)  # a slow consumer must not lose frames in this mode
        assert _drain(src) == list(range(25))
        assert src.stats.dropped == 0 and src.state == "eos"
        assert [s for s, _ in src.pop_events()] == ["up", "eos"]


def test_every_nth_frame_of_a_file_keeps_its_index_and_video_time(tmp_path):
    video = write_video(tmp_path / "v.avi", frames=25, fps=10.0)
    got = []
    with CameraSource("cam0", f"file://{video}?realtime=0&every=3") as src:
        while True:
            status, frame = src.read(2.0)
            if status is Status.EOS:
                break
            if status is Status.OK:
                got.append((frame.index, frame.media_s))
    assert [i for i, _ in got] == list(range(0, 25, 3))
    assert [m for _, m in got] == pytest.approx([i / 10.0 for i in range(0, 25, 3)])


def test_realtime_file_keeps_the_newest_and_counts_drops(tmp_path):
    video = write_video(tmp_path / "v.avi", frames=30, fps=60.0)
    t0 = time.monotonic()
    with CameraSource("cam0", f"file://{video}") as src:
        got = []
        while True:
            status, frame = src.read(0.5)
            if status is Status.EOS:
                break
            if status is Status.OK:
                got.append(frame.index)
                time.sleep(0.05)  # slower than the file's 60 fps
    assert time.monotonic() - t0 >= 0.4   # played at its own rate (30 frames at 60 fps)
    assert got == sorted(got) and got[-1] == 29
    assert src.stats.dropped > 5 and src.stats.dropped + len(got) == 30


def test_fps_cap_paces_a_file(tmp_path):
    video = write_video(tmp_path / "v.avi", frames=10)
    t0 = time.monotonic()
    with CameraSource("cam0", f"file://{video}?realtime=0", fps=40.0) as src:
        assert len(_drain(src)) == 10
    assert time.monotonic() - t0 >= 9 / 40 * 0.9


def test_substituted_frames_are_never_handed_out(tmp_path):
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(6):
        writer.write(np.zeros((48, 64, 3), np.uint8) if i % 2 else np.full((48, 64, 3), 120, np.uint8))
    writer.release()
    with CameraSource("cam0", f"file://{path}?realtime=0") as src:
        assert _drain(src) == [0, 1, 2]
        assert src.stats.invalid == 3


def test_missing_file_backs_off_then_comes_up(tmp_path):
    video = tmp_path / "later.avi"
    with CameraSource("cam0", f"file://{video}?realtime=0", reconnect_initial_s=0.05, reconnect_max_s=0.4) as src:
        time.sleep(1.0)
        status, _ = src.read(0.0)
        assert status is Status.ERROR and src.state == "down"
        assert "file not found" in src.stats.detail
        # 0.05 + 0.1 + 0.2 + 0.4 + 0.4 ...: a handful of attempts, never a spinning loop.
        assert 2 <= src.stats.open_failures <= 6
        write_video(video, frames=5)
        assert _wait(lambda: src.state in ("up", "eos"), 3.0)
        assert _drain(src) == [0, 1, 2, 3, 4]


def test_missing_device_is_down_not_a_crash():
    with CameraSource("cam0", "v4l2:///dev/video99", reconnect_initial_s=0.05) as src:
        assert _wait(lambda: src.read(0.05)[0] is Status.ERROR, 3.0)
        assert "no such device" in src.stats.detail


def test_looping_file_removed_and_restored_is_reopened(tmp_path):
    video = write_video(tmp_path / "v.avi", frames=10, fps=100.0)
    keep = shutil.copy(video, tmp_path / "keep.avi")
    with CameraSource("cam0", f"file://{video}?loop=1", reconnect_initial_s=0.05, reconnect_max_s=0.2) as src:
        assert _wait(lambda: src.read(0.1)[0] is Status.OK, 3.0)
        video.unlink()
        assert _wait(lambda: src.read(0.05)[0] is Status.ERROR, 3.0)
        assert src.state == "down" and "file not found" in src.stats.detail
        shutil.copy(keep, video)
        assert _wait(lambda: src.read(0.1)[0] is Status.OK, 3.0)
        events = [s for s, _ in src.pop_events()]
    assert events == ["up", "down", "up"]
    assert src.stats.reconnects == 1  # going round the loop is not a reconnect


@pytest.mark.slow
def test_stream_server_stopped_and_restarted(caplog, tmp_path):
    """A loopback MJPEG camera vanishes and comes back on the same port; its password is never logged."""
    (tmp_path / "login").write_text("viewer:Sup3rSecret")
    server = MjpegServer().start()
    caplog.set_level(logging.DEBUG)
    try:
        with CameraSource("cam0", server.url, credentials=str(tmp_path / "login"), reconnect_initial_s=0.1,
                          reconnect_max_s=0.5, stall_s=2.0) as src:
            assert _wait(lambda: src.read(0.1)[0] is Status.OK, 10.0)
            server.stop()
            assert _wait(lambda: src.read(0.05)[0] is Status.ERROR, 10.0)
            time.sleep(0.5)
            server.start()
            assert _wait(lambda: src.read(0.1)[0] is Status.OK, 10.0)
            assert src.stats.reconnects >= 1
            events = [s for s, _ in src.pop_events()]
            assert events[0] == "up" and "down" in events and events[-1] == "up"
    finally:
        server.stop()
    assert "Sup3rSecret" not in caplog.text


@pytest.mark.slow
def test_stalled_stream_is_reported_down_and_reopened():
    server = MjpegServer().start()
    try:
        with CameraSource("cam0", server.url, reconnect_initial_s=0.1, stall_s=0.5) as src:
            assert _wait(lambda: src.read(0.1)[0] is Status.OK, 10.0)
            server.paused = True
            t0 = time.monotonic()
            assert _wait(lambda: src.read(0.05)[0] is Status.ERROR, 5.0)
            assert time.monotonic() - t0 < 3.0 and "stalled" in src.stats.detail
            server.paused = False
            assert _wait(lambda: src.read(0.1)[0] is Status.OK, 10.0)
    finally:
        server.stop()


def test_a_paused_process_is_no_stall(tmp_path):
    """SIGSTOP or a suspended host pauses the loop and the grabber alike: no false "stalled"."""
    video = write_video(tmp_path / "v.avi", frames=200, fps=20.0)
    with CameraSource("cam0", f"file://{video}?loop=1", stall_s=0.2) as src:
        assert _wait(lambda: src.read(0.1)[0] is Status.OK)
        with src._cond:  # the grabber cannot deliver and the loop does not read: the process is paused
            time.sleep(0.5)
            src.read(0.0)                    # the first look after the pause (may take a frame)
            assert src.read(0.0)[0] is not Status.ERROR
        assert src.state == "up" and "down" not in [s for s, _ in src.pop_events()]
