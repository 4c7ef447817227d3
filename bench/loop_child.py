"""What ``bench/loop.py`` runs in a fresh child process per measurement (its RSS and CPU are the loop's).

One job: optionally the loop at the camera's rate (10 fps: latency, CPU, RSS), then rounds that
alternate the runtime alone on the loop's batch and the loop as fast as the video decodes, each
over a measured window after a warm-up. Everything is real: video files decoded by OpenCV, the
runtime, ZeroMQ on loopback.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def peak_rss_mib() -> float:
    """This process's own RSS high-water mark (VmHWM; ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every thread of this process: ``{tid: (name, seconds)}``."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(task.name)] = (names.get(int(task.name), comm), (int(fields[11]) + int(fields[12])) / tick)
    return out


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every process; /proc/stat), to tell this loop's own
    limit from cores taken by other processes on a shared machine."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_by_role(a: dict, b: dict, wall: float) -> dict[str, float]:
    """Cores used per role over a window: the loop's own threads by name, the rest (the runtime's
    worker threads, the decoder's threads, ZeroMQ's I/O thread) as ``runtime and libraries``."""
    roles: dict[str, float] = {}
    for tid, (name, sec) in b.items():
        used = sec - a.get(tid, (name, 0.0))[1]
        role = ("grabbers (decode)" if name.startswith("grab-") else "batching (crop, preprocess)"
                if name == "batch" or name.startswith("prep") else "inference thread (also one of the runtime's workers)" if name == "infer"
                else "loop thread (postprocess, publish)" if name == "MainThread" else "runtime and libraries")
        roles[role] = roles.get(role, 0.0) + used / wall
    return roles


def loop_config(job: dict, realtime: bool) -> dict:
    query = f"loop=1&realtime={int(realtime)}"
    cams = [{"id": f"cam{i}", "source": f"file://{job['video']}?{query}", "slots_file": job["slots_file"]}
            for i in range(job["cameras"])]
    return {"device": "bench", "model": {"path": job["model"], "precision": "int8"},
            "runtime": {"name": job["runtime"], "options": job["options"]}, "cameras": cams,
            "publish": {"endpoint": "tcp://127.0.0.1:*", "snapshot_endpoint": "tcp://127.0.0.1:*", "hwm": 1000,
                        "curve": None},  # loopback, plaintext: the figures are the loop's, not the cipher's
            "metrics": {"port": None}}


def run_loop(job: dict, realtime: bool, warm_s: float, measure_s: float) -> dict:
    """Run the loop; measure slot-images/s between two publish instants after ``warm_s``, latencies
    of the messages published in the window, CPU of the whole process over the window."""
    from edge.config.device import parse_config
    from edge.loop.metrics import LoopMetrics
    from edge.loop.run import CameraLoop

    metrics = LoopMetrics()
    loop = CameraLoop(parse_config(loop_config(job, realtime), "bench"), metrics=metrics)
    marks: dict[str, tuple] = {}

    def sample() -> None:
        while loop.result.slot_images == 0 and not loop.stop_event.is_set():
            time.sleep(0.01)
        time.sleep(warm_s)
        r = loop.result
        marks["a"] = (r.slot_images, r.last_publish, len(r.total_ms), os.times(), dict(r.stage_s), sum(
            c.frames for c in loop.cameras))
        marks["threads_a"] = thread_cpu()
        marks["machine_a"] = machine_busy()
        time.sleep(measure_s)
        marks["machine_b"] = machine_busy()
        marks["b"] = (r.slot_images, r.last_publish, len(r.total_ms), os.times(), dict(r.stage_s), sum(
            c.frames for c in loop.cameras))
        marks["threads_b"] = thread_cpu()
        loop.stop()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    res = loop.run()
    sampler.join(5)
    (n0, p0, i0, c0, s0, f0), (n1, p1, i1, c1, s1, f1) = marks["a"], marks["b"]
    wall = c1.elapsed - c0.elapsed
    frames = max(1, f1 - f0)
    total = [t + p for t, p in zip(res.total_ms[i0:i1], res.publish_ms[i0:i1])]
    span = (p1 - p0) if p1 is not None and p0 is not None and p1 > p0 else float("nan")  # no batch: no figure
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return {"slot_images_per_s": (n1 - n0) / span, "frames_per_s": frames / span,
            "frames": frames, "dropped": sum(res.dropped.values()),
            "capture_to_publish_ms": {"p50": pct(total, 50), "p99": pct(total, 99), "n": len(total)},
            "samples_ms": total,
            "cpu_cores": cpu / wall, "cpu_ms_per_frame": cpu / frames * 1000.0,
            "machine_busy_cores": (marks["machine_b"] - marks["machine_a"]) / wall,
            "cpu_cores_by_role": cpu_by_role(marks["threads_a"], marks["threads_b"], wall),
            # infer: each frame's batch's runtime call (so per batch, not per frame's share of it)
            "breakdown_ms_per_frame": {k: (s1[k] - s0.get(k, 0.0)) * 1000.0 / frames for k in s1}}


