"""One backoff for every retry (a camera reopened, a snapshot asked again, a webhook sent again)."""
import json
import math

import pytest

from edge.backoff import Backoff
from edge.capture.sources import GrabEnd, SourceState
from edge.contracts import StrEnum


def test_waits_double_up_to_the_cap_and_start_over_after_a_success():
    b = Backoff(0.5, 3.0)
    assert [b.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert b.failures == 5 and b.delay == 3.0
    b.reset()
    assert (b.failures, b.delay, b.failed()) == (0, 0.5, 0.5)


def test_no_cap_and_another_factor():
    b = Backoff(2.0, factor=3.0)
    assert [b.failed() for _ in range(4)] == [2.0, 6.0, 18.0, 54.0] and b.max_s == math.inf


@pytest.mark.parametrize(("args", "message"), [
    ((0.0,), "backoff: the first wait must be positive, got 0.0"),
    ((-1.0, 5.0), "backoff: the first wait must be positive, got -1.0"),
    ((float("nan"),), "backoff: the first wait must be positive, got nan"),
    ((2.0, 1.0), "backoff: the longest wait (1.0) must be at least the first (2.0)"),
    ((1.0, 5.0, 0.5), "backoff: the factor must be at least 1, got 0.5"),
])
def test_bad_settings_are_refused_in_one_line(args, message):
    with pytest.raises(ValueError) as info:
        Backoff(*args)
    assert str(info.value) == message


def test_a_state_is_its_value():
    """A str enum compares, hashes, formats and serialises as its value (what messages and logs carry)."""
    assert SourceState.DOWN == "down" and {"down": 1}[SourceState.DOWN] == 1
    assert f"{GrabEnd.READ_FAILED}; reopening" == "read failed; reopening"
    assert "%s" % SourceState.UP == "up" and f"{SourceState.EOS:>4}" == " eos"
    assert json.dumps({"state": SourceState.STARTING}) == '{"state": "starting"}'
    assert SourceState("up") is SourceState.UP and issubclass(SourceState, StrEnum)
