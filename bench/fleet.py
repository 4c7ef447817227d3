"""The chain under a fleet's load: ``python bench/fleet.py [--stores 200] [--devices 8] [--seconds 60]``.

One real mosquitto (TLS, a password per store, the per-store ACL) and one real PostgreSQL (both from
``tests/hq/services.py``, on temporary folders and free loopback ports); ``gemsight-hq run`` as a child
process consumes the broker into PostgreSQL. ``--procs`` worker processes each run a share of the
stores, every store a real :class:`kiosk.chain.Chain` (its own SQLite outbox and MQTT connection),
reporting for ``--devices`` devices: incident events (opened, acknowledged, resolved), device health
with every device's model, and counts, ``--rate`` messages a second per store.

Faults in the same run, each counted in PostgreSQL against what the stores sent (every message id):

* **a store offline for 60 minutes** (simulated clock: its kiosk runs at 120x while its broker
  connection is down, so the hour passes in 30 s of the run) and then back: its outbox drains;
* **the broker restarted** (SIGTERM, start again) at 35 % of the run;
* **PostgreSQL restarted** (``pg_ctl stop -m fast``, start) at 70 % of the run: HQ recovers by itself.

"lost" = ids sent and not in ``messages``; "applied twice" = ``stores.applied`` (incremented in the
transaction that applies a message) minus the rows of ``messages`` (each id once): a message the
broker or a store delivered again must add nothing. Measured too: messages/s applied, HQ lag
(store queued → applied in PostgreSQL) p50/p95 outside the fault windows, CPU and RSS of the HQ
process. Prints a table, writes ``bench/results/fleet.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fault_kit import proc_sample  # noqa: E402

OFFLINE_SPEED = 120.0            # the offline store's simulated clock: 60 min in 30 s
OFFLINE_STORE = "store-000"
MODEL = {"name": "gemsight-resnet18", "version": "1.2.0", "precision": "int8", "backend": "onnxruntime"}


def store_ids(n: int) -> list[str]:
    return [f"store-{i:03d}" for i in range(n)]


def password(store: str) -> str:
    return f"bench-{store}-pw"


# -- a worker process: a share of the stores --------------------------------------------------------
def worker(spec: dict) -> None:
    import logging

    from kiosk.chain import Chain

    logging.basicConfig(level=logging.ERROR, format="worker %(process)d %(levelname)s %(name)s: %(message)s")

    t0, seconds, rate, n_dev = spec["t0"], spec["seconds"], spec["rate"], spec["devices"]
    back_at = t0 + seconds * spec["offline_share"]
    folder = Path(spec["folder"])
    rng = random.Random(spec["worker"])

    def clock_for(store: str):
        if store != OFFLINE_STORE:
            return time.time
        return lambda: (time.time() if time.time() >= back_at
                        else back_at - 3600 + (time.time() - t0) * OFFLINE_SPEED)

    chains = {s: Chain(s, spec["url"], password(s), folder / f"{s}.sqlite3", ca_file=spec["ca"], clock=clock_for(s))
              for s in spec["stores"]}
    for s, c in chains.items():
        if s != OFFLINE_STORE:
            c.start()
    offline = chains.get(OFFLINE_STORE)
    sent: list[tuple[str, str, float]] = []
    open_incidents: dict[str, list[dict]] = {s: [] for s in chains}
    next_id = {s: 1 for s in chains}
    while time.time() < t0:
        time.sleep(0.01)
    tick, step = 0, 0.2
    while time.time() < t0 + seconds:
        if offline is not None and not offline.connected.is_set() and time.time() >= back_at and not offline._thread:
            offline.start()                 # the store's line is back
        for s, chain in chains.items():
            for _ in range(np.random.default_rng(rng.randrange(1 << 30)).poisson(rate * step)):
                now = chain.clock()
                roll = rng.random()
                if roll < 0.1:
                    devices = [{"device": f"case-{d:02d}", "link": "up", "up": rng.random() > 0.02,
                                "cameras": [{"camera": "cam0", "health": "up", "model": MODEL}]} for d in range(n_dev)]
                    msg = chain.send("health", {"devices": devices})
                elif roll < 0.13:
                    msg = chain.send("count", {"count": {"id": next_id[s], "kind": rng.choice(["opening", "closing"]),
                                                         "user": "schedule", "ts": now, "sha256": "0" * 64,
                                                         "totals": {"expected": 96, "seen": 95, "missing": 1}}})
                    next_id[s] += 1
                else:
                    msg = _incident_event(chain, s, open_incidents[s], next_id, n_dev, rng, now)
                sent.append((msg["id"], s, time.time()))
        tick += 1
        time.sleep(max(0.0, t0 + tick * step - time.time()))
    if offline is not None and offline._thread is None:
        offline.start()
    deadline = time.time() + spec["drain_s"]
    while time.time() < deadline and any(len(c.outbox) for c in chains.values()):
        time.sleep(0.2)
    left = {s: len(c.outbox) for s, c in chains.items() if len(c.outbox)}
    for c in chains.values():
        c.stop()
    (folder / f"sent-{spec['worker']}.json").write_text(json.dumps({"sent": sent, "left_in_outbox": left}))


def _incident_event(chain, store, opened, next_id, n_dev, rng, now) -> dict:
    if opened and rng.random() < 0.5:
        inc = opened[0]
        if inc["state"] == "open":
            inc.update(state="acknowledged", ack_by="mia", ack_at=now, updated_at=now)
            event = "acknowledged"
        else:
            inc.update(state="resolved", resolved_at=now, updated_at=now)
            opened.pop(0)
            event = "resolved"
    else:
        inc = {"id": next_id[store], "kind": "missing", "device": f"case-{rng.randrange(n_dev):02d}", "camera": "cam0",
               "slot": f"r{rng.randrange(3)}c{rng.randrange(4)}", "state": "open", "opened_at": now, "updated_at": now,
               "reason": "slot should hold ring but is empty", "evidence": {"label": "empty", "seq": rng.randrange(10**6)}}
        next_id[store] += 1
        opened.append(inc)
        event = "opened"
    return chain.incidents([(event, inc)])[0]


# -- the coordinator --------------------------------------------------------------------------------
def _pct(values, q) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def run(args: argparse.Namespace) -> dict:
    import psycopg

    from tests.hq.services import Broker, Postgres

    folder = Path(tempfile.mkdtemp(prefix="gemsight-fleet-"))
    stores = store_ids(args.stores)
    broker = Broker(folder / "mosq", {"hq": "bench-hq-pw", **{s: password(s) for s in stores}}).start()
    pg = Postgres().start()
    hq_proc = None
    try:
        dsn = pg.new_database("fleet")
        (folder / "hq.password").write_text("bench-hq-pw\n")
        (folder / "db.dsn").write_text(dsn + "\n")
        (folder / "hq.yaml").write_text(yaml.safe_dump({
            "state_dir": str(folder / "hq-state"), "database_file": str(folder / "db.dsn"),
            "broker": {"url": broker.url, "password_file": str(folder / "hq.password"), "ca_file": str(broker.ca)},
            "stores": [{"id": s, "name": s, "region": f"r{i % 10}"} for i, s in enumerate(stores)],
            "web": {"port": 0}}))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        hq_log = open(folder / "hq.log", "w")
        hq_proc = subprocess.Popen([sys.executable, "-m", "hq", "run", "--config", str(folder / "hq.yaml")],
                                   env=env, stderr=hq_log, stdout=hq_log)
        _wait_hq(dsn, len(stores))
        t0 = time.time() + 3.0
        groups = [stores[i::args.procs] for i in range(args.procs)]
        workers = []
        for k, group in enumerate(groups):
            spec = {"worker": k, "stores": group, "t0": t0, "seconds": args.seconds, "rate": args.rate,
                    "devices": args.devices, "url": broker.url, "ca": str(broker.ca), "folder": str(folder),
                    "offline_share": 0.5, "drain_s": 90.0}
            workers.append(subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], env=env))
        faults = {"broker": t0 + 0.35 * args.seconds, "postgres": t0 + 0.70 * args.seconds}
        samples, done, cpu0 = [], set(), None
        while any(w.poll() is None for w in workers):
            now = time.time()
            s = proc_sample(hq_proc.pid)
            if s:
                samples.append((now, s))
                if cpu0 is None and now >= t0:
                    cpu0 = (now, s["cpu_s"])
            if "broker" not in done and now >= faults["broker"]:
                broker.restart()
                done.add("broker")
                faults["broker_back"] = time.time()
            if "postgres" not in done and now >= faults["postgres"]:
                pg.restart()
                done.add("postgres")
                faults["postgres_back"] = time.time()
            time.sleep(0.25)
        if any(w.returncode for w in workers):
            raise SystemExit(f"a worker failed: {[w.returncode for w in workers]}")
        sent, left = [], {}
        for k in range(args.procs):
            data = json.loads((folder / f"sent-{k}.json").read_text())
            sent += data["sent"]
            left.update(data["left_in_outbox"])
        _wait_applied(dsn, len(sent), timeout=60)
        end = samples[-1] if samples else (time.time(), {"cpu_s": 0.0})
        cpu = (end[1]["cpu_s"] - cpu0[1]) / (end[0] - cpu0[0]) if cpu0 else None
        with psycopg.connect(dsn) as conn:
            return _analyse(conn, args, sent, left, t0, faults, cpu, samples)
    finally:
        if hq_proc is not None:
            hq_proc.send_signal(signal.SIGTERM)
            try:
                hq_proc.wait(15)
            except subprocess.TimeoutExpired:
                hq_proc.kill()
        broker.stop()
        pg.destroy()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_hq(dsn: str, n: int) -> None:
    import psycopg

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with psycopg.connect(dsn) as conn:
                if conn.execute("SELECT COUNT(*) FROM stores").fetchone()[0] == n:
                    time.sleep(1.0)     # and its subscription
                    return
        except psycopg.Error:
            pass
        time.sleep(0.2)
    raise SystemExit("gemsight-hq did not start within 60 s")


def _wait_applied(dsn: str, n: int, timeout: float) -> None:
    import psycopg

    deadline = time.time() + timeout
    while time.time() < deadline:
        with psycopg.connect(dsn) as conn:
            if conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] >= n:
                return
        time.sleep(0.5)


def _analyse(conn, args, sent, left, t0, faults, cpu, samples) -> dict:
    rows = conn.execute("SELECT id, store, ts, applied_at, received FROM messages").fetchall()
    applied_sum, duplicates = conn.execute("SELECT SUM(applied), SUM(duplicates) FROM stores").fetchone()
    ids = {r[0] for r in rows}
    sent_at = {i: (s, w) for i, s, w in sent}

    def tally(select) -> dict:
        mine = [i for i, (s, w) in sent_at.items() if select(s, w)]
        stores = {sent_at[i][0] for i in mine}
        applied = conn.execute("SELECT COALESCE(SUM(applied), 0) FROM stores WHERE id = ANY(%s)",
                               [list(stores)]).fetchone()[0]
        have = sum(1 for r in rows if r[1] in stores)
        return {"sent": len(mine), "lost": sum(1 for i in mine if i not in ids), "applied_twice": int(applied) - have}

    windows = {"broker": (faults["broker"] - 2, faults.get("broker_back", faults["broker"]) + 10),
               "postgres": (faults["postgres"] - 2, faults.get("postgres_back", faults["postgres"]) + 10)}
    in_fault = lambda w: any(a <= w <= b for a, b in windows.values())  # noqa: E731
    lag_all = [a - ts for i, s, ts, a, rec in rows if s != OFFLINE_STORE]
    steady = [r for r in rows if r[1] != OFFLINE_STORE and r[0] in sent_at and not in_fault(sent_at[r[0]][1])]
    lag_steady = [a - ts for i, s, ts, a, rec in steady]
    to_hq = [rec - ts for i, s, ts, a, rec in steady]        # store outbox -> broker -> HQ's client
    in_hq = [a - rec for i, s, ts, a, rec in steady]         # HQ's queue -> applied in PostgreSQL
    per_s = np.bincount([int(r[3] - t0) for r in rows if t0 <= r[3] < t0 + args.seconds],
                        minlength=int(args.seconds))
    rss = [s["rss_mib"] for _, s in samples]
    total = tally(lambda s, w: True)
    return {
        "load": {"stores": args.stores, "devices_per_store": args.devices, "msgs_per_s_per_store": args.rate,
                 "seconds": args.seconds, "worker_procs": args.procs},
        "sent": len(sent), "in_postgres": len(ids), "left_in_outboxes": left,
        "lost": total["lost"], "applied_twice": int(applied_sum) - len(rows), "redelivered": int(duplicates),
        "msgs_per_s_applied": round(float(per_s.mean()), 1), "msgs_per_s_applied_peak": int(per_s.max()),
        "msgs_per_s_offered": round(args.stores * args.rate, 1),
        "lag_s": {"p50": _pct(lag_steady, 50), "p95": _pct(lag_steady, 95), "max": _pct(lag_steady, 100),
                  "p50_all": _pct(lag_all, 50), "p95_all": _pct(lag_all, 95), "max_all": _pct(lag_all, 100),
                  "goal_p95": 2.0, "store_to_hq_p95": _pct(to_hq, 95), "in_hq_p95": _pct(in_hq, 95)},
        "hq": {"cpu_cores": round(cpu, 3) if cpu is not None else None, "rss_peak_mb": round(max(rss), 1) if rss else None,
               "rss_end_mb": round(rss[-1], 1) if rss else None},
        "faults": {
            "store_offline_60_min": {**tally(lambda s, w: s == OFFLINE_STORE), "store": OFFLINE_STORE,
                                     "simulated_minutes": 60},
            "broker_restart": {**tally(lambda s, w: windows["broker"][0] <= w <= windows["broker"][1]),
                               "at_s": round(faults["broker"] - t0, 1)},
            "postgres_restart": {**tally(lambda s, w: windows["postgres"][0] <= w <= windows["postgres"][1]),
                                 "at_s": round(faults["postgres"] - t0, 1)},
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
    }


def print_table(r: dict) -> None:
    rows = [("messages sent / in PostgreSQL", f"{r['sent']} / {r['in_postgres']}"),
            ("messages/s applied, mean / peak second (offered)",
             f"{r['msgs_per_s_applied']} / {r['msgs_per_s_applied_peak']} ({r['msgs_per_s_offered']})"),
            ("HQ lag p50 / p95 / max (steady)", f"{r['lag_s']['p50']} / {r['lag_s']['p95']} / {r['lag_s']['max']} s"),
            ("HQ lag p50 / p95 / max (whole run, faults included)",
             f"{r['lag_s']['p50_all']} / {r['lag_s']['p95_all']} / {r['lag_s']['max_all']} s"),
            ("  of which store outbox -> HQ client / HQ queue -> applied, p95 (steady)",
             f"{r['lag_s']['store_to_hq_p95']} / {r['lag_s']['in_hq_p95']} s"),
            ("HQ CPU / RSS peak", f"{r['hq']['cpu_cores']} cores / {r['hq']['rss_peak_mb']} MB"),
            ("lost / applied twice / redelivered (all)", f"{r['lost']} / {r['applied_twice']} / {r['redelivered']}")]
    for name, f in r["faults"].items():
        rows.append((f"fault {name}: sent / lost / applied twice", f"{f['sent']} / {f['lost']} / {f['applied_twice']}"))
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"{a:<{width}}  {b}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stores", type=int, default=200)
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--rate", type=float, default=2.0, help="messages a second per store")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--procs", type=int, default=4, help="worker processes running the stores")
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/fleet.json")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    result = run(args)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    ok = result["lost"] == 0 and result["applied_twice"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
