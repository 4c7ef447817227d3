"""What this machine is, as the runtimes need it: the CPU's INT8 kernels, and the device a TensorRT engine
was built on.

:func:`int8_saturates`: whether the x86 CPU's fast INT8 kernels sum pairs of products in saturating 16-bit
integers (no VNNI), read with NumPy's own CPU detection (``cpuid``: the units' ``ProcSubset=pid`` hides
``/proc/cpuinfo``).

A serialized engine runs only on the TensorRT build, CUDA driver, Jetson Linux (L4T) release or
desktop driver, and GPU that built it (NVIDIA: "engines are not portable across platforms or
TensorRT versions"). Those facts are read here, once, into a :class:`Platform`; they become part
of the engine cache key (:mod:`edge.runtimes.engine_cache`), so a JetPack or driver update makes the next
look-up miss and the engine is rebuilt instead of failing at every start.

Plain Python; TensorRT and pycuda are imported lazily by :func:`probe_platform`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edge.errors import RuntimeUnavailable

#: Jetson Linux writes its release here (``# R36 (release), REVISION: 4.3, GCID: ...``).
TEGRA_RELEASE = "etc/nv_tegra_release"
#: The loaded desktop/datacentre kernel driver's version. Read from /sys, not /proc/driver/nvidia:
#: the units' ProcSubset=pid hides /proc/driver, and flash (no sandbox) and the edge (sandboxed)
#: must compute the same key.
NVIDIA_MODULE_VERSION = "sys/module/nvidia/version"
NVIDIA_DRIVER_VERSION = "proc/driver/nvidia/version"
_TEGRA = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)")
_DRIVER = re.compile(r"Kernel Module\s+(?:for\s+\S+\s+)?([0-9]+(?:\.[0-9]+)+)")


@dataclass(frozen=True)
class Platform:
    """The build-relevant facts of one GPU on this machine."""

    trt_version: str           # tensorrt.__version__, in full (e.g. 10.3.0.30)
    cuda_driver: str           # CUDA version the driver supports, e.g. 12.6
    system: str                # "L4T R36.4.3" on a Jetson, "driver 550.54.15" elsewhere
    gpu_name: str
    compute_capability: str    # "8.7"


def int8_saturates() -> bool:
    """True on an x86 CPU whose u8s8 INT8 kernels saturate: SSE4.1, AVX2 or AVX-512 without VNNI (VNNI sums
    in 32 bits; ARM's kernels never saturate).

    Read from NumPy's run-time CPU detection (``cpuid``, so a sandboxed service reads it too); its table
    lacks AVX-VNNI (the 256-bit form of Alder Lake and later), which ``/proc/cpuinfo`` adds where readable.
    A CPU it cannot tell reads as saturating: the exact kernels only cost speed.
    """
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features  # noqa: PLC0415
    except ImportError:   # NumPy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features  # noqa: PLC0415
        except ImportError:
            features = {}
    if features and not any(features.get(f) for f in ("SSE41", "AVX2", "AVX512F")):
        return False          # not x86 (ARM, POWER ...): no u8s8 saturation
    if features.get("AVX512VNNI"):
        return False
    m = _search(Path("/proc/cpuinfo"), re.compile(r"^flags\s*:.*$", re.M))
    return not (m and {"avx_vnni", "avx512_vnni"} & set(m.group(0).split()))


def is_jetson(root: str | Path = "/") -> bool:
    """True on Jetson Linux (L4T): the root has ``/etc/nv_tegra_release``."""
    return (Path(root) / TEGRA_RELEASE).is_file()


def cuda_version_text(driver_version: int) -> str:
    """``cuDriverGetVersion``'s integer (1000 * major + 10 * minor) as ``major.minor``."""
    return f"{int(driver_version) // 1000}.{(int(driver_version) % 1000) // 10}"


def _search(path: Path, pattern: re.Pattern, whole: bool = False) -> re.Match | None:
    """``pattern`` searched (or, with ``whole``, fully matched) in a small text file; ``None`` if unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return pattern.fullmatch(text) if whole else pattern.search(text)


def system_release(root: str | Path = "/") -> str:
    """``L4T R<major>.<revision>`` on Jetson Linux, ``driver <version>`` with a desktop driver, else ``unknown``.

    Only files a sandboxed service can read too (``ProcSubset=pid`` hides ``/proc/driver``), so a
    build by flash and a look-up by the edge compute the same key.
    """
    root = Path(root)
    m = _search(root / TEGRA_RELEASE, _TEGRA)
    if m:
        return f"L4T R{m.group(1)}.{m.group(2)}"
    m = _search(root / NVIDIA_MODULE_VERSION, re.compile(r"\s*([0-9]+(?:\.[0-9]+)+)\s*"), whole=True)
    if m:
        return f"driver {m.group(1)}"
    m = _search(root / NVIDIA_DRIVER_VERSION, _DRIVER)
    if m:
        return f"driver {m.group(1)}"
    return "unknown"


def probe_platform(device_index: int = 0) -> Platform:
    """The :class:`Platform` of CUDA device ``device_index``.

    Raises:
        RuntimeUnavailable: TensorRT or pycuda is missing, or no CUDA device answers.
    """
    try:
        import tensorrt as trt  # noqa: PLC0415
        import pycuda.driver as cuda  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"TensorRT/pycuda not installed ({exc.name}); they come with JetPack ('gemsight[jetson]')") from exc
    try:
        cuda.init()
        dev = cuda.Device(device_index)
        major, minor = dev.compute_capability()
        return Platform(str(trt.__version__), cuda_version_text(cuda.get_driver_version()), system_release(),
                        str(dev.name()), f"{major}.{minor}")
    except Exception as exc:  # pycuda raises its own LogicError/RuntimeError family
        raise RuntimeUnavailable(f"no usable CUDA device {device_index}: {exc}") from exc
