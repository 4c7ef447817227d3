"""Nothing in a config is accepted silently: duplicate YAML keys, and bools or strings where numbers belong."""
from __future__ import annotations

import argparse

import pytest
import yaml

from edge.cli.main import main
from edge.config.device import load_config, load_slots_file, parse_config
from edge.errors import ConfigError
from tests.helpers import device_config, write_yaml

BASE = device_config()

DUPLICATE_CURVE = """\
device: case-01
model: {path: m.onnx}
cameras: [{id: cam0, source: "file:///v.mp4"}]
publish:
  curve: {server_secret_key: server.key_secret, allowed_clients: clients}
  curve: null
"""


def test_b5_check_refuses_a_duplicate_key_in_one_line(tmp_path, capsys):
    path = tmp_path / "edge.yaml"
    path.write_text(DUPLICATE_CURVE)
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{path}: line 6: " in err and "key 'curve' is written twice (first on line 5)" in err


def test_b5_duplicate_keys_are_refused_in_every_yaml_gemsight_reads(tmp_path):
    slots = tmp_path / "case.slots.yaml"
    slots.write_text("slots:\n  - {name: a, rect: [0, 0, 0.5, 0.5], name: b}\n")
    with pytest.raises(ConfigError, match="key 'name' is written twice"):
        load_slots_file(slots)

    from kiosk.config import load_config as load_kiosk_config

    kiosk = tmp_path / "kiosk.yaml"
    kiosk.write_text("store: s1\nstore: s2\n")
    with pytest.raises(ConfigError, match=f"{kiosk}: line 2: .*key 'store' is written twice"):
        load_kiosk_config(kiosk)

    from trainer.args import load_config as load_trainer_config

    args = tmp_path / "args.yaml"
    args.write_text("epochs: 2\nepochs: 90\n")
    with pytest.raises(ConfigError, match="key 'epochs' is written twice"):
        load_trainer_config(args, argparse.ArgumentParser())


def test_b5_merge_keys_may_still_be_overridden(tmp_path):
    path = tmp_path / "edge.yaml"
    text = ("cameras:\n  - id: cam0\n    source: file:///v.mp4\n    reconnect:\n"
            "      <<: {initial_s: 1.0, max_s: 10.0}\n      max_s: 20.0\n")
    rest = {k: v for k, v in BASE.items() if k != "cameras"}
    write_yaml(path, yaml.safe_dump(rest) + text)
    assert load_config(path).cameras[0].reconnect.max_s == 20.0


@pytest.mark.parametrize("section, field, value", [
    ("publish", "hwm", True), ("publish", "hwm", "1000"), ("publish", "heartbeat_s", "1"),
    ("postprocess", "window", "yes"), ("postprocess", "window", True), ("postprocess", "min_score", True),
    ("postprocess", "min_score", "0.5"), ("postprocess", "top_k", 3.0), ("metrics", "port", "9108"),
    ("states", "still_s", "1.2"), ("states", "enrol_frames", True), ("states", "identity_cos", True),
])
def test_b5_bools_and_strings_are_not_numbers(section, field, value):
    data = dict(BASE)
    data[section] = {**data.get(section, {}), field: value}
    with pytest.raises(ConfigError, match=f"{section}.{field}: Input should be a valid (integer|number)"):
        parse_config(data, "edge.yaml")


@pytest.mark.parametrize("field, value", [("enabled", 1), ("auto_enrol", "yes"), ("identity_recheck", 0)])
def test_b5_states_switches_are_bools_not_numbers_or_strings(field, value):
    with pytest.raises(ConfigError, match=f"states.{field}: Input should be a valid boolean"):
        parse_config(dict(BASE, states={field: value}), "edge.yaml")
    assert parse_config(dict(BASE, states={"state_dir": "/var/lib/x"}), "edge.yaml").states.state_dir.name == "x"


def test_b5_yaml_yes_is_refused_where_a_number_belongs(tmp_path):
    path = tmp_path / "edge.yaml"
    write_yaml(path, yaml.safe_dump(BASE) + "postprocess: {window: yes, min_score: true}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert {line.split(": ")[1] for line in str(info.value).splitlines()} == {"postprocess.window",
                                                                             "postprocess.min_score"}


def test_b5_strict_where_it_matters_only():
    cfg = parse_config(dict(BASE, postprocess={"min_score": 1, "window": 3},
                            cameras=[{"id": "cam0", "source": "file:///v.mp4", "fps": 10,
                                      "slots": [{"name": "a", "rect": [0, 0, 1, 1]}]}]), "edge.yaml")
    assert cfg.postprocess.min_score == 1.0 and cfg.cameras[0].fps == 10.0  # an integer is a number
    with pytest.raises(ConfigError, match=r"cameras\.0\.slots\.0\.rect\.0: Input should be a valid number"):
        parse_config(dict(BASE, cameras=[{"id": "cam0", "source": "file:///v.mp4",
                                          "slots": [{"name": "a", "rect": [True, 0, 1, 1]}]}]), "edge.yaml")


@pytest.mark.parametrize("camera", [5, {"id": "cam0", "source": "ftp://x"}, {"id": "cam0", "source": "file:///v",
                                                                              "slots": "x"}])
def test_b6_an_invalid_only_camera_gets_one_line(camera):
    with pytest.raises(ConfigError) as info:
        parse_config(dict(BASE, cameras=[camera]), "edge.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge.yaml: cameras.0") and "at least 1 item" not in lines[0]
    with pytest.raises(ConfigError, match="edge.yaml: cameras: at least one camera is needed"):
        parse_config(dict(BASE, cameras=[]), "edge.yaml")
