"""gemsight's camera loop against the loop a user would write, and how its cost grows: ``python bench/loop.py``.

On this CPU, with the INT8 ResNet-18 at 224 px in ``.cache/bench-runtimes/calib`` (``bench/runtimes.py``
builds it; ``--model DIR`` for another; without one a random-init ResNet-18 is calibrated here) and
synthetic 1280×720 display-case videos decoded by OpenCV, as on a device:

1. **gemsight ÷ the reference loop**, frames/s at 12 slots, for each runtime (``--runtimes``, default ONNX
   Runtime and OpenVINO, what ``auto`` picks on x86): the reference is the ~30-line loop of
   :mod:`bench.loop_reference` (``read()``, crop, resize, one batch, the runtime, argmax, a ZeroMQ PUB),
   on the same model file, runtime settings, threads, video and slots. Rounds interleave (reference,
   gemsight, reference, ...), each in a fresh child process; the figure is the median of the rounds'
   paired ratios (single runs on a shared machine swing too much to say anything);
2. **capture→publish p50/p99 at 10 fps** of both loops, each pooled over the rounds;
3. gemsight's loop ÷ the runtime alone on the loop's batch (issue 16's figure), and gemsight's
   per-stage breakdown and CPU per thread role;
4. **how cost grows**: frames/s, CPU per frame, 10 fps latency and RSS at 1, 12 and 48 slots on one
   camera and 12 slots on 1, 2 and 4 cameras, and which resource runs out first at each size.

Prints the tables and writes ``bench/results/loop.json``; ``--readme`` prints the docs' tables from that JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.loop_report import README_END, README_START, STAGE_ORDER, readme, write_readme  # noqa: E402,F401 - after the path
logger = logging.getLogger("bench.loop")
DEFAULT_MODEL = ROOT / ".cache" / "bench-runtimes" / "calib"
GRIDS = {1: (1, 1), 12: (3, 4), 48: (6, 8)}   # slots per camera -> the video's (rows, cols)


def build_int8(work: Path, fp32: Path | None, random_size: int | None = None) -> tuple[Path, str]:
    """A calibration output directory (model.int8.onnx + manifest), and a note on where it came from."""
    from calibration.pipeline import CalibrateOptions, run as calibrate
    from trainer.synth import make_images

    note = ""
    if fp32 is None and random_size is None:
        cached = sorted(ROOT.glob(".cache/test-model/*/run/model.onnx"), key=lambda p: p.stat().st_mtime)
        if cached:
            fp32, note = cached[-1], f"trained_run model {cached[-1].parent}"
    if fp32 is None:
        import onnx
        import torch
        import torchvision

        from edge.contracts import DEFAULT_CLASSES
        from edge.manifest import InputSpec, Manifest, embed_manifest

        torch.manual_seed(0)
        net = torchvision.models.resnet18(num_classes=len(DEFAULT_CLASSES)).eval()
        fp32 = work / "fp32" / "model.onnx"
        fp32.parent.mkdir(parents=True)
        side = random_size or 64
        torch.onnx.export(net, (torch.randn(1, 3, side, side),), str(fp32), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
        manifest = Manifest(name="bench-untrained", version="0.0.1", arch="resnet18", classes=DEFAULT_CLASSES,
                            input=InputSpec(size=(side, side)))
        onnx.save(embed_manifest(onnx.load(str(fp32)), manifest), str(fp32))
        note = f"random-init ResNet-18 at {side} px: same compute as a trained one, meaningless labels"
    images = make_images(work / "calib-images", per_class=8, size=96, seed=1)
    out = work / "calib"
    calibrate(CalibrateOptions(model=fp32, images=images / "train" if (images / "train").is_dir() else images,
                               out=out, count=32, targets=("onnxruntime",), max_drop=100.0, bench_iters=0))
    return out, f"INT8 calibrated here from {note or fp32}"


def message_cost(n: int = 3000) -> dict:
    """Build, encode, and encode + send one 12-slot labels message on a PUB with a connected subscriber."""
    import zmq

    from edge.contracts import DEFAULT_CLASSES
    from edge.link import messages
    from edge.link.publisher import Publisher
    from edge.loop.postprocess import Postprocessor

    slots = [f"r{r}c{c}" for r in range(3) for c in range(4)]
    post = Postprocessor(DEFAULT_CLASSES, slots)
    logits = np.random.default_rng(0).standard_normal((len(slots), len(DEFAULT_CLASSES))).astype(np.float32)
    result = post.update(logits)
    model = {"name": "gemsight", "version": "1.0.0", "precision": "int8", "backend": "onnxruntime"}
    lat = {"capture": 1.0, "preprocess": 1.0, "infer": 5.0, "postprocess": 0.1, "total": 7.5}
    with Publisher("bench", "tcp://127.0.0.1:*", None, curve=None, hwm=n * 2) as pub:
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(pub.endpoint)
        time.sleep(0.3)
        build = encode = send = 0.0
        size = 0
        for _ in range(n):
            t0 = time.perf_counter()
            msg = messages.labels_message(device="bench", camera="cam0", capture_ts=time.time(), model=model,
                                          result=result, latencies_ms=lat, frame_index=0)
            t1 = time.perf_counter()
            size = len(messages.encode(msg))
            t2 = time.perf_counter()
            pub.publish_labels("cam0", msg)  # assigns seq, encodes, sends
            t3 = time.perf_counter()
            build, encode, send = build + t1 - t0, encode + t2 - t1, send + t3 - t2
        received = 0
        while sub.poll(500):
            sub.recv_multipart()
            received += 1
        sub.close(linger=0)
    return {"build_us": build / n * 1e6, "encode_us": encode / n * 1e6, "encode_and_send_us": send / n * 1e6,
            "bytes": size, "received": received, "sent": n}


def device_options(name: str) -> dict:
    """The runtime options a device runs with by default (``edge/defaults/edge.yaml``)."""
    import yaml

    data = yaml.safe_load((ROOT / "edge" / "defaults" / "edge.yaml").read_text())
    return dict(((data.get("runtime") or {}).get("options") or {}).get(name) or {})


def run_job(job: dict, timeout: float = 900, target=None) -> dict:
    """One measurement in a fresh (spawned) child process (``target``: the child's entry point; default
    gemsight's, :func:`bench.loop_child.child`)."""
    if target is None:
        from bench.loop_child import child as target

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(job, queue))
    proc.start()
    try:
        out = queue.get(timeout=timeout)
    finally:
        proc.join(30)
    if "error" in out:
        raise RuntimeError(f"bench job {out['job']}: {out['error']}")
    return out


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": values}


