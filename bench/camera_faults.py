"""Camera faults matrix: ``python bench/camera_faults.py [--down 15] [--only NAME ...]``.

Each fault runs against its own edge process (``python -m edge run``, what ``gemsight-edge run`` is
on a device; default reconnect settings: backoff 0.5 s doubling to 30 s, stall after 5 s) with one
camera and a real ZeroMQ subscriber on loopback:

=================  ===========================================================================
file-removed       a looping 3 s video file is deleted while it plays; put back after ``--down`` s
file-truncated     the file is cut to half its size while it plays; restored after ``--down`` s
rtsp-refused       ``rtsp://`` to a closed loopback port (nothing to recover to)
rtsp-silent        a loopback TCP server that accepts the RTSP connection and never answers
rtsp-stalls        a loopback RTSP server that answers OPTIONS and DESCRIBE, then never answers SETUP
                   (the three RTSP faults last ``--down`` + 10 s from the edge's start)
http-stalls        an MJPEG-over-HTTP camera that stops sending mid-stream for ``--down`` s
sigstop            the edge process itself SIGSTOPped for 10 s, then SIGCONTed (file source)
=================  ===========================================================================

For each: the status messages the subscriber saw (in brackets, where none came after it joined: the
camera states its heartbeats carried), how long until the fault showed as ``down``, the
recovery time (fault cleared -> first labels message), the edge's CPU while its camera was down,
whether the edge process stayed the same one (no crash loop), and how many times it (re)connected
where the bench's server can count. Prints a table, writes ``bench/results/camera_faults.json``.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fault_kit import (MODEL_NOTE, RESULTS, CpuMeter, EdgeProcess, ZmqSubscriber, case_video,  # noqa: E402
                             edge_config, free_port, print_table, proc_sample, tiny_model, write_json)

logger = logging.getLogger("bench.camera_faults")
FAULTS = ("file-removed", "file-truncated", "rtsp-refused", "rtsp-silent", "rtsp-stalls", "http-stalls", "sigstop")
SIGSTOP_S = 10.0
RECOVERY_WAIT_S = 45.0   # longer than the 30 s backoff cap plus a 5 s open timeout


class StallingRtspServer:
    """A loopback TCP server for ``rtsp://`` that accepts and stalls.

    ``answer_describe=False``: it never says a word. ``True``: it answers OPTIONS and DESCRIBE (an SDP
    for an MJPEG stream) like a camera, then never answers SETUP. Counts the connections it accepted.
    """

    SDP = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           "m=video 0 RTP/AVP 26\r\na=control:track1\r\n")

    def __init__(self, answer_describe: bool) -> None:
        self.answer_describe = answer_describe
        self.connections = 0
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(16)
        self.port = self._srv.getsockname()[1]
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/stream"

    def _accept(self) -> None:
        self._srv.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            self._open.append(conn)
            if self.answer_describe:
                threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while not self._stop.is_set():
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    lines = head.decode(errors="replace").split("\r\n")
                    method = lines[0].split(" ", 1)[0]
                    cseq = next((ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("cseq:")), "0")
                    if method == "OPTIONS":
                        conn.sendall(f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nPublic: OPTIONS, DESCRIBE, SETUP, "
                                     "PLAY, TEARDOWN\r\n\r\n".encode())
                    elif method == "DESCRIBE":
                        sdp = self.SDP.encode()
                        conn.sendall(f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Type: application/sdp\r\n"
                                     f"Content-Base: {self.url}/\r\nContent-Length: {len(sdp)}\r\n\r\n".encode() + sdp)
                    # SETUP and anything after it: silence, the connection held open.
        except OSError:
            return

    def close(self) -> None:
        self._stop.set()
        for c in self._open:
            c.close()
        self._srv.close()


class Run:
    """One fault against one fresh edge: start, wait for labels, then the fault's own steps."""

    def __init__(self, work: Path, model: Path, uri: str, slots: Path | None) -> None:
        self.port = free_port()
        cfg = edge_config(work / "edge.yaml", model, [("cam0", uri, slots)], endpoint=f"tcp://127.0.0.1:{self.port}")
        # The subscriber first: ZeroMQ connects it as soon as the edge binds, so it sees the first statuses.
        self.sub = ZmqSubscriber(f"tcp://127.0.0.1:{self.port}", keep_times=True).start()
        self.edge = EdgeProcess(cfg, work / "edge.log").start()
        self.pid = self.edge.pid
        self.t0 = time.monotonic()

    def wait_for(self, pred: Callable[[dict], bool], timeout: float) -> float | None:
        """Monotonic time at which ``pred(subscriber snapshot)`` first held, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.sub.snapshot()):
                return time.monotonic()
            if not self.edge.alive():
                return None
            time.sleep(0.05)
        return None

    def first_down_after(self, t: float, timeout: float) -> float | None:
        """When the subscriber first learnt the camera was down after ``t``: a status message, or the
        camera's state in a heartbeat (a subscriber that joined after the status message sees only that)."""
        def downs(s: dict) -> list[float]:
            return [m["t"] for m in s["status"] + s["hb_changes"] if m["state"] == "down" and m["t"] >= t]

        if self.wait_for(lambda s: bool(downs(s)), timeout) is None:
            return None
        return min(downs(self.sub.snapshot()))

    def labels_after(self, t: float, timeout: float) -> float | None:
        if self.wait_for(lambda s: s["labels"] > 0 and s["last_labels_t"] >= t, timeout) is None:
            return None
        with self.sub.lock:
            return min(x for x in self.sub.tally.labels_t if x >= t)

    def finish(self) -> dict[str, Any]:
        alive = self.edge.alive()
        self.sub.stop()
        rc = self.edge.stop()
        snap = self.sub.snapshot()
        return {"edge_alive_throughout": alive, "edge_exit_code": rc, "labels": snap["labels"], "gaps": snap["gaps"],
                "restarts": snap["restarts"],
                "status": [{"t_s": round(m["t"] - self.t0, 2), "state": m["state"], "detail": m["detail"]}
                           for m in snap["status"]],
                "heartbeat_states": [{"t_s": round(m["t"] - self.t0, 2), "state": m["state"]}
                                     for m in snap["hb_changes"]]}


