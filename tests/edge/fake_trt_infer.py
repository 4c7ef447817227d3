"""Stand-ins for the inference side of ``tensorrt`` and for ``pycuda.driver``, shaped like NVIDIA's and
pycuda's documented Python APIs, in which "device memory" is numpy bytes and an engine really computes:
it runs an ONNX model with ONNX Runtime on the bytes at its input's address and writes every output, in
the engine's dtype, to the address bound for it.

(tests/fake_tensorrt.py models the builder side; its runtime copies nothing and its outputs read zeros.)

Where each shape comes from (found with the ``search`` tool; "pyCoreDoc" is NVIDIA/TensorRT
``python/docstrings/infer/pyCoreDoc.h``, the docstrings of the Python bindings):

* Named tensors, TensorRT ≥ 8.5 and the only I/O API of 10.x and 11.x — ``ICudaEngine.num_io_tensors``,
  ``get_tensor_name(index)``, ``get_tensor_mode(name)`` → ``TensorIOMode.INPUT/OUTPUT``,
  ``get_tensor_shape(name)`` (``-1`` for a dynamic dimension), ``get_tensor_dtype(name)``,
  ``get_tensor_profile_shape(name, profile_index)`` → ``[min, opt, max]``;
  ``IExecutionContext.set_input_shape(name, shape)``, ``get_tensor_shape(name)``,
  ``set_tensor_address(name, memory)``, ``execute_async_v3(stream_handle)`` ("Modifying or releasing
  memory that has been registered for the tensors before stream synchronization ... results in undefined
  behavior"). pyCoreDoc @922d13f (8.5, "Docs for enqueueV3 related APIs"); the 10.0.1 and 11.0.0 Python
  API pages of ICudaEngine (docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-1001/api/python_api/
  infer/Core/Engine.html, docs.nvidia.com/deeplearning/tensorrt/11.0.0/_static/python-api/infer/Core/
  Engine.html). ``set_input_shape`` returns a bool: ``bool setInputShape(char const* tensorName, Dims
  const& dims)`` (TensorRT 10.2.0 C++ API, classnvinfer1_1_1_i_execution_context.html).
* Bindings, TensorRT 8.2/8.4 (still in 8.5/8.6, removed in 10: "TensorRT 10.x replaces the binding-based
  API with a name-based tensor API", docs.nvidia.com/deeplearning/tensorrt/latest/api/migration-guide.html
  and its "Removed Python APIs" list) — ``num_bindings``, ``get_binding_name(index)``,
  ``binding_is_input(index | name)``, ``get_binding_shape(index | name)``, ``get_binding_dtype(index |
  name)``, ``get_profile_shape(profile_index, binding)`` → ``[min, opt, max]``;
  ``IExecutionContext.set_binding_shape(binding, shape)`` → ``False`` outside the profile,
  ``get_binding_shape(binding)``, ``execute_async_v2(bindings, stream_handle, input_consumed=None)`` →
  ``True`` on success. pyCoreDoc @052281f (8.4) and @922d13f (8.5).
* ``trt.nptype(DataType)``: the migration guide's own sample, ``trt.nptype(engine.get_tensor_dtype(name))``.
* pycuda (inducer/pycuda ``doc/source/driver.rst``): ``mem_alloc(bytes)`` → ``DeviceAllocation`` ("can be
  cast to int", ``free()``); ``pagelocked_empty(shape, dtype, order="C", mem_flags=0)``;
  ``memcpy_htod_async(dest, src, stream=None)`` ("The size of the copy is determined by the size of the
  buffer", "*src* must be page-locked memory"); ``memcpy_dtoh_async(dest, src, stream=None)``;
  ``Stream(flags=0)`` with ``synchronize()``, ``is_done()`` and the ``handle`` property
  (``src/wrapper/wrap_cudadrv.cpp``: ``.add_property("handle", &cl::handle_int)``); ``Context.push()``,
  ``pop()`` (a static method: "Remove any context from the top of the context stack"), ``detach()``.

What is modelled beyond the signatures, because the adapter must get it right on a real device: CUDA
calls need a current context; async copies and executions run in order when their stream is
synchronized, not when called; fresh device and page-locked memory holds garbage (NaN bytes), so a
result read before it was written shows; an execution with a tensor unbound, bound to freed memory or to
a buffer too small for the shape set, or with an input shape outside the profile, fails (``False``, and
the reason in ``state.errors``), as TensorRT reports such calls instead of running them.
"""
from __future__ import annotations

