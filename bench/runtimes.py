"""Throughput of one model on every CPU runtime: PyTorch eager FP32, ONNX Runtime FP32/INT8, OpenVINO FP32/INT8.

One run, batch 1 and 8, images per second and the ratio to ONNX Runtime FP32; prints a table and
writes ``bench/results/runtimes.json``.

    python bench/runtimes.py --model-dir OUT [--run-dir RUN]     # an existing calibration output
    python bench/runtimes.py --run-dir RUN --size 224             # export RUN/best.pt at 224 px, calibrate, bench
    python bench/runtimes.py                                      # the newest trained_run, else random init

Without ``--model-dir`` the model is exported at ``--size`` and calibrated (all four targets) into
``WORK/calib`` (what bench/loop.py then runs), and that calibration's report is summarised in
``bench/results/calibration.json`` (from a calibration of the run's own ``model.onnx`` at its
trained size when that differs from ``--size``: a 64 px model says nothing at 224 px). Without ``--run-dir`` the newest test fixture run
(``.cache/test-model/*/run/best.pt``, the trainer's ResNet-18 on the synthetic set, with its
``data/train`` and ``data/val``) is used; failing that a random-init ResNet-18 (speed only).

PyTorch eager needs the weights (a run's ``best.pt`` or the random-init model); with only
``--model-dir`` its row is skipped.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibration.gate import throughput  # noqa: E402
from edge.cli_support import run_main, setup_logging  # noqa: E402
from edge.contracts import DEFAULT_CLASSES  # noqa: E402

logger = logging.getLogger("bench.runtimes")
CLASSES = DEFAULT_CLASSES


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, help="a gemsight-calibrate output directory")
    p.add_argument("--run-dir", type=Path, help="a training run with best.pt (PyTorch weights)")
    p.add_argument("--size", type=int, default=224, help="input size when building the model here (default 224)")
    p.add_argument("--images", type=Path, help="calibration images when building (default: the run's data/train, "
                                               "else generated)")
    p.add_argument("--val", type=Path, help="labelled validation images (default: the run's data/val)")
    p.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench-runtimes", help="where a built model goes")
    p.add_argument("--iters", type=int, default=30, help="timed runs per figure")
    p.add_argument("--threads", type=int, default=None, help="threads for every runtime (default: all cores)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "runtimes.json")
    return p


def _torch_model(run_dir: Path | None):
    import torch  # noqa: PLC0415

    if run_dir is not None:
        from trainer.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: PLC0415

        model, manifest = model_from_checkpoint(load_checkpoint(run_dir / "best.pt"), str(run_dir / "best.pt"))
        return model.eval(), manifest.classes, manifest.arch
    import torchvision  # noqa: PLC0415

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=len(CLASSES)).eval(), CLASSES, "resnet18"


def _generated_images(root: Path, per_class: int = 8) -> Path:
    import cv2  # noqa: PLC0415

    rng = np.random.default_rng(0)
    for ci, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (256, 256, 3), dtype=np.uint8) + np.uint8(20 * ci)
            cv2.circle(img, (int(rng.integers(60, 196)), int(rng.integers(60, 196))), int(rng.integers(20, 60)),
                       [int(v) for v in rng.integers(0, 255, 3)], -1)
            cv2.imwrite(str(root / name / f"{i:02d}.jpg"), img)
    return root


def default_run_dir() -> Path | None:
    """The newest cached ``trained_run`` fixture run (the trainer's ResNet-18 on the synthetic set)."""
    runs = sorted(ROOT.glob(".cache/test-model/*/run/best.pt"), key=lambda p: p.stat().st_mtime)
    return runs[-1].parent if runs else None


def build_model_dir(args, model, classes, arch) -> Path:
    """Export the PyTorch model at ``--size`` with a manifest and calibrate it for every target."""
    import onnx  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from calibration.pipeline import CalibrateOptions, run  # noqa: PLC0415
    from edge.manifest import InputSpec, Manifest, embed_manifest  # noqa: PLC0415

    work = args.work
    out = work / "calib"
    data = args.run_dir.parent / "data" if args.run_dir else None
    images = args.images or (data / "train" if data and (data / "train").is_dir() else None)
    val = args.val or (data / "val" if data and (data / "val").is_dir() else None)
    source = {"run_dir": str(args.run_dir), "size": args.size, "images": str(images), "val": str(val),
              "weights_mtime": (args.run_dir / "best.pt").stat().st_mtime if args.run_dir else None}
    stamp = work / "bench-source.json"
    if (out / "report.json").is_file() and stamp.is_file() and json.loads(stamp.read_text()) == source:
        logger.info("reusing %s", out)
        return out
    work.mkdir(parents=True, exist_ok=True)
    src = work / "fp32.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, args.size, args.size),), str(src), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    manifest = Manifest(name="bench", arch=arch, classes=tuple(classes), input=InputSpec(size=(args.size, args.size)))
    onnx.save(embed_manifest(onnx.load(str(src)), manifest), str(src))
    images = images or _generated_images(work / "images")
    # A benchmark, not a release: the gate is opened wide; the drops are recorded in calibration.json.
    run(CalibrateOptions(model=src, images=images, out=out, count=512, val=val, max_drop=100.0, bench_iters=0,
                         force=True))
    stamp.write_text(json.dumps(source) + "\n")
    return out


def native_calibration(args) -> Path | None:
    """Calibrate the run's own model.onnx at its trained size: accuracy is only meaningful there."""
    from calibration.pipeline import CalibrateOptions, run  # noqa: PLC0415
    from edge.manifest import load_manifest_for  # noqa: PLC0415

    if args.run_dir is None or not (args.run_dir / "model.onnx").is_file():
        return None
    size = load_manifest_for(args.run_dir / "model.onnx").input.size
    if size == (args.size, args.size):
        return None
    data = args.run_dir.parent / "data"
    if not (data / "val").is_dir() and args.val is None:
        return None
    out = args.work / "calib-native"
    from edge.manifest import file_digest  # noqa: PLC0415

    record = out / "calibration.json"
    if (out / "report.json").is_file() and record.is_file() and \
            json.loads(record.read_text()).get("source_model_sha256") == file_digest(args.run_dir / "model.onnx"):
        return out
    run(CalibrateOptions(model=args.run_dir / "model.onnx", images=args.images or data / "train", out=out, count=512,
                         val=args.val or data / "val", max_drop=100.0, bench_iters=0, force=True))
    return out


def write_calibration_summary(model_dir: Path, path: Path) -> None:
    """The calibration report's per-target accuracy, for the README table (bench/run_all.py)."""
    report_path = model_dir / "report.json"
    if not report_path.is_file():
        return
    report = json.loads(report_path.read_text())
    labelled = bool(report.get("labelled"))
    targets = [{"name": r["name"], "top1": r["top1"], "top1_drop": round(r["drop"], 3) if labelled else None,
                "agreement": round(r["agreement"] / 100.0, 5), "max_logit_error": r["max_logit_error"]}
               for r in report["results"] if r["gated"]]
    path.write_text(json.dumps({"model_dir": str(model_dir), "method": report["method"],
                                "calibration_images": report["calibration_images"], "labelled": labelled,
                                "evaluation": report["evaluation"], "fp32_top1": report["results"][0]["top1"],
                                "targets": targets}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def _time(fn, x: np.ndarray, iters: int) -> float:
    """Images/s at ``len(x)``, measured as the accuracy gate measures it (median of timed runs)."""
    return throughput(fn, x, len(x), iters)


def bench(args) -> int:
    from edge.manifest import load_manifest_for  # noqa: PLC0415
    from edge.runtimes import create_runtime  # noqa: PLC0415

    torch_model = None
    if args.model_dir is None and args.run_dir is None:
        args.run_dir = default_run_dir()
        logger.info("model: %s", args.run_dir or "random-init ResNet-18 (no trained run cached)")
    if args.run_dir is not None or args.model_dir is None:
        torch_model, classes, arch = _torch_model(args.run_dir)
    model_dir = args.model_dir or build_model_dir(args, torch_model, classes, arch)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    accuracy_dir = (native_calibration(args) if args.model_dir is None else None) or model_dir
    write_calibration_summary(accuracy_dir, args.out.with_name("calibration.json"))
    manifest = load_manifest_for(model_dir)
    h, w = manifest.input.size
    rng = np.random.default_rng(0)
    batches = {bs: rng.standard_normal((bs, 3, h, w)).astype(np.float32) for bs in (1, 8)}
    threads = args.threads or os.cpu_count()
    rows = []
    if torch_model is not None:
        import torch  # noqa: PLC0415

        torch.set_num_threads(threads)

        def torch_fn(x):
            with torch.inference_mode():
                return torch_model(torch.from_numpy(x)).numpy()
        rows.append(("pytorch", "fp32", "eager", {bs: _time(torch_fn, x, args.iters) for bs, x in batches.items()}))
    for backend, precision in (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8")):
        try:
            with create_runtime(backend, model_dir, precision=precision, threads=threads) as rt:
                speeds = {bs: _time(rt, x, args.iters) for bs, x in batches.items()}
                rows.append((backend, precision, rt.model_path.relative_to(model_dir).as_posix(), speeds))
        except Exception as exc:  # a missing artifact or runtime is reported, the rest still runs
            logger.warning("%s %s: %s", backend, precision, exc)
    base = next((r[3] for r in rows if r[:2] == ("onnxruntime", "fp32")), None)
    print(f"\nmodel {model_dir} ({manifest.arch}, {h}x{w}), {threads} threads, {args.iters} runs per figure")
    print(f"{'runtime':<12} {'prec':<5} {'artifact':<24} {'b1 img/s':>9} {'b8 img/s':>9} {'b1 ×ORT32':>10} {'b8 ×ORT32':>10}")
    results = []
    for backend, precision, artifact, speeds in rows:
        ratio = {bs: (speeds[bs] / base[bs] if base else None) for bs in speeds}
        print(f"{backend:<12} {precision:<5} {artifact:<24} {speeds[1]:9.1f} {speeds[8]:9.1f} "
              f"{ratio[1] or 0:10.2f} {ratio[8] or 0:10.2f}")
        results.append({"runtime": backend, "precision": precision, "artifact": artifact,
                        "img_per_s": {f"b{k}": round(v, 2) for k, v in speeds.items()},
                        "vs_onnxruntime_fp32": {f"b{k}": (round(v, 3) if v else None) for k, v in ratio.items()}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cpu_flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0] if Path("/proc/cpuinfo").exists() else ""
    payload = {"model_dir": str(model_dir), "arch": manifest.arch, "input": [h, w], "threads": threads,
               "iters": args.iters, "cpu": platform.processor() or platform.machine(),
               "avx512_vnni": "avx512_vnni" in cpu_flags, "avx2": "avx2" in cpu_flags,
               "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": results}
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    setup_logging(0)
    return run_main(lambda: bench(args), "bench/runtimes.py")


if __name__ == "__main__":
    sys.exit(main())
