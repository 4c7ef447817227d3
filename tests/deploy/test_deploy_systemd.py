"""systemd units (verify, exposure score), the install command, remote flashing, TensorRT wiring."""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

from deploy.cli import get_args_parser, main
from deploy.flash import FlashOptions, flash
from deploy.install import UNITS, install, systemd_source_dir
from deploy.keys import load_public_key
from deploy.layout import DeviceLayout
from edge.errors import BundleError, ConfigError
from deploy.remote import build_remote_flash, build_scp_command, build_ssh_command, remote_flash

from .conftest import make_root

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
MAX_EXPOSURE = 2.0


def _fake_bin(d: Path) -> Path:
    """A bin directory with executable stand-ins, so ExecStart= paths exist for `verify`."""
    d.mkdir(parents=True, exist_ok=True)
    for name in ("gemsight-edge", "gemsight-deploy"):
        (d / name).write_text("#!/bin/sh\nexit 0\n")
        (d / name).chmod(0o755)
    return d


@pytest.fixture
def installed(tmp_path, keys) -> Path:
    root = tmp_path / "root"
    lines = install(root, device="case-07", pubkeys=[keys.pub], bin_dir=_fake_bin(tmp_path / "bin"),
                    systemd_version=252)
    assert any("trusted key" in line for line in lines)
    return root


@needs_analyze
def test_units_pass_systemd_analyze_verify(installed):
    units = [str(installed / "etc/systemd/system" / u) for u in UNITS]
    proc = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # Warnings (unknown keys, bad values) go to stderr without failing: hold the units to none.
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if "gemsight" in line]
    assert ours == []


@needs_analyze
@pytest.mark.parametrize("name", UNITS)
def test_unit_exposure_at_most_2(installed, name):
    unit = installed / "etc/systemd/system" / name
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                          capture_output=True, text=True, timeout=60)
    m = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+(?:\.\d+)?)", proc.stdout + proc.stderr)
    assert m, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert float(m.group(1)) <= MAX_EXPOSURE


def test_units_reach_jetpack6_render_nodes_and_engine_unit_has_no_capabilities():
    edge = (systemd_source_dir() / "gemsight-edge.service").read_text()
    engine = (systemd_source_dir() / "gemsight-engine.service").read_text()
    for unit in (edge, engine):
        assert "DeviceAllow=char-drm rw" in unit and "DevicePolicy=closed" in unit
    assert "SupplementaryGroups=video render" in edge
    assert "m gemsight render" in (systemd_source_dir() / "gemsight.sysusers.conf").read_text()
    assert "CapabilityBoundingSet=\n" in engine and "SystemCallFilter=~@privileged" in engine
    assert "CAP_DAC_OVERRIDE" not in engine.split("[Service]")[1]


def test_unit_contents():
    text = (systemd_source_dir() / "gemsight-edge.service").read_text()
    for line in ("Type=notify", "User=gemsight", "SupplementaryGroups=video", "DevicePolicy=closed",
                 "DeviceAllow=char-video4linux rw", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "SystemCallFilter=@system-service", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                 "Restart=on-failure", "LoadCredential=gemsight:/etc/gemsight/credentials", "ReadWritePaths="):
        assert re.search(rf"(?m)^{re.escape(line)}", text), line
    assert re.search(r"(?m)^WatchdogSec=\d+", text)
    engine = (systemd_source_dir() / "gemsight-engine.service").read_text()
    assert "Type=oneshot" in engine and "Before=gemsight-edge.service" in engine and "build-engine" in engine