def _down_window(run: Run, down: float, fault_t: float) -> tuple[float | None, float]:
    """Wait out the outage (until ``fault_t + down``); returns (when the subscriber learnt the camera
    was down, the edge's CPU share from then to the end of the outage)."""
    end = fault_t + down
    seen = run.first_down_after(fault_t, max(0.5, end - time.monotonic() - 2.0))
    meter = CpuMeter(run.pid)
    time.sleep(max(1.0, end - time.monotonic()))
    return seen, meter.share()


def fault_file(work: Path, model: Path, video: dict, down: float, truncate: bool) -> dict:
    src = work / "cam.mp4"
    shutil.copy(video["video"], src)
    run = Run(work, model, f"file://{src}?loop=1", video["slots"])
    try:
        if run.labels_after(0, 60) is None:
            raise RuntimeError(f"no labels; edge log:\n{run.edge.log_tail()}")
        time.sleep(1.0)
        t_fault = time.monotonic()
        if truncate:
            os.truncate(src, src.stat().st_size // 2)
        else:
            src.unlink()
        seen, cpu = _down_window(run, down, t_fault)
        tmp = work / "restore.mp4"
        shutil.copy(video["video"], tmp)
        t_fix = time.monotonic()
        os.replace(tmp, src)
        back = run.labels_after(t_fix, RECOVERY_WAIT_S)
    finally:
        out = run.finish()
    return {**out, "detect_s": None if seen is None else seen - t_fault, "cpu_while_down": cpu,
            "recovery_s": None if back is None else back - t_fix}


def fault_rtsp(work: Path, model: Path, down: float, mode: str) -> dict:
    server = None
    if mode == "refused":
        uri = f"rtsp://127.0.0.1:{free_port()}/stream"  # nothing listens there
    else:
        server = StallingRtspServer(answer_describe=(mode == "stalls"))
        uri = server.url
    run = Run(work, model, uri, None)
    try:
        t_fault = run.t0
        seen, cpu = _down_window(run, down + 10.0, t_fault)  # + the edge's start-up
    finally:
        out = run.finish()
        if server is not None:
            server.close()
    return {**out, "detect_s": None if seen is None else seen - t_fault, "cpu_while_down": cpu, "recovery_s": None,
            "connections": None if server is None else server.connections,
            "note": "detect_s counts from the edge process's start (start-up included)"}


def fault_http(work: Path, model: Path, video: dict, down: float) -> dict:
    import cv2

    from tests.helpers import MjpegServer

    cap = cv2.VideoCapture(str(video["video"]))
    frames = []
    while len(frames) < 30:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(img, (320, 180)))
    cap.release()
    server = MjpegServer(size=(320, 180), fps=10.0, frames=frames).start()
    run = Run(work, model, server.url, None)
    try:
        if run.labels_after(0, 60) is None:
            raise RuntimeError(f"no labels; edge log:\n{run.edge.log_tail()}")
        time.sleep(1.0)
        t_fault = time.monotonic()
        server.paused = True
        seen, cpu = _down_window(run, down, t_fault)
        t_fix = time.monotonic()
        server.paused = False
        back = run.labels_after(t_fix, RECOVERY_WAIT_S)
    finally:
        out = run.finish()
        server.stop()
    return {**out, "detect_s": None if seen is None else seen - t_fault, "cpu_while_down": cpu,
            "recovery_s": None if back is None else back - t_fix}


