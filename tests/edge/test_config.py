"""Device config: strict validation, errors that name the file and the field, slots files."""
import pytest

from edge.cli.main import example_config
from edge.config.device import load_config, parse_config, WHOLE_FRAME_SLOT
from edge.config.runtime import runtime_options
from edge.errors import ConfigError
from tests.helpers import device_config, write_yaml


def _base(**over):
    over.setdefault("cameras", [{"id": "cam0", "source": "file:///data/case.mp4",
                                 "slots": [{"name": "r0c0", "rect": [0.0, 0.0, 0.5, 0.5]},
                                           {"name": "r0c1", "rect": [0.5, 0.0, 1.0, 0.5]},
                                           {"name": "r1c0", "rect": [0.0, 0.5, 0.5, 1.0]}]}])
    return device_config("model.onnx", **over)


def test_example_config_is_valid(tmp_path):
    cfg = load_config(write_yaml(tmp_path / "edge.yaml", example_config()))
    assert cfg.device == "case-01"
    assert cfg.runtime.name == "auto"
    assert cfg.cameras[0].slots[3].rect == pytest.approx((0.05, 0.55, 0.30, 0.90))  # from its polygon
    assert cfg.metrics.port == 9108


def test_minimal_config_defaults_and_relative_paths(tmp_path):
    data = _base(cameras=[{"id": "cam0", "source": "file://videos/a.mp4?loop=1"}])
    cfg = load_config(write_yaml(tmp_path / "edge.yaml", data))
    assert cfg.model.path == tmp_path / "model.onnx"
    assert cfg.cameras[0].source == f"file://{(tmp_path / 'videos/a.mp4').resolve()}?loop=1"
    # No slots: the whole frame is one slot.
    (slot,) = cfg.cameras[0].slot_list()
    assert slot.name == WHOLE_FRAME_SLOT and slot.rect == (0.0, 0.0, 1.0, 1.0)
    assert cfg.postprocess.window == 5 and cfg.publish.hwm == 1000


@pytest.mark.parametrize("change, where", [
    (lambda c: c["cameras"][0]["slots"][2].update(rect=[0.6, 0.5, 0.5, 1.0]), "cameras.0.slots.2.rect"),
    (lambda c: c["cameras"][0]["slots"][2].update(rect=[0.5, 0.5, 1.2, 1.0]), "cameras.0.slots.2.rect"),
    (lambda c: c["cameras"][0]["slots"][1].update(rect=[0.5, 0.5]), "cameras.0.slots.1.rect"),
    (lambda c: c["cameras"][0].update(sorce="x"), "cameras.0.sorce"),
    (lambda c: c["cameras"][0].update(fps=-1), "cameras.0.fps"),
    (lambda c: c["cameras"][0].update(source="ftp://x/y"), "cameras.0.source"),
    (lambda c: c["cameras"][0].update(source="rtsp://admin:hunter2@10.0.0.5/s"), "cameras.0.source"),
    (lambda c: c.update(runtime={"name": "openvino", "options": {"threads": 0}}), "runtime.options.threads"),
    (lambda c: c.update(runtime={"name": "onnxruntime", "options": {"device": "GPU"}}), "runtime.options.device"),
    (lambda c: c.update(postprocess={"min_score": 1.5}), "postprocess.min_score"),
    (lambda c: c.update(publish={"endpoint": "localhost:5555"}), "publish.endpoint"),
    (lambda c: c.update(metrics={"port": 70000}), "metrics.port"),
    (lambda c: c.update(device="case/01"), "device"),
    (lambda c: c.update(signing_key="abc"), "signing_key"),
    (lambda c: c["model"].update(precision="int4"), "model.precision"),
])
def test_bad_field_is_named_with_the_file(tmp_path, change, where):
    data = _base()
    change(data)
    path = write_yaml(tmp_path / "edge.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: {where}"), str(info.value)


def test_password_never_echoed(tmp_path):
    data = _base()
    data["cameras"][0]["source"] = "rtsp://admin:hunter2@10.0.0.5/s"
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(tmp_path / "edge.yaml", data))
    assert "hunter2" not in str(info.value) and "credentials" in str(info.value)


