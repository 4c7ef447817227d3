"""The parts of ``bench/loop.py`` that run in a second."""
from bench.loop import message_cost


def test_message_cost_reports_positive_figures():
    cost = message_cost(n=20)
    assert cost["bytes"] > 1000 and cost["build_us"] > 0 and cost["encode_us"] > 0
    assert cost["encode_and_send_us"] > 0 and cost["sent"] == 20
