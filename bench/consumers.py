"""Slow and dead consumers: ``python bench/consumers.py [--minutes 10] [--vanish 100]``.

Runs the edge as a device does (``python -m edge run``, a child process) on a looping 10 fps, 12-slot
video, with one healthy ZeroMQ subscriber that reads everything, then:

1. **Vanishing subscribers**: ``--rounds`` times, ``--vanish`` SUB sockets (in child processes, 10 per
   process) connect, take one message each and are SIGKILLed: they vanish without closing. The
   edge's RSS, open files and threads before and after each round; the frame rate meanwhile.
2. **A dead subscriber**: a SUB in a child process connects, reads a little, then is SIGSTOPped for
   ``--minutes`` (neither it nor its ZeroMQ I/O thread reads: what a hung kiosk does), then SIGCONTed
   to drain what reached it. Every ``--every`` seconds: the edge's RSS and the healthy frame rate.

The bound: a PUB socket keeps at most ``SNDHWM`` messages per subscriber (``publish.hwm``, default
1000; libzmq counts whole multipart messages) and then drops, silently, for that subscriber alone.
So one dead subscriber can pin at most ``hwm x (largest message + topic)`` bytes in the edge. Before
that pipe fills, the kernel's TCP buffers of both ends absorb messages too (outside the edge's RSS;
on loopback the receiver's buffer autotunes up to ``net.ipv4.tcp_rmem``'s maximum, here 32 MiB, which
holds many minutes of labels: ``--rcvbuf`` pins it smaller to reach the HWM sooner). The dead
subscriber sees the drops as ``seq`` gaps when it wakes; the edge cannot count them (see
:func:`xpub_nodrop_demo`). Prints a table, writes ``bench/results/consumers.json``.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fault_kit import (MODEL_NOTE, RESULTS, EdgeProcess, ZmqSubscriber, case_video, edge_config,  # noqa: E402
                             free_port, print_table, proc_sample, tiny_model, write_json)

logger = logging.getLogger("bench.consumers")
PER_PROCESS = 10          # vanishing subscribers per child process
DEFAULT_HWM = 1000        # publish.hwm's default (edge.config.device.PublishConfig)


def _vanishing(endpoint: str, n: int, ready: "mp.synchronize.Event") -> None:
    """Child: ``n`` SUB sockets that each take one message, then wait to be killed."""
    import zmq

    ctx = zmq.Context.instance()
    socks = []
    for _ in range(n):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(endpoint)
        socks.append(s)
    for s in socks:
        s.poll(10_000)
        if s.poll(0):
            s.recv_multipart()
    ready.set()
    time.sleep(3600)  # SIGKILLed long before


def _dead(endpoint: str, ready: "mp.synchronize.Event", done: "mp.synchronize.Event", out: "mp.Queue",
          rcvbuf: int | None = None) -> None:
    """Child: a SUB that reads until ``ready`` is set (then it is SIGSTOPped), and after SIGCONT
    drains until ``done``; reports labels received, seq gaps and messages missing in them.
    ``rcvbuf`` sets its kernel receive buffer (SO_RCVBUF) instead of the OS's autotuned one."""
    import zmq

    from edge.link import messages

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    if rcvbuf:
        sock.setsockopt(zmq.RCVBUF, rcvbuf)
    sock.connect(endpoint)
    received = gaps = missing = 0
    last = None
    first_gap_after = None
    while not done.is_set():
        if not sock.poll(100):
            continue
        topic, payload = sock.recv_multipart()
        if not topic.endswith(b"/labels"):
            continue
        seq = messages.decode(payload)["seq"]
        if last is not None and seq > last + 1:
            gaps += 1
            missing += seq - last - 1
            if first_gap_after is None:
                first_gap_after = received
        last = seq
        received += 1
        if received == 3:
            ready.set()
    out.put({"received": received, "gaps": gaps, "missing": missing, "last_seq": last,
             "first_gap_after_messages": first_gap_after})
    sock.close(linger=0)


