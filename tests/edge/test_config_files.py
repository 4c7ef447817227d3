"""Config, slots and manifest files a clumsy user could write: each gives one clear error naming the
file, never a traceback (issue 13, item 5); ``check`` binds the publish endpoints as ``run`` would."""
from __future__ import annotations

import time

import pytest
import zmq

from edge.cli.check import check_device, check_endpoints
from edge.config.device import load_config, load_slots_file, parse_config
from edge.config.yaml_files import MAX_YAML_BYTES, MAX_YAML_DEPTH
from edge.errors import ConfigError, ManifestError
from edge.manifest import MAX_MANIFEST_BYTES, Manifest
from tests.helpers import device_config, loopback_publish, write_yaml

SLOTS = [{"name": "r0c0", "rect": [0.0, 0.0, 0.5, 0.5]}, {"name": "r0c1", "rect": [0.5, 0.0, 1.0, 0.5]}]


def _config(**camera) -> dict:
    cam = {"id": "cam0", "source": "file:///data/case.mp4", "slots": SLOTS, **camera}
    return device_config("model.onnx", [cam], publish=loopback_publish())


def _refused(call, *needles: str) -> str:
    with pytest.raises(ConfigError) as info:
        call()
    text = str(info.value)
    for needle in needles:
        assert needle in text, text
    return text


def test_non_utf8_config_and_slots_file(tmp_path):
    cfg = write_yaml(tmp_path / "edge.yaml", b"device: caf\xe9-01\n")
    _refused(lambda: load_config(cfg), f"{cfg}: config file is not UTF-8 text (byte 0xe9 at offset 11)")
    slots = write_yaml(tmp_path / "case.slots.yaml", b"slots:\n  - {name: \xff, rect: [0, 0, 1, 1]}\n")
    _refused(lambda: load_slots_file(slots), f"{slots}: slots file is not UTF-8")
    edge = write_yaml(tmp_path / "edge.yaml", _config(slots=None, slots_file="case.slots.yaml"))
    _refused(lambda: load_config(edge), "cameras.0.slots_file:", f"{slots}: slots file is not UTF-8")


def test_deep_nesting_is_refused_with_its_line(tmp_path):
    cfg = write_yaml(tmp_path / "edge.yaml", b"device: case-01\nmodel: " + b"[" * 5000 + b"]" * 5000 + b"\n")
    _refused(lambda: load_config(cfg), f"{cfg}: line 2: config file nests deeper than {MAX_YAML_DEPTH} levels")
    ok = _config()
    ok["model"]["notes"] = [[[["fine"]]]]  # a few levels are fine (the field is then unknown, and named)
    _refused(lambda: load_config(write_yaml(tmp_path / "edge.yaml", ok)), "model.notes: unknown field")


