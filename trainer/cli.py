"""``gemsight-train``: train (the default) or ``gemsight-train evaluate MODEL --data DIR [--out report.json]``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

from edge.cli_support import run_main, setup_logging

logger = logging.getLogger(__name__)

PROG = "gemsight-train"


def evaluate_parser() -> argparse.ArgumentParser:
    """Options of ``gemsight-train evaluate``."""
    p = argparse.ArgumentParser(prog=f"{PROG} evaluate",
                                description="Evaluate a checkpoint (.pt) or ONNX model on labelled photos; ONNX "
                                            "runs through ONNX Runtime and edge's preprocessing, as on the device.")
    p.add_argument("model", help="best.pt / last.pt, model.onnx, or a model directory")
    p.add_argument("--data", required=True, help="DIR/<class>/*, DIR with train/ + val/ (val is used), or a CSV")
    p.add_argument("--out", help="write the report JSON here")
    p.add_argument("--batch-size", type=int, default=32, help="images per inference call (default 32)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--misses", type=int, default=48,
                   help="list this many of the photos the model gets wrong in the report, surest first (default 48)")
    p.add_argument("--misses-png", help="draw those photos in this PNG, each with what the model called it")
    p.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    return p


def _evaluate(argv: Sequence[str]) -> int:
    from trainer.evaluate import evaluate_model  # noqa: PLC0415
    from trainer.report import write_json  # noqa: PLC0415

    args = evaluate_parser().parse_args(argv)
    setup_logging(args.verbose)
    report = evaluate_model(args.model, args.data, batch_size=args.batch_size, threads=args.threads,
                            misses=args.misses, misses_png=args.misses_png)
    if args.out:
        write_json(report, args.out)
    print(json.dumps({k: report[k] for k in ("model", "backend", "images", "accuracy", "macro_f1", "missed")}
                     | {"skipped": len(report["skipped"])}))
    return 0


def _train(argv: Sequence[str]) -> int:
    from trainer.train import main as train_main, parse_args  # noqa: PLC0415

    args = parse_args(argv)
    setup_logging(args.verbose)
    out = train_main(args)
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        print(out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gemsight-train`` (and of ``python -m trainer`` for training and evaluation)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "evaluate":
        return run_main(lambda: _evaluate(argv[1:]), f"{PROG} evaluate")
    return run_main(lambda: _train(argv), PROG)


if __name__ == "__main__":
    sys.exit(main())
