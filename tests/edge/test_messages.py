"""Messages: builders produce what the JSON Schema files accept; broken messages are rejected by name."""
from __future__ import annotations

import copy
import json
import time

import numpy as np
import pytest

from edge.contracts import DEFAULT_CLASSES
from edge.errors import MessageError
from edge.link import messages
from edge.loop.postprocess import Postprocessor

MODEL = {"name": "gemsight-resnet18", "version": "1.0.0", "precision": "int8", "backend": "onnxruntime"}
LAT = {"capture": 1.25, "preprocess": 2.0, "infer": 12.3456789, "postprocess": 0.1}


def real_labels_message(seq: int | None = 7) -> dict:
    """A labels message built from a real Postprocessor run on random logits for 12 slots."""
    pp = Postprocessor(DEFAULT_CLASSES, [f"r{i // 4}c{i % 4}" for i in range(12)])
    rng = np.random.default_rng(0)
    for _ in range(3):
        result = pp.update(rng.normal(0, 3, (12, len(DEFAULT_CLASSES))).astype(np.float32))
    return messages.labels_message(device="case-01", camera="cam0", seq=seq, capture_ts=time.time(),
                                   publish_ts=time.time(), model={**MODEL, "path": "/x/model.onnx"},
                                   result=result, latencies_ms=LAT, frame_index=42)


@pytest.mark.parametrize("kind", messages.KINDS)
def test_schema_files_are_valid_and_their_examples_pass(kind):
    import jsonschema

    schema = messages.load_schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["examples"], "the README shows the example"
    for example in schema["examples"]:
        messages.validate(example, kind)
        messages.validate(example, None)


def test_real_labels_message_validates_and_round_trips():
    msg = real_labels_message()
    messages.validate(msg)
    assert msg["model"] == MODEL  # extra model keys (the path) are not published
    assert msg["latencies_ms"]["infer"] == 12.346
    assert len(msg["slots"]) == 12 and len(msg["slots"][0]["topk"]) == 3
    assert sum(msg["counts"].values()) == 12
    wire = messages.encode(msg)
    assert b" " not in wire.split(b'"detail"')[0]  # compact: no spaces from separators or indent
    assert messages.decode(wire) == msg


def test_status_and_heartbeat_validate():
    st = messages.status_message(device="case-01", camera="cam0", state="down", detail="no frame for 2 s", ts=1.0)
    messages.validate(st, "status")
    hb = messages.heartbeat_message(device="case-01", ts=2.0, uptime_s=3.0,
                                    cameras={"cam0": {"seq": 5, "state": "up", "fps": 9.5, "dropped": 0}})
    messages.validate(hb, "heartbeat")


@pytest.mark.parametrize("breakage, where", [
    (lambda m: m.pop("seq"), r"\(message\): 'seq' is a required property"),
    (lambda m: m.pop("counts"), r"\(message\): 'counts' is a required property"),
    (lambda m: m.__setitem__("seq", "7"), "seq"),
    (lambda m: m.__setitem__("seq", -1), "seq"),
    (lambda m: m.__setitem__("capture_ts", None), "capture_ts"),
    (lambda m: m["slots"][0].__setitem__("score", 1.5), "slots/0/score"),
    (lambda m: m["slots"][3].__setitem__("stable", "yes"), "slots/3/stable"),
    (lambda m: m["slots"][1]["topk"][0].pop("label"), "slots/1/topk/0: 'label' is a required"),
    (lambda m: m["counts"].__setitem__("ring", 1.5), "counts/ring"),
    (lambda m: m["model"].pop("backend"), "model: 'backend' is a required"),
    (lambda m: m["latencies_ms"].pop("infer"), "latencies_ms: 'infer' is a required"),
    (lambda m: m.__setitem__("camera", "cam/0"), "camera"),
    (lambda m: m.__setitem__("extra", 1), r"\(message\): Additional properties .*'extra'"),
    (lambda m: m.__setitem__("schema_version", 3), "schema_version"),
    (lambda m: m["slots"][0].__setitem__("state", "gone"), "slots/0/state"),
    (lambda m: m["slots"][2].__setitem__("similarity", 1.5), "slots/2/similarity"),
    (lambda m: m["slots"][1].pop("state"), "slots/1: 'state' is a required"),
    (lambda m: m.pop("enrolment"), r"\(message\): 'enrolment' is a required"),
    (lambda m: m.__setitem__("enrolment", {"id": "x y", "ts": 1.0, "model": "m@1"}), "enrolment/id"),
])
def test_broken_labels_message_is_rejected_naming_the_field(breakage, where):
    msg = copy.deepcopy(real_labels_message())
    breakage(msg)
    with pytest.raises(MessageError, match=f"at {where}"):
        messages.validate(msg)