def _latency(samples: list[float]) -> dict:
    return {"p50": float(np.percentile(samples, 50)), "p99": float(np.percentile(samples, 99)), "n": len(samples)}


def versus(model: Path, runtime: str, options: dict, video: dict, args) -> dict:
    """gemsight's loop against the reference loop (:mod:`bench.loop_reference`) on one runtime: interleaved
    rounds (reference, gemsight, reference, ...), each in a fresh child process, on the same model file,
    runtime settings, video and slots. frames/s ratios are paired per round; the 10 fps latencies of all
    rounds are pooled per loop (a p99 of hundreds of frames)."""
    from bench.loop_reference import child as reference_child
    from edge.runtimes.artifacts import select_artifact

    artifact = select_artifact(model, runtime, "int8")
    manifest = model / "manifest.json"
    job = {"model": str(model), "runtime": runtime, "options": options, "video": str(video["video"]),
           "slots_file": str(video["slots"]), "cameras": 1, "warm_s": args.warm_s, "loop_s": args.loop_s,
           "paced_s": args.paced_s}
    ref_job = {**job, "model_file": str(artifact.path), "manifest": str(manifest)}
    gem_job = {**job, "kind": "gemsight", "alone_s": args.alone_s}
    rounds = []
    for i in range(args.rounds):
        print(f"  round {i + 1}/{args.rounds}: reference ...", end="", flush=True)
        ref = run_job(ref_job, target=reference_child)
        if ref["gemsight_imported"]:
            raise RuntimeError(f"the reference loop imported gemsight: {ref['gemsight_imported']}")
        print(f" {ref['fast']['frames_per_s']:.1f} frames/s; gemsight ...", end="", flush=True)
        gem = run_job(gem_job)
        print(f" {gem['fast']['frames_per_s']:.1f} frames/s", flush=True)
        rounds.append({"reference": ref, "gemsight": gem,
                       "ratio": gem["fast"]["frames_per_s"] / ref["fast"]["frames_per_s"]})
    ref_lat = [x for r in rounds for x in r["reference"]["paced"]["capture_to_publish_ms"]]
    gem_lat = [x for r in rounds for x in r["gemsight"]["paced"]["samples_ms"]]
    gem_fast = [r["gemsight"]["fast"] for r in rounds]
    out = {
        "runtime": runtime, "options": options, "model_file": str(artifact.path.relative_to(model)),
        "ratio": _spread([r["ratio"] for r in rounds]),
        "reference": {
            "frames_per_s": _spread([r["reference"]["fast"]["frames_per_s"] for r in rounds]),
            "cpu_ms_per_frame": statistics.median(r["reference"]["fast"]["cpu_ms_per_frame"] for r in rounds),
            "cpu_cores": statistics.median(r["reference"]["fast"]["cpu_cores"] for r in rounds),
            "machine_busy_cores": statistics.median(r["reference"]["fast"]["machine_busy_cores"] for r in rounds),
            "capture_to_publish_ms": _latency(ref_lat),
            "p99_by_round": [_latency(r["reference"]["paced"]["capture_to_publish_ms"])["p99"] for r in rounds]},
        "gemsight": {
            "frames_per_s": _spread([f["frames_per_s"] for f in gem_fast]),
            "cpu_ms_per_frame": statistics.median(f["cpu_ms_per_frame"] for f in gem_fast),
            "cpu_cores": statistics.median(f["cpu_cores"] for f in gem_fast),
            "machine_busy_cores": statistics.median(f["machine_busy_cores"] for f in gem_fast),
            "capture_to_publish_ms": _latency(gem_lat),
            "p99_by_round": [_latency(r["gemsight"]["paced"]["samples_ms"])["p99"] for r in rounds],
            "cpu_cores_by_role": {k: statistics.median(f["cpu_cores_by_role"].get(k, 0.0) for f in gem_fast)
                                  for k in gem_fast[0]["cpu_cores_by_role"]},
            "breakdown_ms_per_frame": {k: statistics.median(f["breakdown_ms_per_frame"].get(k, 0.0)
                                                            for f in gem_fast) for k in STAGE_ORDER},
            "peak_rss_mib": statistics.median(r["gemsight"]["peak_rss_mib"] for r in rounds)},
    }
    if all("alone" in r["gemsight"] for r in rounds):   # the old figure: loop ÷ runtime alone (no camera)
        out["batch"], out["input"] = rounds[0]["gemsight"]["batch"], rounds[0]["gemsight"]["input"]
        out["runtime_alone"] = {
            "slot_images_per_s": statistics.median(r["gemsight"]["alone"]["slot_images_per_s"] for r in rounds),
            "ms_per_batch": statistics.median(r["gemsight"]["alone"]["ms_per_batch"] for r in rounds),
            "p99_ms": statistics.median(r["gemsight"]["alone"]["p99_ms"] for r in rounds)}
        out["loop_over_alone"] = _spread([r["gemsight"]["fast"]["slot_images_per_s"]
                                          / r["gemsight"]["alone"]["slot_images_per_s"] for r in rounds])
    for r in rounds:  # the raw samples are in the pooled figures; keep the JSON readable
        r["reference"]["paced"]["capture_to_publish_ms"] = _latency(r["reference"]["paced"]["capture_to_publish_ms"])
        for part in ("fast", "paced"):
            r["gemsight"][part].pop("samples_ms", None)
    out["rounds"] = rounds
    return out


