"""``gemsight-edge run`` as systemd stops it: SIGTERM, and a second one while it shuts down."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import device_config, loopback_publish, write_video, write_yaml

SLOTS = [{"name": "a", "rect": [0.0, 0.0, 0.5, 1.0]}, {"name": "b", "rect": [0.5, 0.0, 1.0, 1.0]}]


@pytest.mark.slow
def test_b6_repeated_sigterm_after_the_first_exits_zero(untrained_onnx, tmp_path):
    video = write_video(tmp_path / "v.avi", frames=20, fps=30.0)
    config = tmp_path / "edge.yaml"
    camera = {"id": "cam0", "source": f"file://{video}?loop=1", "slots": SLOTS}
    write_yaml(config, device_config(untrained_onnx, [camera], threads=1,
                                     publish=loopback_publish(snapshot_endpoint=None)))
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # running once the publisher is bound
            if "publishing on" in line:
                break
        time.sleep(0.3)
        # The first SIGTERM stops the loop; then one every 10 ms until the process is gone, so that
        # some land during shutdown, after the loop returned and while the interpreter exits.
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.01)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "stopped (stop)" in out