def test_install_lays_out_a_root(installed, keys, tmp_path):
    layout = DeviceLayout(installed)
    for d in (layout.models_dir, layout.engines_dir, layout.edge_state_dir, layout.deploy_dir, layout.keys_dir):
        assert d.is_dir(), d
    assert stat.S_IMODE(layout.deploy_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(layout.credentials_dir.stat().st_mode) == 0o700
    edge_unit = (layout.unit_dir / "gemsight-edge.service").read_text()
    assert f"ExecStart={tmp_path}/bin/gemsight-edge run --config /etc/gemsight/edge.yaml" in edge_unit
    assert "u gemsight" in layout.sysusers_path.read_text() and "m gemsight video" in layout.sysusers_path.read_text()
    assert "GEMSIGHT_ENGINE_CACHE=/var/lib/gemsight/engines" in layout.env_path.read_text()
    assert (layout.keys_dir / f"{load_public_key(keys.pub).key_id}.pub").is_file()
    from edge.config.device import load_config
    cfg = load_config(layout.config_path)
    assert cfg.device == "case-07"
    # CURVE by default: the device's key pair, the allow-list with deploy's own client, all named by edge.yaml.
    assert cfg.publish.curve.server_secret_key == "gemsight_server.key_secret"  # LoadCredential= of the credentials dir
    assert cfg.publish.curve.allowed_clients == "/etc/gemsight/clients"
    secret = layout.credentials_dir / "server.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(layout.deploy_key_dir.stat().st_mode) == 0o700
    import zmq.auth
    assert zmq.auth.load_certificate(str(layout.server_public_path))[0] == zmq.auth.load_certificate(str(secret))[0]
    assert [p.name for p in layout.clients_dir.iterdir()] == ["gemsight-deploy.key"]
    before = secret.read_bytes()
    assert not (layout.unit_dir / "gemsight-edge.service.d").exists()  # systemd 252: no RestartSteps
    # Run again for systemd 254: the back-off drop-in appears, an edited config is kept.
    layout.config_path.write_text(layout.config_path.read_text().replace("case-07", "case-08"))
    install(installed, device="ignored", bin_dir=tmp_path / "bin", systemd_version=254)
    assert "RestartSteps=" in (layout.unit_dir / "gemsight-edge.service.d/10-restart-backoff.conf").read_text()
    assert load_config(layout.config_path).device == "case-08"
    assert secret.read_bytes() == before  # a device key is never replaced by a reinstall


def test_flash_on_installed_root_uses_device_config(installed, bundles):
    # The smoke test opens the model through edge.loop.model with this edge.yaml.
    result = flash(bundles.v100, installed, FlashOptions(restart=False))
    assert result.smoke["backend"] in ("onnxruntime", "openvino")
    assert DeviceLayout(installed).current() == "1.0.0"
    # A config pinning other classes refuses the model before anything is switched.
    cfg = DeviceLayout(installed).config_path
    cfg.write_text(cfg.read_text().replace("# classes: [ring", "classes: [a, b]  # [ring"))
    with pytest.raises(BundleError, match="smoke test.*classes"):
        flash(bundles.v110, installed, FlashOptions(restart=False))
    assert DeviceLayout(installed).current() == "1.0.0"


def test_build_engine_without_tensorrt(device, capsys):
    assert main(["build-engine", "--root", str(device)]) == 0
    assert "no engine to build" in capsys.readouterr().out


def test_tensorrt_engine_is_built_when_tensorrt_imports(device, bundles, monkeypatch):
    # TensorRT cannot run here: stand-ins for `tensorrt` and calibration.tensorrt check the wiring only.
    calls = []

    def ensure_engine(model_dir, cache_dir, max_batch, precision="int8", **kw):
        calls.append((model_dir, cache_dir, max_batch, precision))
        assert (model_dir / "model.onnx").is_file()
        return cache_dir / "x" / "engine.plan"

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setitem(sys.modules, "calibration.tensorrt", types.SimpleNamespace(ensure_engine=ensure_engine))
    result = flash(bundles.v110, device, FlashOptions(restart=False, runtime="onnxruntime", max_batch=4))
    (model_dir, cache_dir, max_batch, precision), = calls
    # "auto" resolves as the edge's TensorRT runtime resolves it: this model has no INT8 artifact.
    assert cache_dir == DeviceLayout(device).engines_dir and (max_batch, precision) == (4, "fp32")
    assert result.engine.endswith("engine.plan")
    monkeypatch.delenv("GEMSIGHT_ENGINE_CACHE", raising=False)
    assert main(["build-engine", "--root", str(device), "--precision", "int8"]) == 0  # what the boot unit runs
    assert calls[-1][0] == DeviceLayout(device).models_dir / "1.1.0" and calls[-1][2:] == (16, "int8")


def test_engine_batch_defaults_to_every_slot_in_edge_yaml(installed, bundles, monkeypatch):
    calls = []

    def ensure_engine(model_dir, cache_dir, max_batch, precision="int8", **kw):
        calls.append(max_batch)
        return cache_dir / "x" / "engine.plan"

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setitem(sys.modules, "calibration.tensorrt", types.SimpleNamespace(ensure_engine=ensure_engine))
    flash(bundles.v100, installed, FlashOptions(restart=False, runtime="onnxruntime"))
    assert main(["build-engine", "--root", str(installed)]) == 0
    assert calls == [4, 4]  # the example edge.yaml: one camera with four slots, as the edge looks it up


def test_deploy_reads_edge_yaml_through_the_edge_config(installed, bundles):
    cfg = DeviceLayout(installed).config_path
    cfg.write_text(cfg.read_text().replace("\ncameras:", "\ncamras:"))
    with pytest.raises(ConfigError, match=r"edge.yaml: camras: unknown field"):
        flash(bundles.v100, installed, FlashOptions(restart=False))
    assert DeviceLayout(installed).current() is None


# -- remote -------------------------------------------------------------------------------------

def _args(*extra: str) -> argparse.Namespace:
    return get_args_parser().parse_args(["flash", "b.gsb", "--ssh", "tech@case-01.local", *extra])


def test_remote_command_construction():
    args = _args("--allow-downgrade", "--ssh-port", "2222", "--ssh-option", "StrictHostKeyChecking=yes", "--sudo")
    scp = build_scp_command(Path("b.gsb"), args.ssh, "/var/tmp/gemsight-1.gsb", 2222, args.ssh_option)
    assert scp[:2] == ["scp", "-q"] and scp[-3:] == ["--", "b.gsb", "tech@case-01.local:/var/tmp/gemsight-1.gsb"]
    assert ["-P", "2222"] == scp[scp.index("-P"):scp.index("-P") + 2] and "BatchMode=yes" in scp
    remote = build_remote_flash("gemsight-deploy", "/var/tmp/gemsight-1.gsb", args)
    assert remote[:5] == ["gemsight-deploy", "flash", "/var/tmp/gemsight-1.gsb", "--root", "/"]
    assert "--allow-downgrade" in remote and "--no-restart" not in remote
    ssh = build_ssh_command(args.ssh, remote, "/var/tmp/gemsight-1.gsb", 2222, args.ssh_option, sudo=True)
    assert ssh[0] == "ssh" and ssh[-3:-1] == ["--", "tech@case-01.local"] and ["-p", "2222"] == ssh[ssh.index("-p"):][:2]
    script = ssh[-1]
    assert script.startswith("sudo -n gemsight-deploy flash /var/tmp/gemsight-1.gsb --root / ")
    assert script.endswith("; rc=$?; sudo -n rm -f -- /var/tmp/gemsight-1.gsb; exit $rc")
    # A hostile value stays one quoted word on the remote shell.
    evil = build_remote_flash("gemsight-deploy", "/var/tmp/x.gsb", _args("--runtime", "a; rm -rf /"))
    assert "'a; rm -rf /'" in shlex.join(evil)
    for target in ("-oProxyCommand=x", "user@host;id", ""):
        with pytest.raises(ConfigError, match="expected user@host"):
            build_ssh_command(target, remote, "/x", None, ())


def test_remote_flash_through_stand_in_ssh(bundles, keys, tmp_path, monkeypatch):
    """ssh/scp stand-ins that run the remote side locally: the real flash runs into a temp root."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "scp").write_text('#!/bin/sh\nfor a; do last2=$prev; prev=$a; done\ncp "$last2" "${prev#*:}"\n')
    (bin_dir / "ssh").write_text('#!/bin/sh\nfor a; do last=$a; done\nexec sh -c "$last"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = make_root(tmp_path / "root", keys.pub)
    remote_dir = tmp_path / "remote-tmp"
    remote_dir.mkdir()
    args = get_args_parser().parse_args([
        "flash", str(bundles.v100), "--ssh", "tech@case-01", "--root", str(root), "--no-restart", "--runtime",
        "onnxruntime", "--remote-dir", str(remote_dir), "--remote-command", f"{sys.executable} -m deploy",
        "--pubkey", str(keys.pub)])
    assert remote_flash(args) == 0
    assert DeviceLayout(root).current() == "1.0.0" and list(remote_dir.iterdir()) == []  # copy removed
    args.bundle = bundles.v090  # a downgrade: refused remotely, exit status comes back
    assert remote_flash(args) == 2 and DeviceLayout(root).current() == "1.0.0"


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers not installed")
def test_sysusers_entry_creates_user_in_video_group(installed):
    proc = subprocess.run(["systemd-sysusers", f"--root={installed}", "--dry-run",
                           str(DeviceLayout(installed).sysusers_path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "Creating user 'gemsight'" in proc.stdout + proc.stderr


def test_flash_hears_the_heartbeat_of_a_curve_edge_with_deploys_own_key(installed):
    from deploy.health import heartbeat_keys, wait_for_heartbeat
    from edge.config.publish import CurveConfig
    from edge.link.publisher import Publisher

    layout = DeviceLayout(installed)
    curve = CurveConfig(server_secret_key=str(layout.credentials_dir / "server.key_secret"),
                        allowed_clients=str(layout.clients_dir))
    keys = heartbeat_keys(layout.server_public_path, layout.deploy_key_path)
    with Publisher("case-07", "tcp://127.0.0.1:*", curve=curve) as pub:
        got = {}
        waiter = threading.Thread(target=lambda: got.update(wait_for_heartbeat(pub.endpoint, "case-07", 5, keys=keys)))
        waiter.start()
        while waiter.is_alive():  # the publisher is used from this thread only
            pub.send_heartbeat()
            waiter.join(0.05)
        assert got["device"] == "case-07"
        with pytest.raises(BundleError, match="no heartbeat: case-07 at .* mechanism mismatch"):
            wait_for_heartbeat(pub.endpoint, "case-07", 5)  # plaintext against a CURVE edge: told at once
    with pytest.raises(BundleError, match="cannot hear the edge's CURVE heartbeat: .*does not exist"):
        heartbeat_keys(layout.server_public_path, layout.deploy_key_dir / "missing.key_secret")