SCALING = ((1, 1), (1, 12), (1, 48), (2, 12), (4, 12))   # (cameras, slots per camera)


def limit(row: dict, cores: int) -> str:
    """What runs out first at one size: where this loop's CPU went (as fast as it goes), whether the
    machine's cores were all busy (other processes included: a shared machine), and whether 10 fps held."""
    roles = row["cpu_cores_by_role"]
    runtime = sum(v for k, v in roles.items() if k.startswith(("inference", "runtime")))
    decode = roles.get("grabbers (decode)", 0.0)
    prep = roles.get("batching (crop, preprocess)", 0.0)
    busy, machine = row["cpu_cores_saturated"], row.get("machine_busy_cores", row["cpu_cores_saturated"])
    share = f"runtime {runtime / busy:.0%}, decode {decode / busy:.0%}, crop+preprocess {prep / busy:.0%}"
    if machine >= 0.9 * cores:
        others = max(0.0, machine - busy)
        what = (f"CPU cores: all {cores} busy, {busy:.2f} of them this loop's ({share})"
                + (f", {others:.2f} other processes'" if others >= 0.1 else ""))
    elif decode > runtime:
        what = f"decode, one grabber thread per camera ({share} of {busy:.2f} busy cores)"
    else:
        what = f"the runtime's own latency: cores idle while one batch runs ({share} of {busy:.2f} busy cores)"
    kept_up = row["paced_fps_per_camera"] >= 9.5
    return f"{what}; 10 fps per camera {'held' if kept_up else 'not held'}"


