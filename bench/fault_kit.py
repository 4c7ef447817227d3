"""What the fault-campaign benches share: a tiny model, a case video, an edge config, the edge as a
child process (``python -m edge run``, what ``gemsight-edge run`` is on a device), a real ZeroMQ
subscriber that counts ``seq`` gaps, and /proc sampling of a process (RSS, open files, threads, CPU).

The model is a deliberately small ONNX network (one strided 3x3 convolution, global average pooling,
a linear layer; 32 px input, the 8 default classes, random weights) run by ONNX Runtime like any
other: the benches measure the loop, its sockets and its camera handling, not a network, and must
keep the edge at 10 fps well under one core on a 2-core machine. Its labels are meaningless.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
MODEL_NOTE = ("tiny ONNX net (conv3x3/2 8ch + GAP + linear, 32 px, random weights), ONNX Runtime FP32, "
              "1 thread")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def tiny_model(out_dir: Path, side: int = 32) -> Path:
    """Write ``model.onnx`` (manifest embedded) and ``manifest.json`` into ``out_dir``; returns the .onnx."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edge.contracts import DEFAULT_CLASSES
    from edge.manifest import InputSpec, Manifest, embed_manifest

    rng = np.random.default_rng(0)
    n_cls = len(DEFAULT_CLASSES)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(8, np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((8, n_cls)).astype(np.float32), "fc"),
             numpy_helper.from_array(np.zeros(n_cls, np.float32), "fcb")]
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["m"]),
             helper.make_node("Add", ["m", "fcb"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            ["batch", 3, side, side])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_cls])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    manifest = Manifest(name="bench-tiny", version="0.0.1", arch="tiny-conv", classes=DEFAULT_CLASSES,
                        input=InputSpec(size=(side, side)))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    onnx.save(embed_manifest(proto, manifest), str(path))
    manifest.save(out_dir / "manifest.json")
    return path


def case_video(out: Path, seconds: float = 30.0, size: tuple[int, int] = (640, 360)) -> dict[str, Path]:
    """A 10 fps synthetic display case (3x4 slots): ``{"video", "slots", "truth"}``."""
    from trainer.synth import make_video

    return make_video(out, slots=(3, 4), seconds=seconds, fps=10.0, size=size, seed=3)


def edge_config(path: Path, model: Path, sources: list[tuple[str, str, Path | None]], *,
                endpoint: str | None = None, hwm: int | None = None, reconnect: dict | None = None) -> Path:
    """Write an ``edge.yaml`` for ``sources`` = ``[(camera id, URI, slots file or None)]``."""
    from tests.helpers import device_config, loopback_publish, write_yaml

    publish = loopback_publish()
    if endpoint:
        publish["endpoint"] = endpoint
    if hwm:
        publish["hwm"] = hwm
    cams = []
    for cam_id, uri, slots in sources:
        cam: dict[str, Any] = {"id": cam_id, "source": uri}
        if slots is not None:
            cam["slots_file"] = str(slots)
        if reconnect:
            cam["reconnect"] = reconnect
        cams.append(cam)
    return write_yaml(path, device_config(model, cams, device="bench", threads=1, publish=publish), sort_keys=False)


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the edge as a child process -----------------------------------------------------------------
class EdgeProcess:
    """``python -m edge run --config CFG`` (the ``gemsight-edge`` entry point), stderr to a log file.

    Its PUB endpoint must be a fixed port (the caller picks one with :func:`free_port`).
    """

    def __init__(self, config: Path, log: Path, nice: int = 0) -> None:
        self.config, self.log_path, self.nice = config, log, nice
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> "EdgeProcess":
        self._log = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", "edge", "run", "--config", str(self.config)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=(lambda: os.nice(self.nice)) if self.nice else None)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it hangs; returns the exit code."""
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
        return self.proc.returncode

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


# -- /proc sampling ------------------------------------------------------------------------------
def proc_sample(pid: int) -> dict[str, float] | None:
    """RSS (MiB), open files, threads and CPU seconds (user+system) of ``pid``; None once it is gone."""
    try:
        statm = Path(f"/proc/{pid}/statm").read_text().split()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    # stat fields after "comm)": state is [0]; utime [11], stime [12], num_threads [17] (proc(5)).
    return {"rss_mib": int(statm[1]) * _PAGE / 2**20, "open_files": fds, "threads": int(stat[17]),
            "cpu_s": (int(stat[11]) + int(stat[12])) / _CLK_TCK, "state": stat[0]}


