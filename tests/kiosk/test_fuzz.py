"""Bounded, derandomized fuzzing of what the kiosk reads from outside: its config and the feed's messages.
Either accepted or refused with the project's own one-line error; never anything else."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.errors import ConfigError, MessageError
from kiosk.config import parse_config
from kiosk.validate import parse
from tests.helpers import labels_message as labels

from .feeds import config_dict, heartbeat

SETTINGS = settings(max_examples=150, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=12)


@SETTINGS
@given(path=st.lists(st.sampled_from(["store", "devices", 0, "cameras", "cam0", "slots", "r0c0", "policies",
                                      "hours", "web", "curve", "id", "labels", "open", "port"]), min_size=1,
                     max_size=5), value=values)
def test_config_accepted_or_one_line_per_problem(tmp_path, path, value):
    data = config_dict(tmp_path)
    node = data
    for key in path[:-1]:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            break
    if isinstance(node, dict):
        node[path[-1]] = value
    try:
        parse_config(data, "kiosk.yaml", tmp_path)
    except ConfigError as exc:
        assert all(line.startswith("kiosk.yaml: ") for line in str(exc).splitlines()), str(exc)


GOOD = [(b"gemsight/case-01/cam0/labels", json.dumps(labels({"r0c0": "ring"})).encode()),
        (b"gemsight/case-01/_/heartbeat", json.dumps(heartbeat({"cam0": 3})).encode())]


@SETTINGS
@given(which=st.sampled_from([0, 1]), key=st.text(max_size=10), value=values,
       noise=st.binary(max_size=40), mode=st.sampled_from(["set", "bytes", "topic"]))
def test_feed_messages_accepted_or_refused_in_one_line(which, key, value, noise, mode):
    topic, payload = GOOD[which]
    if mode == "bytes":
        payload = payload[: len(noise)] + noise
    elif mode == "topic":
        topic = noise
    else:
        msg = json.loads(payload)
        msg[key if key else "seq"] = value
        payload = json.dumps(msg, default=str).encode()
    try:
        device, camera, kind, msg = parse(topic, payload)
    except MessageError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000
        return
    assert kind in ("labels", "heartbeat") and isinstance(msg, dict) and device == "case-01"
