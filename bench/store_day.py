"""A store day without false alarms: ``python bench/store_day.py [--cases 4] [--minutes 60]``.

Films ``--cases`` display cases of 12 slots for ``--minutes`` each at 5 fps with ``gemsight-synth day`` (a
trading day compressed: hand passes, pieces lifted and put back, sales, thefts, swaps, smash-and-grabs,
restocks, a lighting ramp, a flicker, a nudged camera, glare), in two stockings: the generator's own
pieces, and real product photos keyed into the tray (``--photos``, read in place). Then, per stocking, one
real device plays every case as one of its cameras (``?speed=`` times real time) into two real kiosks on
its CURVE link: one deciding incidents from slot states, one from categories (today's rules, the
reference), both on the videos' clock. The staff's actions of the truth (marking a sale sold, enrolling a
restocked slot) are performed when their time comes. Each kiosk's incidents are scored against the truth
(``bench/store_day_score.py``): false incidents per case-hour and what caused them, recall and
time-to-alarm of thefts, swaps and smash-and-grabs.

Also measured in the same run: the loop's frames/s with embeddings and states against the same model
without its embedding output and without states (interleaved rounds), and how INT8 embeddings agree
with FP32 on every calibration target (median cosine on the case's slot crops).

Prints tables, writes ``bench/results/store_day.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# bench/kiosk.py would shadow the kiosk package: the benchmarks are imported as bench.*
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench import store_day_kit as kit  # noqa: E402
from bench.store_day_parts import ROUND_FRAMES  # noqa: E402
from bench.store_day_score import format_table, load_events, score_cases  # noqa: E402

from edge.loop.run import CameraLoop  # noqa: E402

logger = logging.getLogger("store_day")
RESULTS = ROOT / "bench" / "results" / "store_day.json"
STOCKINGS = ("drawn", "photos")


def film(stocking: str, args: argparse.Namespace, work: Path) -> list[dict]:
    """The stocking's filmed days (made once per argument set; kept in ``work``)."""
    from trainer.synth.day import make_day

    days = []
    for i in range(args.cases):
        seed = args.seed + i + (1000 if stocking == "photos" else 0)
        out = work / "days" / f"{stocking}-{args.minutes:g}m-s{seed}" / "day.mp4"
        if not out.with_suffix(".events.jsonl").is_file():
            made = make_day(out, minutes=args.minutes, fps=args.fps, seed=seed, grace_s=args.grace,
                            photos=args.photos if stocking == "photos" else None)
            logger.info("filmed %s (%.0f frames/s)", out, made["frames_per_s"])
        days.append({"video": out, "slots": out.with_suffix("").with_suffix(".slots.yaml"),
                     "events": out.with_suffix("").with_suffix(".events.jsonl")})
    return days


