"""Flashing, refusals that change nothing, heartbeat and switch-back, rollback, status, pruning."""
from __future__ import annotations

import json
import shutil
import tarfile
import threading
import time

import pytest

from deploy.bundle import create_bundle
from deploy.cli import main
from deploy.flash import FlashOptions, flash
from deploy.layout import DeviceLayout
from deploy.manage import rollback, status
from deploy.verify import verify_installed
from edge.errors import BundleError
from edge.manifest import Manifest

from .conftest import CREATED, make_root, tree_digest
from .test_deploy_bundle import _evil_bundle, _flip, _member, _offsets

NO_RESTART = FlashOptions(restart=False)


def test_first_install_and_upgrade(bundles, keys, tmp_path):
    root = make_root(tmp_path / "root", keys.pub)
    first = flash(bundles.v100, root, NO_RESTART)
    layout = DeviceLayout(root)
    assert (first.outcome, first.replaced, layout.current(), layout.previous()) == ("installed", None, "1.0.0", None)
    assert first.smoke["backend"] in ("onnxruntime", "openvino")
    up = flash(bundles.v110, root, NO_RESTART)
    assert (layout.current(), layout.previous(), up.replaced) == ("1.1.0", "1.0.0", "1.0.0")
    assert {"verify", "unpack", "smoke", "switch", "total"} <= set(up.timings)
    # The link is relative (a root built in a directory stays valid at /) and resolves to a
    # complete, signed version directory.
    assert (root / "var/lib/gemsight/models/current").readlink().as_posix() == "1.1.0"
    from deploy.keys import trusted_keys
    assert verify_installed(root / "var/lib/gemsight/models/current", trusted_keys([keys.pub]))["version"] == "1.1.0"
    assert [h["version"] for h in layout.history() if h["op"] == "flash"] == ["1.0.0", "1.1.0"]
    assert not layout.leftovers() and layout.read_journal() is None


def test_same_version_again_is_a_no_op(device, bundles):
    before = tree_digest(device)
    assert flash(bundles.v100, device, NO_RESTART).outcome == "already-current"
    assert tree_digest(device) == before


def _damaged(bundles, tmp_path):
    offs = _offsets(bundles.v110)
    hdr, data, size = offs["model.onnx"]
    return {
        "member content": _flip(bundles.v110, tmp_path / "c.gsb", data + size // 3),
        "SHA256SUMS": _flip(bundles.v110, tmp_path / "s.gsb", offs["SHA256SUMS"][1] + 5),
        "signature": _resign(bundles.v110, tmp_path / "g.gsb", offs["SHA256SUMS.sig"][1]),
        "tar header": _flip(bundles.v110, tmp_path / "h.gsb", hdr + 130),
        "truncated": _truncated(bundles.v110, tmp_path / "t.gsb"),
    }


def _resign(src, dst, sig_offset):
    """Change one base64 character of the signature to another valid one."""
    data = bytearray(src.read_bytes())
    at = data.index(b'"signature": "', sig_offset) + len(b'"signature": "') + 10
    data[at] = ord("B") if data[at] != ord("B") else ord("C")
    dst.write_bytes(bytes(data))
    return dst


def _truncated(src, dst):
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) * 2 // 3])
    return dst