import enum
import itertools
import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Each generation's version string and the I/O APIs it has.
GENERATIONS = {"8.4": ("8.4.1.5", {"bindings"}), "8.6": ("8.6.2.3", {"bindings", "tensors"}),
               "10": ("10.3.0.30", {"tensors"}), "11": ("11.4.1.2", {"tensors"})}
PLAN_MAGIC = b"fake-trt-plan:"
DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32}


@dataclass
class State:
    """What happened on the fake device: calls, the context stack, live allocations, refused executions."""

    calls: list[tuple] = field(default_factory=list)
    ctx_stack: list[Any] = field(default_factory=list)
    detached: int = 0
    memory: dict[int, "Allocation"] = field(default_factory=dict)   # address → live allocation
    pinned: list[np.ndarray] = field(default_factory=list)
    streams: dict[int, "Stream"] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def of(self, name: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == name]


class Allocation:
    """pycuda's ``DeviceAllocation``: ``int()`` is its device address; its bytes start as garbage."""

    _next = itertools.count(1)

    def __init__(self, state: State, nbytes: int) -> None:
        self.state, self.nbytes = state, int(nbytes)
        self.address = 0x7F00_0000_0000 + next(Allocation._next) * (1 << 24)
        self.data = np.full(self.nbytes, 0xFF, np.uint8)   # NaN as float32/float16
        self.freed = False
        state.memory[self.address] = self

    def __int__(self) -> int:
        return self.address

    def free(self) -> None:
        self.freed = True
        self.state.memory.pop(self.address, None)


class Stream:
    def __init__(self, state: State) -> None:
        self.state, self.pending = state, []
        self.handle = 0x5000 + len(state.streams) + 1
        state.streams[self.handle] = self

    def synchronize(self) -> None:
        while self.pending:
            self.pending.pop(0)()

    def is_done(self) -> bool:
        return not self.pending


