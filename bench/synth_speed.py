"""How fast the synthetic generator is on one core: images/s per class (render, and render + JPEG).

    python bench/synth_speed.py [--size 224] [--per-class 60] [--json bench/results/synth_speed.json]

Prints a table and writes JSON. The target is at least 200 images/s at 224 px (render + JPEG encode),
pinned to a single CPU with OpenCV's thread pool off. Throughput is given from CPU time (what one core
delivers, robust to other processes sharing the machine) and from wall time; the verdict uses CPU time.
Also times the case video (frames/s).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from trainer.synth import DEFAULT_CLASSES, encode_jpeg, image_rng, make_video, render_item

TARGET = 200.0


def _one_core() -> str:
    cv2.setNumThreads(1)
    try:
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return f"cpu {cpu}"
    except (AttributeError, OSError):  # not Linux: at least OpenCV is single-threaded
        return "opencv single-threaded"


def bench_images(size: int, per_class: int) -> list[dict]:
    rows = []
    for ci, cls in enumerate(DEFAULT_CLASSES):
        render_item(cls, image_rng(99, ci, 0), size)  # warm the per-process texture banks
        t_render = t_jpeg = 0.0
        c0, w0 = time.process_time(), time.perf_counter()
        for i in range(per_class):
            rng = image_rng(1, ci, i)
            t0 = time.process_time()
            img = render_item(cls, rng, size)
            t1 = time.process_time()
            encode_jpeg(img, rng)
            t2 = time.process_time()
            t_render += t1 - t0
            t_jpeg += t2 - t1
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        rows.append({"class": cls, "images": per_class, "render_ms": 1e3 * t_render / per_class,
                     "jpeg_ms": 1e3 * t_jpeg / per_class, "images_per_s": per_class / cpu,
                     "images_per_s_wall": per_class / wall})
    return rows


def bench_video(seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_video(Path(tmp) / "case.mp4", slots=(3, 4), seconds=seconds, fps=10.0, size=(1280, 720), seed=0)
        dt = time.perf_counter() - t0
    frames = int(round(seconds * 10.0))
    return {"frames": frames, "size": "1280x720", "slots": "3x4", "seconds": dt, "frames_per_s": frames / dt}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--video-seconds", type=float, default=10.0, help="0 skips the video timing")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "synth_speed.json")
    args = parser.parse_args(argv)
    pinned = _one_core()
    rows = bench_images(args.size, args.per_class)
    total_images = sum(r["images"] for r in rows)
    overall = total_images / sum(r["images"] / r["images_per_s"] for r in rows)
    overall_wall = total_images / sum(r["images"] / r["images_per_s_wall"] for r in rows)
    print(f"synthetic generator, {args.size} px, one core ({pinned}), {args.per_class} images per class")
    print(f"{'class':<10} {'render ms':>10} {'jpeg ms':>8} {'images/s':>9} {'wall/s':>7}")
    for r in rows:
        print(f"{r['class']:<10} {r['render_ms']:>10.2f} {r['jpeg_ms']:>8.2f} {r['images_per_s']:>9.0f} "
              f"{r['images_per_s_wall']:>7.0f}")
    verdict = "PASS" if overall >= TARGET else "FAIL"
    print(f"{'all':<10} {'':>10} {'':>8} {overall:>9.0f} {overall_wall:>7.0f}   "
          f"target >= {TARGET:.0f}/s (CPU time): {verdict}")
    video = bench_video(args.video_seconds) if args.video_seconds > 0 else None
    if video:
        print(f"video {video['size']} {video['slots']} slots: {video['frames']} frames in {video['seconds']:.1f} s "
              f"({video['frames_per_s']:.0f} frames/s incl. MPEG-4 encode)")
    result = {"size": args.size, "per_class": args.per_class, "pinned": pinned, "images_per_s": overall,
              "images_per_s_wall": overall_wall, "load_average": os.getloadavg(),
              "target_images_per_s": TARGET, "pass": overall >= TARGET, "classes": rows, "video": video,
              "machine": {"python": platform.python_version(), "opencv": cv2.__version__, "numpy": np.__version__,
                          "processor": platform.processor() or platform.machine()},
              "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if overall >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
