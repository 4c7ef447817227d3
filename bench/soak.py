"""Soak: ``python bench/soak.py --minutes 60``.

Runs the edge as a device does (``python -m edge run --config edge.yaml``, i.e. ``gemsight-edge run``,
in a child process) on a looping 10 fps display-case video (12 slots), with a real ZeroMQ subscriber
on loopback, and every ``--every`` seconds records the edge's RSS, open files, threads and CPU, and
the subscriber's labels count and ``seq`` gaps. The model is :data:`bench.fault_kit.MODEL_NOTE`.

Verdict: RSS growth after warm-up (last sample against the first sample after ``--warmup`` seconds)
< 5 %, zero ``seq`` gaps, no edge restart. Prints a table, writes ``bench/results/soak.json`` and a
plot ``bench/results/soak.png``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fault_kit import (MODEL_NOTE, RESULTS, EdgeProcess, ZmqSubscriber, case_video, edge_config,  # noqa: E402
                             free_port, print_table, proc_sample, tiny_model, write_json)

logger = logging.getLogger("bench.soak")
RSS_GROWTH_LIMIT = 0.05


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=add_help)
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the edge runs (default 60)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--warmup", type=float, default=120.0,
                        help="seconds of warm-up excluded from the RSS growth figure (default 120, "
                             "capped at a third of the run)")
    parser.add_argument("--video-seconds", type=float, default=30.0, help="length of the looping video")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    parser.add_argument("--plot", type=Path, default=None, help="PNG path (default: --out with .png)")
    return parser


def _plot(samples: list[dict], warmup_s: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    series = [("rss_mib", "RSS (MiB)"), ("open_files", "open files"), ("threads", "threads"), ("gaps", "seq gaps")]
    for ax, (key, label) in zip(axes, series):
        ax.plot(t, [s[key] for s in samples], marker=".", lw=1)
        ax.set_ylabel(label)
        ax.axvline(warmup_s / 60, color="grey", ls=":", lw=1)
        ax.grid(alpha=0.3)
    axes[0].set_title(title, fontsize=9)
    axes[-1].set_xlabel("minutes (dotted: end of warm-up)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def soak(minutes: float, every: float, warmup_s: float, video_seconds: float, work: Path) -> dict:
    """Run the soak in ``work``; returns the report (samples and verdict)."""
    model = tiny_model(work / "model")
    vid = case_video(work / "case.mp4", seconds=video_seconds)
    port = free_port()
    cfg = edge_config(work / "edge.yaml", model, [("cam0", f"file://{vid['video']}?loop=1", vid["slots"])],
                      endpoint=f"tcp://127.0.0.1:{port}")
    edge = EdgeProcess(cfg, work / "edge.log").start()
    sub = ZmqSubscriber(f"tcp://127.0.0.1:{port}").start()
    samples: list[dict] = []
    try:
        if not sub.wait_labels(1, 60):
            raise RuntimeError(f"no labels within 60 s; edge log:\n{edge.log_tail()}")
        t0 = time.monotonic()
        seen0 = sub.snapshot()
        prev = (t0, proc_sample(edge.pid)["cpu_s"], seen0["labels"])
        end = t0 + minutes * 60
        while True:
            now = time.monotonic()
            s, seen = proc_sample(edge.pid), sub.snapshot()
            if s is None:
                raise RuntimeError(f"the edge exited (rc {edge.proc.poll()}); log:\n{edge.log_tail()}")
            dt = max(now - prev[0], 1e-6)
            samples.append({"t_s": round(now - t0, 1), "rss_mib": round(s["rss_mib"], 2),
                            "open_files": s["open_files"], "threads": s["threads"],
                            "cpu": round((s["cpu_s"] - prev[1]) / dt, 3),
                            "fps": round((seen["labels"] - prev[2]) / dt, 2),
                            "labels": seen["labels"], "gaps": seen["gaps"], "missing": seen["missing"],
                            "restarts": seen["restarts"]})
            prev = (now, s["cpu_s"], seen["labels"])
            if now >= end:
                break
            time.sleep(max(0.0, min(every, end - time.monotonic())))
    finally:
        sub.stop()
        rc = edge.stop()
    warm = min(warmup_s, minutes * 60 / 3)
    after = [s for s in samples if s["t_s"] >= warm] or samples[-1:]
    base, last = after[0]["rss_mib"], samples[-1]["rss_mib"]
    growth = (last - base) / base
    steady = [s for s in samples[1:] if s["t_s"] >= warm]
    result = {
        "minutes": minutes, "every_s": every, "warmup_s": warm, "model": MODEL_NOTE,
        "video": {"fps": 10, "slots": 12, "size": [640, 360], "seconds": video_seconds, "looping": True},
        "command": "python -m edge run --config edge.yaml (gemsight-edge run), child process",
        "cores": os.cpu_count(), "edge_exit_code": rc,
        "rss_mib": {"first": samples[0]["rss_mib"], "after_warmup": base, "last": last,
                    "max": max(s["rss_mib"] for s in samples), "growth_after_warmup": growth},
        "open_files": {"min": min(s["open_files"] for s in samples), "max": max(s["open_files"] for s in samples)},
        "threads": {"min": min(s["threads"] for s in samples), "max": max(s["threads"] for s in samples)},
        "fps_mean": (sum(s["fps"] for s in steady) / len(steady)) if steady else None,
        "cpu_mean": (sum(s["cpu"] for s in steady) / len(steady)) if steady else None,
        "labels": samples[-1]["labels"], "gaps": samples[-1]["gaps"], "missing": samples[-1]["missing"],
        "restarts": samples[-1]["restarts"],
        "pass": growth < RSS_GROWTH_LIMIT and samples[-1]["gaps"] == 0 and samples[-1]["restarts"] == 0,
        "samples": samples,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.minutes <= 0 or args.every <= 0:
        print("soak: --minutes and --every must be > 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gemsight-soak-") as tmp:
        report = soak(args.minutes, args.every, args.warmup, args.video_seconds, Path(tmp))
    plot = args.plot or args.out.with_suffix(".png")
    _plot(report["samples"], report["warmup_s"], plot,
          f"soak {args.minutes:g} min, 10 fps, 12 slots: RSS {report['rss_mib']['growth_after_warmup']:+.2%} "
          f"after warm-up, {report['gaps']} gaps")
    report["plot"] = plot.name  # beside the JSON by default
    write_json(args.out, report)
    r = report
    print_table([
        ("duration", f"{args.minutes:g} min, a sample every {args.every:g} s ({len(r['samples'])} samples)"),
        ("model", r["model"]),
        ("labels received / fps (mean)", f"{r['labels']} / {r['fps_mean']:.2f}" if r["fps_mean"] else str(r["labels"])),
        ("edge CPU (mean, 1.0 = one core)", f"{r['cpu_mean']:.3f}" if r["cpu_mean"] is not None else "-"),
        ("RSS first / after warm-up / last / max", "{first:.1f} / {after_warmup:.1f} / {last:.1f} / {max:.1f} MiB"
         .format(**r["rss_mib"])),
        ("RSS growth after warm-up", f"{r['rss_mib']['growth_after_warmup']:+.2%} (limit {RSS_GROWTH_LIMIT:.0%})"),
        ("open files min / max", f"{r['open_files']['min']} / {r['open_files']['max']}"),
        ("threads min / max", f"{r['threads']['min']} / {r['threads']['max']}"),
        ("seq gaps (missing) / restarts", f"{r['gaps']} ({r['missing']}) / {r['restarts']}"),
        ("verdict", "PASS" if r["pass"] else "FAIL"),
    ], ("soak", "figure"))
    print(f"\nwrote {args.out} and {plot}")
    return 0 if r["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
