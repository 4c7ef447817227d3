"""What a TensorRT engine takes and gives, read the same way from either API generation, and checked
against the model's manifest before a byte of device memory is allocated.

TensorRT ≥ 8.5 names its I/O tensors (``num_io_tensors``, ``get_tensor_name/mode/shape/dtype``,
``get_tensor_profile_shape(name, profile)``); TensorRT 10 removed the older bindings API that 8.2/8.4
(older JetPacks) only have (``num_bindings``, ``get_binding_name/shape/dtype``, ``binding_is_input``,
``get_profile_shape(profile, binding)``). Both are read into :class:`EngineIO`, in the engine's own order.

Every I/O tensor of an engine needs a device address at execution, also an output the manifest does not
name (an engine built from a model with an embedding, run by a manifest without one): those get a
buffer of their own and are not returned.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import InferenceError
from edge.manifest import Manifest


@dataclass(frozen=True)
class TensorInfo:
    """One I/O tensor of an engine: its name, direction, shape (``-1`` for a dynamic dimension) and the
    numpy dtype of its buffer."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class EngineIO:
    """An engine's I/O tensors in its own order, and its input's batch range (optimisation profile 0)."""

    tensors: tuple[TensorInfo, ...]
    input_min: tuple[int, ...]   # the input's smallest and largest shapes in the profile
    input_max: tuple[int, ...]
    tensor_api: bool             # TensorRT ≥ 8.5 named tensors; False: 8.2/8.4 bindings

    @property
    def min_batch(self) -> int:
        return self.input_min[0]

    @property
    def max_batch(self) -> int:
        return self.input_max[0]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    def get(self, name: str) -> TensorInfo:
        return next(t for t in self.tensors if t.name == name)


def _describe(names: list[str], is_input: list[bool], shapes: list, dtypes: list, trt: Any) -> list[TensorInfo]:
    return [TensorInfo(n, bool(i), tuple(int(d) for d in s), np.dtype(trt.nptype(dt)))
            for n, i, s, dt in zip(names, is_input, shapes, dtypes)]


def read_engine_io(engine: Any, trt: Any, input_name: str, engine_path: Path) -> EngineIO:
    """Read ``engine``'s tensors and the batch range of ``input_name`` with whichever API it has.

    Raises:
        InferenceError: the engine's inputs are not exactly ``input_name`` (names them both).
    """
    tensor_api = hasattr(engine, "num_io_tensors")
    if tensor_api:
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        tensors = _describe(names, [engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names],
                            [engine.get_tensor_shape(n) for n in names], [engine.get_tensor_dtype(n) for n in names],
                            trt)
    else:
        idx = range(engine.num_bindings)
        names = [engine.get_binding_name(i) for i in idx]
        tensors = _describe(names, [engine.binding_is_input(i) for i in idx],
                            [engine.get_binding_shape(i) for i in idx], [engine.get_binding_dtype(i) for i in idx], trt)
    inputs = [t.name for t in tensors if t.is_input]
    if inputs != [input_name]:
        raise InferenceError(f"tensorrt: {engine_path} takes input(s) {', '.join(map(repr, inputs)) or 'none'}, the "
                             f"manifest says '{input_name}'")
    low, _, high = (engine.get_tensor_profile_shape(input_name, 0) if tensor_api
                    else engine.get_profile_shape(0, input_name))
    return EngineIO(tuple(tensors), tuple(int(d) for d in low), tuple(int(d) for d in high), tensor_api)


def check_engine_io(io: EngineIO, manifest: Manifest, engine_path: Path) -> list[int]:
    """Check the engine's input and outputs against ``manifest``; return each output's row width in the
    manifest's output order (class scores, then the embedding).

    Raises:
        InferenceError: the input's largest shape is not ``N x 3 x H x W`` of the manifest; an output the
            manifest names is missing or is an input; an output's shape is not ``N x width`` of the manifest
            (the message names the tensor); an extra output whose size is not fixed apart from its batch.
    """
    h, w = manifest.input.size
    if io.input_max[1:] != (3, h, w):
        raise InferenceError(f"tensorrt: {engine_path} takes {io.input_max}, manifest says N x 3 x {h} x {w}")
    outputs = [t.name for t in io.tensors if not t.is_input]
    widths = [manifest.num_classes] + ([manifest.embedding.dim] if manifest.embedding is not None else [])
    for name, width in zip(manifest.output_names, widths):
        if name not in outputs:
            raise InferenceError(f"tensorrt: {engine_path} has no output '{name}' (its outputs: "
                                 f"{', '.join(map(repr, outputs)) or 'none'}); the manifest names "
                                 f"{', '.join(map(repr, manifest.output_names))}")
        shape = io.get(name).shape
        if len(shape) != 2 or shape[0] not in (-1, io.max_batch) or shape[1] != width:
            raise InferenceError(f"tensorrt: {engine_path}: output '{name}' has shape {shape}, the manifest says "
                                 f"N x {width}")
    for t in io.tensors:
        if not t.is_input and t.name not in manifest.output_names and any(d < 0 for d in t.shape[1:]):
            raise InferenceError(f"tensorrt: {engine_path}: output '{t.name}' (not in the manifest) has shape "
                                 f"{t.shape}, dynamic beyond its batch: no buffer can be sized for it")
    return widths


def buffer_shape(t: TensorInfo, rows: int) -> tuple[int, ...]:
    """The shape of ``t``'s buffer for ``rows`` images (its batch dimension set)."""
    return (rows, *t.shape[1:])
