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
    p.add_argument("model", type=Path, metavar="MODEL.onnx", help="FP32 ONNX model with an embedded or adjacent manifest")
    p.add_argument("--images", type=Path, required=True, metavar="DIR",
                   help="calibration photos (class sub-folders make the sample stratified)")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="model directory to create")
    p.add_argument("--count", type=int, default=512, help="calibration images to use (default 512; at least 32)")
    p.add_argument("--method", choices=METHODS, default="percentile",
                   help="range method (default percentile: on our classifier it kept 99%%+ top-1 agreement "
                        "where entropy kept 98%%; see calibration/ranges.py)")
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

        opts = CalibrateOptions(model=args.model, images=args.images, out=args.out, count=args.count,
                                method=args.method, targets=parse_targets(args.targets), val=args.val,
                                max_drop=args.max_drop, force=args.force, bench_iters=args.bench_iters,
                                threads=args.threads)
        report = run(opts)
        print(f"{PROG}: wrote {args.out} ({', '.join(report['targets'])}); report: {args.out / 'report.md'}")
        for r in report["results"]:
            b1 = r["speedup"].get("b1")
            print(f"  {r['name']:<14} top-1 {r['top1']:6.2f}%  drop {r['drop']:+.2f}  agreement {r['agreement']:6.2f}%"
                  + (f"  {b1:.2f}x FP32 at batch 1" if b1 else ""))
        return 0

    return run_main(body, PROG)


if __name__ == "__main__":
    sys.exit(main())
