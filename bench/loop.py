"""How much the camera loop costs on top of inference: ``python bench/loop.py [--model DIR]``.

Measures, on this CPU, with an INT8 ResNet-18 and a 12-slot synthetic display-case video:

* loop throughput (slot-images/s, as fast as the file decodes) divided by the runtime's own
  throughput on the same 12-image batch (aim >= 0.9);
* capture-to-publish latency p50/p99 (the labels message's ``latencies_ms.total``), at the camera's
  rate (10 fps) and saturated;
* the cost of encoding and sending one labels message (and its size);
* the peak RSS of the process running the loop (measured in a fresh child process).

Without ``--model`` it builds one: the newest cached ``trained_run`` model (``.cache/test-model``)
or else a randomly initialised ResNet-18, calibrated to INT8 by ``calibration.pipeline`` on
synthetic images (only the ONNX Runtime target). Prints a table, writes ``bench/results/loop.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
logger = logging.getLogger("bench.loop")


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


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


def runtime_alone(model: Path, runtime: str, options: dict, slots_file: Path, video: Path, iters: int) -> dict:
    """The runtime's own throughput on one 12-slot batch cropped from the video's first frame."""
    import cv2

    from edge.config import load_slots_file
    from edge.preprocess import preprocess_batch
    from edge.runtimes import create_runtime
    from edge.slots import SlotMap

    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    cap.release()
    slots = SlotMap(load_slots_file(slots_file))
    with create_runtime(runtime, model, precision="int8", **options) as rt:
        batch = preprocess_batch(slots.crop(frame), rt.manifest.input)
        for _ in range(10):
            rt(batch)
        t0 = time.perf_counter()
        for _ in range(iters):
            rt(batch)
        dt = time.perf_counter() - t0
        precision, size = rt.manifest.precision, list(rt.manifest.input.size)
    return {"batch": len(batch), "ms_per_batch": dt / iters * 1000, "slot_images_per_s": len(batch) * iters / dt,
            "precision": precision, "input": size}


def _peak_rss_mib() -> float:
    """This process's own RSS high-water mark (VmHWM; ru_maxrss would carry the parent's over exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _loop_child(cfg_data: dict, queue: mp.Queue) -> None:
    """Runs in a fresh process so its peak RSS is the loop's own."""
    from edge.config import parse_config
    from edge.loop import run

    rss_imports = _peak_rss_mib()
    result = run(parse_config(cfg_data, "bench"))
    queue.put({"frames": sum(result.frames.values()), "slot_images": result.slot_images,
               "steady_s": result.steady_s, "infer_s": result.infer_s, "batches": result.batches,
               "dropped": sum(result.dropped.values()), "total_ms": result.total_ms,
               "peak_rss_mib": _peak_rss_mib(),
               "rss_after_imports_mib": rss_imports,
               "heavy_modules": [m for m in ("torch", "onnx", "openvino", "tensorrt") if m in sys.modules]})


def loop_run(model: Path, runtime: str, options: dict, video: Path, slots_file: Path, realtime: bool) -> dict:
    cfg = {"device": "bench", "model": {"path": str(model), "precision": "int8"},
           "runtime": {"name": runtime, "options": options},
           "cameras": [{"id": "cam0", "source": f"file://{video}?realtime={int(realtime)}",
                        "slots_file": str(slots_file)}],
           "publish": {"endpoint": "tcp://127.0.0.1:*", "snapshot_endpoint": "tcp://127.0.0.1:*", "hwm": 1000,
                       "curve": None},  # loopback, plaintext: the figures are the loop's, not the cipher's
           "metrics": {"port": None}}
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_loop_child, args=(cfg, queue))
    proc.start()
    out = queue.get(timeout=600)
    proc.join(30)
    return out


