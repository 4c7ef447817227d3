"""The kiosk under hostile requests while a store streams: ``python bench/kiosk_hostile.py [--seconds 45]``.

A ``gemsight-kiosk run`` child process follows a store of simulated devices on loopback (default
16 devices x 4 cameras x 12 slots at 2 labels messages/s per camera, the store of ``bench/kiosk.py``
at half size) while five hostile clients send, each in its own thread at up to ``--hostile-rate``
requests a second (20: a bounded load of 100 hostile requests a second):

* **chunked bodies**: 2 MB sent chunked (no Content-Length) to an acknowledgement, with a valid session
  and CSRF token; and a declared 200 MB Content-Length to ``/login``;
* **lockout attempts**: wrong passwords for the manager and for made-up names, from the kiosk's own
  screen (127.0.0.1: slowed down, never locked) and from another address (127.0.0.2: locked out);
* **bad JSON**: 60 KB of ``[``, truncated and non-object JSON, lone surrogates in a note.

Meanwhile a slot is emptied every ``--every`` seconds (half the cases with a 2 s grace, half with 0),
the manager's page (``GET /``) is timed every 0.25 s, and the child's RSS is sampled. Measured: the
page's p95, the incidents' latency beyond their grace (publish -> SSE event), removals without
incident, RSS peak, and the hostile requests' answers (any 5xx is counted). Targets: page p95 <= 200 ms,
incidents on time (p95 beyond grace <= 1 s, none missed), RSS < 150 MB. Prints a table, writes
``bench/results/kiosk_hostile.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.kiosk import PASSWORD, SLOTS, Store, proc_rss_mb, sse_reader  # noqa: E402

PAGE_P95_S, RSS_MB, LATE_S = 0.200, 150.0, 1.0


def hostile(url: str, cookies: dict, token: str, kind: str, stop: threading.Event, answers: Counter,
            rate: float) -> None:
    """One hostile client: sends ``kind`` requests at up to ``rate`` a second until ``stop``; counts the answers."""
    import httpx

    rng = random.Random(kind)
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    with httpx.Client(base_url=url, cookies=cookies, timeout=30) as c:
        while not stop.wait(1.0 / rate):
            h = {"X-CSRF-Token": token, "content-type": "application/json"}
            try:
                if kind == "chunked":
                    r = c.post("/api/incidents/1/ack", content=(b"[" * 65536 for _ in range(32)), headers=h)
                    answers[f"{kind} {r.status_code}"] += 1
                elif kind == "declared":      # a raw socket: httpx will not send less than it declares
                    with socket.create_connection((host, int(port)), timeout=30) as s:
                        s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
                                  b"\r\nContent-Length: %d\r\n\r\nuser=x" % (200 << 20))
                        status = s.recv(64).split(b" ")[1].decode()
                    answers[f"{kind} {status}"] += 1
                elif kind.startswith("lockout"):    # from the screen (127.0.0.1: slowed) and elsewhere (locked)
                    address = "127.0.0.1" if kind == "lockout-screen" else "127.0.0.2"
                    with httpx.Client(base_url=url, timeout=30,
                                      transport=httpx.HTTPTransport(local_address=address)) as anon:
                        form = re.search(r'name="csrf" value="([^"]+)"', anon.get("/login").text).group(1)
                        name = rng.choice(["bench", "admin", "root", "mallory", f"u{rng.randrange(1000)}"])
                        r = anon.post("/login", data={"user": name, "password": "guess", "csrf": form})
                    answers[f"{kind} {r.status_code}"] += 1
                else:
                    body = rng.choice([b"[" * 60_000, b'{"note": "x"', b"[1, 2]", b'{"note": "\\ud800"}', b"\xff"])
                    r = c.post("/api/incidents/1/ack", content=body, headers=h)
                    answers[f"{kind} {r.status_code}"] += 1
            except (httpx.TransportError, OSError) as exc:   # a cut connection (a body past the drain)
                answers[f"{kind} cut ({type(exc).__name__})"] += 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=16)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--rate", type=float, default=2.0)
    p.add_argument("--grace", type=float, default=2.0)
    p.add_argument("--seconds", type=float, default=45.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--every", type=float, default=1.0)
    p.add_argument("--hostile-rate", type=float, default=20.0, help="requests a second per hostile client (5 clients)")
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/kiosk_hostile.json")
    args = p.parse_args(argv)

    import httpx

    store = Store(args.devices, args.cameras, args.rate)
    tmp = Path(tempfile.mkdtemp(prefix="gemsight-kiosk-hostile-"))
    devices = [{"id": d, "labels": store.endpoints[d][0], "snapshot": store.endpoints[d][1],
                "cameras": {c: {"slots": store.plan[(d, c)], "empty_grace_s": args.grace if i % 2 == 0 else 0.0}
                            for c in store.cameras}} for i, d in enumerate(store.devices)]
    cfg = {"store": "bench", "state_dir": str(tmp / "state"), "curve": None, "devices": devices,
           "policies": {"empty_grace_s": args.grace}, "web": {"port": 0}}
    (tmp / "kiosk.yaml").write_text(yaml.safe_dump(cfg))
    subprocess.run([sys.executable, "-m", "kiosk", "user", "add", "bench", "--role", "manager", "--password-stdin",
                    "--config", str(tmp / "kiosk.yaml")], input=PASSWORD + "\n", text=True, check=True,
                   capture_output=True, cwd=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "kiosk", "run", "--config", str(tmp / "kiosk.yaml")],
                            stdout=subprocess.PIPE, stderr=open(tmp / "kiosk.log", "w"), text=True, cwd=ROOT)
    stop, answers, opened, counters = threading.Event(), Counter(), {}, {}
    try:
        url = re.search(r"(http://\S+)/", proc.stdout.readline()).group(1)
        threading.Thread(target=store.run, daemon=True).start()
        c = httpx.Client(base_url=url, timeout=30)
        token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
        assert c.post("/login", data={"user": "bench", "password": PASSWORD, "csrf": token}).status_code == 303
        token = re.search(r'name="csrf" content="([^"]+)"', c.get("/").text).group(1)
        threading.Thread(target=sse_reader, args=(url, dict(c.cookies), opened, stop, counters), daemon=True).start()
        time.sleep(args.warmup)
        for kind in ("chunked", "declared", "lockout-screen", "lockout-remote", "badjson"):
            threading.Thread(target=hostile, args=(url, dict(c.cookies), token, kind, stop, answers, args.hostile_rate),
                             daemon=True).start()
        keys, rng = list(store.plan), random.Random(0)
        removals, samples, touched, rss, page = {}, [], {}, [], []
        t0 = next_removal = next_page = time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            now = time.monotonic()
            rss.append(proc_rss_mb(proc.pid))
            for key, (t_pub, slot, grace) in list(removals.items()):
                if (*key, slot) in opened or time.time() - t_pub > grace + 5:
                    store.state[key][slot] = store.plan[key][slot]
                    store.publish(key)
                    removals.pop(key)
                    touched[key] = now
            if now >= next_removal:
                next_removal += args.every
                free = [k for k in keys if k not in removals and now - touched.get(k, -99) > 12]
                if free:
                    key, slot = rng.choice(free), rng.choice(SLOTS)
                    grace = args.grace if store.devices.index(key[0]) % 2 == 0 else 0.0
                    store.state[key][slot] = "empty"
                    removals[key] = (store.publish(key), slot, grace)
                    samples.append(((*key, slot), removals[key][0], grace))
                    touched[key] = now
            if now >= next_page:
                next_page += 0.25
                t = time.perf_counter()
                status = c.get("/").status_code
                page.append(time.perf_counter() - t)
                answers[f"page {status}"] += 1
            time.sleep(0.01)
        time.sleep(args.grace + 1.5)
        late = [opened[k] - t - g for k, t, g in samples if k in opened]
        missed = sum(1 for k, _, _ in samples if k not in opened)
        health = c.get("/healthz").json()
    finally:
        stop.set()
        store.stop.set()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    p95 = float(np.percentile(page, 95))
    late_p95 = float(np.percentile(late, 95)) if late else float("nan")
    five_xx = sum(n for k, n in answers.items() if re.search(r" 5\d\d$", k))
    report = {
        "bench": "kiosk_hostile", "command": "python bench/kiosk_hostile.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(), "cores": os.cpu_count(),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "load": {"devices": args.devices, "cameras_per_device": args.cameras, "slots": len(keys) * len(SLOTS),
                 "hostile_rate_per_client": args.hostile_rate,
                 "labels_per_s": args.devices * args.cameras * args.rate, "seconds": args.seconds},
        "page": {"n": len(page), "p50_s": round(float(np.median(page)), 4), "p95_s": round(p95, 4),
                 "max_s": round(max(page), 4), "target_p95_s": PAGE_P95_S},
        "incidents": {"removals": len(samples), "missed": missed, "late_p95_s": round(late_p95, 3),
                      "late_max_s": round(max(late), 3) if late else None, "target_late_s": LATE_S},
        "rss_mb": {"peak": round(max(rss), 1), "end": round(rss[-1], 1), "target": RSS_MB},
        "hostile_answers": dict(sorted(answers.items())), "server_errors": five_xx, "health_at_end": health,
    }
    ok = (p95 <= PAGE_P95_S and missed == 0 and late_p95 <= LATE_S and max(rss) < RSS_MB and five_xx == 0
          and health["ok"])
    report["pass"] = ok
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    rows = [("page GET / p50 / p95", f"{report['page']['p50_s'] * 1000:.0f} / {p95 * 1000:.0f} ms", "p95 <= 200 ms"),
            ("incidents: removals / missed", f"{len(samples)} / {missed}", "0 missed"),
            ("incident p95 beyond grace", f"{late_p95:.3f} s", "<= 1 s"),
            ("kiosk RSS peak / end", f"{max(rss):.0f} / {rss[-1]:.0f} MB", "< 150 MB"),
            ("hostile requests answered", str(sum(n for k, n in answers.items() if not k.startswith("page"))), ""),
            ("5xx answers", str(five_xx), "0"), ("health at the end", "ok" if health["ok"] else str(health), "ok")]
    print(f"\nkiosk under hostile requests: {args.devices} devices x {args.cameras} cameras x {len(SLOTS)} slots at "
          f"{args.rate:g}/s, {args.seconds:g} s")
    for name, value, target in rows:
        print(f"  {name:<30} {value:>16}  {target}")
    for k, n in sorted(answers.items()):
        print(f"    {k:<40} {n:>6}")
    print(f"{'PASS' if ok else 'FAIL'}; wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
