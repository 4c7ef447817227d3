"""``gemsight-edge``: run the camera loop, check a device, or listen to what it publishes.

    gemsight-edge run --config edge.yaml [--annotate OUT.mp4] [--max-frames N] [--insecure]
    gemsight-edge check --config edge.yaml [--insecure]
    gemsight-edge listen ENDPOINT --curve-server-key FILE --curve-client-key FILE [--camera ID] [--json]
    gemsight-edge enrol ENDPOINT --camera ID [--slot NAME ...] --curve-server-key FILE --curve-client-key FILE
    gemsight-edge collect ENDPOINT --camera ID [--hours N | --off | --status] [--label SLOT=CLASS ...] --curve-...
    gemsight-edge keys client|server|allow|revoke|list ...
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from importlib import resources

from edge.cli_support import run_main, setup_logging
from edge.errors import ConfigError, DataError

logger = logging.getLogger(__name__)
PROG = "gemsight-edge"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The command-line parser (other tools may reuse it)."""
    parser = argparse.ArgumentParser(prog=PROG, add_help=add_help,
                                     description="On-device jewelry recognition: camera loop, checks, listener.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the camera loop")
    run.add_argument("--config", required=True, help="device config YAML")
    run.add_argument("--annotate", metavar="OUT.mp4", help="also write frames with slot boxes, labels and counts")
    run.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames (all cameras together)")
    run.add_argument("--insecure", action="store_true",
                     help="accept `publish.curve: null` (plaintext) on an endpoint that is not loopback")

    check = sub.add_parser("check", help="validate config, model and cameras, then exit")
    check.add_argument("--config", required=True, help="device config YAML")
    check.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each camera's first frame")
    check.add_argument("--insecure", action="store_true",
                       help="accept `publish.curve: null` (plaintext) on an endpoint that is not loopback")

    sub.add_parser("example-config", help="print an example edge.yaml")

    listen = sub.add_parser("listen", help="show what a device publishes (live table or JSON lines)")
    from edge.link.listen import add_arguments  # noqa: PLC0415 - keeps zmq out of `--help` for run/check

    add_arguments(listen)

    enrol = sub.add_parser("enrol", help="record each slot's piece as its reference (a running device, over "
                                         "its snapshot endpoint)")
    enrol.add_argument("endpoint", help="the device's snapshot endpoint, e.g. tcp://case-01.local:5556")
    enrol.add_argument("--camera", required=True, help="camera id")
    enrol.add_argument("--slot", action="append", metavar="NAME", help="a slot to enrol (repeat; default every slot)")
    enrol.add_argument("--piece", action="append", metavar="NAME", default=[],
                       help="a slot that holds a piece: enrolled even where the model reads it empty (repeat)")
    enrol.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the device's answer")
    from edge.link.client import add_arguments as add_link_arguments  # noqa: PLC0415

    add_link_arguments(enrol)

    collect = sub.add_parser("collect", help="keep crops of the enrolled slots as training photos (a running "
                                             "device, over its snapshot endpoint; docs/slot-states.md)")
    collect.add_argument("endpoint", help="the device's snapshot endpoint, e.g. tcp://case-01.local:5556")
    collect.add_argument("--camera", required=True, help="camera id")
    what = collect.add_mutually_exclusive_group()
    what.add_argument("--hours", type=float, help="collect for this many hours (default: until --off)")
    what.add_argument("--off", action="store_true", help="stop collecting")
    what.add_argument("--status", action="store_true", help="only say whether it collects, and what")
    collect.add_argument("--label", action="append", default=[], metavar="SLOT=CLASS",
                         help="the class the store confirms for a slot (repeat; default: the enrolment's label)")
    collect.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the device's answer")
    add_link_arguments(collect)

    keys = sub.add_parser("keys", help="CURVE key pairs and the device's allow-list of clients")
    from edge.link.keys import add_arguments as add_keys_arguments  # noqa: PLC0415

    add_keys_arguments(keys)
    return parser


def example_config() -> str:
    """The packaged example ``edge.yaml``."""
    return (resources.files("edge") / "defaults" / "edge.yaml").read_text(encoding="utf-8")


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _already_stopping(signum: int, _frame: object) -> None:
    logger.info("signal %s: already stopping", signal.Signals(signum).name)


