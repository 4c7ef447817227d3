"""The reconnect backoff starts over once a camera has recovered (issue 13, item 6), on a real video file."""
from __future__ import annotations

import shutil
import time

from edge.capture.sources import CameraSource, Status
from tests.edge.test_sources import _wait
from tests.helpers import write_video


def test_second_outage_retries_after_the_initial_delay_again(tmp_path):
    video = write_video(tmp_path / "v.avi", frames=10, fps=100.0)
    keep = shutil.copy(video, tmp_path / "keep.avi")
    with CameraSource("cam0", f"file://{video}?loop=1", reconnect_initial_s=0.04, reconnect_max_s=2.0) as src:
        assert _wait(lambda: src.read(0.1)[0] is Status.OK, 5.0)
        video.unlink()  # first outage: long enough for the backoff to grow (0.04, 0.08 ... 0.64 s)
        assert _wait(lambda: src.stats.open_failures >= 6, 5.0)
        assert "retrying in 1.3s" in src.stats.detail
        src.pop_events()
        before = src.stats.frames
        shutil.copy(keep, video)
        # Recovered (read() could still hand out a frame from before the outage): wait until it has
        # played the 10-frame file through and started round again.
        assert _wait(lambda: src.state == "up" and src.stats.frames >= before + 15, 5.0)
        failures = src.stats.open_failures
        video.unlink()  # second outage: the first retry comes after the initial delay, not the grown one
        t0 = time.monotonic()
        assert _wait(lambda: src.stats.open_failures >= failures + 2, 5.0)
        elapsed = time.monotonic() - t0
        events = src.pop_events()
    assert [state for state, _ in events] == ["up", "down"], events
    assert events[1][1].endswith("retrying in 0.0s"), events
    assert elapsed < 1.5, f"second retry after {elapsed:.2f} s: the backoff did not start over"