def batch_for(job: dict, writer) -> np.ndarray:
    """The loop's batch: every slot of every camera, cropped from the video's first frame, made by the
    runtime's own batch writer (as the loop makes it: float32, or uint8 images)."""
    import cv2

    from edge.config.device import load_slots_file
    from edge.loop.slots import SlotMap

    cap = cv2.VideoCapture(job["video"])
    ok, frame = cap.read()
    cap.release()
    crops = SlotMap(load_slots_file(job["slots_file"])).crop(frame) * job["cameras"]
    return writer.batch(crops)


def run_alone(rt, batch: np.ndarray, seconds: float) -> dict:
    """The runtime on its own, back to back on one batch, for about ``seconds``."""
    for _ in range(3):
        rt(batch)
    times = []
    c0 = os.times()
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 5:
        t0 = time.perf_counter()
        rt(batch)
        times.append(time.perf_counter() - t0)
    c1 = os.times()
    total = sum(times)
    return {"slot_images_per_s": len(batch) * len(times) / total, "ms_per_batch": total / len(times) * 1000,
            "p50_ms": pct(times, 50) * 1000, "p99_ms": pct(times, 99) * 1000, "batches": len(times),
            "cpu_cores": ((c1.user - c0.user) + (c1.system - c0.system)) / (c1.elapsed - c0.elapsed)}


def run_alone_paced(rt, batch: np.ndarray, seconds: float, fps: float = 10.0) -> dict:
    """The runtime on its own at the camera's pace: one batch every 1/fps s, idle in between (as in
    the loop at 10 fps, where each batch finds the runtime's threads asleep)."""
    for _ in range(3):
        rt(batch)
    times = []
    t_next = time.perf_counter()
    t_end = t_next + seconds
    while t_next < t_end:
        time.sleep(max(0.0, t_next - time.perf_counter()))
        t0 = time.perf_counter()
        rt(batch)
        times.append(time.perf_counter() - t0)
        t_next += 1.0 / fps
    return {"p50_ms": pct(times, 50) * 1000, "p99_ms": pct(times, 99) * 1000, "batches": len(times)}


def gemsight_round(job: dict) -> dict:
    """One round of gemsight's loop against the reference (:mod:`bench.loop_reference` does the same
    windows): ``loop_s`` as fast as the video decodes after ``warm_s``, then ``paced_s`` at 10 fps after a
    second of warm-up, then (``alone_s``) the runtime alone on the loop's batch for the old ratio."""
    from edge.runtimes.registry import create_runtime

    out: dict = {}
    if job.get("loop_s"):
        out["fast"] = run_loop(job, realtime=False, warm_s=job["warm_s"], measure_s=job["loop_s"])
    if job.get("paced_s"):
        out["paced"] = run_loop(job, realtime=True, warm_s=1.0, measure_s=job["paced_s"])
    out["peak_rss_mib"] = peak_rss_mib()  # before the runtime-alone instance exists
    if job.get("alone_s"):
        with create_runtime(job["runtime"], job["model"], precision="int8", **job["options"]) as rt:
            batch = batch_for(job, rt.batch_writer())
            out["batch"], out["input"] = len(batch), list(rt.manifest.input.size)
            out["alone"] = run_alone(rt, batch, job["alone_s"])
    return out


