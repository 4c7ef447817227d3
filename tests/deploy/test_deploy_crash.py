"""Crash safety: SIGKILL the flashing (or rolling back) process at every checkpoint.

Each time the device must have the old or the new version fully active (``current`` resolves to a
complete, signature-verified version directory), ``status`` must read (and clean up), and a new
flash (or rollback) must then succeed. The kill is real: ``GEMSIGHT_FLASH_KILL_AT`` makes the
``gemsight-deploy`` subprocess send itself SIGKILL at the named checkpoint, so nothing (no
``finally``, no ``atexit``) runs after it, exactly as on a power cut.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from deploy.flash import FLASH_CHECKPOINTS, KILL_ENV, RESTORE_CHECKPOINTS, ROLLBACK_CHECKPOINTS, FlashOptions, flash
from deploy.keys import trusted_keys
from deploy.layout import DeviceLayout
from deploy.manage import rollback, status
from deploy.verify import verify_installed

from .conftest import clone_root

# ONNX Runtime loads this model twice as fast as OpenVINO: the smoke inference stays, the loop is quicker.
NO_RESTART = FlashOptions(restart=False, runtime="onnxruntime")
COMMITTED = ("committed", "pruned", "done")  # a kill after these leaves the new version current
NO_LISTENER = "tcp://127.0.0.1:1"           # nothing sends heartbeats there: forces the switch back
COVERED: list[str] = []


def _killed(args: list[str], point: str) -> None:
    env = {**os.environ, KILL_ENV: point, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-m", "deploy", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"{point}: not killed (rc {proc.returncode}): {proc.stderr[-2000:]}"
    COVERED.append(point)


def _assert_one_version_active(root, keys, allowed: set[str]) -> str:
    layout = DeviceLayout(root)
    current = layout.current()
    assert current in allowed
    meta = verify_installed(layout.models_dir / "current", trusted_keys([keys.pub]))
    assert meta["version"] == current
    return current


@pytest.fixture(scope="module")
def upgraded_template(installed_template, bundles, tmp_path_factory):
    """1.1.0 current, 1.0.0 previous: where a rollback starts."""
    root = clone_root(installed_template, tmp_path_factory.mktemp("upgraded") / "root")
    flash(bundles.v110, root, NO_RESTART)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("point", FLASH_CHECKPOINTS + RESTORE_CHECKPOINTS)
def test_kill_during_flash(point, installed_template, bundles, keys, tmp_path):
    root = clone_root(installed_template, tmp_path / "root")
    args = ["flash", str(bundles.v110), "--root", str(root), "--no-restart", "--runtime", "onnxruntime"]
    if point in RESTORE_CHECKPOINTS:  # the switch back after a missing heartbeat
        args += ["--heartbeat-endpoint", NO_LISTENER, "--heartbeat-timeout", "0.2"]
    _killed(args, point)
    _assert_one_version_active(root, keys, {"1.0.0", "1.1.0"})
    st = status(root)
    expected = "1.1.0" if point in COMMITTED else "1.0.0"  # an uncommitted switch is undone
    assert st["current"] == expected and _assert_one_version_active(root, keys, {expected}) == expected
    assert all(v["complete"] for v in st["installed"]), st["installed"]
    layout = DeviceLayout(root)
    assert layout.leftovers() == [] and layout.read_journal() is None
    result = flash(bundles.v110, root, NO_RESTART)
    assert result.outcome == ("already-current" if point in COMMITTED else "installed")
    assert (layout.current(), layout.previous()) == ("1.1.0", "1.0.0")


@pytest.mark.slow
@pytest.mark.parametrize("point", ROLLBACK_CHECKPOINTS)
def test_kill_during_rollback(point, upgraded_template, keys, tmp_path):
    root = clone_root(upgraded_template, tmp_path / "root")
    _killed(["rollback", "--root", str(root), "--no-restart"], point)
    _assert_one_version_active(root, keys, {"1.0.0", "1.1.0"})
    st = status(root)
    assert (st["current"], st["previous"]) == ("1.1.0", "1.0.0")
    assert rollback(root, NO_RESTART)["current"] == "1.0.0"
    _assert_one_version_active(root, keys, {"1.0.0"})


def test_every_checkpoint_is_covered():
    """Runs last in this module: every named checkpoint was a real SIGKILL above."""
    if not COVERED:
        pytest.skip("the kill tests did not run (deselected)")
    assert sorted(COVERED) == sorted(FLASH_CHECKPOINTS + RESTORE_CHECKPOINTS + ROLLBACK_CHECKPOINTS)
    print(f"\ncrash test: {len(COVERED)} kill points covered")