def _run_loop(args: argparse.Namespace, config: object) -> object:
    """Run the loop; in a process of its own, a second SIGTERM/SIGINT during shutdown is not fatal.

    The loop handles the first signal and, when it returns, puts back the handlers it found: these,
    not the default ones that would kill the process with -15 after "stopped" was printed. Once it
    has returned, the process only prints and exits, and the signals are ignored (a Python handler
    would be reset to the default during the interpreter's exit). Called from Python (``main([...])``),
    the caller's handlers are put back instead.
    """
    from edge.loop.run import run as loop_run  # noqa: PLC0415

    previous = {sig: signal.signal(sig, _already_stopping) for sig in _STOP_SIGNALS}
    try:
        # A device keeps no latency samples in memory (they are for benchmarks): its RSS stays flat.
        return loop_run(config, max_frames=args.max_frames, annotate=args.annotate, insecure=args.insecure,
                        samples=0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if args.own_process else handler)


def _body(args: argparse.Namespace) -> int:
    from edge.config.device import load_config  # noqa: PLC0415

    if args.command == "example-config":
        print(example_config(), end="")
        return 0
    if args.command == "listen":
        from edge.link.listen import run as listen_run  # noqa: PLC0415

        return int(listen_run(args) or 0)
    if args.command == "keys":
        from edge.link.keys import run as keys_run  # noqa: PLC0415

        return keys_run(args)
    if args.command == "enrol":
        return _enrol(args)
    if args.command == "collect":
        return _collect(args)
    config = load_config(args.config)
    if args.command == "check":
        from edge.cli.check import check_device  # noqa: PLC0415
        from edge.link.policy import check_link  # noqa: PLC0415

        link = check_link(config.publish, insecure=args.insecure)
        lines = [*check_device(config, args.config, args.timeout), link]
        for line in lines[:-1]:
            logger.info("%s", line)
        print(f"ok: {args.config}: " + "; ".join(lines))
        return 0
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {args.max_frames}")
    result = _run_loop(args, config)
    summary = ", ".join(f"{cam}: {n} frames" for cam, n in result.frames.items())
    print(f"stopped ({result.stopped_by}) after {result.elapsed_s:.1f}s: {summary}; {result.messages} messages"
          + (f"; annotated {', '.join(map(str, result.annotated))}" if result.annotated else ""))
    return 0


def _enrol(args: argparse.Namespace) -> int:
    """Ask a running device to enrol slots; 0 when every slot was enrolled, 2 when one was refused."""
    from edge.link.client import keys_from_args  # noqa: PLC0415
    from edge.loop.device_requests import ask  # noqa: PLC0415

    reply = ask(args.endpoint, keys_from_args(args), {"kind": "enrol", "camera": args.camera, "slots": args.slot,
                                                    "pieces": args.piece},
                timeout_s=args.timeout, plaintext=args.plaintext)
    if "error" in reply:
        raise DataError(f"{args.endpoint}: {reply['error']}")
    for slot in reply.get("enrolled", []):
        unseen = " (on your word: the model reads it empty)" if slot in reply.get("unseen", []) else ""
        print(f"enrolled {args.camera}/{slot}: reads {reply.get('labels', {}).get(slot, '?')}{unseen}")
    for slot, why in reply.get("refused", {}).items():
        print(f"refused  {args.camera}/{slot}: {why}")
    return 2 if reply.get("refused") else 0


def _collect(args: argparse.Namespace) -> int:
    """Turn a running device's collection on or off (or ask its status); prints what it collects."""
    from edge.link.client import keys_from_args  # noqa: PLC0415
    from edge.loop.device_requests import ask  # noqa: PLC0415

    labels = {}
    for item in args.label:
        slot, sep, label = item.partition("=")
        if not sep or not slot or not label:
            raise ConfigError(f"--label {item!r}: expected SLOT=CLASS, e.g. r0c1=ring")
        labels[slot] = label
    if args.hours is not None and args.hours <= 0:
        raise ConfigError(f"--hours must be more than 0, got {args.hours:g}")
    request: dict = {"kind": "collect", "camera": args.camera}
    if not args.status:
        request |= {"on": not args.off, "hours": args.hours, "labels": labels or None}
    reply = ask(args.endpoint, keys_from_args(args), request, timeout_s=args.timeout, plaintext=args.plaintext)
    if "error" in reply:
        raise DataError(f"{args.endpoint}: {reply['error']}")
    until = reply.get("until")
    state = ("on" + (f" until {time.strftime('%Y-%m-%d %H:%M', time.localtime(until))}" if until else "")
             if reply.get("on") else "off")
    print(f"collection {state} on {args.camera} into {reply.get('dir')}"
          + (f"; STOPPED: {reply['stopped']}" if reply.get("stopped") else ""))
    for slot, label in (reply.get("classes") or {}).items():
        print(f"  {args.camera}/{slot}: {label}, {(reply.get('today') or {}).get(slot, 0)} crop(s) today")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gemsight-edge``."""
    args = get_args_parser().parse_args(argv)
    args.own_process = argv is None  # the command line's arguments: this process is gemsight-edge itself
    setup_logging(args.verbose)
    return run_main(lambda: _body(args), PROG)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