def child(job: dict, queue) -> None:
    """Entry point of the child process: put one dict of results on ``queue``."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("edge.link.policy").setLevel(logging.ERROR)  # plaintext on loopback, on purpose
    logging.getLogger("edge.loop.slot_states").setLevel(logging.ERROR)   # an untrained model has no embedding
    from edge.runtimes.registry import create_runtime

    out: dict = {"job": {k: v for k, v in job.items() if k not in ("video", "slots_file")}}
    if job.get("kind") in ("gemsight", "trace"):
        try:
            out.update(gemsight_round(job) if job["kind"] == "gemsight" else trace_loop(job))
        except Exception as exc:  # the parent reports it with the job
            out["error"] = f"{type(exc).__name__}: {exc}"
        queue.put(out)
        return
    try:
        if job.get("paced_s"):
            paced = run_loop(job, realtime=True, warm_s=1.0, measure_s=job["paced_s"])
            paced["peak_rss_mib"] = peak_rss_mib()  # before the runtime-alone instance exists
            out["paced"] = paced
        rounds = []
        if job.get("rounds"):
            with create_runtime(job["runtime"], job["model"], precision="int8", **job["options"]) as rt:
                batch = batch_for(job, rt.batch_writer())
                out["batch"], out["input"] = len(batch), list(rt.manifest.input.size)
                if job.get("alone_paced_s"):
                    out["alone_paced"] = run_alone_paced(rt, batch, job["alone_paced_s"])
                for _ in range(job["rounds"]):
                    alone = run_alone(rt, batch, job["alone_s"])
                    fast = run_loop(job, realtime=False, warm_s=job["warm_s"], measure_s=job["loop_s"])
                    rounds.append({"alone": alone, "loop": fast,
                                   "ratio": fast["slot_images_per_s"] / alone["slot_images_per_s"]})
        out["rounds"] = rounds
        out["peak_rss_mib"] = peak_rss_mib()
    except Exception as exc:  # the parent reports it with the job
        out["error"] = f"{type(exc).__name__}: {exc}"
    queue.put(out)


TRACE_STAGES = ("wait", "prepare", "hand-off", "infer", "finish")


def trace_loop(job: dict) -> dict:
    """gemsight's loop at 10 fps for ``paced_s`` with a timestamp per stage of every frame, and what else
    happened in the process (garbage collections with their generation and length, the video's reopening)
    on the same clock, so a slow frame can be matched with its cause.

    A frame's stages: ``wait`` (captured → the batching thread took it), ``prepare`` (crop and preprocess),
    ``hand-off`` (prepared → the runtime call started), ``infer`` (the runtime call), ``finish`` (the call
    returned → the labels message sent: the loop thread's wake-up, postprocess, encode, send)."""
    import gc

    import edge.capture.sources as sources
    from edge.config.device import parse_config
    from edge.loop.run import CameraLoop

    events: list[tuple[str, float, float, int | str]] = []   # (kind, start, seconds, detail)
    gc_start: dict[int, float] = {}

    def on_gc(phase: str, info: dict) -> None:
        now = time.monotonic()
        if phase == "start":
            gc_start[threading.get_ident()] = now
        else:
            t0 = gc_start.pop(threading.get_ident(), now)
            events.append((f"gc{info['generation']}", t0, now - t0, threading.current_thread().name))

    opened = sources.open_capture

    def traced_open(spec):
        t0 = time.monotonic()
        try:
            return opened(spec)
        finally:
            events.append(("video opened", t0, time.monotonic() - t0, ""))

    rows: list[dict] = []

    class TracedLoop(CameraLoop):
        def _publish_frame(self, span, logits, batch, embeddings) -> None:
            super()._publish_frame(span, logits, batch, embeddings)
            f = span.frame
            rows.append({"index": f.index, "captured": f.t_mono, "decode_ms": f.decode_s * 1e3,
                         "t": [f.t_mono, batch.t0, batch.t1, batch.t_in, batch.t_out, time.monotonic()]})

    gc.callbacks.append(on_gc)
    sources.open_capture = traced_open
    try:
        loop = TracedLoop(parse_config(loop_config(job, True), "bench"))
        threading.Timer(1.0 + job["paced_s"], loop.stop).start()
        loop.run()
    finally:
        gc.callbacks.remove(on_gc)
        sources.open_capture = opened
    rows = [r for r in rows if r["captured"] >= rows[0]["captured"] + 1.0]   # a second of warm-up
    for r in rows:
        t = r.pop("t")
        r["stages_ms"] = {k: (b - a) * 1e3 for k, a, b in zip(TRACE_STAGES, t, t[1:])}
        r["total_ms"] = (t[-1] - t[0]) * 1e3
        r["span"] = [t[0], t[-1]]
    return {"frames": rows, "events": [{"kind": k, "t": t, "ms": s * 1e3, "thread": d} for k, t, s, d in events],
            "gc_threshold": list(gc.get_threshold()), "gc_frozen": gc.get_freeze_count()}
