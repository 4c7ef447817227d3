"""The one interface every inference backend implements, and the decorator that names them
(:mod:`edge.runtimes.registry` finds and opens them).

Public :meth:`Runtime.infer` validates inputs against the manifest, subclasses implement
``_infer``. Postprocessing (softmax, top-k, smoothing) stays out of backends.
"""
from __future__ import annotations

import abc
import logging
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from edge.errors import ConfigError, InferenceError
from edge.manifest import Manifest
from edge.preprocess import BatchWriter

logger = logging.getLogger(__name__)

#: Backend name → class, filled by :func:`register_runtime` as each backend module is imported.
REGISTRY: dict[str, type["Runtime"]] = {}
# "auto" prefers the fastest backend that can run here.
AUTO_ORDER = ("tensorrt", "openvino", "onnxruntime")


def register_runtime(name: str) -> Callable[[type["Runtime"]], type["Runtime"]]:
    """Class decorator: make a backend available under ``name``."""
    def deco(cls: type[Runtime]) -> type[Runtime]:
        cls.name = name
        REGISTRY[name] = cls
        return cls
    return deco


class Runtime(abc.ABC):
    """An inference backend bound to one model.

    Args:
        model_path: the artifact this backend runs (``.onnx``, OpenVINO ``.xml``, or for TensorRT an
            ``.onnx`` whose engine is built or looked up in the engine cache).
        manifest: the model's manifest; inputs and outputs are checked against it.
        options: backend-specific options (threads, device, max batch ...).
    """

    name: ClassVar[str] = "?"
    #: True where the backend can take the resized crops themselves (option ``uint8_input``) and do the
    #: rest of the manifest's preprocessing (colour order, mean/std, layout) inside the compiled model.
    takes_uint8: ClassVar[bool] = False

    def __init__(self, model_path: str | Path, manifest: Manifest, **options: Any) -> None:
        self.model_path = Path(model_path)
        self.manifest = manifest
        self.options = options
        self.input_name = manifest.input.name
        self.output_name = manifest.output.name
        #: Every output this runtime returns, in order: class scores, then the embedding where the model has one.
        self.output_names = manifest.output_names
        self.precision = manifest.precision
        uint8 = options.get("uint8_input", False)
        if not isinstance(uint8, bool):
            raise ConfigError(f"{self.name}: uint8_input must be true or false, got {uint8!r}")
        if uint8 and not self.takes_uint8:
            raise ConfigError(f"{self.name}: uint8_input is not supported by this runtime (it takes the manifest's "
                              f"float32 N x 3 x H x W batch)")
        #: ``float32``: ``N x 3 x H x W`` batches preprocessed by the manifest; ``uint8``: ``N x H x W x 3``
        #: BGR images already resized to the input. :meth:`batch_writer` writes the right one.
        self.input_kind = "uint8" if uint8 else "float32"

    # -- what a backend implements ------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def unavailable_reason(cls) -> str | None:
        """``None`` when this backend can run here, else why not (e.g. which package is missing)."""

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray | Sequence[np.ndarray]:
        """Run one batch of :attr:`input_kind` (checked), return the ``N x classes`` output, or every output
        of :attr:`output_names` in that order (class scores, then ``N x dim`` embeddings)."""

    def close(self) -> None:
        """Free backend resources (sessions, device buffers)."""

    def settings(self) -> dict[str, str]:
        """The options that decide speed and precision, as the runtime itself reports them once the
        model is loaded (threads, performance and precision hints ...); empty where it reports none."""
        return {}

    # -- the public, validating side ------------------------------------------------------------
    @property
    def max_batch(self) -> int | None:
        """Largest batch this backend accepts, ``None`` for unbounded."""
        return None

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``{input_name: batch}``, return ``{output_name: logits}`` and, where the
        manifest names one, ``{embedding_name: N x dim}`` beside it.

        Raises:
            InferenceError: a missing or extra input, a batch whose shape or dtype does not match the
                manifest, or outputs that do not (width, a missing embedding).
        """
        if set(inputs) != {self.input_name}:
            raise InferenceError(f"{self.name}: expected one input '{self.input_name}', got {sorted(inputs)}")
        batch = inputs[self.input_name]
        h, w = self.manifest.input.size
        shape, dims = (((h, w, 3), f"N x {h} x {w} x 3 (uint8 images)") if self.input_kind == "uint8"
                       else ((3, h, w), f"N x 3 x {h} x {w}"))
        if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1:] != shape:
            got = getattr(batch, "shape", type(batch).__name__)
            raise InferenceError(f"{self.name}: input '{self.input_name}' must be {dims}, got {got}")
        if batch.dtype != np.dtype(self.input_kind):
            raise InferenceError(f"{self.name}: input '{self.input_name}' must be {self.input_kind}, got {batch.dtype}")
        if batch.shape[0] == 0:
            raise InferenceError(f"{self.name}: empty batch")
        limit = self.max_batch
        if limit is not None and batch.shape[0] > limit:
            # Split instead of failing: a case with more slots than the engine profile still runs.
            parts = [self._outputs(np.ascontiguousarray(batch[i:i + limit])) for i in range(0, batch.shape[0], limit)]
            outs = [np.concatenate(column) for column in zip(*parts)]
        else:
            outs = self._outputs(np.ascontiguousarray(batch))
        out = outs[0]
        if out.ndim != 2 or out.shape[0] != batch.shape[0]:
            raise InferenceError(f"{self.name}: output has shape {out.shape}, expected ({batch.shape[0]}, classes)")
        self.manifest.check_output_width(out.shape[1], f"{self.name} {self.model_path.name}")
        spec = self.manifest.embedding
        if spec is not None:
            emb = outs[1]
            if emb.shape != (batch.shape[0], spec.dim):
                raise InferenceError(f"{self.name}: output '{spec.name}' has shape {emb.shape}, the manifest says "
                                     f"({batch.shape[0]}, {spec.dim})")
        return dict(zip(self.output_names, outs))

    def _outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        """:meth:`_infer`'s outputs as a list in :attr:`output_names` order, their count checked."""
        got = self._infer(batch)
        outs = [got] if isinstance(got, np.ndarray) else list(got)
        if len(outs) != len(self.output_names):
            raise InferenceError(f"{self.name}: {self.model_path.name} gave {len(outs)} output(s), the manifest "
                                 f"names {len(self.output_names)} ({', '.join(self.output_names)})")
        return outs

    def blank(self, n: int = 1) -> np.ndarray:
        """A batch of ``n`` zero images in the form this runtime takes (for warm-up runs)."""
        writer = self.batch_writer()
        return np.zeros((n, *writer.row), writer.dtype)

    def batch_writer(self) -> BatchWriter:
        """The :class:`~edge.preprocess.BatchWriter` that makes this runtime's batches from BGR crops."""
        return BatchWriter(self.manifest.input, uint8=self.input_kind == "uint8")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Shorthand: batch in, logits out."""
        return self.infer({self.input_name: batch})[self.output_name]

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "precision": self.precision, "model": str(self.model_path)}
