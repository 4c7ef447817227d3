"""The loop a user would write without gemsight: the reference that ``bench/loop.py`` measures gemsight against.

About thirty lines (:func:`user_loop`): ``cv2.VideoCapture.read()``, crop the slots, resize each crop
to the model's input by the model's own rule, normalise into one batch, one runtime call (ONNX
Runtime's ``session.run`` or OpenVINO's ``compiled_model(...)``), argmax, and a JSON message on a
plain ZeroMQ PUB socket. Everything in one thread, one frame after the other: decoding, cropping and
preprocessing do not overlap inference. It pays for decoding, as gemsight does.

It imports nothing of gemsight (this module is loaded in a fresh child process that never imports
``edge``): it reads the slot map YAML and the model's ``manifest.json`` with ``yaml`` and ``json``, as a
user would read them from the model card. It runs the same model file, with the same runtime settings
(threads, spinning, exact INT8 / performance hint, precision) as the device's defaults give gemsight, so
the comparison is between the loops and not between runtime configurations.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

# The resize rules of a gemsight manifest, as OpenCV flags (a user reads them from the model card).
ENDPOINT = "tcp://127.0.0.1:*"   # loopback, any free port
INTERPOLATION = {"area": 3, "linear": 1, "nearest": 0, "cubic": 2}   # cv2.INTER_*


def open_runtime(runtime: str, model: Path, options: dict) -> Callable[[np.ndarray], np.ndarray]:
    """``infer(batch) -> logits`` for the model, with the runtime set up as the device's options say.

    ``options`` are gemsight's device options for the runtime (``edge/defaults/edge.yaml``), turned here
    into the runtime's own settings by hand, so both loops run the runtime identically.
    """
    if runtime == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(options.get("threads") or 0)
        if options.get("allow_spinning") is not None:
            flag = "1" if options["allow_spinning"] else "0"
            so.add_session_config_entry("session.intra_op.allow_spinning", flag)
            so.add_session_config_entry("session.inter_op.allow_spinning", flag)
        if options.get("spin_between_runs") is not None:
            so.add_session_config_entry("session.force_spinning_stop", "0" if options["spin_between_runs"] else "1")
        if options.get("exact_int8"):     # resolved by bench/loop.py as the device resolves it
            so.add_session_config_entry("session.x64quantprecision", "1")
        session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda batch: session.run(None, {name: batch})[0]
    if runtime == "openvino":
        import openvino as ov

        config = {"PERFORMANCE_HINT": options.get("hint") or "LATENCY",
                  "INFERENCE_PRECISION_HINT": options.get("inference_precision") or "f32"}
        if options.get("threads"):
            config["INFERENCE_NUM_THREADS"] = int(options["threads"])
        compiled = ov.Core().compile_model(str(model), options.get("device") or "CPU", config)
        return lambda batch: compiled(batch)[0]
    raise ValueError(f"reference loop: no runtime '{runtime}' (onnxruntime or openvino)")


def user_loop(video: str, slots: list[list[float]], manifest: dict, infer: Callable[[np.ndarray], np.ndarray],
              endpoint: str, until: float, paced_fps: float | None, record: list[tuple[float, float]]) -> None:
    """The reference loop itself, until ``time.monotonic() >= until``.

    ``slots``: normalised ``[x0, y0, x1, y1]`` rectangles. ``paced_fps``: read a frame only at its time (a
    camera's frame exists only from its capture on); ``None``: as fast as it goes. ``record`` gets
    ``(captured, published)`` monotonic times per frame; captured is when ``read()`` returned, the same
    instant gemsight's capture→publish latency starts from.
    """
    import cv2
    import zmq

    spec = manifest["input"]
    h, w = spec["size"]
    mean = np.array(spec["mean"], np.float32).reshape(1, 1, 1, 3)
    std = np.array(spec["std"], np.float32).reshape(1, 1, 1, 3)
    interp, classes = INTERPOLATION[spec["interpolation"]], manifest["classes"]
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    cap = cv2.VideoCapture(video)
    t_next = time.monotonic()
    while time.monotonic() < until:
        if paced_fps:
            time.sleep(max(0.0, t_next - time.monotonic()))
            t_next += 1.0 / paced_fps
        ok, frame = cap.read()
        if not ok:                                 # the file ended: play it again
            cap.release()
            cap = cv2.VideoCapture(video)
            continue
        captured = time.monotonic()
        fh, fw = frame.shape[:2]
        crops = [frame[int(y0 * fh):int(y1 * fh), int(x0 * fw):int(x1 * fw)] for x0, y0, x1, y1 in slots]
        images = np.stack([cv2.resize(c, (w, h), interpolation=interp) for c in crops])
        if spec["color"] == "RGB":
            images = images[..., ::-1]
        batch = np.ascontiguousarray(((images.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2))
        logits = infer(batch)
        top = logits.argmax(axis=1)
        message = {"camera": "cam0", "ts": time.time(), "labels": [classes[i] for i in top]}
        pub.send_multipart([b"labels/cam0", json.dumps(message).encode()])
        record.append((captured, time.monotonic()))
    cap.release()
    pub.close()


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every process, /proc/stat): how shared the cores were."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def run_reference(job: dict) -> dict:
    """One round of the reference loop: ``loop_s`` as fast as it goes after ``warm_s`` (frames/s, CPU per
    frame), then ``paced_s`` at 10 fps after a second of warm-up (capture→publish latencies)."""
    import yaml

    model = Path(job["model_file"])
    manifest = json.loads(Path(job["manifest"]).read_text())
    slots = [s["rect"] for s in yaml.safe_load(Path(job["slots_file"]).read_text())["slots"]]
    infer = open_runtime(job["runtime"], model, job["options"])
    out: dict = {}
    if job.get("loop_s"):
        record: list[tuple[float, float]] = []
        marks: list = []
        t_start = time.monotonic()
        timer = threading.Timer(job["warm_s"], lambda: marks.append((time.monotonic(), os.times(), machine_busy())))
        timer.start()
        user_loop(job["video"], slots, manifest, infer, ENDPOINT, t_start + job["warm_s"] + job["loop_s"], None,
                  record)
        c1, m1 = os.times(), machine_busy()
        timer.join()
        t0, c0, m0 = marks[0]
        done = [r for r in record if r[1] >= t0]
        span = done[-1][1] - done[0][1] if len(done) > 1 else float("nan")
        cpu = (c1.user - c0.user) + (c1.system - c0.system)
        out["fast"] = {"frames_per_s": (len(done) - 1) / span, "frames": len(done),
                       "cpu_cores": cpu / (c1.elapsed - c0.elapsed), "cpu_ms_per_frame": cpu / max(1, len(done)) * 1e3,
                       "machine_busy_cores": (m1 - m0) / (c1.elapsed - c0.elapsed)}
    if job.get("paced_s"):
        record = []
        t_start = time.monotonic()
        user_loop(job["video"], slots, manifest, infer, ENDPOINT, t_start + 1.0 + job["paced_s"], 10.0, record)
        out["paced"] = {"capture_to_publish_ms": [(b - a) * 1000.0 for a, b in record if a >= t_start + 1.0]}
    return out


def child(job: dict, queue) -> None:
    """Entry point of a fresh (spawned) child process: one round, put on ``queue`` as a dict. It says
    whether anything of gemsight was imported (it must not be: the reference is a user's own loop)."""
    import sys

    out: dict = {"job": {k: v for k, v in job.items() if k not in ("video", "slots_file")}}
    try:
        out.update(run_reference(job))
    except Exception as exc:  # the parent reports it with the job
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["gemsight_imported"] = sorted(m for m in sys.modules if m == "edge" or m.startswith("edge."))
    queue.put(out)
