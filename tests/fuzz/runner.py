"""Run one fuzz target for a number of examples: deterministic in CI, seeded for longer bench runs."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

from tests.fuzz.targets import TARGETS


def run_target(name: str, examples: int, workdir: Path, rng_seed: int | None = None,
               raise_failure: bool = True) -> dict:
    """Feed ``examples`` generated inputs (plus Hypothesis's shrinking, if one fails) to target ``name``.

    Args:
        name: a key of :data:`~tests.fuzz.targets.TARGETS`.
        examples: Hypothesis ``max_examples``.
        workdir: an empty directory the target may write to.
        rng_seed: ``None``: derandomized (the same inputs every run, for CI); else this seed.
        raise_failure: re-raise a falsified property (pytest) instead of reporting it (the bench).

    Returns:
        ``{"cases": inputs run, "outcomes": {outcome: count}, "failures": distinct failures found,
        "failure": the first line of each, or None}``.
    """
    count = failures = 0
    outcomes: Counter[str] = Counter()
    failure = None
    with TARGETS[name].open(workdir) as (strategy, check):
        def body(value) -> None:
            nonlocal count
            count += 1
            outcomes[check(value)] += 1

        # The bench reports a failure as found: shrinking a config can take minutes (CI shrinks, for people).
        phases = [p for p in Phase if raise_failure or p is not Phase.shrink]
        test = settings(max_examples=examples, derandomize=rng_seed is None, database=None, deadline=None,
                        suppress_health_check=list(HealthCheck), print_blob=False, phases=phases)(given(strategy)(body))
        if rng_seed is not None:
            test = seed(rng_seed)(test)
        try:
            test()
        except Exception as exc:  # noqa: BLE001 - a falsified property, reported by the bench
            if raise_failure:
                raise
            found = list(getattr(exc, "exceptions", [exc]))  # Hypothesis groups distinct failures
            failures = len(found)
            failure = " | ".join(f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"[:400] for e in found)
    return {"cases": count, "outcomes": dict(sorted(outcomes.items())), "failures": failures, "failure": failure}
