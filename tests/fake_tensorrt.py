"""Stand-ins for the ``tensorrt`` and ``pycuda`` modules, shaped like each documented API generation.

TensorRT cannot be installed on CI machines. These fakes carry exactly the attributes NVIDIA's
Python API references list for 8.6, 10.x and 11.x (and lack the ones removed): setting or reading
an attribute a generation does not have raises ``AttributeError``, as the real bindings do. They
record the calls the builder makes, serialize "engines" that name the TensorRT that built them
(another version cannot deserialize them: a stale cache entry), and answer the engine inspector
like TensorRT does for a dynamic batch: formats read ``"N/A due to dynamic shapes"`` unless an
execution context with every input shape set is attached.
"""
from __future__ import annotations

import enum
import json
import types
from dataclasses import dataclass, field
from typing import Any

GENERATIONS = {"8.6": "8.6.2.3", "10": "10.3.0.30", "11": "11.4.1.2"}
NA = "N/A due to dynamic shapes"


@dataclass
class Calls:
    """What the builder did, in order."""

    log: list[tuple] = field(default_factory=list)

    def names(self) -> list[str]:
        return [c[0] for c in self.log]

    def of(self, name: str) -> list[tuple]:
        return [c for c in self.log if c[0] == name]


class _Strict:
    """An object with a fixed set of attributes, like a pybind11 class (unknown ones raise AttributeError)."""

    _allowed: frozenset = frozenset()

    def __setattr__(self, name, value):
        if not name.startswith("_") and name not in self._allowed:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


