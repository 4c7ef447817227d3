"""The device's Python environment: a venv that can still see JetPack's TensorRT and OpenCV.

On a Jetson, TensorRT's Python bindings (``python3-libnvinfer``) and the GStreamer-enabled OpenCV
come with JetPack as Debian packages in the system ``dist-packages``; pip cannot install them. A
venv made without ``--system-site-packages`` cannot import them: ``runtime: auto`` then silently
falls back to the CPU and ``csi://`` cameras have no GStreamer. So ``gemsight-deploy install
--venv`` makes the venv with ``--system-site-packages`` on a Jetson (``/etc/nv_tegra_release``
exists under the root) and says what the venv can import afterwards.
"""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from edge.errors import ConfigError
from edge.platform import is_jetson  # noqa: F401 - deploy.install imports it from here

logger = logging.getLogger(__name__)

_PROBE = ("import importlib.util as u; "
          "print(' '.join(m for m in ('tensorrt', 'cv2', 'pycuda') if u.find_spec(m) is not None))")


def _run(cmd: list[str], what: str, timeout: float) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{what} failed ({' '.join(cmd)}): {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise ConfigError(f"{what} failed ({' '.join(cmd)}): {tail[0]}")
    return proc.stdout


def create_venv(venv: str | Path, system_site_packages: bool, pip_install: Sequence[str] = (),
                python: str | None = None, with_pip: bool = True) -> list[str]:
    """Create (or reuse) ``venv``, install ``pip_install`` into it, and report what it can import.

    Args:
        venv: the venv directory (``/opt/gemsight/venv`` on a device).
        system_site_packages: let the venv see the system's packages (JetPack's TensorRT and OpenCV).
        pip_install: requirement specifiers or wheel paths for ``pip install`` (none: create only).
        python: interpreter to create it with (default: this one's base interpreter).
        with_pip: bootstrap pip into it (needed for ``pip_install`` and later upgrades).

    Returns:
        One line per thing done, the last saying which of tensorrt / cv2 / pycuda import there.

    Raises:
        ConfigError: venv creation or pip failed (the command and its last error line named).
    """
    venv = Path(venv)
    py = venv / "bin" / "python"
    done = []
    if py.exists():
        cfg = venv / "pyvenv.cfg"
        text = cfg.read_text(encoding="utf-8", errors="replace") if cfg.is_file() else ""
        sees_system = "include-system-site-packages = true" in text
        if system_site_packages and not sees_system:
            raise ConfigError(f"{venv} exists without --system-site-packages, so it cannot import JetPack's "
                              f"TensorRT and OpenCV; remove it (or choose another --venv) and install again")
        done.append(f"venv {venv} exists" + (" (sees the system site-packages)" if sees_system else ""))
    else:
        cmd = [python or getattr(sys, "_base_executable", sys.executable), "-m", "venv",
               *(["--system-site-packages"] if system_site_packages else []),
               *([] if with_pip or pip_install else ["--without-pip"]), str(venv)]
        _run(cmd, "creating the venv", timeout=600)
        done.append(f"created venv {venv}" + (" with --system-site-packages (JetPack's TensorRT and OpenCV stay "
                                              "importable)" if system_site_packages else ""))
    if pip_install:
        _run([str(py), "-m", "pip", "install", *pip_install], "pip install", timeout=3600)
        done.append(f"installed {' '.join(pip_install)} into {venv}")
    found = _run([str(py), "-c", _PROBE], "probing the venv", timeout=120).split()
    missing = [m for m in ("tensorrt", "cv2") if m not in found]
    line = f"venv imports: {', '.join(found) or 'none of tensorrt, cv2, pycuda'}"
    if system_site_packages and missing:
        line += f"; MISSING {', '.join(missing)}: install JetPack's python3-libnvinfer / OpenCV (apt)"
        logger.warning("%s", line)
    done.append(line)
    return done
