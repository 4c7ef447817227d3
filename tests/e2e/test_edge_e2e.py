"""End to end on the device side, with real everything: a synthetic display-case video, a ResNet-18
trained on synthetic images, ONNX Runtime, ZeroMQ on loopback, and a camera that vanishes mid-run."""
import json
import os
import threading
import time
from pathlib import Path

import cv2
import pytest

from edge.config.device import parse_config
from edge.link import messages
from edge.link.listen import Listener
from edge.loop.run import CameraLoop, run
from tests.helpers import MjpegServer, device_config, loopback_publish
from tests.helpers import Subscriber as LoopSubscriber

pytestmark = pytest.mark.slow

SECONDS, FPS, SIZE = 20.0, 10.0, (1280, 720)
FLOOR = 0.85           # per-slot accuracy below which the loop itself is broken (wrong crops or colours: < 0.5)
# A case no training video shows (tests/conftest.py: TRAINED_VIDEO_SEEDS); GEMSIGHT_E2E_CASE=K scores another.
CASE_SEED = int(os.environ.get("GEMSIGHT_E2E_CASE", "11"))
_ACCURACY: dict = {}   # what the whole-video tests scored, for the target test


@pytest.fixture(scope="module")
def case_video(tmp_path_factory):
    from trainer.synth import make_video

    return make_video(tmp_path_factory.mktemp("case") / "case.mp4", slots=(3, 4), seconds=SECONDS, fps=FPS,
                      size=SIZE, seed=CASE_SEED)


def _config(model, source, slots_file, precision="auto", **over):
    data = device_config({"path": str(model), "precision": precision},
                         [{"id": "cam0", "source": source, "slots_file": str(slots_file),
                           "reconnect": {"initial_s": 0.2, "max_s": 1.0, "stall_s": 2.0}}],
                         threads=2, publish=loopback_publish(heartbeat_s=0.5, hwm=100000),
                         postprocess={"min_score": 0.5, "window": 5, "top_k": 3}, **over)
    # base_dir: the slot states' enrolments go to state/ beside the slots file (a temporary folder), not the cwd.
    return parse_config(data, "e2e.yaml", base_dir=Path(slots_file).parent)


class Subscriber(LoopSubscriber):
    """The loop tests' subscriber, which also hands back the listener's gap summary."""

    def drain(self):
        events = super().drain(close=False)
        summary = self.listener.summary()
        self.listener.close()
        return events, summary


def _counts(slots):
    out = {}
    for cls in slots.values():
        if cls != "empty":
            out[cls] = out.get(cls, 0) + 1
    return out


def _score(labels, truth, lag=0, window=5):
    """Share of slot-frames whose smoothed label is the truth, and of frames whose counts are.

    ``lag`` frames of smoothing delay are allowed: at frame i the truth of frames i-lag..i counts (a
    majority vote over a window of 5 takes 2 frames to follow a change, by design). A slot a passing
    hand covers (the truth's ``hand``), in those frames and the ``window`` after, has no right answer
    and is not scored; nor are that frame's counts.
    """
    slot_ok = slot_n = count_ok = count_n = 0
    for msg in labels:
        i = msg["frame_index"]
        recent = truth[max(0, i - lag):i + 1]
        covered = {name for t in truth[max(0, i - window):i + 1] for name in t.get("hand", [])}
        for s in msg["slots"]:
            if s["name"] in covered:
                continue
            slot_ok += any(s["label"] == t["slots"][s["name"]] for t in recent)
            slot_n += 1
        if covered:
            continue
        got = {k: v for k, v in msg["counts"].items() if v and k not in ("empty", "unknown")}
        count_ok += any(got == _counts(t["slots"]) for t in recent)
        count_n += 1
    return slot_ok / slot_n, count_ok / count_n


