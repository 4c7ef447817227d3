"""Attacks on the edge's sockets: ``python bench/attacks.py [--mb 200] [--frames 75000]``.

Runs the edge as a device does (``python -m edge run``, a child process, CURVE with an allow-list of
one client) on a looping 10 fps, 12-slot video. An allowed client (:class:`edge.link.listen.Listener` with
its CURVE keys) follows the labels throughout and counts ``seq`` gaps. Then, one after the other:

1. **pre-auth, one frame**: a raw TCP client (no key at all) sends a CURVE greeting and one command
   frame announced as ``--mb`` MB, and keeps sending its body as long as the edge reads;
2. **pre-auth, three at once**: the same from three connections of ``--mb`` x 1.5 MB each;
3. **snapshot, one huge frame**: the allowed client sends one ``--mb`` MB request frame to the
   snapshot port;
4. **snapshot, many frames**: the allowed client sends one request of ``--frames`` frames of 4,000 B
   (each under the frame limit; libzmq sends a message once it is whole, so its frames reach the edge
   one after the other, and the edge used to hold them all until the last one);
5. **snapshot, many frames, many connections**: the same from :data:`edge.link.snapshot_guard.MAX_CONNECTIONS`
   connections at once, ``--frames`` / 25 frames each (what the guard's total limit is about).

For each: the edge's RSS before, at its peak (sampled every 20 ms) and 2 s after; the bytes the attacker
got into the edge before it hung up; and whether labels kept flowing to the allowed client without
a gap. Then the latency of a snapshot request (CURVE, in-process) through the guard and straight to
the REP socket behind it, on one connection and on a new connection each (as kiosks ask). Prints
tables, writes ``bench/results/attacks.json``. ``edge.link.ingress`` and ``edge.link.snapshot_guard`` say what
bounds what.
"""
from __future__ import annotations

import argparse
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fault_kit import (MODEL_NOTE, RESULTS, EdgeProcess, case_video, edge_config, free_port,  # noqa: E402
                             print_table, proc_sample, tiny_model, write_json)
from edge.link.snapshot_guard import MAX_CONNECTIONS  # noqa: E402

CHUNK = 1 << 20


def _greeting() -> bytes:
    return b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 0]) + b"CURVE".ljust(20, b"\0") + b"\0" + b"\0" * 31


def _raw_huge_frame(port: int, total: int, out: dict) -> None:
    """A raw client: CURVE greeting, a command frame header of ``total`` bytes, then its body until cut."""
    sent = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(_greeting() + b"\x06" + struct.pack(">Q", total))
            chunk = b"\0" * CHUNK
            while sent < total:
                conn.sendall(chunk[:min(CHUNK, total - sent)])
                sent += min(CHUNK, total - sent)
            out["cut"] = False
    except OSError as exc:
        out["cut"] = True
        out["error"] = type(exc).__name__
    out["sent_bytes"] = sent


