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


def start_kiosk(workdir: Path, keys: dict[str, Path], port: int, truth: Path | None) -> subprocess.Popen | None:
    """A store kiosk on the demo's device (``gemsight-kiosk run``, its own process), with the video's
    first frame as planogram, a fresh history, its key in the device's allow-list and a demo login.
    ``None`` for a real camera: no planogram is known (``gemsight-kiosk example-config``)."""
    if truth is None or not truth.is_file():
        logger.info("kiosk: not started for a real camera (write a kiosk.yaml: gemsight-kiosk example-config)")
        return None
    from edge.keys import allow, create_key_pair  # noqa: PLC0415

    kdir = workdir / "kiosk"
    if not (kdir / "demo-kiosk.key_secret").exists():
        create_key_pair(kdir, "demo-kiosk")
    if not (keys["allowed_clients"] / "demo-kiosk.key").exists():
        allow(kdir / "demo-kiosk.key", keys["allowed_clients"])
    shutil.rmtree(kdir / "state", ignore_errors=True)   # this run's incidents only
    first = json.loads(truth.read_text().splitlines()[0])["slots"]
    plan = {slot: "empty by design" if cls == "empty" else cls for slot, cls in first.items()}
    config = {"store": "gemsight demo", "state_dir": str(kdir / "state"),
              "curve": {"client_secret_key": str(kdir / "demo-kiosk.key_secret")},
              "devices": [{"id": "demo-case", "labels": f"tcp://127.0.0.1:{port}",
                           "snapshot": f"tcp://127.0.0.1:{port + 1}", "server_key": str(keys["server_public"]),
                           "cameras": {"cam0": {"title": "Demo case", "slots": plan}}}],
              # A 30 s video: a piece gone for 3 s is an incident; the loop needs a few seconds to start.
              "policies": {"empty_grace_s": 3, "stale_heartbeats": 10},
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
    return proc


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