def test_whole_video_every_message_and_accurate(trained_run, case_video):
    truth = [json.loads(line) for line in case_video["truth"].read_text().splitlines()]
    cfg = _config(trained_run.run_dir, f"file://{case_video['video']}?realtime=0", case_video["slots"])
    sub = Subscriber()
    snapshot = {}

    def late_joiner(loop: CameraLoop):
        sub(loop)

        def ask():
            time.sleep(2.0)  # a kiosk that starts while the loop runs
            with Listener(loop.publisher.endpoint, snapshot_endpoint=loop.publisher.snapshot_endpoint,
                          plaintext=True) as lis:
                snapshot["events"] = lis.fetch_snapshot(timeout_s=5.0)
        snapshot["thread"] = threading.Thread(target=ask, daemon=True)
        snapshot["thread"].start()

    result = run(cfg, on_ready=late_joiner)
    snapshot["thread"].join(10)
    events, summary = sub.drain()
    labels = [e.msg for e in events if e.kind == "labels"]

    n = len(truth)
    assert n == int(SECONDS * FPS) and result.stopped_by == "eos"
    assert result.frames == {"cam0": n} and result.dropped == {"cam0": 0}
    assert [m["seq"] for m in labels] == list(range(n))            # every message, no gap
    assert [m["frame_index"] for m in labels] == list(range(n))    # every frame, in order
    assert summary["cam0"]["missed"] == 0
    for m in labels[::20]:
        messages.validate(m, "labels")
    assert labels[0]["model"]["backend"] == "onnxruntime" and len(labels[0]["slots"]) == 12

    snap = {e.kind: e.msg for e in snapshot["events"]}
    assert snap["status"]["state"] == "up"
    late = snap["labels"]
    messages.validate(late, "labels")
    assert 0 < late["seq"] < n
    live = labels[late["seq"]]
    assert [s["label"] for s in live["slots"]] == [s["label"] for s in late["slots"]]

    strict = _score(labels, truth)
    slot_acc, count_acc = _score(labels, truth, lag=cfg.postprocess.window // 2)
    note = f"(with no allowance for the smoothing delay: slots {strict[0]:.3f}, counts {strict[1]:.3f})"
    _ACCURACY["fp32"] = (slot_acc, count_acc, note)
    print(f"e2e FP32: slots {slot_acc:.4f}, counts {count_acc:.4f} {note}")
    # A floor that catches a broken loop (wrong crops, colour order, slot order): a loop that feeds the
    # model the wrong pixels lands far below it.
    assert slot_acc >= FLOOR, f"per-slot accuracy {slot_acc:.3f} {note}"


def test_smoothed_labels_meet_the_issue_target(trained_run, case_video):
    """The issue's bar: >= 95% of slot-frames and >= 95% of frames' counts right after smoothing."""
    if "fp32" not in _ACCURACY:
        pytest.skip("the whole-video test did not get as far as scoring")
    slot_acc, count_acc, note = _ACCURACY["fp32"]
    assert slot_acc >= 0.95, f"per-slot accuracy {slot_acc:.3f} {note}"
    assert count_acc >= 0.95, f"count accuracy {count_acc:.3f} {note}"


def test_camera_vanishes_mid_run_and_comes_back(trained_run, case_video):
    """A loopback MJPEG camera (FFmpeg reads it as an IP camera would be read) is stopped and restarted."""
    cap = cv2.VideoCapture(str(case_video["video"]))
    frames = [cap.read()[1] for _ in range(30)]
    cap.release()
    server = MjpegServer(size=SIZE, fps=FPS, frames=frames).start()
    cfg = _config(trained_run.run_dir, server.url, case_video["slots"])
    sub = Subscriber()
    seen = {}

    def ready(loop: CameraLoop):
        sub(loop)

        def outage():
            deadline = time.monotonic() + 20
            while loop.publisher.last_seq("cam0") in (None, 0, 1, 2, 3, 4) and time.monotonic() < deadline:
                time.sleep(0.05)
            seen["before"] = loop.publisher.last_seq("cam0")
            server.stop()
            time.sleep(1.5)
            server.start()
            while (loop.publisher.last_seq("cam0") or 0) < seen["before"] + 10 and time.monotonic() < deadline + 20:
                time.sleep(0.05)
            loop.stop()
        threading.Thread(target=outage, daemon=True).start()

    try:
        result = run(cfg, on_ready=ready)
    finally:
        server.stop()
    events, summary = sub.drain()
    states = [e.msg["state"] for e in events if e.kind == "status"]
    assert states[:3] == ["up", "down", "up"], states
    assert result.stopped_by == "stop" and result.reconnects["cam0"] >= 1
    labels = [e.msg for e in events if e.kind == "labels"]
    assert len(labels) >= seen["before"] + 10       # the loop went on after the camera came back
    assert [m["seq"] for m in labels] == list(range(len(labels)))
    assert summary["cam0"]["missed"] == 0


def test_int8_model_through_the_loop(trained_run, case_video, tmp_path):
    """The trained model calibrated to INT8 (QDQ, ONNX Runtime target only) runs the same video as well."""
    from calibration.pipeline import CalibrateOptions, run as calibrate

    out = tmp_path / "calib"
    calibrate(CalibrateOptions(model=trained_run.onnx, images=trained_run.train_dir, out=out, count=64,
                               targets=("onnxruntime",), max_drop=5.0, bench_iters=0, threads=2))
    truth = [json.loads(line) for line in case_video["truth"].read_text().splitlines()]
    cfg = _config(out, f"file://{case_video['video']}?realtime=0", case_video["slots"], precision="int8")
    sub = Subscriber()
    result = run(cfg, on_ready=sub)
    events, summary = sub.drain()
    labels = [e.msg for e in events if e.kind == "labels"]
    assert result.frames == {"cam0": len(truth)} and summary["cam0"]["missed"] == 0
    assert labels[0]["model"]["precision"] == "int8"
    slot_acc, count_acc = _score(labels, truth, lag=cfg.postprocess.window // 2)
    print(f"e2e INT8: slots {slot_acc:.4f}, counts {count_acc:.4f}")
    assert slot_acc >= 0.95, slot_acc                # the issue's slot-frame bar holds on INT8 too
    if "fp32" in _ACCURACY:  # INT8 keeps what FP32 gets on the same video, within 2 points
        assert slot_acc >= _ACCURACY["fp32"][0] - 0.02, (slot_acc, _ACCURACY["fp32"])
