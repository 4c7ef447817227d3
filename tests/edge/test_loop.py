"""The camera loop with real parts: video files, ONNX Runtime, ZeroMQ on loopback, Prometheus, sd_notify."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import onnx
import pytest

from edge.cli.main import main as cli_main
from edge.config.device import parse_config
from edge.errors import ConfigError, ManifestError, RuntimeUnavailable
from edge.link import messages
from edge.link.listen import Listener
from edge.loop.run import CameraLoop, run
from edge.manifest import Manifest
from edge.runtimes.registry import available_runtimes
from tests.helpers import Subscriber, device_config, loopback_publish, write_video, write_yaml

SLOTS = [{"name": "a", "rect": [0, 0, 0.5, 0.5]}, {"name": "b", "rect": [0.5, 0, 1, 0.5]},
         {"name": "c", "rect": [0, 0.5, 1, 1]}]


def _config(model, cameras, **over):
    pins = over.pop("pins", {})
    data = _config_data(model, cameras, **over)
    data["model"].update(pins)
    return parse_config(data, "test.yaml")


def _cam(cid, video, query="realtime=0", **extra):
    return {"id": cid, "source": f"file://{video}?{query}", "slots": extra.pop("slots", SLOTS), **extra}


def test_a_cropped_source_publishes_what_the_whole_frame_does(untrained_onnx, tmp_path):
    """crop= hands the loop part of the frame and moves the slots into it: the same pixels reach the model."""
    video = write_video(tmp_path / "v.avi", frames=4, size=(160, 120))
    slots = [{"name": "a", "rect": [0.25, 0.25, 0.5, 0.5]}, {"name": "b", "rect": [0.5, 0.25, 0.75, 0.75]}]
    scores = []
    for query in ("realtime=0", "realtime=0&crop=0.25,0.25,0.75,0.75"):
        sub = Subscriber()
        result = run(_config(untrained_onnx, [_cam("cam0", video, query, slots=slots)]), on_ready=sub)
        assert result.frames == {"cam0": 4}
        scores.append([[s["score"] for s in e.msg["slots"]] for e in sub.drain() if e.kind == "labels"])
    assert len(scores[0]) == 4 and scores[0] == scores[1]


def test_every_frame_published_in_order(untrained_onnx, tmp_path):
    video = write_video(tmp_path / "v.avi", frames=20)
    sub = Subscriber()
    result = run(_config(untrained_onnx, [_cam("cam0", video)]), on_ready=sub)
    events = sub.drain()
    labels = [e.msg for e in events if e.kind == "labels"]
    assert result.stopped_by == "eos" and result.frames == {"cam0": 20}
    assert [m["seq"] for m in labels] == list(range(20))
    assert [m["frame_index"] for m in labels] == list(range(20))
    for m in labels:
        messages.validate(m, "labels")
        assert [s["name"] for s in m["slots"]] == ["a", "b", "c"]
        assert sum(m["counts"].values()) == 3
        assert m["model"] == {"name": "untrained", "version": "0.0.1", "precision": "fp32", "backend": "onnxruntime"}
        assert m["latencies_ms"]["total"] >= m["latencies_ms"]["infer"] > 0
    states = [e.msg["state"] for e in events if e.kind == "status"]
    assert states == ["up", "eos"]
    assert sub.listener.summary()["cam0"]["missed"] == 0
    assert result.slot_images == 60 and len(result.total_ms) == 20
    # One meaning of total: what the message says is what the run (and the bench) reports.
    assert [m["latencies_ms"]["total"] for m in labels] == pytest.approx(result.total_ms, abs=1e-3)


@pytest.mark.skipif(available_runtimes().get("openvino") is not None, reason="openvino not installed")
def test_openvino_normalising_inside_its_model_publishes_the_float_paths_labels(untrained_onnx, tmp_path):
    """The loop hands OpenVINO (uint8_input, the default) the resized crops; the labels and scores it
    publishes are those of the manifest's float batch (uint8_input: false)."""
    video = write_video(tmp_path / "v.avi", frames=6)
    published = {}
    for uint8 in (True, False):
        sub = Subscriber()
        runtime = {"name": "openvino", "options": {"threads": 2, "uint8_input": uint8}}
        result = run(_config(untrained_onnx, [_cam("cam0", video)], runtime=runtime), on_ready=sub)
        assert result.frames == {"cam0": 6}
        published[uint8] = [[(s["label"], s["score"]) for s in e.msg["slots"]]
                            for e in sub.drain() if e.kind == "labels"]
    assert len(published[True]) == 6
    for raw, flt in zip(published[True], published[False]):
        assert [label for label, _ in raw] == [label for label, _ in flt]
        assert [c for _, c in raw] == pytest.approx([c for _, c in flt], abs=1e-4)