def message_cost(n: int = 3000) -> dict:
    """Build, encode, and encode + send one 12-slot labels message on a PUB with a connected subscriber."""
    import zmq

    from edge import messages
    from edge.contracts import DEFAULT_CLASSES
    from edge.postprocess import Postprocessor
    from edge.publisher import Publisher

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="calibration output / bundle directory with model.int8.onnx")
    parser.add_argument("--fp32", type=Path, help="calibrate this FP32 model instead of the cached/random one")
    parser.add_argument("--random", type=int, metavar="SIZE",
                        help="calibrate a random-init ResNet-18 at this input size (e.g. 224) instead")
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--spinning", action="store_true", help="let ONNX Runtime threads busy-wait (default off)")
    parser.add_argument("--seconds", type=float, default=20.0, help="video length (10 fps)")
    parser.add_argument("--size", default="1280x720", help="video frame size WxH")
    parser.add_argument("--iters", type=int, default=200, help="runtime-alone timed batches")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loop.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from trainer.synth import make_video

    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="gemsight-bench-loop-") as tmp:
        work = Path(tmp)
        if args.model is not None:
            model, note = args.model, f"given: {args.model}"
        else:
            print("building an INT8 model ...", flush=True)
            model, note = build_int8(work, args.fp32, args.random)
        vid = make_video(work / "case.mp4", slots=(3, 4), seconds=args.seconds, fps=10.0, size=(width, height), seed=3)
        print("runtime alone ...", flush=True)
        options = {"threads": args.threads}
        if args.runtime == "onnxruntime":
            options["allow_spinning"] = args.spinning
        alone = runtime_alone(model, args.runtime, options, vid["slots"], vid["video"], args.iters)
        print("loop, as fast as possible ...", flush=True)
        fast = loop_run(model, args.runtime, options, vid["video"], vid["slots"], realtime=False)
        print("loop, at the camera's 10 fps ...", flush=True)
        paced = loop_run(model, args.runtime, options, vid["video"], vid["slots"], realtime=True)
        print("messages ...", flush=True)
        msg = message_cost()

    loop_tput = fast["slot_images"] / fast["steady_s"]
    report = {
        "model": note, "runtime": args.runtime, "precision": alone["precision"], "runtime_options": options,
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "video": {"size": [width, height], "frames": fast["frames"], "slots": alone["batch"]},
        "input": alone["input"], "load_average": os.getloadavg(),
        "runtime_alone": alone,
        "loop": {"slot_images_per_s": loop_tput, "frames_per_s": fast["frames"] / fast["steady_s"],
                 "ratio_to_runtime": loop_tput / alone["slot_images_per_s"],
                 "infer_share": fast["infer_s"] / fast["steady_s"], "dropped": fast["dropped"],
                 "latency_saturated_ms": {"p50": _percentile(fast["total_ms"], 50), "p99": _percentile(fast["total_ms"], 99)},
                 "peak_rss_mib": fast["peak_rss_mib"], "rss_after_imports_mib": fast["rss_after_imports_mib"],
                 "heavy_modules_loaded": fast["heavy_modules"]},
        "loop_at_camera_rate": {"fps": paced["frames"] / paced["steady_s"], "dropped": paced["dropped"],
                                "latency_ms": {"p50": _percentile(paced["total_ms"], 50),
                                               "p99": _percentile(paced["total_ms"], 99)},
                                "peak_rss_mib": paced["peak_rss_mib"]},
        "message": msg,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    rows = [
        ("model", note),
        ("runtime / precision / options", f"{args.runtime} / {alone['precision']} / {options}"),
        ("runtime alone, batch of 12", f"{alone['slot_images_per_s']:.0f} slot-images/s ({alone['ms_per_batch']:.1f} ms/batch)"),
        ("loop, as fast as possible", f"{loop_tput:.0f} slot-images/s ({report['loop']['frames_per_s']:.1f} frames/s)"),
        ("loop / runtime", f"{report['loop']['ratio_to_runtime']:.2f}"),
        ("capture->publish at 10 fps p50 / p99", f"{report['loop_at_camera_rate']['latency_ms']['p50']:.1f} / "
                                                  f"{report['loop_at_camera_rate']['latency_ms']['p99']:.1f} ms"),
        ("capture->publish saturated p50 / p99", f"{report['loop']['latency_saturated_ms']['p50']:.1f} / "
                                                  f"{report['loop']['latency_saturated_ms']['p99']:.1f} ms"),
        ("labels message: build / encode / encode+send", f"{msg['build_us']:.0f} / {msg['encode_us']:.0f} / "
                                                          f"{msg['encode_and_send_us']:.0f} us ({msg['bytes']} B)"),
        ("peak RSS of the loop process", f"{max(fast['peak_rss_mib'], paced['peak_rss_mib']):.0f} MiB"),
    ]
    width_l = max(len(r[0]) for r in rows)
    print()
    for k, v in rows:
        print(f"{k:<{width_l}}  {v}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