class CpuMeter:
    """CPU share of one process between two points in time (1.0 = one core busy)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.mark()

    def mark(self) -> None:
        s = proc_sample(self.pid)
        self._t, self._cpu = time.monotonic(), (s or {}).get("cpu_s", 0.0)

    def share(self) -> float:
        s = proc_sample(self.pid)
        dt = time.monotonic() - self._t
        return ((s or {}).get("cpu_s", self._cpu) - self._cpu) / dt if dt > 0 else 0.0


# -- a real ZeroMQ subscriber --------------------------------------------------------------------
@dataclass
class Tally:
    """What a subscriber saw: messages per kind, seq gaps per camera, status messages in order."""

    labels: int = 0
    heartbeats: int = 0
    gaps: int = 0            # times seq jumped forward
    missing: int = 0         # messages missing in those jumps
    restarts: int = 0        # seq went back (the edge restarted)
    last_seq: dict[str, int] = field(default_factory=dict)
    last_labels_t: float | None = None   # monotonic time of the last labels message
    status: list[dict[str, Any]] = field(default_factory=list)   # {"t", "camera", "state", "detail"}
    hb_state: dict[str, Any] = field(default_factory=dict)        # camera -> state in the last heartbeat
    hb_changes: list[dict[str, Any]] = field(default_factory=list)  # {"t", "camera", "state"} as heartbeats saw it
    labels_t: list[float] = field(default_factory=list)          # kept only when asked (timelines)


class ZmqSubscriber:
    """A SUB socket on its own thread, reading everything the edge publishes (plaintext, loopback).

    ``keep_times`` keeps the arrival time of every labels message (for recovery timelines).
    """

    def __init__(self, endpoint: str, keep_times: bool = False) -> None:
        self.endpoint, self.keep_times = endpoint, keep_times
        self.tally = Tally()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sub", daemon=True)

    def start(self) -> "ZmqSubscriber":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import zmq

        from edge.errors import MessageError
        from edge.link import messages

        sock = zmq.Context.instance().socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(self.endpoint)
        try:
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                parts = sock.recv_multipart()
                now = time.monotonic()
                try:
                    msg = messages.decode(parts[-1])
                except MessageError:
                    continue
                self._count(parts[0].decode(errors="replace"), msg, now)
        finally:
            sock.close(linger=0)

    def _count(self, topic: str, msg: dict, now: float) -> None:
        t = self.tally
        with self.lock:
            if topic.endswith("/labels"):
                cam, seq = msg.get("camera"), msg.get("seq")
                prev = t.last_seq.get(cam)
                if prev is not None and isinstance(seq, int):
                    if seq > prev + 1:
                        t.gaps += 1
                        t.missing += seq - prev - 1
                    elif seq <= prev:
                        t.restarts += 1
                t.last_seq[cam] = seq
                t.labels += 1
                t.last_labels_t = now
                if self.keep_times:
                    t.labels_t.append(now)
            elif topic.endswith("/heartbeat"):
                t.heartbeats += 1
                cams = msg.get("cameras")
                for cam, info in (cams.items() if isinstance(cams, dict) else ()):
                    state = info.get("state") if isinstance(info, dict) else None
                    if state != t.hb_state.get(cam, "unseen"):
                        t.hb_state[cam] = state
                        t.hb_changes.append({"t": now, "camera": cam, "state": state})
            elif topic.endswith("/status"):
                t.status.append({"t": now, "camera": msg.get("camera"), "state": msg.get("state"),
                                 "detail": msg.get("detail", "")})

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            t = self.tally
            return {"labels": t.labels, "heartbeats": t.heartbeats, "gaps": t.gaps, "missing": t.missing,
                    "restarts": t.restarts, "last_labels_t": t.last_labels_t, "status": list(t.status),
                    "hb_changes": list(t.hb_changes)}

    def wait_labels(self, n: int, timeout: float) -> bool:
        """Wait until ``n`` labels messages arrived in all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.snapshot()["labels"] >= n:
                return True
            time.sleep(0.05)
        return False


def print_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    """Print ``rows`` under ``header`` in aligned columns."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def write_json(path: Path, report: dict) -> Path:
    """Write ``report`` as indented JSON (creating the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