def _rate(sub: ZmqSubscriber, seconds: float) -> float:
    a = sub.snapshot()["labels"]
    time.sleep(seconds)
    return (sub.snapshot()["labels"] - a) / seconds


def vanish_phase(endpoint: str, edge: EdgeProcess, sub: ZmqSubscriber, n: int, settle_s: float = 3.0,
                 rounds: int = 1) -> dict:
    """``rounds`` times, ``n`` subscribers connect, take a message and are killed; the edge before and
    ``settle_s`` after each round (a leak grows round after round; an allocator's high-water mark does not)."""
    ctx = mp.get_context("spawn")
    before = proc_sample(edge.pid)
    fps_before = _rate(sub, settle_s)
    t0 = time.monotonic()
    a0 = sub.snapshot()["labels"]
    peak_fds, after_rounds, fds_rounds = before["open_files"], [], []
    for _ in range(rounds):
        procs = []
        for start in range(0, n, PER_PROCESS):
            ready = ctx.Event()
            p = ctx.Process(target=_vanishing, args=(endpoint, min(PER_PROCESS, n - start), ready), daemon=True)
            p.start()
            procs.append((p, ready))
        for p, ready in procs:
            ready.wait(60)
        peak_fds = max(peak_fds, (proc_sample(edge.pid) or {}).get("open_files", 0))
        for p, _ in procs:
            os.kill(p.pid, signal.SIGKILL)
            p.join(10)
        time.sleep(settle_s)  # the edge's I/O thread notices the resets and closes the pipes
        s = proc_sample(edge.pid)
        after_rounds.append(round(s["rss_mib"], 2))
        fds_rounds.append(s["open_files"])
    fps_during = (sub.snapshot()["labels"] - a0) / (time.monotonic() - t0)
    after = proc_sample(edge.pid)
    return {"subscribers": n, "rounds": rounds, "processes": rounds * -(-n // PER_PROCESS),
            "rss_before_mib": before["rss_mib"], "rss_after_mib": after["rss_mib"],
            "rss_delta_mib": after["rss_mib"] - before["rss_mib"], "rss_after_each_round_mib": after_rounds,
            "open_files_before": before["open_files"], "open_files_peak": peak_fds,
            "open_files_after": after["open_files"], "open_files_after_each_round": fds_rounds,
            "threads_before": before["threads"], "threads_after": after["threads"], "fps_before": fps_before,
            "fps_during": fps_during, "seconds": time.monotonic() - t0}


def dead_phase(endpoint: str, edge: EdgeProcess, sub: ZmqSubscriber, minutes: float, every: float,
               drain_s: float = 5.0, rcvbuf: int | None = None) -> dict:
    """One subscriber frozen (SIGSTOP) for ``minutes``; the edge's RSS and frame rate meanwhile; it then
    has ``drain_s`` to read what reached it."""
    ctx = mp.get_context("spawn")
    ready, done, out = ctx.Event(), ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_dead, args=(endpoint, ready, done, out, rcvbuf), daemon=True)
    child.start()
    if not ready.wait(60):
        child.kill()
        raise RuntimeError("the dead-consumer child never received 3 labels messages")
    base = proc_sample(edge.pid)
    os.kill(child.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    end = t0 + minutes * 60
    samples = []
    prev_t, prev_n = t0, sub.snapshot()["labels"]
    while True:
        time.sleep(max(0.0, min(every, end - time.monotonic())))
        now, s, n = time.monotonic(), proc_sample(edge.pid), sub.snapshot()["labels"]
        if s is None:
            raise RuntimeError(f"the edge exited; log:\n{edge.log_tail()}")
        samples.append({"t_s": round(now - t0, 1), "rss_mib": round(s["rss_mib"], 2),
                        "open_files": s["open_files"], "fps": round((n - prev_n) / max(now - prev_t, 1e-6), 2)})
        prev_t, prev_n = now, n
        if now >= end - 0.05:
            break
    os.kill(child.pid, signal.SIGCONT)
    time.sleep(drain_s)  # drains what its kernel buffer and the edge's pipe held, then live messages
    done.set()
    got = out.get(timeout=30)
    child.join(10)
    peak = max(s["rss_mib"] for s in samples)
    fps = [s["fps"] for s in samples]
    return {"minutes": minutes, "rcvbuf": rcvbuf or "OS default (autotuned)", "rss_before_mib": base["rss_mib"],
            "rss_peak_mib": peak,
            "rss_last_mib": samples[-1]["rss_mib"], "rss_growth_mib": peak - base["rss_mib"],
            # Once the queue is full (HWM) the RSS must stay flat while drops go on: the second half's range.
            "rss_second_half_mib": [min(x["rss_mib"] for x in samples[len(samples) // 2:]),
                                    max(x["rss_mib"] for x in samples[len(samples) // 2:])],
            "fps_min": min(fps), "fps_mean": sum(fps) / len(fps), "dead_consumer": got, "samples": samples}


def largest_labels_bytes(endpoint: str, seconds: float = 2.0) -> int:
    """The largest labels message (topic + JSON) seen on ``endpoint`` in ``seconds``."""
    import zmq

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    biggest, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        if sock.poll(100):
            parts = sock.recv_multipart()
            if parts[0].endswith(b"/labels"):
                biggest = max(biggest, sum(map(len, parts)))
    sock.close(linger=0)
    return biggest


def xpub_nodrop_demo(n: int = 200) -> dict:
    """Why the edge cannot count drops by refusing them: with ``ZMQ_XPUB_NODROP`` a send fails
    (EAGAIN) as soon as *one* subscriber's pipe is full, so one dead subscriber would stop every
    other. Two subscribers on loopback, one that reads and one that never does, SNDHWM 5."""
    import zmq

    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 5)
    pub.setsockopt(zmq.XPUB_NODROP, 1)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    subs = []
    for rcvhwm in (1000, 5):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.RCVHWM, rcvhwm)
        s.setsockopt(zmq.RCVBUF, 65536)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(f"tcp://127.0.0.1:{port}")
        subs.append(s)
    good = subs[0]
    if pub.poll(2000):  # the subscription (XPUB passes on only the first of equal ones)
        pub.recv()
    time.sleep(0.2)     # and both connections are up
    sent = refused = received = 0
    payload = b"x" * 100_000
    for _ in range(n):
        try:
            pub.send(payload, zmq.NOBLOCK)
            sent += 1
        except zmq.Again:
            refused += 1
        while good.poll(0):
            good.recv()
            received += 1
    while good.poll(200):
        good.recv()
        received += 1
    for sock in (*subs, pub):
        sock.close(linger=0)
    return {"sends": n, "sent": sent, "refused_eagain": refused, "reading_subscriber_received": received}


def run_bench(minutes: float, vanish: int, every: float, hwm: int, work: Path, video_seconds: float = 30.0,
              settle_s: float = 3.0, rcvbuf: int | None = None, rounds: int = 1) -> dict:
    """The whole bench in ``work``; returns the report (``settle_s``: the waits between steps)."""
    model = tiny_model(work / "model")
    vid = case_video(work / "case.mp4", seconds=video_seconds)
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    cfg = edge_config(work / "edge.yaml", model, [("cam0", f"file://{vid['video']}?loop=1", vid["slots"])],
                      endpoint=endpoint, hwm=hwm)
    edge = EdgeProcess(cfg, work / "edge.log").start()
    sub = ZmqSubscriber(endpoint).start()
    try:
        if not sub.wait_labels(5, 60):
            raise RuntimeError(f"no labels within 60 s; edge log:\n{edge.log_tail()}")
        msg_bytes = largest_labels_bytes(endpoint, settle_s)
        vanished = vanish_phase(endpoint, edge, sub, vanish, settle_s, rounds)
        dead = dead_phase(endpoint, edge, sub, minutes, every, max(settle_s, 5.0 * (minutes >= 1)), rcvbuf)
        healthy = sub.snapshot()
    finally:
        sub.stop()
        rc = edge.stop()
    nodrop = xpub_nodrop_demo()
    bound = hwm * (msg_bytes + 64) / 2**20  # + libzmq's per-message bookkeeping, roughly
    return {
        "model": MODEL_NOTE, "video": {"fps": 10, "slots": 12, "looping": True},
        "command": "python -m edge run --config edge.yaml (gemsight-edge run), child process",
        "hwm": hwm, "labels_message_bytes": msg_bytes, "bound_mib": bound,
        "bound_rule": "publish.hwm x (largest labels message + topic + ~64 B libzmq bookkeeping), per dead subscriber",
        "vanish": vanished, "dead": dead,
        "healthy_subscriber": {"labels": healthy["labels"], "gaps": healthy["gaps"], "missing": healthy["missing"]},
        "edge_exit_code": rc,
        "drops_counted": {
            "edge": "not countable: libzmq PUB drops silently per subscriber at SNDHWM (zmq_send always "
                    "succeeds, no socket-monitor event); ZMQ_XPUB_NODROP would instead make every send "
                    "fail for all subscribers while one is full (xpub_nodrop_demo)",
            "xpub_nodrop_demo": nodrop,
            "consumer": "exact: seq gaps per camera (gemsight-edge listen reports them; heartbeats carry "
                        "the last seq so trailing drops show too)"},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the subscriber stays dead (default 10)")
    parser.add_argument("--vanish", type=int, default=100, help="subscribers that connect and vanish (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --vanish subscribers (default 3)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--hwm", type=int, default=DEFAULT_HWM, help="publish.hwm of the edge (default 1000)")
    parser.add_argument("--rcvbuf", type=int, help="the dead subscriber's SO_RCVBUF in bytes (default: the OS's, "
                        "autotuned; on loopback it can absorb many minutes of messages before the HWM is reached)")
    parser.add_argument("--video-seconds", type=float, default=30.0, help="length of the looping video")
    parser.add_argument("--out", type=Path, default=RESULTS / "consumers.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.minutes <= 0 or args.vanish < 1 or args.rounds < 1 or args.every <= 0 or args.hwm < 1:
        print("consumers: --minutes, --every must be > 0; --vanish, --rounds, --hwm >= 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gemsight-consumers-") as tmp:
        r = run_bench(args.minutes, args.vanish, args.every, args.hwm, Path(tmp), args.video_seconds,
                      rcvbuf=args.rcvbuf, rounds=args.rounds)
    write_json(args.out, r)
    v, d, dc = r["vanish"], r["dead"], r["dead"]["dead_consumer"]
    print_table([
        ("model / video", f"{r['model']}; 10 fps, 12 slots"),
        (f"{v['rounds']} x {v['subscribers']} subscribers connect and vanish (SIGKILL)",
         f"RSS {v['rss_before_mib']:.1f} -> {' -> '.join(f'{x:.1f}' for x in v['rss_after_each_round_mib'])} "
         "MiB "
         f"({v['rss_delta_mib']:+.2f}); "
         f"open files {v['open_files_before']} -> peak {v['open_files_peak']} -> {v['open_files_after']}; "
         f"threads {v['threads_before']} -> {v['threads_after']}"),
        ("  frame rate before / during", f"{v['fps_before']:.2f} / {v['fps_during']:.2f} fps"),
        (f"dead subscriber for {d['minutes']:g} min (SO_RCVBUF {d['rcvbuf']})",
         f"RSS {d['rss_before_mib']:.1f} -> peak {d['rss_peak_mib']:.1f} MiB (+{d['rss_growth_mib']:.2f}; "
         f"bound {r['bound_mib']:.2f} = hwm {r['hwm']} x {r['labels_message_bytes']} B)"),
        ("  frame rate min / mean meanwhile", f"{d['fps_min']:.2f} / {d['fps_mean']:.2f} fps"),
        ("  dead subscriber on waking", f"{dc['received']} labels received, {dc['gaps']} seq gap(s), "
                                        f"{dc['missing']} missing (= dropped for it)"),
        ("healthy subscriber", f"{r['healthy_subscriber']['labels']} labels, {r['healthy_subscriber']['gaps']} gaps"),
    ], ("consumers", "figure"))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