def test_unknown_runtime_named(tmp_path):
    path = write_yaml(tmp_path / "edge.yaml", _base(runtime={"name": "tensorflow"}))
    with pytest.raises(ConfigError, match=r"edge.yaml: runtime: unknown runtime 'tensorflow'"):
        load_config(path)


def test_repeated_ids(tmp_path):
    data = _base()
    data["cameras"][0]["slots"][1]["name"] = "r0c0"
    with pytest.raises(ConfigError, match=r"cameras\.0: .*slot names repeat: \['r0c0'\]"):
        load_config(write_yaml(tmp_path / "edge.yaml", data))
    data = _base()
    data["cameras"].append(dict(data["cameras"][0]))
    with pytest.raises(ConfigError, match=r"camera ids repeat: \['cam0'\]"):
        load_config(write_yaml(tmp_path / "edge.yaml", data))


def test_yaml_errors_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="edge.yaml: config file not found"):
        load_config(tmp_path / "edge.yaml")
    with pytest.raises(ConfigError, match=r"edge.yaml: line \d+: not valid YAML"):
        load_config(write_yaml(tmp_path / "edge.yaml", "device: a\ncameras: [\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write_yaml(tmp_path / "edge.yaml", "- just\n- a list\n"))


def test_slots_file(tmp_path):
    write_yaml(tmp_path / "case.slots.yaml", {
        "size": [1280, 720],  # other keys belong to whoever wrote the file
        "slots": [{"name": "r0c0", "rect": [0.1, 0.1, 0.4, 0.4]},
                  {"name": "r0c1", "polygon": [[0.5, 0.1], [0.9, 0.1], [0.7, 0.45]]}]})
    data = _base(cameras=[{"id": "cam0", "source": "file:///v.mp4", "slots_file": "case.slots.yaml"}])
    cfg = load_config(write_yaml(tmp_path / "edge.yaml", data))
    slots = cfg.cameras[0].slot_list()
    assert [s.name for s in slots] == ["r0c0", "r0c1"]
    assert slots[1].rect == pytest.approx((0.5, 0.1, 0.9, 0.45))
    assert cfg.cameras[0].slots_file == tmp_path / "case.slots.yaml"


def test_slots_file_errors_name_both_files(tmp_path):
    write_yaml(tmp_path / "bad.slots.yaml", {"slots": [{"name": "a", "rect": [0, 0, 0.5, 0.5]},
                                                       {"name": "b", "rect": [0, 0, 0.5, 9]}]})
    data = _base(cameras=[{"id": "cam0", "source": "file:///v.mp4", "slots_file": "bad.slots.yaml"}])
    with pytest.raises(ConfigError, match=r"edge.yaml: cameras.0.slots_file: .*bad.slots.yaml: slots.1.rect: "
                                          r".*outside the frame"):
        load_config(write_yaml(tmp_path / "edge.yaml", data))
    data = _base(cameras=[{"id": "cam0", "source": "file:///v.mp4", "slots_file": "missing.yaml"}])
    with pytest.raises(ConfigError, match=r"cameras.0.slots_file: .*missing.yaml: slots file not found"):
        load_config(write_yaml(tmp_path / "edge.yaml", data))
    data = _base()
    data["cameras"][0]["slots_file"] = "bad.slots.yaml"
    with pytest.raises(ConfigError, match="either `slots` or `slots_file`"):
        load_config(write_yaml(tmp_path / "edge.yaml", data))


def test_runtime_options_for_the_picked_backend():
    cfg = parse_config(_base(runtime={"name": "auto", "options": {"onnxruntime": {"threads": 2},
                                                                  "openvino": {"hint": "THROUGHPUT"}}}))
    assert runtime_options(cfg.runtime, "onnxruntime") == {"threads": 2, "allow_spinning": True,
                                                           "spin_between_runs": False}
    assert runtime_options(cfg.runtime, "openvino")["hint"] == "THROUGHPUT"
    cfg = parse_config(_base(runtime={"name": "onnxruntime", "options": {"threads": 1, "allow_spinning": True}}))
    assert runtime_options(cfg.runtime, "onnxruntime") == {"threads": 1, "allow_spinning": True,
                                                           "spin_between_runs": False}


def test_every_problem_is_listed_one_line_each(tmp_path):
    data = _base(camras=_base()["cameras"], postprocess={"min_score": 1.5})
    del data["cameras"]
    path = write_yaml(tmp_path / "edge.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert f"{path}: camras: unknown field (not allowed here)" in lines
    assert f"{path}: cameras: Field required" in lines
    assert any(line.startswith(f"{path}: postprocess.min_score: ") for line in lines)
    assert len(lines) == 3 and "more)" not in str(info.value)


def test_check_names_a_misspelt_top_level_key(tmp_path, capsys):
    from edge.cli.main import main

    data = _base(camras=_base()["cameras"])
    del data["cameras"]
    path = write_yaml(tmp_path / "edge.yaml", data)
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: camras: unknown field" in err and f"{path}: cameras: Field required" in err


def test_slots_file_problems_of_every_camera(tmp_path):
    write_yaml(tmp_path / "bad.slots.yaml", {"slots": [{"name": "a", "rect": [0, 0, 9, 0.5]},
                                                       {"name": "b", "rect": [0, 0, 0.5, 9]}]})
    data = _base(cameras=[{"id": "cam0", "source": "file:///v.mp4", "slots_file": "bad.slots.yaml"},
                          {"id": "cam1", "source": "file:///v.mp4", "slots_file": "missing.yaml"}])
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(tmp_path / "edge.yaml", data))
    lines = str(info.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["cameras.0.slots_file"] * 2 + ["cameras.1.slots_file"]
    assert "slots.0.rect" in lines[0] and "slots.1.rect" in lines[1] and "slots file not found" in lines[2]


def test_credential_paths_are_relative_to_the_config_and_names_stay_names(tmp_path):
    data = _base(publish={"curve": {"server_secret_key": "keys/server.key_secret", "allowed_clients": "clients"}})
    data["cameras"][0]["credentials"] = "cam0-login"
    data["cameras"].append({"id": "cam1", "source": "rtsp://h/s", "credentials": "secrets/cam1"})
    cfg = load_config(write_yaml(tmp_path / "edge.yaml", data))
    assert cfg.cameras[0].credentials == "cam0-login"
    assert cfg.cameras[1].credentials == str(tmp_path / "secrets/cam1")
    assert cfg.publish.curve.server_secret_key == str(tmp_path / "keys/server.key_secret")
    assert cfg.publish.curve.allowed_clients == str(tmp_path / "clients")
    data["publish"] = {"curve": {"server_secret_key": "server.key_secret", "allowed_clients": "/etc/gemsight/clients"}}
    curve = load_config(write_yaml(tmp_path / "edge.yaml", data)).publish.curve
    assert curve.server_secret_key == "server.key_secret" and curve.allowed_clients == "/etc/gemsight/clients"


@pytest.mark.parametrize("publish, match", [
    (None, "publish.curve: missing: the link is CURVE by default"),
    ({"endpoint": "tcp://127.0.0.1:5555"}, "publish.curve: missing: .*or write `curve: null`"),
    ({"curve_secret_key_file": "server.key_secret"}, "curve_secret_key_file was replaced by publish.curve"),
    ({"curve": {"server_secret_key": "s.key_secret"}}, "publish.curve.allowed_clients: Field required"),
    ({"curve": "yes"}, "publish.curve"),
])
def test_publish_curve_must_be_written(tmp_path, publish, match):
    data = _base()
    del data["publish"]
    if publish is not None:
        data["publish"] = publish
    with pytest.raises(ConfigError, match=match) as info:
        load_config(write_yaml(tmp_path / "edge.yaml", data))
    assert "edge.yaml" in str(info.value) and "Traceback" not in str(info.value)


def test_engine_max_batch_is_every_slot_of_every_camera_unless_set():
    from edge.config.device import engine_max_batch

    data = _base()
    data["cameras"].append({"id": "cam1", "source": "file:///b.mp4"})  # no slots: the whole frame
    assert engine_max_batch(parse_config(data)) == 4
    data["runtime"] = {"name": "auto", "options": {"tensorrt": {"max_batch": 12}}}
    assert engine_max_batch(parse_config(data)) == 12
    data["runtime"] = {"name": "tensorrt", "options": {"max_batch": 6}}
    assert engine_max_batch(parse_config(data)) == 6
    data["runtime"] = {"name": "onnxruntime"}
    assert engine_max_batch(parse_config(data)) == 4