def test_unpublished_message_lacks_seq():
    with pytest.raises(MessageError, match="at seq"):
        messages.validate(real_labels_message(seq=None))


def test_validate_needs_a_known_kind():
    with pytest.raises(MessageError, match="no valid 'kind'"):
        messages.validate({"kind": "weather"}, None)
    with pytest.raises(MessageError, match="kind 'weather'"):
        messages.validate({}, "weather")


def test_builders_refuse_bad_input():
    with pytest.raises(MessageError, match="state 'sleeping'"):
        messages.status_message(device="d", camera="c", state="sleeping", detail="", ts=0.0)
    with pytest.raises(MessageError, match="camera 'a b'"):
        messages.status_message(device="d", camera="a b", state="up", detail="", ts=0.0)
    with pytest.raises(MessageError, match=r"model is missing \['backend'\]"):
        messages.labels_message(device="d", camera="c", capture_ts=0.0, model={"name": "m", "version": "1",
                                "precision": "int8"}, result=None, latencies_ms=LAT)
    with pytest.raises(MessageError, match=r"latencies_ms is missing \['capture'\]"):
        messages.labels_message(device="d", camera="c", capture_ts=0.0, model=MODEL, result=None,
                                latencies_ms={"preprocess": 1, "infer": 1, "postprocess": 1})
    with pytest.raises(MessageError, match=r"cameras\['c'\] must be a mapping"):
        messages.heartbeat_message(device="d", ts=0.0, uptime_s=0.0, cameras={"c": 3})


def test_topics():
    assert messages.topic("case-01", "cam0", "labels") == "gemsight/case-01/cam0/labels"
    assert messages.topic("case-01", None, "heartbeat") == "gemsight/case-01/_/heartbeat"
    assert messages.parse_topic(b"gemsight/case-01/cam0/status") == ("case-01", "cam0", "status")
    assert messages.parse_topic("gemsight/case-01/_/heartbeat") == ("case-01", None, "heartbeat")
    with pytest.raises(MessageError, match="device 'a/b'"):
        messages.topic("a/b", "cam0", "labels")
    with pytest.raises(MessageError, match="kind 'video'"):
        messages.topic("d", "c", "video")
    with pytest.raises(MessageError, match="is not gemsight/"):
        messages.parse_topic(b"other/d/c/labels")


def test_encode_handles_numpy_and_refuses_nan_and_objects():
    assert json.loads(messages.encode({"a": np.float32(0.5), "b": np.int64(3), "c": np.arange(2)})) == \
        {"a": 0.5, "b": 3, "c": [0, 1]}
    with pytest.raises(MessageError, match="cannot encode"):
        messages.encode({"score": float("nan")})
    with pytest.raises(MessageError, match="set is not JSON serialisable"):
        messages.encode({"x": {1, 2}})


@pytest.mark.parametrize("payload, match", [
    (b"\x80\x04\x95pickle", "not valid JSON"),
    (b"{\"a\":", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
])
def test_decode_refuses_what_is_not_a_json_object(payload, match):
    with pytest.raises(MessageError, match=match):
        messages.decode(payload)