def make_tensorrt(generation: str, *, fail_build: bool = False, input_name: str = "input") -> tuple[types.ModuleType, Calls]:
    """A ``tensorrt`` module of ``generation`` ("8.6", "10" or "11") and the log of calls made on it."""
    version = GENERATIONS[generation]
    major = int(version.split(".")[0])
    calls = Calls()
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    flags = {"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1} if major == 8 else (
        {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1} if major == 10 else {"STRONGLY_TYPED": 0})
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", flags)
    bflags = ["GPU_FALLBACK", "REFIT", "DEBUG", "TF32"] + (["FP16", "INT8"] if major < 11 else [])
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", {n: i for i, n in enumerate(bflags)})
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1})
    trt.ProfilingVerbosity = enum.IntEnum("ProfilingVerbosity", {"LAYER_NAMES_ONLY": 0, "NONE": 1, "DETAILED": 2})
    trt.LayerInformationFormat = enum.IntEnum("LayerInformationFormat", {"ONELINE": 0, "JSON": 1})
    trt.DeviceType = enum.IntEnum("DeviceType", {"GPU": 0, "DLA": 1})

    class ILogger:
        def __init__(self):
            pass

    trt.ILogger = ILogger
    if major < 11:
        class IInt8EntropyCalibrator2:
            def __init__(self):
                pass
        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    config_attrs = {"profiling_verbosity", "default_device_type", "DLA_core"}
    if major < 11:
        config_attrs |= {"int8_calibrator"}

    class IBuilderConfig(_Strict):
        _allowed = frozenset(config_attrs)
        profiling_verbosity = default_device_type = DLA_core = None

        def set_memory_pool_limit(self, pool, size):
            calls.log.append(("set_memory_pool_limit", pool.name, size))

        def set_flag(self, flag):
            calls.log.append(("set_flag", flag.name))

        def add_optimization_profile(self, profile):
            calls.log.append(("add_optimization_profile", profile.shapes))

        def create_timing_cache(self, blob):
            return b"timing"

        def set_timing_cache(self, cache, ignore_mismatch):
            return True

        def get_timing_cache(self):
            return types.SimpleNamespace(serialize=lambda: b"timing")

    if major < 11:
        IBuilderConfig.int8_calibrator = None

        def set_calibration_profile(self, profile):
            calls.log.append(("set_calibration_profile", profile.shapes))
        IBuilderConfig.set_calibration_profile = set_calibration_profile
    trt.IBuilderConfig = IBuilderConfig

    class Profile:
        def __init__(self):
            self.shapes = None

        def set_shape(self, name, low, opt, high):
            self.shapes = (name, tuple(low), tuple(opt), tuple(high))

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.source = None

        def get_input(self, index):
            return types.SimpleNamespace(name=input_name, shape=(-1, 3, 16, 16))

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        def parse_from_file(self, path):
            calls.log.append(("parse_from_file", path.rsplit("/", 1)[-1]))
            self.network.source = path
            with open(path, "rb") as fh:
                ok = fh.read() != b"bad"
            self.errors = [] if ok else ["In node 0: unsupported operator"]
            return ok

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

    trt.OnnxParser = OnnxParser

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags=0):
            calls.log.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self):
            cfg = IBuilderConfig()
            object.__setattr__(cfg, "_flags", set())
            return cfg

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            if fail_build:
                raise RuntimeError("Error Code 2: Internal Error (out of memory)")
            flag_names = {c[1] for c in calls.of("set_flag")}
            strongly = bool(network.flags & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))) \
                if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") else False
            qdq = str(network.source).endswith(".trt.onnx")
            int8 = qdq and (strongly or major == 11 or "INT8" in flag_names)
            int8 = int8 or ("INT8" in flag_names and getattr(config, "int8_calibrator", None) is not None)
            calls.log.append(("build_serialized_network", {"int8": int8, "dla": config.DLA_core}))
            profile = calls.of("add_optimization_profile")[-1][1]
            facts = {"int8": int8, "input": profile[0], "max": list(profile[3])}
            return f"fake-engine:{version}:{json.dumps(facts)}".encode()

    if major < 11:
        Builder.platform_has_fast_int8 = True
        Builder.platform_has_fast_fp16 = True
    trt.Builder = Builder

    class IExecutionContext:
        def __init__(self):
            self.shape = None

        def set_input_shape(self, name, shape):
            calls.log.append(("set_input_shape", name, tuple(shape)))
            self.shape = tuple(shape)
            return True

        def set_tensor_address(self, name, address):
            return True

        def execute_async_v3(self, stream_handle):
            calls.log.append(("execute_async_v3", self.shape))
            return True

    trt.IExecutionContext = IExecutionContext
    inspector_attr = "context" if major == 8 else "execution_context"

    class EngineInspector(_Strict):
        _allowed = frozenset({inspector_attr, "error_recorder"} | ({"engine"} if major == 8 else set()))

        def __init__(self, int8):
            object.__setattr__(self, "_int8", int8)
            setattr(self, inspector_attr, None)

        def get_engine_information(self, fmt):
            ctx = getattr(self, inspector_attr)
            known = ctx is not None and ctx.shape is not None and min(ctx.shape) > 0
            dtype = "Thirty-two wide channel vectorized row major Int8 format" if self._int8 else "Row major linear FP32"
            fmt_text = dtype if known else NA
            dims = list(ctx.shape) if known else [-1, 3, 16, 16]
            layers = [{"Name": "conv1 + relu", "LayerType": "CaskConvolution",
                       "Inputs": [{"Name": "input", "Dimensions": dims, "Format/Datatype": fmt_text}],
                       "Outputs": [{"Name": "c1", "Dimensions": dims, "Format/Datatype": fmt_text}]},
                      {"Name": "fc", "LayerType": "CaskGemm",
                       "Inputs": [{"Name": "c1", "Format/Datatype": fmt_text}],
                       "Outputs": [{"Name": "logits", "Format/Datatype": "Row major linear FP32" if known else NA}]}]
            io = {"Bindings": ["input", "logits"]} if major < 11 else {"I/O Tensors": [
                {"Name": "input", "IOMode": "Input", "DataType": "Float", "Dimensions": dims},
                {"Name": "logits", "IOMode": "Output", "DataType": "Float", "Dimensions": [dims[0], 8]}]}
            calls.log.append(("get_engine_information", known))
            return json.dumps({"Layers": layers, **io})

    class Engine:
        """What the edge's TensorRtRuntime reads of an engine (the >= 8.5 tensor API)."""

        def __init__(self, facts):
            self.int8, self._facts = facts["int8"], facts
            self._names = [facts.get("input", input_name), "logits"]
            self.num_io_tensors = 2

        def get_tensor_name(self, i):
            return self._names[i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == self._names[0] else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return trt.DataType.FLOAT

        def get_tensor_shape(self, name):  # -1 for the dynamic batch; the logits of the 8 default classes
            return (-1, *self._facts["max"][1:]) if name == self._names[0] else (-1, 8)

        def get_tensor_profile_shape(self, name, profile):
            high = tuple(self._facts["max"])
            return [(1, *high[1:]), high, high]

        def create_execution_context(self):
            return IExecutionContext()

        def create_engine_inspector(self):
            return EngineInspector(self.int8)

    class Runtime(_Strict):
        _allowed = frozenset({"DLA_core", "error_recorder", "gpu_allocator", "max_threads"})

        def __init__(self, logger):
            self.DLA_core = -1

        def deserialize_cuda_engine(self, blob):
            calls.log.append(("deserialize_cuda_engine", bytes(blob[:40])))
            prefix = f"fake-engine:{version}:".encode()
            if not bytes(blob).startswith(prefix):
                return None  # built by another TensorRT, or not an engine at all
            return Engine(json.loads(bytes(blob)[len(prefix):]))

    trt.Runtime = Runtime
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    trt.DataType = enum.IntEnum("DataType", {"FLOAT": 0, "HALF": 1, "INT8": 2})
    trt.nptype = lambda dtype: {0: "float32", 1: "float16", 2: "int8"}[int(dtype)]
    trt.Logger = type("Logger", (ILogger,), {"WARNING": 2, "__init__": lambda self, severity=2: None})
    return trt, calls


def make_pycuda(cc: tuple[int, int] = (8, 7), name: str = "Orin (nvgpu)", driver: int = 12060) -> dict[str, Any]:
    """``sys.modules`` entries for a pycuda whose one device has compute capability ``cc``
    (host buffers are numpy arrays; "device" copies do nothing, so outputs read zeros)."""
    import numpy as np

    drv = types.ModuleType("pycuda.driver")
    drv.init = lambda *a: None
    drv.get_driver_version = lambda: driver
    drv.Error = type("Error", (Exception,), {})
    drv.pagelocked_empty = lambda shape, dtype: np.zeros(shape, dtype)
    drv.Stream = lambda: types.SimpleNamespace(handle=0, synchronize=lambda: None)
    drv.memcpy_htod_async = drv.memcpy_dtoh_async = lambda dst, src, stream: None

    class _Memory:
        def __init__(self, nbytes):
            self.nbytes = nbytes

        def free(self):
            pass

        def __int__(self):
            return 4096

    drv.mem_alloc = _Memory
    context = types.SimpleNamespace(push=lambda: None, pop=lambda: None, detach=lambda: None)

    class Device:
        def __init__(self, index):
            if index != 0:
                raise RuntimeError(f"cuDeviceGet failed: invalid device ordinal {index}")

        def compute_capability(self):
            return cc

        def name(self):
            return name

        def retain_primary_context(self):
            return context

        @staticmethod
        def count():
            return 1

    drv.Device = Device
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv
    return {"pycuda": pkg, "pycuda.driver": drv}
