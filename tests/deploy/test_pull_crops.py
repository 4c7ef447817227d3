"""``gemsight-deploy pull-crops``: a device's collected crops over ssh into the trainer's layout. As flash --ssh
is tested: an ssh stand-in that runs the remote side locally; and the real ssh against a closed port."""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from deploy.cli import main
from deploy.pull import build_pull_command, pull_crops
from edge.config.collect import CollectConfig
from edge.errors import BundleError, ConfigError
from edge.loop.collect_store import MANIFEST, CollectStore, read_manifest

JPEG = b"\xff\xd8\xff\xe0" + bytes(60)


def device_folder(root: Path, n: int = 3) -> Path:
    """A device's collect folder written by the device's own store: ``n`` ring crops and one earring."""
    store = CollectStore(root, CollectConfig())
    now = time.time()
    for i in range(n + 1):
        label = "ring" if i < n else "earring"
        name = f"case-01_cam0_r0c{i}_20260302T10000{i}Z.jpg"
        store.write({"device": "case-01", "camera": "cam0", "slot": f"r0c{i}", "ts": now + i, "class": label,
                     "file": f"{label}/{name}", "model": "gemsight@1.0.0"}, JPEG)
    return root


@pytest.fixture
def stand_in_ssh(tmp_path, monkeypatch):
    """``ssh`` that runs its last argument (the remote script) here; SSH_MODE=cut cuts the stream and fails as a
    dropped connection does (exit 255)."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text('#!/bin/sh\nfor a; do last=$a; done\n'
                                 'if [ "$SSH_MODE" = cut ]; then sh -c "$last" | head -c 3000; '
                                 'echo "Connection to case-01 closed by remote host." >&2; exit 255; fi\n'
                                 'exec sh -c "$last"\n')
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return monkeypatch


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_pull_copies_the_trainer_layout_and_merges_the_manifest_once(tmp_path, stand_in_ssh, capsys):
    remote = device_folder(tmp_path / "device" / "collect")
    out = tmp_path / "crops"
    assert main(["pull-crops", "case-01", "--ssh", "tech@case-01", "--out", str(out),
                 "--collect-dir", str(remote)]) == 0
    assert capsys.readouterr().out.startswith(f"pulled 4 new crop(s) from case-01 into {out} (earring 1, ring 3); "
                                              "0 already there, 4 manifest line(s) added")
    assert sorted(tree(out)) == sorted(["earring/case-01_cam0_r0c3_20260302T100003Z.jpg", MANIFEST,
                                        *[f"ring/case-01_cam0_r0c{i}_20260302T10000{i}Z.jpg" for i in range(3)]])
    assert [e["class"] for e in read_manifest(out / MANIFEST)] == ["ring", "ring", "ring", "earring"]
    # Again, with one more crop on the device: only the new one comes, each manifest line once.
    CollectStore(remote, CollectConfig()).write({"device": "case-01", "slot": "r1c0", "ts": time.time(),
                                                  "class": "ring", "file": "ring/case-01_cam0_r1c0_x.jpg"}, JPEG)
    got = pull_crops("case-01", "tech@case-01", out, collect_dir=str(remote))
    assert (got.new, got.already, got.lines) == ({"ring": 1}, 4, 1)
    assert len(read_manifest(out / MANIFEST)) == 5 and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_broken_connection_leaves_nothing_behind(tmp_path, stand_in_ssh):
    remote = device_folder(tmp_path / "device" / "collect", n=40)
    out = tmp_path / "crops"
    stand_in_ssh.setenv("SSH_MODE", "cut")
    with pytest.raises(BundleError, match=r"pull-crops from case-01 \(tech@case-01\): the ssh connection failed \(the "
                                          r"device is unreachable, refused it, or it dropped\): Connection to case-01 closed by remote host\.; nothing was copied"):
        pull_crops("case-01", "tech@case-01", out, collect_dir=str(remote))
    assert not out.exists()                                  # it made the folder: it is gone again
    out.mkdir()
    (out / "ring").mkdir()
    (out / "ring" / "mine.jpg").write_bytes(JPEG)
    before = tree(out)
    with pytest.raises(BundleError, match="nothing was copied"):
        pull_crops("case-01", "tech@case-01", out, collect_dir=str(remote))
    assert tree(out) == before and sorted(p.name for p in out.iterdir()) == ["ring"]


def test_no_collect_folder_and_a_foreign_member_are_refused(tmp_path, stand_in_ssh):
    out = tmp_path / "crops"
    with pytest.raises(BundleError, match=r"the device has no collect folder: no collect folder /nowhere/collect"):
        pull_crops("case-01", "tech@case-01", out, collect_dir="/nowhere/collect")
    remote = device_folder(tmp_path / "device" / "collect")
    (remote / "ring" / "link.jpg").symlink_to("/etc/passwd")
    with pytest.raises(BundleError, match=r"refused '\./ring/link\.jpg' in the collect folder"):
        pull_crops("case-01", "tech@case-01", out, collect_dir=str(remote))
    assert not out.exists()
    for bad in ("relative/dir", "/a/../etc", "/a;rm -rf /"):
        with pytest.raises(ConfigError, match="--collect-dir"):
            build_pull_command("tech@case-01", bad)
    with pytest.raises(ConfigError, match="expected user@host"):
        build_pull_command("-oProxyCommand=x", "/var/lib/gemsight/edge/collect")


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client")
def test_an_unreachable_device_over_the_real_ssh_is_a_clear_error(tmp_path, capsys):
    with socket.socket() as s:                             # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "crops"
    rc = main(["pull-crops", "case-01", "--ssh", "tech@127.0.0.1", "--ssh-port", str(port), "--out", str(out),
               "--ssh-option", "StrictHostKeyChecking=no", "--ssh-option", "UserKnownHostsFile=/dev/null"])
    err = capsys.readouterr().err
    assert rc != 0 and "pull-crops from case-01 (tech@127.0.0.1): the ssh connection failed" in err
    assert "Connection refused" in err and "nothing was copied" in err and not out.exists()


def test_the_command_is_ssh_in_batch_mode_with_one_quoted_script():
    cmd = build_pull_command("tech@case-01.local", "/var/lib/gemsight/edge/collect", 2222, ["IdentityFile=/k"],
                             sudo=True)
    assert cmd[0] == "ssh" and "BatchMode=yes" in cmd and "IdentityFile=/k" in cmd and cmd[-2] == "tech@case-01.local"
    assert ["-p", "2222"] == cmd[cmd.index("-p"):cmd.index("-p") + 2]
    assert "sudo -n tar -C /var/lib/gemsight/edge/collect -cf - ." in cmd[-1]
    json.dumps(cmd)