def test_oversized_file_is_refused_before_it_is_parsed(tmp_path):
    big = write_yaml(tmp_path / "edge.yaml", b"device: case-01\n" + b"# padding\n" * (MAX_YAML_BYTES // 10 + 1))
    _refused(lambda: load_config(big), f"{big}: config file is", "more than the 1,048,576 allowed")


def test_alias_bomb_and_huge_numbers_are_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    bomb = write_yaml(tmp_path / "edge.yaml", ("\n".join(lines) + "\n").encode())
    _refused(lambda: load_config(bomb), "expands to", "more than the 1,000,000 allowed")
    huge = write_yaml(tmp_path / "edge.yaml", b"device: case-01\nmetrics: {port: " + b"9" * 5000 + b"}\n")
    _refused(lambda: load_config(huge), f"{huge}: a value cannot be read")


def test_empty_slot_list_is_refused_and_says_how_to_get_the_whole_frame(tmp_path):
    text = _refused(lambda: parse_config(_config(slots=[]), "edge.yaml"),
                    "edge.yaml: cameras.0.slots: `slots` lists no slot")
    assert "leave `slots` out" in text and "rect: [0, 0, 1, 1]" in text
    empty = write_yaml(tmp_path / "case.slots.yaml", {"slots": []})
    _refused(lambda: load_slots_file(empty), "lists no slot")
    (whole,) = parse_config(_config(slots=None)).cameras[0].slot_list()  # left out: the whole frame
    assert whole.rect == (0.0, 0.0, 1.0, 1.0)


def test_overlapping_slots_are_refused_naming_both(tmp_path):
    over = [SLOTS[0], {"name": "r0c1", "rect": [0.4, 0.0, 1.0, 0.5]}]
    text = _refused(lambda: parse_config(_config(slots=over), "edge.yaml"),
                    "edge.yaml: cameras.0.slots: slots overlap: 'r0c0' and 'r0c1' (5% of the frame)")
    assert text.splitlines()[0].endswith("slots may touch but not share area (a piece there would count twice)")
    tri = [{"name": "left", "polygon": [[0, 0], [0.6, 0], [0.4, 1], [0, 1]]},
           {"name": "right", "polygon": [[0.5, 0], [1, 0], [1, 1], [0.4, 1]]}]
    _refused(lambda: parse_config(_config(slots=tri)), "'left' and 'right'")
    fragment = write_yaml(tmp_path / "case.slots.yaml", {"slots": over})
    _refused(lambda: load_slots_file(fragment), f"{fragment}: slots: slots overlap: 'r0c0' and 'r0c1'")
    # Touching is fine: a grid, and slanted quadrilaterals sharing an edge (their boxes overlap).
    parse_config(_config())
    tri[1]["polygon"][0] = [0.6, 0]
    parse_config(_config(slots=tri))


def test_manifest_unreadable_non_utf8_deep_or_oversized(tmp_path):
    folder = tmp_path / "manifest.json"
    folder.mkdir()  # a directory where the file should be: unreadable even for root
    with pytest.raises(ManifestError, match=f"{folder}: cannot read the manifest"):
        Manifest.load(folder)
    cases = {b'{"arch": "r\xe9snet"}': "not UTF-8 text (byte 0xe9 at offset 11)",
             b"[" * 5000: "nested too deeply",
             b'{"arch": "x", "classes": ["a", "b"], "metrics": {"acc": NaN}}': "NaN is not a JSON number",
             b'{"arch": ' + b"1" * 5000 + b"}": "not valid JSON",
             b" " * (MAX_MANIFEST_BYTES + 1): "larger than"}
    for i, (data, needle) in enumerate(cases.items()):
        path = tmp_path / f"m{i}.json"
        path.write_bytes(data)
        with pytest.raises(ManifestError) as info:
            Manifest.load(path)
        assert str(info.value).startswith(str(path)) and needle in str(info.value) and "\n" not in str(info.value)


def test_check_binds_the_publish_endpoints_and_releases_them():
    busy = zmq.Context.instance().socket(zmq.PUB)
    busy.setsockopt(zmq.LINGER, 0)
    busy.bind("tcp://127.0.0.1:*")
    taken = busy.getsockopt(zmq.LAST_ENDPOINT).decode()
    try:
        data = _config()
        data["publish"]["endpoint"] = taken
        cfg = parse_config(data, "edge.yaml")
        # check_device binds first: the error is the endpoint, not the missing model.
        _refused(lambda: check_device(cfg, "edge.yaml"), f"edge.yaml: publish.endpoint: cannot bind '{taken}'",
                 "already running")
        data["publish"]["endpoint"] = "tcp://192.0.2.1:5555"  # TEST-NET-1: not an address of this host
        _refused(lambda: check_endpoints(parse_config(data), "edge.yaml"), "publish.endpoint: cannot bind")
    finally:
        busy.close(linger=0)
    data["publish"]["endpoint"] = taken
    data["publish"]["snapshot_endpoint"] = "tcp://127.0.0.1:*"
    deadline = time.monotonic() + 2  # the port was just closed: ZeroMQ releases it in its I/O thread
    while True:
        try:
            line = check_endpoints(parse_config(data), "edge.yaml")
            break
        except ConfigError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert line.startswith(f"publish: can bind {taken} and tcp://127.0.0.1:*")
    again = zmq.Context.instance().socket(zmq.PUB)  # check released it again
    try:
        deadline = time.monotonic() + 2
        while True:
            try:
                again.bind(taken)
                break
            except zmq.ZMQError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        again.close(linger=0)
