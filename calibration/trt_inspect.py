"""What precision a built engine really runs, read from TensorRT's engine inspector.

The inspector (``ICudaEngine.create_engine_inspector``) prints every layer as JSON when the engine
was built with ``ProfilingVerbosity.DETAILED``. For an engine with a dynamic batch it prints the
tensor formats only for an execution context whose input shapes are set
(``IEngineInspector::setExecutionContext``); without one every format reads
``"N/A due to dynamic shapes"`` and an INT8 engine looks like it has no INT8 layer. So
:func:`inspect_engine` creates a context with the profile's largest shape first.

A layer counts as INT8 when any of these says so (NVIDIA's "Engine Inspector" examples):

* a tensor's ``"Format/Datatype"`` (8.x–10.x, e.g. ``"Thirty-two wide channel vectorized row major
  Int8 format."``), or its ``"DataType"``/``"Format"`` (the 11.x structured tensor fields);
* ``"Weights": {"Type": "Int8", ...}``;
* an INT8 tactic in ``"TacticName"`` (``..._i8i8_i8i32_...``, ``int8``).

``"I/O Tensors"`` (11.x, replacing 10.x's ``"Bindings"`` list) describe the engine's inputs and
outputs, not layers, and are not counted.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable

from calibration.trt_api import TrtApi, set_inspector_context

logger = logging.getLogger(__name__)

NA_DYNAMIC = "N/A due to dynamic shapes"
_INT8_TACTIC = re.compile(r"(?:^|[_\W])(?:i8i8|int8|i8i32)(?:[_\W]|$)", re.IGNORECASE)
_TENSOR_FIELDS = ("Format/Datatype", "DataType", "Format")


@dataclass(frozen=True)
class LayerCount:
    """Counts from one inspector dump."""

    int8: int           # layers with INT8 tensors, INT8 weights or an INT8 tactic
    layers: int         # every layer listed
    formats_known: int  # layers whose tensor formats were printed (not "N/A due to dynamic shapes")

    @property
    def conclusive(self) -> bool:
        """True when the dump can tell INT8 from not: INT8 seen, or the formats were printed."""
        return self.int8 > 0 or self.formats_known > 0


def _tensor_texts(layer: dict) -> Iterable[str]:
    for side in ("Inputs", "Outputs"):
        for tensor in layer.get(side) or []:
            if isinstance(tensor, dict):
                for name in _TENSOR_FIELDS:
                    if name in tensor:
                        yield str(tensor[name])


def _is_int8(layer: dict) -> bool:
    if any("int8" in text.lower() for text in _tensor_texts(layer)):
        return True
    weights = layer.get("Weights")
    if isinstance(weights, dict) and str(weights.get("Type", "")).lower() == "int8":
        return True
    return bool(_INT8_TACTIC.search(str(layer.get("TacticName", ""))))


def count_int8_layers(engine_info_json: str) -> LayerCount:
    """Count INT8 layers in the inspector's JSON (``get_engine_information(LayerInformationFormat.JSON)``)."""
    try:
        info = json.loads(engine_info_json)
    except (TypeError, ValueError):
        return LayerCount(0, 0, 0)
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    layers = layers if isinstance(layers, list) else []
    int8 = known = 0
    for layer in layers:
        if not isinstance(layer, dict):  # names only: built without detailed profiling verbosity
            continue
        texts = list(_tensor_texts(layer))
        if texts and not all(NA_DYNAMIC.lower() in t.lower() for t in texts):
            known += 1
        int8 += _is_int8(layer)
    return LayerCount(int8, len(layers), known)


def inspect_engine(trt: Any, api: TrtApi, engine: Any, input_name: str, shape: tuple[int, ...]) -> LayerCount:
    """Count the INT8 layers of a deserialized engine, seen through a context with ``shape`` set.

    Never raises: an engine that cannot be inspected gives an inconclusive count (and a log line).
    """
    try:
        context = engine.create_execution_context()
        if api.tensor_io:
            context.set_input_shape(input_name, tuple(shape))
        else:  # before TensorRT 8.5: bindings
            context.set_binding_shape(engine.get_binding_index(input_name), tuple(shape))
        inspector = engine.create_engine_inspector()
        if not set_inspector_context(inspector, context):
            logger.warning("this TensorRT's engine inspector takes no execution context: formats of dynamic "
                           "shapes stay unknown")
        return count_int8_layers(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    except Exception as exc:  # inspector missing or refused: the count is unknown, the engine still fine
        logger.warning("cannot inspect the engine's layer precisions: %s: %s", type(exc).__name__, exc)
        return LayerCount(0, 0, 0)