def test_refusals_change_nothing(device, bundles, keys, tmp_path):
    cases = {name: (path, NO_RESTART) for name, path in _damaged(bundles, tmp_path).items()}
    cases["wrong key"] = (bundles.stranger, NO_RESTART)
    cases["downgrade"] = (bundles.v090, NO_RESTART)
    cases["no space"] = (bundles.v110, FlashOptions(restart=False, reserve_bytes=1 << 60))
    cases["unsafe member"] = (_evil_bundle(tmp_path / "evil.gsb", keys, _member("x", tarfile.SYMTYPE, "/etc/shadow")), NO_RESTART)
    cases["missing file"] = (tmp_path / "nope.gsb", NO_RESTART)
    expected = {"member content": "checksum mismatch", "SHA256SUMS": "does not verify", "signature": "does not verify",
                "tar header": "corrupt|not canonical|valid member header", "truncated": "truncated",
                "wrong key": "does not trust", "downgrade": "refusing to downgrade from 1.0.0 to 0.9.0",
                "no space": "not enough free space", "unsafe member": "symbolic link", "missing file": "cannot open"}
    before = tree_digest(device)
    for name, (bundle, opts) in cases.items():
        with pytest.raises(BundleError, match=expected[name]):
            flash(bundle, device, opts)
        assert tree_digest(device) == before, f"{name} changed the device"
    assert DeviceLayout(device).current() == "1.0.0"


def test_downgrade_when_allowed(device, bundles):
    flash(bundles.v090, device, FlashOptions(restart=False, allow_downgrade=True))
    layout = DeviceLayout(device)
    assert (layout.current(), layout.previous()) == ("0.9.0", "1.0.0")


