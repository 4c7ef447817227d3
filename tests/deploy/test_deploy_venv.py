"""install --venv: on a Jetson the venv sees the system site-packages (JetPack's TensorRT and OpenCV)."""
from __future__ import annotations

import pytest

from deploy.install import install
from deploy.venv import create_venv
from edge.errors import ConfigError


def test_jetson_venv_sees_system_site_packages(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic\n")
    venv = tmp_path / "venv"
    lines = install(root, device="case-07", venv=venv, systemd_version=252, venv_with_pip=False)
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert any("--system-site-packages" in line for line in lines) and any("venv imports:" in line for line in lines)
    unit = (root / "etc/systemd/system/gemsight-edge.service").read_text()
    assert f"ExecStart={venv}/bin/gemsight-edge run" in unit  # the units run the new venv
    # A venv made earlier without the system packages is refused on a Jetson, not silently reused.
    plain = tmp_path / "plain"
    create_venv(plain, system_site_packages=False, with_pip=False)
    with pytest.raises(ConfigError, match="exists without --system-site-packages"):
        install(root, device="case-07", venv=plain, systemd_version=252, venv_with_pip=False)


def test_venv_elsewhere_is_isolated(tmp_path):
    venv = tmp_path / "venv"
    lines = install(tmp_path / "root", device="x86-case", venv=venv, systemd_version=252, venv_with_pip=False)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    assert lines[0] == f"created venv {venv}"
