"""How fast ``gemsight-synth day`` films on one core: frames/s rendered and MPEG-4 encoded.

    python bench/synth_day_speed.py [--minutes 3] [--size 960x540] [--photos DIR]
                                    [--json bench/results/synth_day_speed.json]

Films a drawn day (and, with ``--photos``, a day stocked with those photos) pinned to one CPU with
OpenCV's thread pool off, and prints a table. The store-day benchmark films 4+ case-hours per stocking,
so the target is at least 150 frames/s at 960x540 (render + encode, from CPU time: what one core
delivers, robust to other processes on the machine). Reading the video back (the check every
``day`` ends with) and keying the photos are timed apart.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from trainer.synth.cli import parse_frame_size
from trainer.synth.day import make_day

TARGET = 150.0


def _one_core() -> str:
    cv2.setNumThreads(1)
    try:
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return f"cpu {cpu}"
    except (AttributeError, OSError):  # not Linux: at least OpenCV is single-threaded
        return "opencv single-threaded"


def film(name: str, minutes: float, size: tuple[int, int], photos: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        c0, w0 = time.process_time(), time.perf_counter()
        out = make_day(Path(tmp) / "day.mp4", minutes=minutes, size=size, seed=0, photos=photos)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        mb = out["video"].stat().st_size / 1e6
    n = out["frames"]
    return {"stocking": name, "frames": n, "size": f"{size[0]}x{size[1]}", "minutes": minutes,
            "render_encode_cpu_s": round(out["render_cpu_s"], 2), "render_encode_wall_s": round(out["render_s"], 2),
            "frames_per_s": round(n / out["render_cpu_s"], 1), "frames_per_s_wall": round(n / out["render_s"], 1),
            "total_cpu_s": round(cpu, 2), "total_wall_s": round(wall, 2),
            "other_cpu_s": round(cpu - out["render_cpu_s"], 2), "video_mb": round(mb, 1), "counts": out["counts"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--size", type=parse_frame_size, default=(960, 540))
    parser.add_argument("--photos", type=Path, default=None, help="also film a day stocked with these photos")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "synth_day_speed.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    pinned = _one_core()
    rows = [film("drawn", args.minutes, args.size, None)]
    if args.photos is not None:
        rows.append(film("photos", args.minutes, args.size, args.photos))
    print(f"gemsight-synth day, {args.minutes:g} min at 5 fps, one core ({pinned})")
    print(f"{'stocking':<9} {'frames':>7} {'size':>9} {'frames/s':>9} {'wall/s':>7} {'other s':>8} {'MB':>6}")
    for r in rows:
        print(f"{r['stocking']:<9} {r['frames']:>7} {r['size']:>9} {r['frames_per_s']:>9.0f} "
              f"{r['frames_per_s_wall']:>7.0f} {r['other_cpu_s']:>8.1f} {r['video_mb']:>6.1f}")
    worst = min(r["frames_per_s"] for r in rows)
    ok = worst >= TARGET
    print(f"render + encode, CPU time: {worst:.0f} frames/s, target >= {TARGET:.0f}: {'PASS' if ok else 'FAIL'}"
          " ('other s': slot map, photo keying, truth and the read-back check)")
    result = {"minutes": args.minutes, "pinned": pinned, "target_frames_per_s": TARGET, "pass": ok, "rows": rows,
              "load_average": os.getloadavg(),
              "machine": {"python": platform.python_version(), "opencv": cv2.__version__, "numpy": np.__version__,
                          "processor": platform.processor() or platform.machine()},
              "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