def test_version_reused_with_other_content_refused(device, model_dir, keys, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    Manifest.load(other / "manifest.json").updated(metrics={"fp32_accuracy": 0.5}).save(other / "manifest.json")
    bundle = create_bundle(other, keys.priv, tmp_path / "o.gsb", "1.0.0", CREATED)
    before = tree_digest(device)
    with pytest.raises(BundleError, match="already installed with different content"):
        flash(bundle, device, NO_RESTART)
    assert tree_digest(device) == before


def test_smoke_failure_leaves_old_version(device, model_dir, keys, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    import onnx

    from edge.manifest import embed_manifest
    m = Manifest.load(broken / "manifest.json")
    m = m.updated(classes=list(m.classes[:5]))  # the network still outputs 8 values
    m.save(broken / "manifest.json")
    onnx.save(embed_manifest(onnx.load(str(broken / "model.onnx")), m), str(broken / "model.onnx"))
    bundle = create_bundle(broken, keys.priv, tmp_path / "b.gsb", "2.0.0", CREATED)
    with pytest.raises(BundleError, match="smoke test"):
        flash(bundle, device, NO_RESTART)
    layout = DeviceLayout(device)
    assert (layout.current(), layout.installed(), layout.leftovers()) == ("1.0.0", ["1.0.0"], [])
    assert layout.read_journal() is None and layout.history()[-1]["result"] == "failed"


class Heartbeats:
    """A real PUB socket on a random loopback port sending heartbeats like the edge loop."""

    def __init__(self, device: str = "case-01") -> None:
        import zmq
        self.sock = zmq.Context.instance().socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.device = device
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            msg = {"schema_version": 1, "kind": "heartbeat", "device": self.device, "ts": time.time(),
                   "uptime_s": 1.0, "cameras": {}}
            self.sock.send_multipart([f"gemsight/{self.device}/_/heartbeat".encode(), json.dumps(msg).encode()])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.sock.close()


def test_heartbeat_received(device, bundles):
    with Heartbeats() as hb:
        result = flash(bundles.v110, device, FlashOptions(restart=False, heartbeat_endpoint=hb.endpoint,
                                                          heartbeat_timeout=10))
    assert result.heartbeat["device"] == "case-01"
    assert DeviceLayout(device).current() == "1.1.0"


def test_no_heartbeat_switches_back(device, bundles):
    import zmq
    sock = zmq.Context.instance().socket(zmq.PUB)  # an endpoint where nothing sends heartbeats
    sock.bind("tcp://127.0.0.1:*")
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        with pytest.raises(BundleError, match="no heartbeat .* switched back to 1.0.0"):
            flash(bundles.v110, device, FlashOptions(restart=False, heartbeat_endpoint=endpoint, heartbeat_timeout=0.5))
    finally:
        sock.close(linger=0)
    layout = DeviceLayout(device)
    assert (layout.current(), layout.previous(), layout.installed()) == ("1.0.0", None, ["1.0.0"])
    assert main(["flash", str(bundles.v110), "--root", str(device), "--no-restart", "--heartbeat-endpoint", endpoint,
                 "--heartbeat-timeout", "0.3"]) == 2


def test_second_operation_refused_while_locked(device, bundles):
    layout = DeviceLayout(device)
    with layout.locked():
        with pytest.raises(BundleError, match="another gemsight-deploy operation is running"):
            flash(bundles.v110, device, NO_RESTART)
        assert status(device)["busy"]
    assert status(device)["busy"] is None


def test_rollback_and_back(device, bundles):
    layout = DeviceLayout(device)
    with pytest.raises(BundleError, match="no previous version"):
        rollback(device, NO_RESTART)
    flash(bundles.v110, device, NO_RESTART)
    assert rollback(device, NO_RESTART)["current"] == "1.0.0"
    assert (layout.current(), layout.previous()) == ("1.0.0", "1.1.0")
    assert main(["rollback", "--root", str(device), "--no-restart"]) == 0
    assert (layout.current(), layout.previous()) == ("1.1.0", "1.0.0")
    # A damaged previous version is not rolled back to.
    (device / "var/lib/gemsight/models/1.0.0/manifest.json").write_text("{}")
    before = tree_digest(device)
    with pytest.raises(BundleError, match="does not match its checksum"):
        rollback(device, NO_RESTART)
    assert tree_digest(device) == before


def test_prune_keeps_current_and_previous(device, bundles):
    for b in (bundles.v110, bundles.v120):
        flash(b, device, FlashOptions(restart=False, keep=2))
    layout = DeviceLayout(device)
    assert (layout.installed(), layout.current(), layout.previous()) == (["1.1.0", "1.2.0"], "1.2.0", "1.1.0")


def test_status_reports_and_cleans_an_interrupted_flash(device, bundles, capsys):
    layout = DeviceLayout(device)
    flash(bundles.v110, device, NO_RESTART)
    # What a flash of 1.2.0 killed half-way through its switch leaves behind.
    (layout.models_dir / ".tmp-1.2.0-dead").mkdir()
    shutil.copytree(layout.models_dir / "1.1.0", layout.models_dir / "1.2.0")
    layout.write_journal({"op": "flash", "phase": "switching", "version": "1.2.0", "created": True,
                          "old_current": "1.1.0", "old_previous": "1.0.0"})
    layout.replace_link("previous", layout.make_temp_link("previous", "1.1.0"))
    st = status(device)
    assert (st["current"], st["previous"]) == ("1.1.0", "1.0.0")
    assert [v["version"] for v in st["installed"]] == ["1.0.0", "1.1.0"] and all(v["complete"] for v in st["installed"])
    assert any("1.2.0" in a for a in st["recovered"]) and not layout.leftovers()
    assert main(["status", "--root", str(device), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "current   1.1.0" in out and "previous  1.0.0" in out
    assert main(["status", "--root", str(device), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["current"] == "1.1.0"
    damaged = layout.models_dir / "1.0.0/model.onnx"
    damaged.unlink()  # hard-linked to the session template: replace, never write in place
    damaged.write_bytes(b"x")
    assert main(["status", "--root", str(device), "--verify"]) == 1
    assert "DAMAGED" in capsys.readouterr().out


def test_cli_flash_prints_timings(bundles, keys, tmp_path, capsys):
    root = make_root(tmp_path / "root", keys.pub)
    assert main(["flash", str(bundles.v100), "--root", str(root), "--no-restart", "--runtime", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert "flashed 1.0.0" in out and "smoke test: onnxruntime" in out
    for step in ("verify", "unpack", "smoke", "switch", "total"):
        assert f"  {step}" in out
    assert main(["verify", str(bundles.stranger), "--root", str(root)]) == 2
    assert "does not trust" in capsys.readouterr().err