def test_two_cameras_share_one_batch_and_snapshot(untrained_onnx, tmp_path):
    v0 = write_video(tmp_path / "a.avi", frames=12)
    v1 = write_video(tmp_path / "b.avi", frames=12, size=(320, 240), channels_seed=1)
    sub = Subscriber()
    result = run(_config(untrained_onnx, [_cam("cam0", v0), _cam("cam1", v1)]), on_ready=sub)
    assert result.frames == {"cam0": 12, "cam1": 12}
    assert result.slot_images == 72
    assert result.batches < 24  # frames of both cameras went through the runtime together
    labels = [e.msg for e in sub.drain() if e.kind == "labels"]
    for cam in ("cam0", "cam1"):
        assert [m["seq"] for m in labels if m["camera"] == cam] == list(range(12))


def test_late_joiner_gets_the_snapshot(untrained_onnx, tmp_path):
    video = write_video(tmp_path / "v.avi", frames=40, fps=50.0)
    cfg = _config(untrained_onnx, [_cam("cam0", video, "loop=1")])
    got = {}

    def late(loop: CameraLoop):
        def ask():
            time.sleep(1.0)  # joins while the loop runs
            with Listener(loop.publisher.endpoint, snapshot_endpoint=loop.publisher.snapshot_endpoint,
                          plaintext=True) as lis:
                got["events"] = lis.fetch_snapshot(timeout_s=3.0)
            loop.stop()
        threading.Thread(target=ask, daemon=True).start()

    result = run(cfg, on_ready=late)
    assert result.stopped_by == "stop"
    snap = {e.kind: e.msg for e in got["events"]}
    assert snap["labels"]["camera"] == "cam0" and snap["labels"]["seq"] > 0
    assert snap["status"]["state"] == "up"


def test_missing_camera_is_down_while_the_other_runs(untrained_onnx, tmp_path):
    video = write_video(tmp_path / "v.avi", frames=30)
    # At the file's own rate, so that the run lasts long enough for heartbeats to report cam1 down.
    cfg = _config(untrained_onnx, [_cam("cam0", video, "realtime=1"), _cam("cam1", tmp_path / "nope.avi",
                                                             reconnect={"initial_s": 0.05, "max_s": 0.1})])
    sub = Subscriber()
    result = run(cfg, max_frames=25, on_ready=sub)
    events = sub.drain()
    assert result.stopped_by == "max_frames" and result.frames == {"cam0": 25, "cam1": 0}
    down = [e.msg for e in events if e.kind == "status" and e.msg["camera"] == "cam1"]
    assert down and down[0]["state"] == "down" and "file not found" in down[0]["detail"]
    beats = [e.msg for e in events if e.kind == "heartbeat" and "cam1" in e.msg["cameras"]]
    assert beats and beats[-1]["cameras"]["cam1"]["state"] == "down"
    # The bounded run ends as a recording does: the camera that was up says eos; the one down stays down.
    ended = [e.msg for e in events if e.kind == "status" and e.msg["state"] == "eos"]
    assert [m["camera"] for m in ended] == ["cam0"] and "--max-frames 25" in ended[0]["detail"]


def _config_data(model, cameras, **over):
    return device_config(model, cameras, threads=2, publish=loopback_publish(heartbeat_s=0.2, hwm=100000), **over)


def test_sigterm_stops_cleanly_and_systemd_hears_it(untrained_onnx, tmp_path):
    """As systemd runs it: its own process, NOTIFY_SOCKET and WATCHDOG_USEC set, stopped by SIGTERM."""
    video = write_video(tmp_path / "v.avi", frames=20, fps=30.0)
    config = tmp_path / "edge.yaml"
    write_yaml(config, _config_data(untrained_onnx, [_cam("cam0", video, "loop=1")]))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="400000")
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        datagrams = [sock.recv(4096).decode()]          # READY=1 once the model and cameras are up
        sock.settimeout(2)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                datagrams.append(sock.recv(4096).decode())
            except socket.timeout:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        while True:
            try:
                datagrams.append(sock.recv(4096).decode())
            except socket.timeout:
                break
    finally:
        proc.kill()
        sock.close()
    assert proc.returncode == 0, err[-2000:]
    assert datagrams[0].startswith("READY=1") and datagrams[-1] == "STOPPING=1", datagrams
    assert "WATCHDOG=1" in datagrams
    assert "stopped (stop)" in out


def test_metrics_are_served_on_localhost(untrained_onnx, tmp_path):
    video = write_video(tmp_path / "v.avi", frames=20, fps=30.0)
    cfg = _config(untrained_onnx, [_cam("cam0", video, "loop=1")], metrics={"host": "127.0.0.1", "port": 0})
    seen = {}

    def scrape(loop: CameraLoop):
        def get():
            time.sleep(1.0)
            url = f"http://127.0.0.1:{loop.metrics.port}/metrics"
            try:
                seen["metrics"] = urllib.request.urlopen(url, timeout=5).read().decode()
            finally:
                loop.stop()
        threading.Thread(target=get, daemon=True).start()

    result = run(cfg, on_ready=scrape)
    assert result.stopped_by == "stop" and result.frames["cam0"] > 5
    assert 'gemsight_frames_total{camera="cam0"}' in seen["metrics"]
    assert 'gemsight_stage_latency_seconds_bucket{le="0.001",stage="preprocess"}' in seen["metrics"]


