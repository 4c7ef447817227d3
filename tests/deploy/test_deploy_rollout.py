"""``gemsight-deploy rollout`` over 20 device roots: waves, the halt at the first failure, --resume."""
from __future__ import annotations

import json
import shutil
from importlib import resources

import onnx
import pytest
import yaml

from deploy.bundle import create_bundle
from deploy.cli import main
from deploy.layout import DeviceLayout
from deploy.rollout import parse_waves
from edge.errors import ConfigError
from edge.manifest import Manifest, embed_manifest

from .conftest import CREATED, clone_root, tree_digest

DEVICES = 20


def _bundle_with_classes(model_dir, keys, tmp_path, version: str, rename: dict[str, str]):
    d = tmp_path / f"model-{version}"
    shutil.copytree(model_dir, d)
    m = Manifest.load(d / "manifest.json")
    m = m.updated(classes=[rename.get(c, c) for c in m.classes])
    m.save(d / "manifest.json")
    onnx.save(embed_manifest(onnx.load(str(d / "model.onnx")), m), str(d / "model.onnx"))
    return create_bundle(d, keys.priv, tmp_path / f"m-{version}.gsb", version, CREATED)


@pytest.fixture
def fleet(installed_template, tmp_path):
    """20 device roots on 1.0.0; the canary (case-00) pins the class list in its edge.yaml."""
    devices = []
    for i in range(DEVICES):
        clone_root(installed_template, tmp_path / "fleet" / f"case-{i:02d}")
        devices.append({"id": f"case-{i:02d}", "root": f"fleet/case-{i:02d}"})
    text = (resources.files("edge") / "defaults" / "edge.yaml").read_text()
    pinned = text.replace("device: case-01", "device: case-00").replace("  # classes: [ring", "  classes: [ring")
    (DeviceLayout(tmp_path / "fleet/case-00").config_path).write_text(pinned)
    inv = tmp_path / "devices.yaml"
    inv.write_text(yaml.safe_dump({"devices": devices}))
    return inv


@pytest.mark.slow
def test_rollout_halts_at_the_canary_and_resumes_with_the_fixed_bundle(fleet, model_dir, keys, tmp_path, capsys):
    broken = _bundle_with_classes(model_dir, keys, tmp_path, "2.0.0", {"ring": "rings"})
    fixed = _bundle_with_classes(model_dir, keys, tmp_path, "2.0.1", {})
    roots = [tmp_path / "fleet" / f"case-{i:02d}" for i in range(DEVICES)]
    before = {r.name: tree_digest(r) for r in roots[1:]}
    args = ["rollout", str(broken), "--inventory", str(fleet), "--waves", "1,10%,50%,100%", "--no-restart"]

    assert main(args) == 1
    out = capsys.readouterr().out
    assert "HALTED in wave 1 at case-00: smoke test" in out and "run the same command with --resume" in out
    assert DeviceLayout(roots[0]).current() == "1.0.0"                       # the canary is back on 1.0.0
    assert {r.name: tree_digest(r) for r in roots[1:]} == before             # later waves never touched
    state = json.loads((tmp_path / "devices.rollout.json").read_text())
    assert state["devices"]["case-00"]["status"] == "failed" and state["devices"]["case-00"]["now"] == "1.0.0"
    assert {e["status"] for d, e in state["devices"].items() if d != "case-00"} == {"pending"}

    assert main(args) == 2                                                   # a second start is refused
    assert "pass --resume to continue it" in capsys.readouterr().err

    resume = ["rollout", str(fixed), "--inventory", str(fleet), "--waves", "1,10%,50%,100%", "--no-restart",
              "--resume", "--json"]
    assert main(resume) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["finished"] and state["halted"] is None
    assert {DeviceLayout(r).current() for r in roots} == {"2.0.1"}
    waves = [state["devices"][f"case-{i:02d}"]["wave"] for i in range(DEVICES)]
    assert waves == [1] + [2] + [3] * 8 + [4] * 10
    assert {e["from"] for e in state["devices"].values()} == {"1.0.0"}
    assert main(resume[:-1]) == 0 and "finished: every device runs 2.0.1" in capsys.readouterr().out


