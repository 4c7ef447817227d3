"""What this machine offers gemsight, for ``gemsight-edge check``: TensorRT, OpenCV (with or without
GStreamer), the inference runtimes, and whether a venv hides JetPack's system packages.

Every probe catches what a broken install raises: a check reports, it never crashes.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from edge.platform import is_jetson, system_release
from edge.runtimes.registry import available_runtimes

_GSTREAMER = re.compile(r"GStreamer:\s*(YES|NO)\b(?:\s*\(([^)]*)\))?")
VENV_HINT = ("this venv does not see the system site-packages, where JetPack keeps TensorRT and its GStreamer "
             "OpenCV: recreate it with `gemsight-deploy install --venv DIR` (uses --system-site-packages on a Jetson)")


def _venv_sees_system() -> bool | None:
    """``None`` outside a venv, else whether it was made with ``--system-site-packages``."""
    if sys.prefix == sys.base_prefix:
        return None
    cfg = Path(sys.prefix) / "pyvenv.cfg"
    try:
        return "include-system-site-packages = true" in cfg.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def python_line() -> str:
    sees = _venv_sees_system()
    where = "system" if sees is None else f"venv {sys.prefix}, system site-packages {'visible' if sees else 'hidden'}"
    line = f"python {sys.version.split()[0]} ({where})"
    if is_jetson():
        line += f" on {system_release()}"
        if sees is False:
            line += f" — {VENV_HINT}"
    return line


def tensorrt_line() -> str:
    try:
        import tensorrt  # noqa: PLC0415
    except ImportError as exc:
        return f"tensorrt: not importable ({exc.name or exc})"
    except Exception as exc:  # a broken install (missing libnvinfer) raises more than ImportError
        return f"tensorrt: broken install ({type(exc).__name__}: {exc})"
    return f"tensorrt {getattr(tensorrt, '__version__', '?')}"


def opencv_line() -> str:
    try:
        import cv2  # noqa: PLC0415
    except ImportError as exc:
        return f"opencv: not importable ({exc.name or exc})"
    except Exception as exc:
        return f"opencv: broken install ({type(exc).__name__}: {exc})"
    try:
        m = _GSTREAMER.search(cv2.getBuildInformation())
    except Exception:  # an OpenCV without build information
        m = None
    if m is None:
        gst = "GStreamer unknown"
    elif m.group(1) == "YES":
        gst = f"with GStreamer{' ' + m.group(2) if m.group(2) else ''}"
    else:
        gst = "without GStreamer (csi:// and gst:// cameras need the JetPack OpenCV)"
    return f"opencv {cv2.__version__} {gst}"


def runtimes_line() -> str:
    parts = [f"{name} {'ok' if reason is None else f'unavailable ({reason})'}"
             for name, reason in sorted(available_runtimes().items())]
    return "runtimes: " + ", ".join(parts)


def environment_lines() -> list[str]:
    """One line each: Python (and venv), TensorRT, OpenCV, runtimes."""
    return [python_line(), tensorrt_line(), opencv_line(), runtimes_line()]
