"""Fuzzing (Hypothesis) of everything gemsight reads from outside: zero crashes, every refusal the
project's own error with a one-line message. Bounded and deterministic here (``derandomize``, a
fixed number of examples per target); ``bench/fuzz.py --examples N`` runs the same targets longer."""
from __future__ import annotations

import pytest

from tests.fuzz.runner import run_target
from tests.fuzz.targets import TARGETS

#: Examples per target in CI: about 2-3 s each on a 2-core machine.
CI_EXAMPLES = {"config": 150, "slot_map": 150, "manifest": 200, "bundle": 150, "snapshot": 150, "messages": 200,
               "kiosk_http": 120, "listen": 50}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target(name, tmp_path):
    result = run_target(name, CI_EXAMPLES[name], tmp_path)
    assert result["cases"] >= CI_EXAMPLES[name] // 2  # the strategy really generated inputs
