"""The demo's store kiosk: ``gemsight-kiosk run`` on the demo's device, its incidents in the summary.

The kiosk runs as its own process (``python -m kiosk``; nothing imports the kiosk package): its
planogram is the demo video's first frame (``case.truth.jsonl``), its client key is added to the
device's allow-list, its history starts fresh each run and a demo manager login is made.
"""
from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from edge.errors import GemsightError

logger = logging.getLogger("gemsight.demo")


def _py(module: str, *args: object) -> list[str]:
    return [sys.executable, "-m", module, *map(str, args)]


KIOSK_LOGIN = ("demo", "gemsight-demo")


def start_kiosk(workdir: Path, keys: dict[str, Path], port: int, truth: Path | None,
                speed: float = 1.0) -> subprocess.Popen | None:
    """A store kiosk on the demo's device (``gemsight-kiosk run``, its own process), with the filmed day's
    opening stock as planogram (``case.events.jsonl``; or a first frame's ``case.truth.jsonl``), a fresh
    history, its key in the device's allow-list and a demo login. Its times are the wall clock's, so its
    grace and confirmations are the day's divided by ``speed``. ``None`` for a real camera: no planogram
    is known (``gemsight-kiosk example-config``)."""
    if truth is None or not truth.is_file():
        logger.info("kiosk: not started for a real camera (write a kiosk.yaml: gemsight-kiosk example-config)")
        return None
    from edge.link.keys import allow, create_key_pair  # noqa: PLC0415

    kdir = workdir / "kiosk"
    if not (kdir / "demo-kiosk.key_secret").exists():
        create_key_pair(kdir, "demo-kiosk")
    if not (keys["allowed_clients"] / "demo-kiosk.key").exists():
        allow(kdir / "demo-kiosk.key", keys["allowed_clients"])
    shutil.rmtree(kdir / "state", ignore_errors=True)   # this run's incidents only
    lines = [json.loads(line) for line in truth.read_text().splitlines() if line.strip()]
    first = ({e["slots"][0]: e["class"] for e in lines if e.get("kind") == "stock"} if lines[0].get("kind") == "day"
             else lines[0]["slots"])
    grace = (lines[0].get("grace_s", 30.0) if lines[0].get("kind") == "day" else 3.0 * speed) / speed
    plan = {slot: "empty by design" if cls == "empty" else cls for slot, cls in first.items()}
    config = {"store": "gemsight demo", "state_dir": str(kdir / "state"),
              "curve": {"client_secret_key": str(kdir / "demo-kiosk.key_secret")},
              "devices": [{"id": "demo-case", "labels": f"tcp://127.0.0.1:{port}",
                           "snapshot": f"tcp://127.0.0.1:{port + 1}", "server_key": str(keys["server_public"]),
                           "cameras": {"cam0": {"title": "Demo case", "slots": plan}}}],
              # The day's grace (a piece away longer is missing), a swap confirmed after 10 s and a smash
              # within 10 s, all in the video's seconds; the loop needs a few seconds to start.
              "policies": {"empty_grace_s": round(grace, 2), "swap_confirm_s": round(10.0 / speed, 2),
                           "burst_window_s": round(10.0 / speed, 2), "stale_heartbeats": 10},
              "web": {"host": "127.0.0.1", "port": 0}}
    path = kdir / "kiosk.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run(_py("kiosk", "user", "add", KIOSK_LOGIN[0], "--role", "manager", "--password-stdin", "--config",
                       path), input=KIOSK_LOGIN[1] + "\n", text=True, check=True, capture_output=True)
    proc = subprocess.Popen(_py("kiosk", "run", "--config", path), stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line:
        proc.wait(10)
        raise GemsightError(f"the kiosk did not start (exit {proc.returncode}); its log is above")
    print(f"\n{line}  (log in as {KIOSK_LOGIN[0]} / {KIOSK_LOGIN[1]})\n", flush=True)
    proc.url = line.rsplit(" ", 1)[-1]   # "gemsight kiosk: http://127.0.0.1:PORT/"
    return proc


def start_staff(kiosk: subprocess.Popen | None, events: Path | None, keys: dict[str, Path], port: int,
                collect: bool = False):
    """The day's staff (:mod:`deploy.demo_staff`) on the kiosk's page, at the video's time as the device
    reports it (its snapshot's frame index); ``None`` without a kiosk or a filmed day. With ``collect`` the
    manager also turns on the collection of training photos early in the day (``--learn``)."""
    if kiosk is None or events is None or not events.is_file():
        return None
    from deploy.demo_staff import COLLECT_AT, KioskPage, Staff, load_events  # noqa: PLC0415
    from edge.link.client import ClientKeys  # noqa: PLC0415
    from edge.loop.device_requests import ask  # noqa: PLC0415

    day = load_events(events) + ([{"t": COLLECT_AT, "action": "collect"}] if collect else [])
    fps = float(day[0].get("fps", 5.0))
    client = ClientKeys.load(keys["server_public"], keys["client_secret"])

    def video_time() -> float | None:
        try:
            snap = ask(f"tcp://127.0.0.1:{port + 1}", client, {"camera": "cam0"}, timeout_s=2.0)
        except GemsightError:
            return None
        index = (snap.get("cameras", {}).get("cam0") or {}).get("frame_index")
        return None if index is None else index / fps

    staff = Staff(day, KioskPage(kiosk.url, *KIOSK_LOGIN), video_time, "demo-case", "cam0")
    staff.start()
    return staff


def kiosk_models(proc: subprocess.Popen) -> dict[str, str]:
    """Case → the model its page shows (``/api/state``, read as the demo's manager): "model gemsight 1.0.1 (...)"."""
    from deploy.demo_staff import KioskPage  # noqa: PLC0415

    state = json.loads(KioskPage(proc.url, *KIOSK_LOGIN)._get("/api/state"))
    return {f"{c['device']}/{c['camera']}": c["camera_health"].get("model_text") or "" for c in state.get("cases", [])}


def stop_kiosk(proc: subprocess.Popen | None, workdir: Path) -> None:
    """Stop the demo's kiosk (after Enter, on a terminal) and print the incidents it saw."""
    if proc is None:
        return
    if sys.stdin.isatty() and proc.poll() is None:
        try:
            input("The kiosk is still running: press Enter to stop it. ")
        except (EOFError, KeyboardInterrupt):
            pass
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    out = subprocess.run(_py("kiosk", "incidents", "--config", workdir / "kiosk" / "kiosk.yaml"),
                         capture_output=True, text=True, check=False)
    print("\nIncidents the kiosk saw (gemsight-kiosk incidents):")
    for line in (out.stdout or out.stderr).splitlines():
        print(f"  {line}")