def fault_sigstop(work: Path, model: Path, video: dict) -> dict:
    run = Run(work, model, f"file://{video['video']}?loop=1", video["slots"])
    try:
        if run.labels_after(0, 60) is None:
            raise RuntimeError(f"no labels; edge log:\n{run.edge.log_tail()}")
        time.sleep(2.0)
        rss0 = proc_sample(run.pid)["rss_mib"]
        meter = CpuMeter(run.pid)
        run.edge.signal(signal.SIGSTOP)
        time.sleep(SIGSTOP_S)
        cpu = meter.share()
        t_fix = time.monotonic()
        run.edge.signal(signal.SIGCONT)
        back = run.labels_after(t_fix, RECOVERY_WAIT_S)
        time.sleep(8.0)  # long enough for a stall report (5 s) to show, if one comes
        rss1 = proc_sample(run.pid)["rss_mib"]
    finally:
        out = run.finish()
    return {**out, "detect_s": None, "cpu_while_down": cpu, "recovery_s": None if back is None else back - t_fix,
            "rss_before_mib": rss0, "rss_after_mib": rss1}


def run_matrix(faults: list[str], down: float, work: Path, video_seconds: float = 3.0) -> dict:
    """Run each fault in ``faults`` (names from :data:`FAULTS`) with a looping video of ``video_seconds``;
    returns the report."""
    model = tiny_model(work / "model")
    video = case_video(work / "case.mp4", seconds=video_seconds, size=(640, 360))
    rows: dict[str, dict] = {}
    for name in faults:
        sub = work / name
        sub.mkdir()
        t = time.monotonic()
        if name in ("file-removed", "file-truncated"):
            row = fault_file(sub, model, video, down, truncate=name == "file-truncated")
        elif name.startswith("rtsp-"):
            row = fault_rtsp(sub, model, down, name.split("-", 1)[1])
        elif name == "http-stalls":
            row = fault_http(sub, model, video, down)
        else:
            row = fault_sigstop(sub, model, video)
        row["wall_s"] = time.monotonic() - t
        rows[name] = row
        print(f"{name}: done in {row['wall_s']:.0f} s", flush=True)
    return {"model": MODEL_NOTE, "down_s": down, "sigstop_s": SIGSTOP_S,
            "reconnect": {"initial_s": 0.5, "max_s": 30.0, "stall_s": 5.0, "network_timeouts_ms": 5000},
            "command": "python -m edge run --config edge.yaml (gemsight-edge run), child process per fault",
            "faults": rows, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _states(row: dict) -> str:
    seq = [m["state"] for m in row["status"]] or [f"({m['state']})" for m in row["heartbeat_states"]]
    out: list[str] = []
    for s in seq:  # "up, down x3, up" instead of the full list
        if out and out[-1].split(" x")[0] == s:
            n = int(out[-1].split(" x")[1]) + 1 if " x" in out[-1] else 2
            out[-1] = f"{s} x{n}"
        else:
            out.append(s)
    return ", ".join(out) or "-"


def _fmt(v: float | None, unit: str = " s") -> str:
    return "-" if v is None else f"{v:.2f}{unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down", type=float, default=15.0, help="seconds each camera stays down (default 15)")
    parser.add_argument("--only", nargs="+", choices=FAULTS, help="run only these faults")
    parser.add_argument("--out", type=Path, default=RESULTS / "camera_faults.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.down <= 0:
        print("camera_faults: --down must be > 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gemsight-camera-faults-") as tmp:
        report = run_matrix(list(args.only or FAULTS), args.down, Path(tmp))
    write_json(args.out, report)
    rows = []
    for name, r in report["faults"].items():
        rows.append((name, _states(r), _fmt(r["detect_s"]), _fmt(r["recovery_s"]),
                     f"{r['cpu_while_down'] * 100:.1f} %", "yes" if r["edge_alive_throughout"] else "NO",
                     "-" if r.get("connections") is None else str(r["connections"]), str(r["gaps"])))
    print()
    print_table(rows, ("fault", "status messages", "to down", "recovery", "CPU down", "same process",
                       "connects", "seq gaps"))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
