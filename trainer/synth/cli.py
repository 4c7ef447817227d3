"""``gemsight-synth``: make synthetic display-case datasets, videos and pictures of them.

Commands::

    gemsight-synth images OUT [--classes a,b,...] [--per-class N] [--size S] [--val-fraction F] [--seed K] [--workers N]
    gemsight-synth video OUT.mp4 [--slots RxC] [--seconds T] [--fps F] [--size WxH] [--seed K] [--stock-seed K]
                                 [--classes ...]
    gemsight-synth day OUT.mp4 [--minutes M] [--fps F] [--slots RxC] [--size WxH] [--seed K] [--photos DIR]
                       [--grace-s S]
    gemsight-synth preview DATASET OUT.png [--per-class N]
    gemsight-synth frame VIDEO OUT.png [--slots FILE] [--index I]
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from edge.cli_support import run_main, setup_logging
from edge.contracts import DEFAULT_CLASSES
from edge.errors import ConfigError
from trainer import synth
from trainer.synth.day import make_day

logger = logging.getLogger(__name__)

PROG = "gemsight-synth"


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`ConfigError` (one line, exit code 2) instead of printing usage."""

    def error(self, message: str):
        raise ConfigError(message)


def _two_ints(text: str, option: str, form: str) -> tuple[int, int]:
    """``"AxB"`` → ``(A, B)``; raises :class:`ConfigError` naming ``option`` and the ``form`` it takes."""
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{option}: expected {form}, got {text!r}") from None
    return a, b


def parse_grid(text: str) -> tuple[int, int]:
    """``"3x4"`` → ``(3, 4)`` (rows, columns); raises :class:`ConfigError` naming ``--slots``."""
    r, c = _two_ints(text, "--slots", "ROWSxCOLS such as 3x4")
    if r < 1 or c < 1:
        raise ConfigError(f"--slots: rows and columns must be at least 1, got {text!r}")
    return r, c


def parse_frame_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` → ``(1280, 720)`` (width, height); raises :class:`ConfigError` naming ``--size``."""
    w, h = _two_ints(text, "--size", "WIDTHxHEIGHT such as 1280x720")
    if w < 32 or h < 32:
        raise ConfigError(f"--size: frame {text} is smaller than 32x32 px")
    return w, h


def parse_classes(text: str) -> tuple[str, ...]:
    """A comma-separated class list (spaces ignored)."""
    return tuple(c.strip() for c in text.split(",") if c.strip())


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The command-line parser (reusable by other tools)."""
    default_classes = ",".join(DEFAULT_CLASSES)
    parser = _Parser(prog=PROG, description="Synthetic jewelry display-case data: datasets, videos, previews.",
                     add_help=add_help)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("images", help="an image-folder dataset OUT/{train,val}/<class>/*.jpg")
    p.add_argument("out", type=Path, help="dataset root")
    p.add_argument("--classes", type=parse_classes, default=DEFAULT_CLASSES, help=f"default {default_classes}")
    p.add_argument("--per-class", type=int, default=100, help="images per class, train and val together")
    p.add_argument("--size", type=int, default=128, help="square image side in px (>= 32)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share held out for validation, in [0, 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes (the output does not depend on it)")

    p = sub.add_parser("video", help="a display-case video with its slot map and ground truth")
    p.add_argument("out", type=Path, help="video path (.mp4); OUT.slots.yaml and OUT.truth.jsonl go beside it")
    p.add_argument("--slots", type=parse_grid, default=(3, 4), help="slot grid ROWSxCOLS (default 3x4)")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--size", type=parse_frame_size, default=(1280, 720), help="frame WIDTHxHEIGHT")
    p.add_argument("--seed", type=int, default=0, help="the case (and, without --stock-seed, what is in it)")
    p.add_argument("--stock-seed", type=int, help="other items in the same case (training footage of one's own case)")
    p.add_argument("--classes", type=parse_classes, default=DEFAULT_CLASSES, help=f"default {default_classes}")

    p = sub.add_parser("day", help="a store day on video (hands, sales, thefts, swaps...) with its truth")
    p.add_argument("out", type=Path, help="video path (.mp4); OUT.slots.yaml and OUT.events.jsonl go beside it")
    p.add_argument("--minutes", type=float, default=60.0, help="length; event counts scale with it (default 60)")
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("--slots", type=parse_grid, default=(3, 4), help="slot grid ROWSxCOLS (default 3x4)")
    p.add_argument("--size", type=parse_frame_size, default=(960, 540), help="frame WIDTHxHEIGHT (default 960x540)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--photos", type=Path, default=None,
                   help="stock the case with product photos DIR/<class>/*.jpg (read in place) instead of drawings")
    p.add_argument("--grace-s", type=float, default=30.0,
                   help="seconds a piece may be away before it is missing (lift-and-returns stay shorter)")

    p = sub.add_parser("preview", help="a contact sheet (PNG) of a dataset, one row per class")
    p.add_argument("dataset", type=Path)
    p.add_argument("out", type=Path, help="PNG path")
    p.add_argument("--per-class", type=int, default=8)

    p = sub.add_parser("frame", help="one frame of a video with the slot rectangles drawn (PNG)")
    p.add_argument("video", type=Path)
    p.add_argument("out", type=Path, help="PNG path")
    p.add_argument("--slots", type=Path, default=None, help="slot map (default: VIDEO's .slots.yaml)")
    p.add_argument("--index", type=int, default=0, help="frame index")
    return parser


def _run(argv: Sequence[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "images":
        out = synth.make_images(args.out, classes=args.classes, per_class=args.per_class, size=args.size,
                                val_fraction=args.val_fraction, seed=args.seed, workers=args.workers)
        print(out)
    elif args.command == "video":
        paths = synth.make_video(args.out, slots=args.slots, seconds=args.seconds, fps=args.fps, size=args.size,
                                 seed=args.seed, classes=args.classes, stock_seed=args.stock_seed)
        for key in ("video", "slots", "truth"):
            print(paths[key])
    elif args.command == "day":
        paths = make_day(args.out, minutes=args.minutes, fps=args.fps, slots=args.slots, size=args.size,
                         seed=args.seed, photos=args.photos, grace_s=args.grace_s)
        for key in ("video", "slots", "events"):
            print(paths[key])
    elif args.command == "preview":
        print(synth.contact_sheet(args.dataset, args.out, per_class=args.per_class))
    else:
        slots = args.slots
        if slots is None:
            slots = args.video.with_suffix(".slots.yaml")
        print(synth.preview_frame(args.video, slots, args.out, frame_index=args.index))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gemsight-synth`` and ``python -m trainer synth``; returns the exit code."""
    return run_main(lambda: _run(argv), PROG)


if __name__ == "__main__":
    sys.exit(main())
