"""The kiosk under a store's load: ``python bench/kiosk.py [--devices 32] [--seconds 60]``.

Simulated devices on loopback (a real PUB and snapshot REP each, in this process) publish
**32 devices x 4 cameras x 12 slots at 2 labels messages/s per camera** (256 messages/s, plus a
heartbeat per device per second) to a ``gemsight-kiosk run`` child process (plaintext on loopback).
A client logged in to the kiosk reads ``/api/events`` (server-sent events). Every ``--every``
seconds a slot of a case not touched in the last 12 s is emptied (and refilled once its incident
arrived); half of the cases have the configured grace (``--grace``), the other half a grace of 0
(the immediate alarms). Measured:

* the kiosk's CPU (cores, from ``/proc/<pid>/stat`` over the measured window) and RSS (peak, end);
* latency from the publish of the labels message that empties a slot to the incident's SSE event at
  the client: p50/p95/max, and p95 beyond the grace (target <= 1 s, both halves);
* the store page with all slots: server time for ``GET /`` (the HTML), and the load time in headless
  Chromium (navigation start to load event, then until the live connection is up) when available.

Prints a table, writes ``bench/results/kiosk.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.link import messages  # noqa: E402
from tests.helpers import labels_message  # noqa: E402

CLASSES = ("ring", "necklace", "earring", "bracelet", "pendant", "brooch", "watch")
MODEL = {"name": "bench", "version": "1.0.0", "precision": "int8", "backend": "onnxruntime"}
LAT = {"capture": 1.0, "preprocess": 2.0, "infer": 3.0, "postprocess": 0.1, "total": 6.1}
SLOTS = [f"r{r}c{c}" for r in range(3) for c in range(4)]
PASSWORD = "bench password"


class Store:
    """Every simulated device: PUB + REP sockets, the current labels per camera, a publishing thread."""

    def __init__(self, n_devices: int, n_cameras: int, rate_hz: float) -> None:
        ctx = zmq.Context.instance()
        self.rate_hz = rate_hz
        self.devices = [f"case-{i:02d}" for i in range(n_devices)]
        self.cameras = [f"cam{j}" for j in range(n_cameras)]
        self.plan = {(d, c): {s: CLASSES[(i + k) % len(CLASSES)] for k, s in enumerate(SLOTS)}
                     for i, d in enumerate(self.devices) for c in self.cameras}
        self.state = {key: dict(slots) for key, slots in self.plan.items()}
        self.seq = {key: -1 for key in self.plan}
        self.latest: dict[tuple[str, str], bytes] = {}
        self.pubs, self.reps, self.endpoints = {}, {}, {}
        for d in self.devices:
            pub, rep = ctx.socket(zmq.PUB), ctx.socket(zmq.REP)
            for s in (pub, rep):
                s.setsockopt(zmq.LINGER, 0)
                s.bind("tcp://127.0.0.1:*")
            self.pubs[d], self.reps[d] = pub, rep
            self.endpoints[d] = tuple(s.getsockopt(zmq.LAST_ENDPOINT).decode() for s in (pub, rep))
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sent = 0

    def _message(self, key: tuple[str, str]) -> dict:
        self.seq[key] += 1
        return labels_message(self.state[key], device=key[0], camera=key[1], seq=self.seq[key], model=MODEL,
                              latencies_ms=LAT, capture_age_s=0.006)

    def publish(self, key: tuple[str, str]) -> float:
        """Publish the camera's current state now; returns the publish time."""
        with self.lock:
            payload = messages.encode(self._message(key))
            self.latest[key] = payload
            t = time.time()
            self.pubs[key[0]].send_multipart([messages.topic(key[0], key[1], "labels").encode(), payload])
            self.sent += 1
        return t

    def heartbeat(self, device: str) -> None:
        with self.lock:
            msg = messages.heartbeat_message(device=device, ts=time.time(), uptime_s=1.0, cameras={
                c: {"seq": self.seq[(device, c)], "state": "up", "fps": self.rate_hz} for c in self.cameras})
            self.pubs[device].send_multipart([messages.topic(device, None, "heartbeat").encode(), messages.encode(msg)])

    def run(self) -> None:
        """Publish every camera at ``rate_hz``, spread evenly, a heartbeat per device per second; answer snapshots."""
        keys = list(self.plan)
        period = 1.0 / (self.rate_hz * len(keys))
        poller = zmq.Poller()
        for rep in self.reps.values():
            poller.register(rep, zmq.POLLIN)
        nxt, i, last_hb = time.monotonic(), 0, 0.0
        while not self.stop.is_set():
            self.publish(keys[i % len(keys)])
            i += 1
            now = time.monotonic()
            if now - last_hb >= 1.0:
                last_hb = now
                for d in self.devices:
                    self.heartbeat(d)
            for sock, _ in poller.poll(0):
                sock.recv()
                dev = next(d for d, r in self.reps.items() if r is sock)
                with self.lock:
                    cams = b",".join(json.dumps(c).encode() + b":" + p for (d, c), p in self.latest.items() if d == dev)
                sock.send(b'{"device":' + json.dumps(dev).encode() + b',"cameras":{' + cams + b'},"status":{}}')
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def sse_reader(url: str, cookies, opened: dict, stop: threading.Event, counters: dict) -> None:
    """Record the arrival time of each incident's ``opened`` event, keyed by (device, camera, slot)."""
    import httpx

    try:
        _read_events(url, cookies, opened, stop, counters)
    except httpx.HTTPError:   # the kiosk stopped at the end of the run
        pass