def play(days: list[dict], model: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One device plays every day into two kiosks; returns both kiosks' incidents in the scorer's form."""
    truths = [load_events(d["events"]) for d in days]
    keys = kit.keys(work / "keys")
    lockstep = args.speed <= 0
    config = kit.device_config(days, model, work, keys, args.speed, realtime=not lockstep, every=args.every)
    clock = kit.VideoClock(args.fps)
    started: dict[str, Any] = {}

    def ready(loop: CameraLoop) -> None:
        endpoints = (loop.result.endpoint, loop.result.snapshot_endpoint)
        kiosks = [kit.ClockedKiosk(kit.kiosk_config(mode, work, days, truths, endpoints, keys, grace_s=args.grace,
                                                    speed=60.0 if lockstep else args.speed,
                                                    swap_confirm_s=args.swap_confirm), clock,
                                   work / "states.jsonl" if mode == "states" else None)
                  for mode in ("states", "categories")]
        for kiosk in kiosks:
            kiosk.start()
        started["kiosks"] = kiosks
        started["staff"] = kit.Staff(truths, kiosks, clock).start()

    t0 = time.monotonic()
    result = CameraLoop(config, on_ready=ready, samples=0).run()
    wall = time.monotonic() - t0
    started["staff"].stop()
    time.sleep(1.0)
    for kiosk in started["kiosks"]:
        kiosk.tick()
        kiosk.stop()
    seconds = min(json.loads(Path(d["events"]).read_text().splitlines()[0])["seconds"] for d in days)
    out: dict[str, Any] = {"wall_s": round(wall, 1), "frames": result.frames, "video_s": seconds,
                           "staff": started["staff"].done}
    for mode in ("states", "categories"):
        rows = kit.incidents_of(work / f"kiosk-{mode}")
        out[mode] = [[{"kind": r["kind"], "camera": r["camera"], "slot": r["slot"], "opened_t": float(r["opened_at"])}
                      for r in rows if r["camera"] == f"case{i}"]
                     for i in range(len(days))]
    out["truths"] = truths
    return out


def score(played: dict[str, Any], grace: float) -> dict[str, Any]:
    return {mode: score_cases(list(zip(played["truths"], played[mode])), grace_s=grace)
            for mode in ("states", "categories")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=4, help="cases (videos) per stocking, one camera each")
    p.add_argument("--minutes", type=float, default=60.0, help="length of each case's day")
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("--speed", type=float, default=0.0,
                   help="times real time the device plays the days (0: in lockstep, every frame classified, as fast "
                        "as the device can)")
    p.add_argument("--every", type=int, default=1, help="the device classifies every N-th frame (a slower camera)")
    p.add_argument("--grace", type=float, default=30.0, help="the kiosk's empty grace (seconds)")
    p.add_argument("--swap-confirm", type=float, default=kit.SWAP_CONFIRM_S,
                   help="the kiosk's swap_confirm_s (default: the kiosk's own)")
    p.add_argument("--seed", type=int, default=100, help="first case's seed (development days used 1-9)")
    p.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "real-dev" / "val",
                   help="product photos DIR/<class>/*.jpg for the photo stocking (read in place)")
    p.add_argument("--stockings", default=",".join(STOCKINGS))
    p.add_argument("--model", type=Path, help="model directory or .onnx (default: the synthetic test model)")
    p.add_argument("--work", type=Path, help="where videos and state go (default: a temporary folder)")
    p.add_argument("--fps-rounds", type=int, default=3, help="interleaved rounds of the frames/s comparison (0: skip)")
    p.add_argument("--fps-frames", type=int, default=ROUND_FRAMES, help="frames in each of those rounds")
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                   help="calibrate the model and compare INT8 embeddings with FP32 on every target")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("edge", "kiosk"):
        logging.getLogger(name).setLevel(logging.WARNING)
    model = args.model.resolve() if args.model else default_model()   # the device runs in its own folder
    work = args.work or Path(tempfile.mkdtemp(prefix="store-day-"))
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "model": str(model),
                              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                              "stockings": {}}
    from bench.store_day_parts import fps_rounds, int8_agreement

    stockings = args.stockings.split(",")
    played_model = model
    if args.int8:
        # Calibrated once on the case's own slot crops (both stockings' first day), as a device's bundle is;
        # the device then plays the days with the INT8 model ONNX Runtime runs, and the report says how each
        # target's INT8 embeddings agree with FP32's.
        report["int8"] = int8_agreement(model, [film(s, args, work)[0] for s in stockings], work)
        if report["int8"]["model_dir"]:          # a gate that failed leaves the days to the FP32 model (said)
            played_model = Path(report["int8"]["model_dir"])
        else:
            logger.warning("INT8 calibration failed (%s): the days are played with the FP32 model",
                           report["int8"]["failure"])
        write(report, args.out)
    report["played_model"] = str(played_model)
    for stocking in stockings:
        days = film(stocking, args, work)
        run_dir = work / f"run-{stocking}-{int(time.time())}"
        run_dir.mkdir(parents=True)
        played = play(days, played_model, run_dir, args)
        scored = score(played, args.grace)
        report["stockings"][stocking] = {"cases": len(days), "video_s": played["video_s"], "wall_s": played["wall_s"],
                                         "frames": played["frames"], "states": scored["states"],
                                         "categories": scored["categories"],
                                         "incidents": {m: played[m] for m in ("states", "categories")},
                                         "staff": played["staff"]}
        print(f"\n== {stocking} stocking: {len(days)} cases x {played['video_s'] / 60:.0f} min "
              f"(played in {played['wall_s']:.0f} s)")
        print(format_table({"slot states": scored["states"], "categories (reference)": scored["categories"]}))
        write(report, args.out)
    if args.fps_rounds:
        report["fps"] = fps_rounds(film(stockings[0], args, work)[0], model, work, args.fps_rounds, args.fps_frames)
        write(report, args.out)
    return 0


def default_model() -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.synthetic_model import build_cached

    return build_cached() / "run" / "model.onnx"


def write(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    logger.info("wrote %s", path)


if __name__ == "__main__":
    sys.exit(main())
