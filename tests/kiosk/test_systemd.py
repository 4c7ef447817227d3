"""The kiosk's unit: systemd-analyze verify is clean and the exposure stays <= 2.0."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "gemsight-kiosk.service"
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


@pytest.fixture
def unit(tmp_path) -> Path:
    """The unit with ExecStart= pointing at an existing stand-in (verify checks that the binary exists)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gemsight-kiosk").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "gemsight-kiosk").chmod(0o755)
    out = tmp_path / UNIT.name
    out.write_text(UNIT.read_text().replace("/opt/gemsight/venv/bin", str(bin_dir)))
    return out


@needs_analyze
def test_kiosk_unit_verifies_and_is_hardened(unit):
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "gemsight" not in proc.stdout + proc.stderr, proc.stderr
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for gemsight-kiosk\.service: (\d+(?:\.\d+)?)", proc.stdout + proc.stderr)
    assert m and float(m.group(1)) <= 2.0, proc.stdout[-2000:]


def test_kiosk_unit_contents():
    text = UNIT.read_text()
    for line in ("Type=notify", "User=gemsight-kiosk", "StateDirectory=gemsight/kiosk", "PrivateDevices=yes",
                 "ExecStart=/opt/gemsight/venv/bin/gemsight-kiosk run --config /etc/gemsight/kiosk.yaml",
                 "LoadCredential=gemsight-kiosk:/etc/gemsight/kiosk-credentials", "CapabilityBoundingSet=",
                 "IPAddressDeny=any"):
        assert re.search(rf"(?m)^{re.escape(line)}$", text), line
    assert "SupplementaryGroups" not in text and "DeviceAllow" not in text


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers not installed")
def test_sysusers_entry_creates_the_kiosk_user(tmp_path):
    (tmp_path / "etc").mkdir()
    for name in ("passwd", "group"):
        (tmp_path / "etc" / name).touch()
    proc = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", "--dry-run",
                           str(UNIT.with_name("gemsight-kiosk.sysusers.conf"))], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "Creating user 'gemsight-kiosk'" in proc.stdout + proc.stderr