def make_pycuda(state: State) -> dict[str, types.ModuleType]:
    """``sys.modules`` entries for a pycuda with one device, recording into ``state``."""
    drv = types.ModuleType("pycuda.driver")
    drv.Error = type("Error", (Exception,), {})
    drv.LogicError = type("LogicError", (drv.Error,), {})
    drv.init = lambda flags=0: None

    def need_context(what: str) -> None:
        if not state.ctx_stack:
            raise drv.LogicError(f"{what} failed: invalid device context - no currently active context?")

    class Context:
        def push(self):
            state.ctx_stack.append(self)

        @staticmethod
        def pop():
            if not state.ctx_stack:
                raise drv.LogicError("context::pop failed: no context on the stack")
            state.ctx_stack.pop()

        def detach(self):
            state.detached += 1

    primary = Context()

    class Device:
        def __init__(self, number):
            if number != 0:
                raise drv.LogicError(f"cuDeviceGet failed: invalid device ordinal {number}")

        @staticmethod
        def count():
            return 1

        def retain_primary_context(self):
            return primary

    def mem_alloc(nbytes):
        need_context("mem_alloc")
        return Allocation(state, nbytes)

    def pagelocked_empty(shape, dtype, order="C", mem_flags=0):
        host = np.empty(shape, dtype, order=order)
        host.view(np.uint8)[...] = 0xFF
        state.pinned.append(host)
        return host

    def _pinned(array: np.ndarray) -> bool:
        return any(np.shares_memory(array, p) for p in state.pinned)

    def _allocation(ptr) -> Allocation:
        alloc = state.memory.get(int(ptr))
        if alloc is None:
            raise drv.LogicError(f"cuMemcpy failed: invalid argument (no live allocation at {int(ptr):#x})")
        return alloc

    def _enqueue(stream, op) -> None:
        if stream is None:
            op()
        else:
            stream.pending.append(op)

    def memcpy_htod_async(dest, src, stream=None):
        need_context("memcpy_htod_async")
        if not (isinstance(src, np.ndarray) and _pinned(src) and src.flags.c_contiguous):
            raise drv.LogicError("memcpy_htod_async: src must be contiguous page-locked memory")
        alloc = _allocation(dest)
        if src.nbytes > alloc.nbytes:
            raise drv.LogicError(f"cuMemcpyHtoDAsync failed: {src.nbytes} bytes into an allocation of {alloc.nbytes}")
        state.calls.append(("memcpy_htod_async", int(dest), src.nbytes))

        def op():
            alloc.data[:src.nbytes] = np.frombuffer(src.tobytes(), np.uint8)
        _enqueue(stream, op)

    def memcpy_dtoh_async(dest, src, stream=None):
        need_context("memcpy_dtoh_async")
        if not (isinstance(dest, np.ndarray) and _pinned(dest) and dest.flags.c_contiguous):
            raise drv.LogicError("memcpy_dtoh_async: dest must be contiguous page-locked memory")
        alloc = _allocation(src)
        if dest.nbytes > alloc.nbytes:
            raise drv.LogicError(f"cuMemcpyDtoHAsync failed: {dest.nbytes} bytes from an allocation of {alloc.nbytes}")
        state.calls.append(("memcpy_dtoh_async", int(src), dest.nbytes))

        def op():
            dest.view(np.uint8).reshape(-1)[...] = alloc.data[:dest.nbytes]
        _enqueue(stream, op)

    def make_stream(flags=0):
        need_context("Stream")
        return Stream(state)

    drv.Context, drv.Device, drv.mem_alloc, drv.pagelocked_empty = Context, Device, mem_alloc, pagelocked_empty
    drv.memcpy_htod_async, drv.memcpy_dtoh_async, drv.Stream = memcpy_htod_async, memcpy_dtoh_async, make_stream
    drv.DeviceAllocation = Allocation
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv
    return {"pycuda": pkg, "pycuda.driver": drv}


def write_plan(path: Path, generation: str, onnx_path: Path, tensors: list[dict], profile: tuple) -> Path:
    """Write an "engine" for ``generation``: ``tensors`` in the engine's order, each ``{"name", "mode":
    "input"|"output", "shape" (-1 for the batch), "dtype": "FLOAT"|"HALF", "source"}`` (``source``: the ONNX
    tensor it carries, default its name); ``profile``: the input's (min, opt, max) shapes."""
    version = GENERATIONS[generation][0]
    plan = {"onnx": str(onnx_path), "tensors": tensors, "profile": [list(s) for s in profile]}
    path.write_bytes(PLAN_MAGIC + version.encode() + b":" + json.dumps(plan).encode())
    return path


