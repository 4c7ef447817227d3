"""gemsight's runtime adapters beside the raw runtimes they wrap: PyTorch eager FP32, ONNX Runtime FP32/INT8, OpenVINO FP32/INT8.

For each backend and precision the same artifact is run two ways: through gemsight's adapter
(``edge.runtimes``, with the options the device config gives by default) and through the runtime's own
API with its recommended settings (``bench/raw_runtimes.py``), in interleaved rounds at batch 1 and 8.
The figure is the median over rounds of adapter ÷ raw, with its range. OpenVINO also gets a raw row at
the runtime's default precision (``bf16`` on a CPU with AMX / AVX-512-BF16), for information: the
adapter keeps ``f32`` (exact FP32, the calibration gate's reference). Prints a table and writes
``bench/results/runtimes.json`` (``bench/run_all.py`` builds the README's rows from it).

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
    p.add_argument("--iters", type=int, default=5, help="timed runs per runner per round (PyTorch: 4x that, per figure)")
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds of raw and adapter per figure")
    p.add_argument("--settle", type=float, default=0.2,
                   help="seconds of pause before each runner's block, so that threads still spinning from the "
                        "previous block (ONNX Runtime's default spins ~2^20 times after a run) do not slow it")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every runtime, raw and adapter (default: each runtime's own, every physical core)")
    p.add_argument("--option", action="append", default=[], metavar="BACKEND.KEY=VALUE",
                   help="override one adapter option (a YAML value, validated as edge.yaml's), e.g. "
                        "onnxruntime.allow_spinning=false: what a setting costs; repeatable")
    p.add_argument("--copying-call", action="store_true",
                   help="also time OpenVINO called as gemsight did before issue 16 (input and output copied)")
    p.add_argument("--only", help="comma-separated backend:precision pairs, e.g. openvino:int8 (default: all four)")
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


PAIRS = (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8"))
BATCHES = (1, 8)
GOAL = 0.95   # issue 16: every adapter at >= 0.95 of its raw runtime (median of interleaved rounds)


def adapter_options(backend: str, threads: int | None, overrides: list[str] = ()) -> dict:
    """What a device whose config says nothing more runs with (edge.config.runtime's defaults), with
    ``--option BACKEND.KEY=VALUE`` overrides for this backend, validated as the config validates them."""
    import yaml  # noqa: PLC0415
    from pydantic import ValidationError  # noqa: PLC0415

    from edge.config.runtime import (OnnxRuntimeConfig, OnnxRuntimeOptions, OpenVinoConfig,  # noqa: PLC0415
                                     OpenVinoOptions, runtime_options)
    from edge.errors import ConfigError  # noqa: PLC0415
    from edge.validation import error_lines  # noqa: PLC0415

    given = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        name, dot, field = key.partition(".")
        if not (sep and dot and field) or name not in ("onnxruntime", "openvino"):
            raise ConfigError(f"--option {item!r}: expected onnxruntime.KEY=VALUE or openvino.KEY=VALUE")
        if name == backend:
            given[field] = yaml.safe_load(value)
    config_cls, options_cls = {"onnxruntime": (OnnxRuntimeConfig, OnnxRuntimeOptions),
                               "openvino": (OpenVinoConfig, OpenVinoOptions)}[backend]
    try:
        config = config_cls(name=backend, options=options_cls(**given))
    except ValidationError as exc:
        raise ConfigError(error_lines(exc, "--option", prefix=backend)) from exc
    options = runtime_options(config, backend)
    # The raw runtime is fed the manifest's float32 batch; so is the adapter here (the loop's uint8 input,
    # normalised inside OpenVINO's model, is measured by bench/loop.py).
    options.pop("uint8_input", None)
    if threads:
        options["threads"] = threads
    return options


def compare(backend: str, precision: str, model_dir: Path, batches: dict, args) -> dict:
    """One backend and precision: adapter and raw runtime on the same artifact, interleaved rounds."""
    from edge.runtimes.registry import create_runtime  # noqa: PLC0415

    from bench.raw_runtimes import CopyingOpenVinoCall, interleaved, open_raw, ratio_summary  # noqa: PLC0415

    options = adapter_options(backend, args.threads, args.option)
    adapter = create_runtime(backend, model_dir, precision=precision, **options)
    runners = {"adapter": adapter}
    try:
        extra = {"inference_precision": options["inference_precision"]} if backend == "openvino" else {}
        runners["raw"] = open_raw(backend, adapter.model_path, args.threads, **extra)
        if backend == "openvino":   # the runtime's own default precision, for information
            runners["raw_default_precision"] = open_raw(backend, adapter.model_path, args.threads)
            if args.copying_call:
                runners["copying_call"] = CopyingOpenVinoCall(adapter)
        x = batches[BATCHES[-1]]
        diff = float(np.abs(adapter(x) - runners["raw"](x)).max())
        speeds = {bs: interleaved(runners, xb, args.rounds, args.iters, settle_s=args.settle) for bs, xb in batches.items()}
        med = {name: {f"b{bs}": round(float(np.median(speeds[bs][name])), 2) for bs in batches} for name in runners}
        row = {"runtime": backend, "precision": precision, "artifact": adapter.model_path.relative_to(model_dir).as_posix(),
               "img_per_s": med["adapter"], "adapter_options": options, "settings": adapter.settings(),
               "raw": {"img_per_s": med["raw"], "settings": runners["raw"].settings()},
               "adapter_vs_raw": {f"b{bs}": ratio_summary(speeds[bs]["adapter"], speeds[bs]["raw"]) for bs in batches},
               "max_abs_diff_vs_raw": diff}
        if "raw_default_precision" in runners:
            row["raw_default_precision"] = {
                "img_per_s": med["raw_default_precision"], "settings": runners["raw_default_precision"].settings(),
                "adapter_vs_it": {f"b{bs}": ratio_summary(speeds[bs]["adapter"], speeds[bs]["raw_default_precision"])
                                  for bs in batches}}
        if "copying_call" in runners:
            row["copying_call"] = {
                "img_per_s": med["copying_call"],
                "vs_raw": {f"b{bs}": ratio_summary(speeds[bs]["copying_call"], speeds[bs]["raw"]) for bs in batches}}
        return row
    finally:
        for runner in runners.values():
            runner.close()


def print_table(payload: dict) -> None:
    h, w = payload["input"]
    print(f"\nmodel {payload['model_dir']} ({payload['arch']}, {h}x{w}); {payload['rounds']} interleaved rounds x "
          f"{payload['iters']} runs; threads {payload['threads'] or 'runtime default'}; load "
          f"{' '.join(f'{v:.2f}' for v in payload['load_average']['start'])} -> "
          f"{' '.join(f'{v:.2f}' for v in payload['load_average']['end'])}")
    print(f"{'runtime':<12} {'prec':<5} {'img/s b1 adapter/raw':>21} {'adapter÷raw b1 (range)':>24} "
          f"{'img/s b8 adapter/raw':>21} {'adapter÷raw b8 (range)':>24}")
    for r in payload["results"]:
        cells = []
        for bs in ("b1", "b8"):
            raw = r.get("raw", {}).get("img_per_s", {}).get(bs)
            ratio = r.get("adapter_vs_raw", {}).get(bs)
            cells.append(f"{r['img_per_s'][bs]:9.1f} / {raw:9.1f}" if raw else f"{r['img_per_s'][bs]:9.1f} / {'—':>9}")
            cells.append(f"{ratio['median']:.3f} ({ratio['min']:.2f}–{ratio['max']:.2f})" if ratio else "—")
        print(f"{r['runtime']:<12} {r['precision']:<5} {cells[0]:>21} {cells[1]:>24} {cells[2]:>21} {cells[3]:>24}")
    for r in payload["results"]:
        info = r.get("raw_default_precision")
        if info:
            prec = info["settings"].get("INFERENCE_PRECISION_HINT", "?")
            print(f"  info: {r['runtime']} {r['precision']} raw at the runtime's default precision ({prec}): "
                  f"{info['img_per_s']['b1']:.1f} / {info['img_per_s']['b8']:.1f} img/s at b1 / b8; adapter ÷ it "
                  f"{info['adapter_vs_it']['b1']['median']:.2f} / {info['adapter_vs_it']['b8']['median']:.2f}")
    for r in payload["results"]:
        old = r.get("copying_call")
        if old:
            print(f"  before issue 16: {r['runtime']} {r['precision']} with input and output copied: "
                  f"{old['img_per_s']['b1']:.1f} / {old['img_per_s']['b8']:.1f} img/s; ÷ raw "
                  f"{old['vs_raw']['b1']['median']:.3f} ({old['vs_raw']['b1']['min']:.2f}–{old['vs_raw']['b1']['max']:.2f}) / "
                  f"{old['vs_raw']['b8']['median']:.3f} ({old['vs_raw']['b8']['min']:.2f}–{old['vs_raw']['b8']['max']:.2f})")
    goal = payload["goal"]
    print(f"every adapter >= {goal['threshold']} of its raw runtime at b1 and b8: {goal['met']} "
          f"(lowest median {goal['lowest_median']:.3f}, {goal['lowest']})")


def bench(args) -> int:
    from edge.manifest import load_manifest_for  # noqa: PLC0415

    for backend in ("onnxruntime", "openvino"):   # a bad --option fails now, not after the model build
        adapter_options(backend, args.threads, args.option)

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
    batches = {bs: rng.standard_normal((bs, 3, h, w)).astype(np.float32) for bs in BATCHES}
    load_start = os.getloadavg()
    pairs = [tuple(p.split(":")) for p in args.only.split(",")] if args.only else PAIRS
    rows = []
    if torch_model is not None and not args.only:
        import torch  # noqa: PLC0415

        torch.set_num_threads(args.threads or os.cpu_count() or 1)

        def torch_fn(x):
            with torch.inference_mode():
                return torch_model(torch.from_numpy(x)).numpy()
        rows.append({"runtime": "pytorch", "precision": "fp32", "artifact": "eager",
                     "img_per_s": {f"b{bs}": round(_time(torch_fn, x, 4 * args.iters), 2) for bs, x in batches.items()}})
    for backend, precision in pairs:
        logger.info("%s %s: adapter and raw, %d rounds", backend, precision, args.rounds)
        try:
            rows.append(compare(backend, precision, model_dir, batches, args))
        except Exception as exc:  # a missing artifact or runtime is reported, the rest still runs
            logger.warning("%s %s: %s", backend, precision, exc)
    base = next((r["img_per_s"] for r in rows if (r["runtime"], r["precision"]) == ("onnxruntime", "fp32")), None)
    for r in rows:
        r["vs_onnxruntime_fp32"] = {k: (round(v / base[k], 3) if base else None) for k, v in r["img_per_s"].items()}
    medians = [(r["adapter_vs_raw"][bs]["median"], f"{r['runtime']} {r['precision']} {bs}")
               for r in rows if "adapter_vs_raw" in r for bs in r["adapter_vs_raw"]]
    lowest = min(medians) if medians else (float("nan"), "none measured")
    cpu_flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0] if Path("/proc/cpuinfo").exists() else ""
    payload = {"model_dir": str(model_dir), "arch": manifest.arch, "input": [h, w], "threads": args.threads,
               "cores": os.cpu_count(), "iters": args.iters, "rounds": args.rounds, "settle_s": args.settle,
               "cpu": platform.processor() or platform.machine(),
               "avx512_vnni": "avx512_vnni" in cpu_flags, "avx2": "avx2" in cpu_flags, "amx_bf16": "amx_bf16" in cpu_flags,
               "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "options": args.option,
               "load_average": {"start": [round(v, 2) for v in load_start], "end": [round(v, 2) for v in os.getloadavg()]},
               "goal": {"threshold": GOAL, "met": bool(medians) and lowest[0] >= GOAL and len(medians) == 2 * len(pairs),
                        "lowest_median": lowest[0], "lowest": lowest[1]},
               "results": rows}
    print_table(payload)
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    setup_logging(0)
    return run_main(lambda: bench(args), "bench/runtimes.py")


if __name__ == "__main__":
    sys.exit(main())