def scaling(model: Path, runtime: str, options: dict, videos: dict, args) -> list[dict]:
    """gemsight's loop at each (cameras, slots per camera): as fast as it goes, then at 10 fps."""
    rows = []
    for cameras, slots in SCALING:
        v = videos[slots]
        job = {"kind": "gemsight", "model": str(model), "runtime": runtime, "options": options,
               "video": str(v["video"]), "slots_file": str(v["slots"]), "cameras": cameras,
               "warm_s": args.warm_s, "loop_s": args.scale_loop_s, "paced_s": args.scale_paced_s}
        print(f"  {cameras} camera(s) × {slots} slot(s) ...", flush=True)
        out = run_job(job)
        fast, paced = out["fast"], out["paced"]
        row = {"cameras": cameras, "slots_per_camera": slots, "batch": cameras * slots,
               "frames_per_s": fast["frames_per_s"], "slot_images_per_s": fast["slot_images_per_s"],
               "cpu_ms_per_frame": fast["cpu_ms_per_frame"], "cpu_cores_saturated": fast["cpu_cores"],
               "cpu_cores_by_role": fast["cpu_cores_by_role"], "machine_busy_cores": fast["machine_busy_cores"],
               "breakdown_ms_per_frame": fast["breakdown_ms_per_frame"],
               "paced_fps_per_camera": paced["frames_per_s"] / cameras,
               "cpu_cores_at_10fps": paced["cpu_cores"], "cpu_ms_per_frame_at_10fps": paced["cpu_ms_per_frame"],
               "capture_to_publish_ms": paced["capture_to_publish_ms"], "peak_rss_mib": out["peak_rss_mib"]}
        row["limit"] = limit(row, os.cpu_count() or 1)
        rows.append(row)
    return rows


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="calibration output with the INT8 models")
    parser.add_argument("--fp32", type=Path, help="calibrate this FP32 model instead (ONNX Runtime only)")
    parser.add_argument("--random", type=int, metavar="SIZE", help="calibrate a random-init ResNet-18 at this size")
    parser.add_argument("--runtimes", default="onnxruntime,openvino")
    parser.add_argument("--threads", type=int, help="runtime threads (default: the device default's, else all cores)")
    parser.add_argument("--options", type=json.loads, default={},
                        help="runtime options as JSON per runtime over the device defaults (edge/defaults/edge.yaml), "
                             'e.g. \'{"onnxruntime": {"allow_spinning": false}}\'')
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (reference, gemsight) per runtime")
    parser.add_argument("--alone-s", type=float, default=2.0,
                        help="seconds of runtime alone per gemsight round (the old loop ÷ runtime figure; 0: skip)")
    parser.add_argument("--loop-s", type=float, default=6.0, help="measured seconds as fast as it goes, per round")
    parser.add_argument("--warm-s", type=float, default=1.5, help="seconds before measuring")
    parser.add_argument("--paced-s", type=float, default=30.0,
                        help="measured seconds at 10 fps per round and loop (pooled over the rounds: 5 rounds of 30 s "
                             "make 1500 frames, so a p99 is the 15th-worst frame)")
    parser.add_argument("--size", default="1280x720", help="video frame size WxH")
    parser.add_argument("--no-scaling", action="store_true", help="skip the cameras × slots table")
    parser.add_argument("--scaling-runtime", default="openvino", help="runtime of the scaling table")
    parser.add_argument("--quick", action="store_true", help="shorter windows (the whole run in a few minutes)")
    parser.add_argument("--readme", action="store_true", help="print the docs' tables from --out and exit")
    parser.add_argument("--write-readme", action="store_true",
                        help="rewrite docs/benchmarks.md between the loop markers from --out and exit")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loop.json")
    parser.add_argument("--trace", metavar="RUNTIME",
                        help="trace every frame of one run at 10 fps (--paced-s seconds) and explain the slow ones "
                             "(bench/loop_trace.py); writes bench/results/loop_trace.json")
    parser.add_argument("--trace-raw", type=Path, metavar="FILE", help="with --trace: also write every frame and event")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.readme or args.write_readme:
        report = json.loads(args.out.read_text())
        if args.write_readme:
            write_readme(report)
        else:
            print(readme(report))
        return 0
    if args.quick:
        args.rounds, args.loop_s, args.paced_s = min(args.rounds, 3), 4.0, 15.0
    args.scale_paced_s, args.scale_loop_s = (5.0, 3.0) if args.quick else (10.0, 5.0)
    if args.trace:
        return trace(args)

    from trainer.synth import make_video

    width, height = (int(v) for v in args.size.lower().split("x"))
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gemsight-bench-loop-") as tmp:
        work = Path(tmp)
        model, note = _model(work, args)
        print("writing videos ...", flush=True)
        grids = GRIDS if not args.no_scaling else {12: GRIDS[12]}
        videos = {n: make_video(work / f"case{n}.mp4", slots=g, seconds=6.0, fps=10.0, size=(width, height), seed=3)
                  for n, g in grids.items()}
        report: dict = {"model": note, "cpu": cpu_model(), "cores": os.cpu_count(),
                        "load_average": load, "quick": args.quick, "video": {"size": [width, height], "slots": 12},
                        "runtimes": {}}
        for name in [r.strip() for r in args.runtimes.split(",") if r.strip()]:
            options = _options(name, args)
            print(f"{name}: {args.rounds} interleaved rounds (reference loop, gemsight), each {args.loop_s:g} s as "
                  f"fast as it goes and {args.paced_s:g} s at 10 fps ...", flush=True)
            report["runtimes"][name] = versus(model, name, options, videos[12], args)
        if not args.no_scaling:
            name = args.scaling_runtime
            print(f"scaling with {name} ...", flush=True)
            report["scaling_runtime"] = name
            report["scaling"] = scaling(model, name, _options(name, args), videos, args)
        print("messages ...", flush=True)
        report["message"] = message_cost()
    report["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    report["load_average_end"] = os.getloadavg()
    _compat(report)
    print()
    print(readme(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def _model(work: Path, args) -> tuple[Path, str]:
    """The calibration output to run (built in ``work`` for ``--fp32``, ``--random`` or a missing ``--model``)."""
    if args.fp32 is not None or args.random is not None or not (args.model / "model.int8.onnx").is_file():
        print("building an INT8 model ...", flush=True)
        return build_int8(work, args.fp32, args.random)
    return args.model, f"INT8 ResNet-18 from {args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model}"


def trace(args) -> int:
    """``--trace RUNTIME``: one traced run at 10 fps, its slow frames explained (bench/loop_trace.py)."""
    from bench.loop_trace import analyse, report
    from trainer.synth import make_video

    with tempfile.TemporaryDirectory(prefix="gemsight-bench-trace-") as tmp:
        model, note = _model(Path(tmp), args)
        video = make_video(Path(tmp) / "case12.mp4", slots=GRIDS[12], seconds=6.0, fps=10.0, size=(1280, 720), seed=3)
        job = {"kind": "trace", "model": str(model), "runtime": args.trace, "options": _options(args.trace, args),
               "video": str(video["video"]), "slots_file": str(video["slots"]), "cameras": 1, "paced_s": args.paced_s}
        print(f"tracing {args.trace} for {args.paced_s:g} s at 10 fps ...", flush=True)
        out = run_job(job)
    if args.trace_raw:
        args.trace_raw.write_text(json.dumps(out) + "\n")
    analysis = analyse(out)
    print("\n".join(report(args.trace, analysis)))
    path = args.out.with_name("loop_trace.json")
    previous = json.loads(path.read_text()) if path.is_file() else {}
    previous[args.trace] = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu": cpu_model(), "model": note,
                            "load_average": os.getloadavg(), "options": job["options"], **analysis}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(previous, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


def _options(name: str, args) -> dict:
    options = {**device_options(name), **args.options.get(name, {})}
    if name == "onnxruntime" and options.get("exact_int8") is None:
        from edge.runtimes.onnxruntime_rt import exact_int8  # noqa: PLC0415 - onnxruntime's adapter, lazily
        options["exact_int8"] = exact_int8(None)     # as the device resolves it; the reference loop gets the same
    if args.threads:
        options["threads"] = args.threads
    elif name != "tensorrt":
        options.setdefault("threads", os.cpu_count() or 1)
    return options


def _compat(report: dict) -> None:
    """The fields bench/run_all.py reads, for the first runtime measured."""
    first = next(iter(report["runtimes"].values()))
    gem = first["gemsight"]
    report.update({
        "runtime": first["runtime"], "precision": "int8", "input": first.get("input"),
        "runtime_alone": {"batch": first.get("batch"), **first.get("runtime_alone", {})},
        "versus_reference": {"ratio": first["ratio"]["median"], "reference_frames_per_s":
                             first["reference"]["frames_per_s"]["median"],
                             "frames_per_s": gem["frames_per_s"]["median"]},
        "loop": {"frames_per_s": gem["frames_per_s"]["median"], "peak_rss_mib": gem["peak_rss_mib"],
                 **({"ratio_to_runtime": first["loop_over_alone"]["median"],
                     "slot_images_per_s": first["runtime_alone"]["slot_images_per_s"]
                     * first["loop_over_alone"]["median"]} if "loop_over_alone" in first else {})},
        "loop_at_camera_rate": {"fps": 10.0, "latency_ms": gem["capture_to_publish_ms"],
                                "reference_latency_ms": first["reference"]["capture_to_publish_ms"],
                                "peak_rss_mib": gem["peak_rss_mib"]},
    })


if __name__ == "__main__":
    sys.exit(main())