def make_tensorrt(generation: str, state: State) -> types.ModuleType:
    """A ``tensorrt`` module of ``generation`` (a key of :data:`GENERATIONS`) with the runtime side only."""
    import onnxruntime as ort

    version, apis = GENERATIONS[generation]
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.DataType = enum.IntEnum("DataType", {name: i for i, name in enumerate(DTYPES)})
    trt.nptype = lambda dt: DTYPES[trt.DataType(dt).name]
    if "tensors" in apis:
        trt.TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})

    class Logger:
        WARNING = 2

        def __init__(self, min_severity=2):
            self.min_severity = min_severity

    trt.Logger = Logger

    class Context:
        """``IExecutionContext``: the shape set for the input and each tensor's address."""

        def __init__(self, engine):
            self._engine, self._shape, self._addresses = engine, None, {}

        def _set_shape(self, name, shape):
            low, _, high = self._engine._profile
            shape = tuple(int(d) for d in shape)
            ok = len(shape) == len(high) and all(lo <= d <= hi for d, lo, hi in zip(shape, low, high))
            state.calls.append(("set_input_shape", name, shape, ok))
            if ok:
                self._shape = shape
            return ok

        def _shape_of(self, t):
            rows = self._shape[0] if self._shape else -1
            return tuple(self._shape) if t["mode"] == "input" and self._shape else (rows, *t["shape"][1:])

        def _execute(self, addresses, stream_handle, api):
            eng = self._engine
            state.calls.append((api, self._shape, dict(addresses)))
            stream = state.streams.get(int(stream_handle))
            problems = [] if stream is not None else [f"no stream with handle {stream_handle}"]
            if self._shape is None:
                problems.append(f"input '{eng._input['name']}' has no shape set")
            bound = {}
            for t in eng._tensors:
                alloc = state.memory.get(addresses.get(t["name"], 0))
                need = int(np.prod(self._shape_of(t))) * np.dtype(DTYPES[t["dtype"]]).itemsize if self._shape else 0
                if alloc is None:
                    problems.append(f"tensor '{t['name']}' has no live device address")
                elif alloc.nbytes < need:
                    problems.append(f"tensor '{t['name']}' needs {need} bytes, its buffer has {alloc.nbytes}")
                bound[t["name"]] = alloc
            if problems:
                state.errors.extend(problems)
                return False
            shapes = {t["name"]: self._shape_of(t) for t in eng._tensors}

            def run():  # at stream synchronization, reading what the earlier copies wrote
                src = eng._input
                x = np.frombuffer(bound[src["name"]].data, DTYPES[src["dtype"]],
                                  int(np.prod(shapes[src["name"]]))).reshape(shapes[src["name"]])
                outs = [t for t in eng._tensors if t["mode"] == "output"]
                values = eng._session.run([t.get("source", t["name"]) for t in outs],
                                          {src.get("source", src["name"]): x.astype(np.float32)})
                for t, value in zip(outs, values):
                    raw = np.ascontiguousarray(value.astype(DTYPES[t["dtype"]])).reshape(shapes[t["name"]])
                    bound[t["name"]].data[:raw.nbytes] = np.frombuffer(raw.tobytes(), np.uint8)
            stream.pending.append(run)
            return True

    class Engine:
        """``ICudaEngine`` of one plan; its methods are added per generation below."""

        def __init__(self, plan):
            self._tensors = plan["tensors"]
            self._profile = [tuple(s) for s in plan["profile"]]
            self._input = next(t for t in self._tensors if t["mode"] == "input")
            self._session = ort.InferenceSession(plan["onnx"], providers=["CPUExecutionProvider"])

        def _tensor(self, key):
            return self._tensors[key] if isinstance(key, int) else next(t for t in self._tensors if t["name"] == key)

        def create_execution_context(self):
            return ExecutionContext(self)

    engine_methods: dict[str, Any] = {}
    context_methods: dict[str, Any] = {}
    if "tensors" in apis:
        engine_methods.update(
            num_io_tensors=property(lambda self: len(self._tensors)),
            get_tensor_name=lambda self, index: self._tensors[index]["name"],
            get_tensor_mode=lambda self, name: trt.TensorIOMode[self._tensor(name)["mode"].upper()],
            get_tensor_shape=lambda self, name: tuple(self._tensor(name)["shape"]),
            get_tensor_dtype=lambda self, name: trt.DataType[self._tensor(name)["dtype"]],
            get_tensor_profile_shape=lambda self, name, profile_index: (
                list(self._profile) if name == self._input["name"] and profile_index == 0 else []))

        def set_tensor_address(self, name, memory):
            state.calls.append(("set_tensor_address", name, int(memory)))
            self._addresses[name] = int(memory)
            return True

        context_methods.update(
            set_input_shape=lambda self, name, shape: self._set_shape(name, shape),
            get_tensor_shape=lambda self, name: self._shape_of(self._engine._tensor(name)),
            set_tensor_address=set_tensor_address,
            execute_async_v3=lambda self, stream_handle: self._execute(self._addresses, stream_handle,
                                                                       "execute_async_v3"))
    if "bindings" in apis:
        def execute_async_v2(self, bindings, stream_handle, input_consumed=None):
            names = [t["name"] for t in self._engine._tensors]
            if len(bindings) != len(names):
                state.errors.append(f"{len(bindings)} bindings for {len(names)} tensors")
                return False
            return self._execute(dict(zip(names, (int(b) for b in bindings))), stream_handle, "execute_async_v2")

        engine_methods.update(
            num_bindings=property(lambda self: len(self._tensors)),
            get_binding_name=lambda self, index: self._tensors[index]["name"],
            binding_is_input=lambda self, binding: self._tensor(binding)["mode"] == "input",
            get_binding_shape=lambda self, binding: tuple(self._tensor(binding)["shape"]),
            get_binding_dtype=lambda self, binding: trt.DataType[self._tensor(binding)["dtype"]],
            get_profile_shape=lambda self, profile_index, binding: (
                list(self._profile) if self._tensor(binding) is self._input and profile_index == 0 else []))
        context_methods.update(
            set_binding_shape=lambda self, binding, shape: self._set_shape(self._engine._tensor(binding)["name"],
                                                                           shape),
            get_binding_shape=lambda self, binding: self._shape_of(self._engine._tensor(binding)),
            execute_async_v2=execute_async_v2)
    Engine = type("ICudaEngine", (Engine,), engine_methods)  # noqa: N806 - the class TensorRT names
    ExecutionContext = type("IExecutionContext", (Context,), context_methods)

    class Runtime:
        def __init__(self, logger):
            self.logger, self.DLA_core = logger, -1

        def deserialize_cuda_engine(self, blob):
            prefix = PLAN_MAGIC + version.encode() + b":"
            if not bytes(blob).startswith(prefix):
                return None  # another TensorRT's plan, or not a plan
            return Engine(json.loads(bytes(blob)[len(prefix):]))

    trt.Runtime = Runtime
    return trt