@pytest.mark.parametrize("text, n, want", [("1,10%,50%,100%", 20, [1, 2, 10, 20]), ("1,100%", 1, [1]),
                                           ("5,50%,100%", 40, [5, 20, 40]), ("3,100%", 2, [2]), ("2,3,100%", 10, [2, 3, 10])])
def test_waves(text, n, want):
    assert parse_waves(text, n) == want


@pytest.mark.parametrize("text, says", [("1,10%,50%", "end with 100%"), ("0,100%", "at least 1"),
                                        ("5,2,100%", "smaller than the wave before"), ("a,100%", "'a' is not"),
                                        ("1,150%", "up to 100%")])
def test_bad_waves_are_one_line(text, says):
    with pytest.raises(ConfigError, match=says):
        parse_waves(text, 20)


def test_bad_inventories_are_named(tmp_path, bundles, capsys):
    inv = tmp_path / "devices.yaml"
    for data, says in (({"devices": [{"id": "a", "root": "x"}, {"id": "a", "root": "y"}]}, "ids repeat"),
                       ({"devices": [{"id": "a"}]}, "devices.0.root"), ({"devices": []}, "devices"),
                       ({"device": []}, "device")):
        inv.write_text(yaml.safe_dump(data))
        assert main(["rollout", str(bundles.v110), "--inventory", str(inv)]) == 2
        err = capsys.readouterr().err
        assert says in err and str(inv) in err
    assert main(["rollout", str(bundles.v110), "--inventory", str(tmp_path / "none.yaml")]) == 2
    assert "inventory not found" in capsys.readouterr().err


def test_a_device_without_a_heartbeat_halts_its_wave(installed_template, bundles, tmp_path, capsys):
    """Health with heartbeat endpoints: case-00 beats, case-01's edge is silent (switched back), case-02 untouched."""
    import zmq

    from .test_deploy_flash import Heartbeats

    silent = zmq.Context.instance().socket(zmq.PUB)
    silent.bind("tcp://127.0.0.1:*")
    roots = [clone_root(installed_template, tmp_path / f"case-{i:02d}") for i in range(3)]
    with Heartbeats("case-00") as hb:
        inv = tmp_path / "devices.yaml"
        inv.write_text(yaml.safe_dump({"devices": [
            {"id": "case-00", "root": "case-00", "heartbeat": hb.endpoint},
            {"id": "case-01", "root": "case-01", "heartbeat": silent.getsockopt_string(zmq.LAST_ENDPOINT)},
            {"id": "case-02", "root": "case-02"}]}))
        try:
            assert main(["rollout", str(bundles.v110), "--inventory", str(inv), "--waves", "1,100%", "--no-restart",
                         "--heartbeat-timeout", "1"]) == 1
        finally:
            silent.close(linger=0)
    out = capsys.readouterr().out
    assert "HALTED in wave 2 at case-01: no heartbeat" in out
    assert [DeviceLayout(r).current() for r in roots] == ["1.1.0", "1.0.0", "1.0.0"]
    assert DeviceLayout(roots[2]).history()[-1]["version"] == "1.0.0"     # case-02: only its first flash


def test_a_device_unhealthy_after_its_wave_is_rolled_back(device, bundles, tmp_path, capsys):
    """After the wave, the installed version is re-checked: a file changed on the device means a rollback."""
    from deploy.flash import FlashOptions, flash

    flash(bundles.v110, device, FlashOptions(restart=False))
    manifest = DeviceLayout(device).models_dir / "1.1.0" / "manifest.json"
    manifest.chmod(0o644)
    manifest.write_text(manifest.read_text().replace("ring", "rink"))      # damaged after the flash
    inv = tmp_path / "devices.yaml"
    inv.write_text(yaml.safe_dump({"devices": [{"id": "case-01", "root": str(device)}]}))
    assert main(["rollout", str(bundles.v110), "--inventory", str(inv), "--waves", "100%", "--no-restart",
                 "--json"]) == 1
    state = json.loads(capsys.readouterr().out)
    entry = state["devices"]["case-01"]
    assert entry["status"] == "rolled back" and entry["now"] == "1.0.0" and "unhealthy after the wave" in entry["error"]
    assert "manifest.json" in state["halted"]["error"] and DeviceLayout(device).current() == "1.0.0"
