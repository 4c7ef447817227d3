"""Fuzz every input gemsight reads from outside, longer than CI does; print a table, write JSON.

    python bench/fuzz.py --examples 2000                # every target, 2,000 generated inputs each
    python bench/fuzz.py --examples 500 --targets config,bundle --seed 7

The targets and their properties are those of ``tests/fuzz`` (see ``tests/fuzz/targets.py``): the
input is accepted, or refused with the project's own error and a one-line message naming the source.
CI runs them derandomized with a few hundred examples; here each target runs ``--examples`` inputs
from a fixed seed (``--seed``, so a run repeats exactly). "cases" counts every input fed, Hypothesis's
shrinking of a failure included; a failure stops that target and is reported with its first line.
Results go to ``bench/results/fuzz.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzz.runner import run_target  # noqa: E402
from tests.fuzz.targets import TARGETS  # noqa: E402

OUT = ROOT / "bench" / "results" / "fuzz.json"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The command line (other tools may reuse it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=add_help)
    parser.add_argument("--examples", type=int, default=1000, help="generated inputs per target (default 1000)")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of: {', '.join(TARGETS)}")
    parser.add_argument("--seed", type=int, default=0, help="random seed (the same seed repeats a run exactly)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON results (default {OUT.relative_to(ROOT)})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the targets; returns 1 if any failed."""
    args = get_args_parser().parse_args(argv)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown or args.examples < 1:
        sys.stderr.write(f"fuzz: unknown targets {unknown} or --examples < 1 (targets: {', '.join(TARGETS)})\n")
        return 2
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"gemsight-fuzz-{name}-") as tmp:
            t0 = time.monotonic()
            result = run_target(name, args.examples, Path(tmp), rng_seed=args.seed, raise_failure=False)
        rows.append({"target": name, "what": TARGETS[name].what, "seconds": round(time.monotonic() - t0, 1),
                     **result})
        print(f"{name}: {result['cases']} cases, {result['failures']} failures", file=sys.stderr, flush=True)

    print(f"\n{'target':<10} {'cases':>7} {'failures':>8} {'seconds':>8}  outcomes")
    for r in rows:
        outcomes = ", ".join(f"{k} {v}" for k, v in r["outcomes"].items())
        print(f"{r['target']:<10} {r['cases']:>7} {r['failures']:>8} {r['seconds']:>8.1f}  {outcomes}")
        if r["failure"]:
            print(f"{'':<10} FAILURE: {r['failure']}")
    total = sum(r["cases"] for r in rows)
    failures = sum(r["failures"] for r in rows)
    print(f"{'total':<10} {total:>7} {failures:>8} {sum(r['seconds'] for r in rows):>8.1f}")

    import hypothesis  # noqa: PLC0415

    report = {
        "bench": "fuzz",
        "command": "python bench/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "examples_per_target": args.examples, "seed": args.seed,
        "hypothesis": hypothesis.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "total_cases": total, "total_failures": failures, "targets": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    # The code under test logs every refusal: thousands of warnings would drown the table.
    logging.basicConfig(level=logging.CRITICAL)
    sys.exit(main())