def _read_events(url: str, cookies, opened: dict, stop: threading.Event, counters: dict) -> None:
    import httpx

    with httpx.Client(base_url=url, cookies=cookies, timeout=None) as c, c.stream("GET", "/api/events") as r:
        event = None
        for line in r.iter_lines():
            if stop.is_set():
                return
            if line.startswith("event: "):
                event = line[7:]
                counters[event] = counters.get(event, 0) + 1
            elif line.startswith("data: ") and event == "incident":
                data = json.loads(line[6:])
                if data["event"] == "opened" and data["kind"] in ("missing", "smash"):
                    opened.setdefault((data["device"], data["camera"], data["slot"]), time.time())


def browser_load_s(url: str, cookies, tmp: Path) -> dict | None:
    """Load time of the store page in headless Chromium (None without chromium/selenium)."""
    if not (os.path.exists("/usr/bin/chromium") and os.path.exists("/usr/bin/chromedriver")):
        return None
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000", f"--user-data-dir={tmp / 'chromium'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(url + "/healthz")
        for name, value in cookies.items():
            driver.add_cookie({"name": name, "value": value, "path": "/"})
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            driver.get(url + "/")
            while not driver.execute_script("return document.querySelector('#live.on') !== null"):
                time.sleep(0.01)
            live = time.perf_counter() - t0
            nav = driver.execute_script("const t = performance.getEntriesByType('navigation')[0];"
                                        "return [t.domContentLoadedEventEnd, t.loadEventEnd];")
            runs.append((nav[0] / 1000, nav[1] / 1000, live))
        cells = driver.execute_script("return document.querySelectorAll('.slot').length")
        best = min(runs, key=lambda r: r[1])
        return {"dom_content_loaded_s": round(best[0], 3), "load_s": round(best[1], 3), "live_s": round(best[2], 3),
                "slot_cells": cells}
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=32)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--rate", type=float, default=2.0, help="labels messages per second per camera")
    p.add_argument("--grace", type=float, default=2.0, help="empty_grace_s of half the cases (the rest: 0)")
    p.add_argument("--seconds", type=float, default=60.0, help="measured window")
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--every", type=float, default=0.5, help="a removal every this many seconds")
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/kiosk.json")
    args = p.parse_args(argv)

    import httpx

    store = Store(args.devices, args.cameras, args.rate)
    tmp = Path(tempfile.mkdtemp(prefix="gemsight-kiosk-bench-"))
    devices = []
    for i, d in enumerate(store.devices):
        grace = args.grace if i % 2 == 0 else 0.0
        devices.append({"id": d, "labels": store.endpoints[d][0], "snapshot": store.endpoints[d][1],
                        "cameras": {c: {"slots": store.plan[(d, c)], "empty_grace_s": grace} for c in store.cameras}})
    cfg = {"store": "bench", "state_dir": str(tmp / "state"), "curve": None, "devices": devices,
           "policies": {"empty_grace_s": args.grace}, "web": {"port": 0}}
    (tmp / "kiosk.yaml").write_text(yaml.safe_dump(cfg))
    subprocess.run([sys.executable, "-m", "kiosk", "user", "add", "bench", "--role", "manager", "--password-stdin",
                    "--config", str(tmp / "kiosk.yaml")], input=PASSWORD + "\n", text=True, check=True,
                   capture_output=True, cwd=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "kiosk", "run", "--config", str(tmp / "kiosk.yaml")],
                            stdout=subprocess.PIPE, stderr=open(tmp / "kiosk.log", "w"), text=True, cwd=ROOT)
    pub_thread = threading.Thread(target=store.run, daemon=True)
    stop = threading.Event()
    try:
        line = proc.stdout.readline()
        url = re.search(r"(http://\S+)/", line).group(1)
        pub_thread.start()
        c = httpx.Client(base_url=url, timeout=30)
        token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
        r = c.post("/login", data={"user": "bench", "password": PASSWORD, "csrf": token})
        assert r.status_code == 303, r.text
        opened: dict = {}
        counters: dict = {}
        threading.Thread(target=sse_reader, args=(url, dict(c.cookies), opened, stop, counters), daemon=True).start()
        time.sleep(args.warmup)

        keys = list(store.plan)
        rng = random.Random(0)
        removals: dict = {}
        samples: list = []               # ((device, camera, slot), publish time, grace)
        last_touch: dict = {}
        rss = []
        cpu0, t0, sent0 = proc_cpu_s(proc.pid), time.monotonic(), store.sent
        next_removal = t0
        while time.monotonic() - t0 < args.seconds:
            now = time.monotonic()
            rss.append(proc_rss_mb(proc.pid))
            for key, (t_pub, slot, grace) in list(removals.items()):   # refill once the incident came
                k3 = (*key, slot)
                if k3 in opened or time.time() - t_pub > grace + 5:
                    store.state[key][slot] = store.plan[key][slot]
                    store.publish(key)
                    removals.pop(key)
                    last_touch[key] = now
            if now >= next_removal:
                next_removal += args.every
                free = [k for k in keys if k not in removals and now - last_touch.get(k, -99) > 12]
                if not free:             # a small --devices run: every case is busy
                    continue
                key = rng.choice(free)
                slot = rng.choice(SLOTS)
                grace = args.grace if store.devices.index(key[0]) % 2 == 0 else 0.0
                store.state[key][slot] = "empty"
                removals[key] = (store.publish(key), slot, grace)
                samples.append(((*key, slot), removals[key][0], grace))
                last_touch[key] = now
            time.sleep(0.02)
        window = time.monotonic() - t0
        cpu = (proc_cpu_s(proc.pid) - cpu0) / window
        achieved = (store.sent - sent0) / window
        time.sleep(args.grace + 1.5)
        lat = {"grace": [], "immediate": []}
        lost = 0
        for k3, t_pub, grace in samples:
            if k3 in opened:
                lat["grace" if grace else "immediate"].append((opened[k3] - t_pub) - grace)
            else:
                lost += 1
        html = []
        for _ in range(5):
            t = time.perf_counter()
            body = c.get("/").text
            html.append(time.perf_counter() - t)
        browser = browser_load_s(url, dict(c.cookies), tmp)
        rss_end = proc_rss_mb(proc.pid)
    finally:
        stop.set()
        store.stop.set()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

    def stats(v):
        a = np.asarray(v) if v else np.asarray([float("nan")])
        return {"n": len(v), "p50_s": round(float(np.percentile(a, 50)), 3), "p95_s": round(float(np.percentile(a, 95)), 3),
                "max_s": round(float(a.max()), 3)}

    report = {
        "bench": "kiosk", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "load": {"devices": args.devices, "cameras_per_device": args.cameras, "slots_per_camera": len(SLOTS),
                 "slots": len(keys) * len(SLOTS), "labels_per_s": args.devices * args.cameras * args.rate,
                 "labels_per_s_achieved": round(achieved, 1), "heartbeats_per_s": args.devices,
                 "seconds": args.seconds, "messages_sent": store.sent},
        "kiosk": {"cpu_cores": round(cpu, 3), "rss_peak_mb": round(max(rss), 1), "rss_end_mb": round(rss_end, 1)},
        "latency_beyond_grace": {"grace_s": args.grace, "with_grace": stats(lat["grace"]),
                                 "immediate": stats(lat["immediate"]), "removals_without_incident": lost},
        "page": {"html_get_median_s": round(float(np.median(html)), 3), "html_bytes": len(body.encode()),
                 "browser": browser},
        "sse_events": counters,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    rows = [("kiosk CPU (cores)", f"{report['kiosk']['cpu_cores']:.2f}", "< 1"),
            ("kiosk RSS peak / end (MB)", f"{report['kiosk']['rss_peak_mb']:.0f} / {report['kiosk']['rss_end_mb']:.0f}", ""),
            (f"p95 publish->SSE beyond {args.grace:g} s grace", f"{report['latency_beyond_grace']['with_grace']['p95_s']:.3f} s", "<= 1 s"),
            ("p95 publish->SSE, immediate (0 s grace)", f"{report['latency_beyond_grace']['immediate']['p95_s']:.3f} s", "<= 1 s"),
            ("removals without incident", str(lost), "0"),
            (f"GET / with {report['load']['slots']} slots (server)", f"{report['page']['html_get_median_s']:.3f} s", ""),
            ("page load in Chromium (load / live)",
             f"{browser['load_s']:.3f} / {browser['live_s']:.3f} s" if browser else "n/a", "")]
    w = max(len(r[0]) for r in rows)
    print(f"\nkiosk bench: {args.devices} devices x {args.cameras} cameras x {len(SLOTS)} slots at {args.rate:g}/s "
          f"({report['load']['labels_per_s']:.0f} labels/s; {achieved:.0f}/s sent), {args.seconds:g} s measured")
    for name, value, target in rows:
        print(f"  {name:<{w}}  {value:>16}  {target}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