def write_model(directory: Path, *, classes: tuple[str, ...] = ("empty", "ring", "watch", "chain"), size: int = 16,
                dim: int = 16, seed: int = 0) -> tuple[Path, Any]:
    """A small model with the two outputs of a gemsight classifier, ``logits`` (``N x classes``) and
    ``embedding`` (``N x dim``, unit rows: the features the logits are read from), as ``model.onnx`` and
    ``manifest.json`` in ``directory``; returns the ONNX path and the manifest (with the embedding)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edge.manifest import EmbeddingSpec, InputSpec, Manifest, embed_manifest

    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.05, (3 * size * size, dim)).astype(np.float32)
    w2 = rng.normal(0, 1.0, (dim, len(classes))).astype(np.float32)
    b2 = rng.normal(0, 0.1, len(classes)).astype(np.float32)
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w1"], ["feat"]),
             helper.make_node("ReduceL2", ["feat"], ["norm"], axes=[1], keepdims=1),
             helper.make_node("Div", ["feat", "norm"], ["embedding"]),
             helper.make_node("MatMul", ["embedding", "w2"], ["scores"]),
             helper.make_node("Add", ["scores", "b2"], ["logits"])]
    graph = helper.make_graph(
        nodes, "two-outputs",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(classes)]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    manifest = Manifest(name="two-outputs", version="0.0.1", arch="linear", classes=classes,
                        input=InputSpec(size=(size, size)), embedding=EmbeddingSpec(dim=dim))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.onnx"
    onnx.save(embed_manifest(proto, manifest), str(path))
    manifest.save(directory / "manifest.json")
    return path, manifest