def test_annotate_writes_a_video(untrained_onnx, tmp_path):
    video = write_video(tmp_path / "v.avi", frames=6)
    result = run(_config(untrained_onnx, [_cam("cam0", video)]), annotate=tmp_path / "ann.mp4")
    assert result.annotated == [tmp_path / "ann.mp4"] and (tmp_path / "ann.mp4").stat().st_size > 1000


def _bare_model(src, folder, **manifest_changes):
    """The model without its embedded manifest, and a manifest.json beside it that says otherwise."""
    folder.mkdir()
    proto = onnx.load(str(src))
    del proto.metadata_props[:]
    onnx.save(proto, str(folder / "model.onnx"))
    Manifest.load(src.parent / "manifest.json").updated(**manifest_changes).save(folder / "manifest.json")
    return folder / "model.onnx"


def test_model_that_does_not_match(untrained_onnx, tmp_path):
    video = write_video(tmp_path / "v.avi", frames=3)
    cam = [_cam("cam0", video)]
    with pytest.raises(ConfigError, match=r"model.classes \['ring', 'watch'\] does not match .*'ring', 'necklace'"):
        run(_config(untrained_onnx, cam, pins={"classes": ["ring", "watch"]}))
    with pytest.raises(ConfigError, match=r"model.input_size \[224, 224\] does not match .*\[64, 64\]"):
        run(_config(untrained_onnx, cam, pins={"input_size": [224, 224]}))
    wrong_size = _bare_model(untrained_onnx, tmp_path / "size", input={"size": (96, 96)})
    with pytest.raises(ManifestError, match=r"does not run on its manifest's input 1x3x96x96"):
        run(_config(wrong_size, cam))
    five = _bare_model(untrained_onnx, tmp_path / "five", classes=("a", "b", "c", "d", "e"))
    with pytest.raises(ManifestError, match=r"output has 8 values but the manifest names 5 classes"):
        run(_config(five, cam))


def test_named_runtime_that_cannot_run_is_an_error(untrained_onnx, tmp_path):
    video = write_video(tmp_path / "v.avi", frames=3)
    with pytest.raises(RuntimeUnavailable, match="runtime 'tensorrt' is not available"):
        run(_config(untrained_onnx, [_cam("cam0", video)], runtime={"name": "tensorrt"}))


def test_cli_check_and_run(untrained_onnx, tmp_path, capsys):
    video = write_video(tmp_path / "v.avi", frames=8)
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(f"""device: case-01
model: {{path: {untrained_onnx}}}
runtime: {{name: onnxruntime, options: {{threads: 2}}}}
cameras:
  - {{id: cam0, source: "file://{video}?realtime=0", slots: [{{name: a, rect: [0, 0, 0.5, 0.5]}}]}}
publish: {{endpoint: "tcp://127.0.0.1:*", snapshot_endpoint: null, curve: null}}
metrics: {{port: null}}
""")
    assert cli_main(["check", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {cfg}: ") and "model untrained 0.0.1 (fp32) on onnxruntime" in out
    assert "camera cam0: 160x120" in out and out.rstrip().endswith("link: PLAINTEXT (publish.curve: null)")
    assert cli_main(["run", "--config", str(cfg), "--max-frames", "5"]) == 0
    assert "cam0: 5 frames" in capsys.readouterr().out
    shutil.move(video, tmp_path / "gone.avi")
    assert cli_main(["check", "--config", str(cfg), "--timeout", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("gemsight-edge: error: camera cam0: file://") and err[-1].endswith("file not found")
    cfg.write_text(cfg.read_text().replace("rect: [0, 0, 0.5, 0.5]", "rect: [0, 0, 1.5, 0.5]"))
    assert cli_main(["check", "--config", str(cfg)]) == 2
    assert "cameras.0.slots.0.rect" in capsys.readouterr().err


def test_frames_that_cannot_be_cropped_are_skipped_not_fatal(untrained_onnx, tmp_path, caplog):
    good = write_video(tmp_path / "good.avi", frames=8)
    tiny = write_video(tmp_path / "tiny.avi", frames=8, size=(32, 24))  # 3x2 px slots: too small
    cams = [_cam("cam0", good), {"id": "cam1", "source": f"file://{tiny}?realtime=0",
                                 "slots": [{"name": "t", "rect": [0, 0, 0.1, 0.1]}]}]
    result = run(_config(untrained_onnx, cams))
    assert result.stopped_by == "eos" and result.frames == {"cam0": 8, "cam1": 0}
    warnings = [r.getMessage() for r in caplog.records if "frame skipped" in r.getMessage()]
    assert len(warnings) == 1 and "slot 't' is only" in warnings[0]  # logged once, not per frame


def test_a_device_keeps_no_latency_samples(untrained_onnx, tmp_path):
    """`gemsight-edge run` passes samples=0: a months-long run must not grow a list per frame."""
    video = write_video(tmp_path / "v.avi", frames=12)
    result = run(_config(untrained_onnx, [_cam("cam0", video)]), samples=0)
    assert result.frames == {"cam0": 12} and result.total_ms == [] and result.publish_ms == []
    assert len(run(_config(untrained_onnx, [_cam("cam0", video)]), samples=5).total_ms) == 5