class RssSampler:
    """The edge's RSS every 20 ms on a thread, while an attack runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            s = proc_sample(self.pid)
            if s:
                self.peak = max(self.peak, s["rss_mib"])
            time.sleep(0.02)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


class Follower:
    """The allowed client: a CURVE Listener on its own thread, counting labels and seq gaps."""

    def __init__(self, endpoint: str, keys) -> None:
        from edge.link.listen import Listener

        self.listener = Listener(endpoint, keys=keys)
        self.labels = self.gaps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            ev = self.listener.recv(0.1)
            if ev is not None and ev.kind == "labels":
                self.labels += 1
                self.gaps += len(ev.gaps)

    def start(self) -> "Follower":
        self._thread.start()
        return self

    def counts(self) -> tuple[int, int]:
        return self.labels, self.gaps

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


def _snapshot_request(endpoint: str, keys, frames: int = 0, huge: int = 0) -> dict:
    """The allowed client sends one request (``frames`` frames of 4,000 B, or one frame of ``huge``
    bytes); what came back, or that the edge dropped the connection."""
    import zmq

    from edge.link.client import Link

    frame = b"x" * 4000
    with Link(zmq.REQ, endpoint, keys, device="bench") as link:
        if not link.wait_connected(10):
            return {"answer": "no connection"}
        sock = link.socket
        if huge:
            sock.send(b" " * huge)
        else:
            sock.copy_threshold = 0   # pyzmq copies frames under 64 KiB unless told not to
            for _ in range(frames - 1):
                sock.send(frame, zmq.SNDMORE, copy=False)  # zero-copy: the client holds one buffer
            sock.send(frame, copy=False)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if sock.poll(50):
                return {"answer": sock.recv()[:160].decode(errors="replace")}
            link.check()
            if link.disconnects:
                return {"answer": "none (connection dropped)"}
        return {"answer": "none (no answer within 15 s)"}


def _many_connections(endpoint: str, keys, connections: int, frames: int) -> dict:
    """``connections`` allowed clients at once, each sending one request of ``frames`` frames."""
    outs: list[dict] = [{} for _ in range(connections)]

    def one(i: int) -> None:
        outs[i] = _snapshot_request(endpoint, keys, frames)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    dropped = sum(o.get("answer", "").startswith("none (connection dropped)") for o in outs)
    return {"answer": f"{dropped} of {connections} connections dropped by the edge", "connections": connections}


def snapshot_latency(work: Path, requests: int = 200, fresh: int = 40) -> list[dict]:
    """Latency of a snapshot request (CURVE) through the guard and straight to the REP behind it."""
    import statistics

    import zmq

    from edge.config.device import CurveConfig
    from edge.link.client import ClientKeys, Link
    from edge.link.publisher import Publisher
    from tests.helpers import make_curve_files, make_labels

    curve = make_curve_files(work / "latency")
    keys = ClientKeys.load(curve.server_public, curve.client_secret)
    rows = []
    with Publisher("case-01", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", curve=CurveConfig(**curve.config)) as pub:
        for cam in range(4):
            pub.publish_labels(f"cam{cam}", make_labels(f"cam{cam}", n_slots=12))
        for path, endpoint in (("through the guard", pub.snapshot_endpoint),
                               ("straight to the REP behind it (ipc)", f"ipc://{pub._guard.upstream}")):
            times = []
            with Link(zmq.REQ, endpoint, keys, device="bench") as link:
                for _ in range(requests):
                    t0 = time.perf_counter()
                    if link.request(b'{"camera": null}', 5.0) is None:
                        raise RuntimeError(f"no answer {path}")
                    times.append((time.perf_counter() - t0) * 1000)
            new = []
            for _ in range(fresh):
                t0 = time.perf_counter()
                with Link(zmq.REQ, endpoint, keys, device="bench") as link:
                    if link.request(b'{"camera": null}', 5.0) is None:
                        raise RuntimeError(f"no answer {path}")
                new.append((time.perf_counter() - t0) * 1000)
            for how, ms in (("one connection", times), ("a new connection each (handshake included)", new)):
                q = statistics.quantiles(ms, n=20)
                rows.append({"path": path, "connection": how, "requests": len(ms),
                             "median_ms": round(statistics.median(ms), 3), "p95_ms": round(q[18], 3)})
    return rows


def attack(name: str, edge: EdgeProcess, follower: Follower, run) -> dict:
    """Run ``run()`` (the attack) with the RSS sampled and the allowed client's labels counted."""
    before = proc_sample(edge.pid)["rss_mib"]
    labels0, gaps0 = follower.counts()
    t0 = time.monotonic()
    with RssSampler(edge.pid) as rss:
        detail = run()
        time.sleep(2.0)
    after = proc_sample(edge.pid)["rss_mib"]
    labels, gaps = follower.counts()
    return {"attack": name, "seconds": round(time.monotonic() - t0, 1), "rss_before_mib": round(before, 1),
            "rss_peak_mib": round(rss.peak, 1), "rss_growth_mib": round(rss.peak - before, 1),
            "rss_after_mib": round(after, 1), "labels_during": labels - labels0, "seq_gaps_during": gaps - gaps0,
            "labels_kept_flowing": labels - labels0 > 0 and gaps == gaps0, **detail}


