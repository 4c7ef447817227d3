"""``gemsight-calibrate``: INT8 artifacts for every target from one calibration pass, behind an accuracy gate."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edge.cli_support import run_main, setup_logging

logger = logging.getLogger(__name__)

PROG = "gemsight-calibrate"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The command's parser (reusable by other tools)."""
    from calibration.gate import TARGETS  # noqa: PLC0415
    from calibration.ranges import METHODS  # noqa: PLC0415

    p = argparse.ArgumentParser(
        prog=PROG, add_help=add_help,
        description="Calibrate an FP32 ONNX model (with its gemsight manifest) and write INT8 artifacts for "
                    "ONNX Runtime, TensorRT, OpenVINO and FPGA DPUs from one set of activation ranges. "
                    "Nothing is published to OUT unless every target passes the accuracy gate; a failed "
                    "run leaves its report in OUT.rejected/.")
    p.add_argument("model", type=Path, metavar="MODEL.onnx",
                   help="FP32 ONNX model with an embedded or adjacent manifest")
    p.add_argument("--images", type=Path, required=True, metavar="DIR",
                   help="calibration photos (class sub-folders make the sample stratified)")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="model directory to create")
    p.add_argument("--count", type=int, default=512, help="calibration images to use (default 512; at least 32)")
    p.add_argument("--method", choices=(*METHODS, "auto"), default=None,
                   help="range method (default percentile, or auto with --auto: on our synthetic classifier "
                        "percentile kept 99%%+ top-1 agreement where entropy kept 98%%; see calibration/ranges.py). "
                        "auto tries each method and keeps the one that agrees best with FP32 on a held-out "
                        "quarter of the calibration sample (never on --val)")
    p.add_argument("--auto", action="store_true",
                   help="find what holds accuracy: --method auto (unless --method is given), the fewest layers "
                        "left in float that reach --agreement-target on the held-out images (ONNX Runtime, "
                        "OpenVINO, TensorRT), cross-layer equalization and bias correction for the FPGA model; "
                        "report.md lists the float layers, their speed cost and a per-layer sensitivity plot")
    p.add_argument("--agreement-target", type=float, default=99.0,
                   help="--auto's top-1 agreement with FP32 on the held-out images, in percent (default 99)")
    p.add_argument("--held-out-views", type=int, default=2, choices=range(1, 5), metavar="{1..4}",
                   help="views of each held-out image --auto scores: as drawn, zoomed, mirrored, zoomed and "
                        "mirrored (default 2; 1 scores the photos as drawn, which a model knows from training too "
                        "well to show what quantization would flip on new photos)")
    p.add_argument("--openvino-weight-bits", type=int, choices=(7, 8), default=7,
                   help="weight bits of the OpenVINO INT8 IR (default 7: on an x86 CPU without VNNI, AVX2 only, "
                        "8-bit weights saturate OpenVINO's int8 kernels; a real-photo ResNet-18 agreed with FP32 "
                        "on 99.2%% of val photos with 8 bits there and 100%% with 7). 8: as model.int8.onnx")
    p.add_argument("--sensitivity", action="store_true",
                   help="measure and plot each layer's sensitivity without changing the artifacts")
    p.add_argument("--exclude", default="", metavar="NODES",
                   help="comma-separated node names to leave in float in every QDQ model but the FPGA one")
    p.add_argument("--fpga-equalize", action=argparse.BooleanOptionalAction, default=None,
                   help="cross-layer equalization before the FPGA model (default: on with --auto)")
    p.add_argument("--fpga-bias-correction", action=argparse.BooleanOptionalAction, default=None,
                   help="correct the bias shift of power-of-two weight rounding (default: on with --auto)")
    p.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                   help="on a failed gate, do not measure which layers hurt most")
    p.add_argument("--targets", default=",".join(TARGETS),
                   help=f"comma-separated subset of {','.join(TARGETS)} (default all)")
    p.add_argument("--val", type=Path, metavar="DIR",
                   help="labelled validation photos, one folder per class; without it the gate compares "
                        "with FP32's predictions on the calibration images")
    p.add_argument("--max-drop", type=float, default=0.5,
                   help="largest allowed top-1 drop vs FP32, in percentage points (default 0.5)")
    p.add_argument("--force", action="store_true", help="replace an existing OUT (only if the gate passes)")
    p.add_argument("--bench-iters", type=int, default=20, help="timed runs per throughput figure (0: no timing)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for evaluation (default: all cores)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    setup_logging(args.verbose)

    def body() -> int:
        from calibration.pipeline import CalibrateOptions, parse_targets, run  # noqa: PLC0415

        method = args.method or ("auto" if args.auto else "percentile")
        opts = CalibrateOptions(model=args.model, images=args.images, out=args.out, count=args.count,
                                method=method, targets=parse_targets(args.targets), val=args.val,
                                max_drop=args.max_drop, force=args.force, bench_iters=args.bench_iters,
                                threads=args.threads, auto=args.auto, agreement_target=args.agreement_target,
                                held_out_views=args.held_out_views,
                                openvino_weight_bits=args.openvino_weight_bits, sensitivity=args.sensitivity,
                                exclude=tuple(n.strip() for n in args.exclude.split(",") if n.strip()),
                                fpga_equalize=args.fpga_equalize, fpga_bias_correction=args.fpga_bias_correction,
                                diagnose=args.diagnose)
        report = run(opts)
        print(f"{PROG}: wrote {args.out} ({', '.join(report['targets'])}, method {report['method']}); "
              f"report: {args.out / 'report.md'}")
        unlike = report.get("calibration_vs_val")
        if unlike and unlike["warning"]:
            print(f"  WARNING: calibration photos look unlike the validation photos (shift {unlike['score']:.2f})")
        for r in report["results"]:
            b1 = r["speedup"].get("b1")
            print(f"  {r['name']:<14} top-1 {r['top1']:6.2f}%  drop {r['drop']:+.2f}  agreement {r['agreement']:6.2f}%"
                  + (f"  {b1:.2f}x FP32 at batch 1" if b1 else ""))
        return 0

    return run_main(body, PROG)


if __name__ == "__main__":
    sys.exit(main())
