"""Run every benchmark, then rewrite the tables of ``docs/benchmarks.md`` from their JSON.

    python bench/run_all.py               # run all, rewrite docs/benchmarks.md
    python bench/run_all.py --table-only  # rewrite the tables from the JSON already in bench/results/
    python bench/run_all.py --only runtimes,loop

Each benchmark writes ``bench/results/<name>.json``; the table between the page's
``<!-- bench:start -->`` and ``<!-- bench:end -->`` markers is generated from those files only, and so
are the loop's tables between ``<!-- loop:start -->`` and ``<!-- loop:end -->`` (from ``loop.json``,
by ``bench/loop.py``'s own renderer). The prose around the markers is kept as it is.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import loop as loop_bench  # noqa: E402 - after the path, as the bench scripts are run by path

RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
MODEL_DIR = ROOT / ".cache" / "bench-runtimes"

Row = tuple[str, str]


def _get(d: dict, *path, default=None):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _synth(r: dict) -> Iterator[Row]:
    yield ("synthetic generator, 224 px images/s on one core (render + JPEG)", f"{r['images_per_s']:.0f}")


def _train(r: dict) -> Iterator[Row]:
    yield (f"training {r['arch']} {r['img_size']} px batch {r['batch_size']}, images/s ({r['device']})",
           f"{r['compute_images_per_s']:.0f} (compute), {r['pipeline_images_per_s']:.0f} (with data loading)")


def _runtimes(r: dict) -> Iterator[Row]:
    h, w = r["input"]
    for res in r["results"]:
        b1, b8 = res["img_per_s"]["b1"], res["img_per_s"]["b8"]
        ratio = _get(res, "vs_onnxruntime_fp32", "b1")
        extra = f" ({ratio:.2f}× ORT FP32 at batch 1)" if ratio else ""
        yield (f"{res['runtime']} {res['precision'].upper()}, {r['arch']} {h}×{w}, img/s batch 1 / 8",
               f"{b1:.0f} / {b8:.0f}{extra}")
    rounds = r.get("rounds")
    for res in r["results"]:
        vs = res.get("adapter_vs_raw")
        if vs:   # bench/runtimes.py: the adapter beside the raw runtime on the same artifact
            cells = " / ".join(f"{vs[b]['median']:.2f} ({vs[b]['min']:.2f}–{vs[b]['max']:.2f})" for b in ("b1", "b8"))
            yield (f"gemsight's {res['runtime']} {res['precision'].upper()} adapter ÷ the raw runtime, batch 1 / 8 "
                   f"(median of {rounds} interleaved rounds, range)", cells)
        info = res.get("raw_default_precision")
        if info and res["precision"] == "fp32":
            prec = _get(info, "settings", "INFERENCE_PRECISION_HINT", default="default")
            mine = res["img_per_s"]
            yield (f"{res['runtime']} FP32 raw at the runtime's default precision ({prec}, not exact), img/s batch 1 / 8",
                   f"{info['img_per_s']['b1']:.0f} / {info['img_per_s']['b8']:.0f} (gemsight keeps f32, exact: "
                   f"{mine['b1']:.0f} / {mine['b8']:.0f})")


def _loop(r: dict) -> Iterator[Row]:
    loop = r["loop"]
    size = f", {r['input'][0]}×{r['input'][1]} input" if r.get("input") else ""
    what = f"{r['video']['slots']} slots, {r['precision'].upper()} {r['runtime']}{size}"
    for name, h in (r.get("runtimes") or {}).items():
        if "ratio" not in h:
            continue
        g, ref = h["gemsight"], h["reference"]
        yield (f"edge loop frames/s ÷ the ~30-line loop a user would write, same runtime and cores "
               f"({r['video']['slots']} slots, INT8 {name}{size}; median and range of interleaved rounds)",
               f"{h['ratio']['median']:.2f} ({h['ratio']['min']:.2f}–{h['ratio']['max']:.2f}; "
               f"{g['frames_per_s']['median']:.1f} / {ref['frames_per_s']['median']:.1f} frames/s)")
    if "ratio_to_runtime" in loop:
        yield (f"edge loop slot-images/s ÷ runtime alone on the same batch ({what})",
               f"{loop['ratio_to_runtime']:.2f} ({loop['slot_images_per_s']:.0f} / "
               f"{r['runtime_alone']['slot_images_per_s']:.0f})")
    cam = r.get("loop_at_camera_rate") or {}
    if cam:
        ref = cam.get("reference_latency_ms")
        yield (f"capture-to-publish latency p50 / p99 at {cam['fps']:.0f} fps, {r['runtime']}"
               + (" (the reference loop's in brackets)" if ref else ""),
               f"{cam['latency_ms']['p50']:.1f} ms / {cam['latency_ms']['p99']:.1f} ms"
               + (f" ({ref['p50']:.1f} / {ref['p99']:.1f} ms)" if ref else ""))
    sat = loop.get("latency_saturated_ms")
    if sat:
        yield ("capture-to-publish latency p50 / p99, video as fast as possible",
               f"{sat['p50']:.1f} ms / {sat['p99']:.1f} ms")
    msg = r["message"]
    yield ("build + encode + send one labels message", f"{msg['build_us'] + msg['encode_and_send_us']:.0f} µs "
           f"({msg['bytes']} bytes)")
    yield ("peak RSS of the edge loop", f"{loop['peak_rss_mib']:.0f} MiB")


def _calibration(r: dict) -> Iterator[Row]:
    for t in r.get("targets", []):
        if t.get("top1_drop") is not None:
            # The gate runs every INT8 model in ONNX Runtime; for "tensorrt" that is the Q/DQ model a
            # TensorRT engine is built from, not the engine itself.
            name = "tensorrt (its Q/DQ model run by ONNX Runtime)" if t["name"] == "tensorrt" else t["name"]
            yield (f"INT8 accuracy drop vs FP32, {name}",
                   f"{t['top1_drop']:+.2f} points, agreement {100 * t.get('agreement', 0):.1f}%")


def _deploy(r: dict) -> Iterator[Row]:
    for rt, steps in r.get("median_s", {}).items():
        yield (f"flash a {r.get('model_dir', '')} bundle ({r.get('bundle_mb', 0):.0f} MB) with {rt} smoke test",
               f"{steps['total']:.2f} s (verify {steps['verify']:.2f}, unpack {steps['unpack']:.2f}, "
               f"smoke {steps['smoke']:.2f}, switch {steps['switch']:.2f})")
    if "edge_unit_exposure" in r:
        yield ("systemd-analyze security exposure of gemsight-edge.service", f"{r['edge_unit_exposure']}")


def _kiosk(r: dict) -> Iterator[Row]:
    load, lat, page = r["load"], r["latency_beyond_grace"], r["page"]
    yield (f"kiosk CPU / RSS, {load['devices']} devices × {load['cameras_per_device']} cameras × "
           f"{load['slots_per_camera']} slots at {load['labels_per_s']:.0f} labels/s",
           f"{r['kiosk']['cpu_cores']:.2f} cores / {r['kiosk']['rss_peak_mb']:.0f} MB")
    yield (f"kiosk: labels publish → incident SSE event, p95 beyond a {lat['grace_s']:g} s grace / immediate alarm",
           f"{lat['with_grace']['p95_s']:.2f} s / {lat['immediate']['p95_s']:.3f} s")
    browser = page.get("browser") or {}
    if browser:
        yield (f"kiosk store page with {load['slots']} slots, load in headless Chromium", f"{browser['load_s']:.2f} s")


def _kiosk_hostile(r: dict) -> Iterator[Row]:
    load = r["load"]
    yield (f"kiosk under {sum(n for k, n in r['hostile_answers'].items() if not k.startswith('page'))} hostile "
           f"requests in {load['seconds']:g} s (chunked bodies, lockouts, bad JSON), {load['devices']} devices "
           "streaming: page p95 / incidents missed / RSS peak / 5xx",
           f"{r['page']['p95_s'] * 1000:.0f} ms / {r['incidents']['missed']} / {r['rss_mb']['peak']:.0f} MB / "
           f"{r['server_errors']}")


def _fuzz(r: dict) -> Iterator[Row]:
    per = ", ".join(f"{t['target']} {t['cases']}" for t in r["targets"])
    yield (f"fuzzing (Hypothesis, seed {r['seed']}): inputs fed ({per}) / failures (a crash, a traceback, "
           "a refusal that is not the project's one-line error)", f"{r['total_cases']} / {r['total_failures']}")


def _fleet(r: dict) -> Iterator[Row]:
    load, lag = r["load"], r["lag_s"]
    yield (f"chain: {load['stores']} stores × {load['devices_per_store']} devices through one mosquitto into one "
           f"PostgreSQL: messages/s applied / HQ lag p50, p95 / HQ CPU, RSS",
           f"{r['msgs_per_s_applied']:.0f} / {lag['p50']:.2f}, {lag['p95']:.2f} s / {r['hq']['cpu_cores']:.2f} cores, "
           f"{r['hq']['rss_peak_mb']:.0f} MB")
    yield ("chain faults (a store offline 60 simulated min, broker restart, PostgreSQL restart): lost / applied twice",
           f"{r['lost']} / {r['applied_twice']}")


# name → (command, table rows from its JSON)
BENCHES: dict[str, tuple[list[str], Callable[[dict], Iterator[Row]]]] = {
    "synth_speed": (["bench/synth_speed.py"], _synth),
    "train_speed": (["bench/train_speed.py"], _train),
    "runtimes": (["bench/runtimes.py", "--work", str(MODEL_DIR)], _runtimes),
    "calibration": ([], _calibration),   # written by runtimes' model build (the calibration report)
    "loop": (["bench/loop.py", "--model", str(MODEL_DIR / "calib")], _loop),
    "deploy_flash": (["bench/deploy_flash.py"], _deploy),
    "fuzz": (["bench/fuzz.py", "--examples", "3000"], _fuzz),
    "kiosk": (["bench/kiosk.py"], _kiosk),
    "kiosk_hostile": (["bench/kiosk_hostile.py"], _kiosk_hostile),
    "fleet": (["bench/fleet.py"], _fleet),
}


def table(results: Path = RESULTS) -> str:
    """The table of every figure, from the JSON files in ``results``."""
    lines = ["| figure | value | reproduce |", "|---|---|---|"]
    for name, (cmd, rows) in BENCHES.items():
        path = results / f"{name}.json"
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
            produced = list(rows(data))
        except (ValueError, KeyError, TypeError) as exc:
            produced = [(f"{name}: unreadable result ({type(exc).__name__}: {exc})", "—")]
        how = f"`python {' '.join(cmd[:1])}`" if cmd else "`python bench/runtimes.py`"
        for what, value in produced:
            lines.append(f"| {what} | {value} | {how} |")
    lines.append("")
    lines.append(f"Measured on a {os.cpu_count()}-core x86-64 machine with AVX-512 VNNI and no GPU, often shared with "
                 "other work while these were taken (expect up to 2× noise between runs; each JSON records the "
                 "load). `python bench/run_all.py` runs every benchmark and rewrites this table from "
                 "`bench/results/*.json`.")
    return "\n".join(lines)


class MarkersError(ValueError):
    """The page lacks a pair of markers, or has them out of order or twice."""


def replace_between(text: str, start: str, end: str, body: str, where: str = "the page") -> str:
    """``text`` with what lies between the markers ``start`` and ``end`` replaced by ``body``.

    Raises:
        MarkersError: a marker is missing, repeated, or the end comes before the start.
    """
    counts = (text.count(start), text.count(end))
    if counts != (1, 1):
        raise MarkersError(f"{where}: needs one {start} and one {end} (found {counts[0]} and {counts[1]})")
    if text.index(start) > text.index(end):
        raise MarkersError(f"{where}: {end} comes before {start}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def rewrite_doc(path: Path = DOC, results: Path = RESULTS) -> list[str]:
    """Rewrite the tables of ``path`` from ``results``; returns what was rewritten.

    The page is only written once every table was built, so a missing marker loses nothing.

    Raises:
        MarkersError: the page has no bench markers, or loop markers are broken while ``loop.json`` exists.
        OSError: the page cannot be read or written.
    """
    text = path.read_text(encoding="utf-8")
    new, done = replace_between(text, START, END, table(results), str(path)), ["the figures"]
    loop_json = results / "loop.json"
    if loop_json.is_file():
        report = json.loads(loop_json.read_text(encoding="utf-8"))
        new = replace_between(new, loop_bench.README_START, loop_bench.README_END, loop_bench.readme(report),
                              str(path))
        done.append("the loop's tables")
    if new != text:
        path.write_text(new, encoding="utf-8")
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table-only", action="store_true", help="do not run, only rewrite the table")
    p.add_argument("--only", help="comma-separated benchmark names to run")
    args = p.parse_args(argv)
    failed = []
    if not args.table_only:
        names = args.only.split(",") if args.only else [n for n, (cmd, _) in BENCHES.items() if cmd]
        for name in names:
            cmd = BENCHES[name][0]
            if not cmd:
                continue
            print(f"== {name}: {' '.join(cmd)}", flush=True)
            started = time.monotonic()
            proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, check=False)
            print(f"== {name}: exit {proc.returncode} in {time.monotonic() - started:.0f} s", flush=True)
            if proc.returncode != 0:
                failed.append(name)
    try:
        done = rewrite_doc(DOC, RESULTS)
    except (MarkersError, OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"rewrote {' and '.join(done)} in {DOC}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