def run_bench(mb: int, frames: int, work: Path) -> dict:
    from edge.config.device import parse_config  # noqa: F401 - the config below is the device's own
    from edge.link.client import ClientKeys
    from edge.link.keys import allow, create_key_pair
    from tests.helpers import write_yaml

    import yaml

    server_public, server_secret = create_key_pair(work / "device", "server")
    client_public, client_secret = create_key_pair(work / "kiosk", "kiosk-1")
    (work / "clients").mkdir()
    allow(client_public, work / "clients")
    keys = ClientKeys.load(server_public, client_secret)
    model = tiny_model(work / "model")
    vid = case_video(work / "case.mp4", seconds=20)
    port, snap_port = free_port(), free_port()
    endpoint, snapshot = f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{snap_port}"
    cfg = edge_config(work / "edge.yaml", model, [("cam0", f"file://{vid['video']}?loop=1", vid["slots"])],
                      endpoint=endpoint)
    data = yaml.safe_load(cfg.read_text())
    data["publish"].update(snapshot_endpoint=snapshot, curve={"server_secret_key": str(server_secret),
                                                              "allowed_clients": str(work / "clients")})
    write_yaml(cfg, data, sort_keys=False)
    edge = EdgeProcess(cfg, work / "edge.log").start()
    rows = []
    follower = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (follower is None or follower.counts()[0] < 5):
            if follower is None and "publishing on" in (work / "edge.log").read_text(errors="replace"):
                follower = Follower(endpoint, keys).start()
            time.sleep(0.2)
        if follower is None or follower.counts()[0] < 5:
            raise RuntimeError(f"no labels within 60 s; edge log:\n{edge.log_tail()}")
        time.sleep(2.0)  # RSS after warm-up

        def one() -> dict:
            out: dict = {}
            _raw_huge_frame(port, mb * 10**6, out)
            return {"attacker_sent_mb": round(out["sent_bytes"] / 1e6, 1), "cut_by_edge": out["cut"]}

        def three() -> dict:
            outs = [{} for _ in range(3)]
            threads = [threading.Thread(target=_raw_huge_frame, args=(port, int(mb * 1.5 * 10**6), o)) for o in outs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            return {"attacker_sent_mb": round(sum(o.get("sent_bytes", 0) for o in outs) / 1e6, 1),
                    "cut_by_edge": all(o.get("cut") for o in outs)}

        rows.append(attack(f"pre-auth: CURVE greeting + one {mb} MB frame (PUB port)", edge, follower, one))
        rows.append(attack(f"pre-auth: 3 connections x {mb * 1.5:g} MB (PUB port)", edge, follower, three))
        rows.append(attack(f"allowed client: one {mb} MB snapshot request frame", edge, follower,
                           lambda: _snapshot_request(snapshot, keys, None, huge=mb * 10**6)))
        rows.append(attack(f"allowed client: snapshot request of {frames:,} frames x 4,000 B", edge, follower,
                           lambda: _snapshot_request(snapshot, keys, frames)))
        rows.append(attack(f"allowed client: {MAX_CONNECTIONS} connections x a request of {frames // 25:,} frames "
                           "x 4,000 B", edge, follower,
                           lambda: _many_connections(snapshot, keys, MAX_CONNECTIONS, frames // 25)))
    finally:
        if follower is not None:
            follower.stop()
        rc = edge.stop()
    return {"model": MODEL_NOTE, "video": {"fps": 10, "slots": 12, "looping": True},
            "command": f"python bench/attacks.py --mb {mb} --frames {frames}",
            "edge": "python -m edge run (CURVE, one allowed client), child process",
            "attacks": rows, "edge_exit_code": rc, "snapshot_latency": snapshot_latency(work),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the huge frames in MB (default 200)")
    parser.add_argument("--frames", type=int, default=75_000, help="frames of the many-frame request (default 75000)")
    parser.add_argument("--out", type=Path, default=RESULTS / "attacks.json")
    args = parser.parse_args(argv)
    if args.mb < 1 or args.frames < 2:
        print("attacks: --mb >= 1 and --frames >= 2", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gemsight-attacks-") as tmp:
        report = run_bench(args.mb, args.frames, Path(tmp))
    write_json(args.out, report)
    print_table([(r["attack"], f"RSS {r['rss_before_mib']:.0f} -> peak {r['rss_peak_mib']:.0f} MiB "
                  f"(+{r['rss_growth_mib']:.0f}), {r['rss_after_mib']:.0f} after; "
                  + (f"attacker sent {r['attacker_sent_mb']} MB, cut: {r['cut_by_edge']}; "
                     if "attacker_sent_mb" in r else f"answer: {r.get('answer', '')[:60]}; ")
                  + f"labels {r['labels_during']}, gaps {r['seq_gaps_during']}") for r in report["attacks"]],
                ("attack", "edge RSS, attacker, allowed client"))
    print()
    print_table([(r["path"], r["connection"], str(r["requests"]), f"{r['median_ms']:.2f}", f"{r['p95_ms']:.2f}")
                 for r in report["snapshot_latency"]], ("snapshot request", "connection", "n", "median ms", "p95 ms"))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
