"""The model manifest: the contract between trainer, calibration, deploy and the device.

A manifest travels as ``manifest.json`` beside (or in a bundle with) the model, and as the same JSON
in the ONNX model's ``metadata_props`` under :data:`ONNX_METADATA_KEY`. A model without a readable
manifest is refused; the class count must equal the output width.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from edge.errors import ManifestError
from edge.validation import error_lines, Strict

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the optional embedding output
ONNX_METADATA_KEY = "gemsight.manifest"
MANIFEST_FILENAME = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a few kB; the bundle verifier holds the same limit
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


class InputSpec(Strict):
    """How an image becomes the model's input tensor; :func:`edge.preprocess.preprocess` obeys it."""

    name: str = Field("input", description="ONNX input name.")
    layout: Literal["NCHW"] = Field("NCHW", description="Tensor layout.")
    dtype: Literal["float32"] = Field("float32", description="Element type of the input tensor.")
    size: tuple[int, int] = Field((224, 224), description="Height and width in pixels.")
    color: Literal["RGB", "BGR"] = Field("RGB", description="Channel order the model expects.")
    mean: tuple[float, float, float] = Field(IMAGENET_MEAN, description="Per-channel mean, on the 0..1 scale.")
    std: tuple[float, float, float] = Field(IMAGENET_STD, description="Per-channel std, on the 0..1 scale.")
    resize: Literal["stretch", "letterbox", "shorter_center_crop"] = Field(
        "stretch", description="How a crop of any aspect is brought to `size`.")
    interpolation: Literal["area", "linear"] = Field("area", description="OpenCV interpolation for resizing.")

    @field_validator("size")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 8:
            raise ValueError(f"input size {v} is too small (at least 8x8)")
        return v

    @field_validator("std")
    @classmethod
    def _nonzero_std(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in v):
            raise ValueError("every std must be positive")
        return v


class OutputSpec(Strict):
    name: str = Field("logits", description="ONNX output name.")
    kind: Literal["logits", "probabilities"] = Field("logits", description="What the output holds.")


class EmbeddingSpec(Strict):
    """The model's second output: the unit-length features its classifier reads, one row per image.

    The device compares each slot's embedding with the one recorded at enrolment (cosine similarity):
    the same piece stays close under light and small shifts, another piece of the same class does not.
    """

    name: str = Field("embedding", description="ONNX output name.")
    dim: int = Field(ge=2, le=65536, description="Width of each embedding row.")
    normalized: Literal[True] = Field(True, description="Rows have unit L2 norm (the model divides by it).")


class CalibrationInfo(Strict):
    method: str = Field(description="Calibration method (entropy, percentile, minmax).")
    images: int = Field(ge=0, description="How many calibration images were used.")
    digest: str | None = Field(None, description="SHA-256 over the calibration file list and contents.")


class Manifest(Strict):
    """Everything the device needs to run a model the way it was trained."""

    schema_version: int = Field(SCHEMA_VERSION, description="Manifest schema version.")
    name: str = Field("gemsight", description="Model name.")
    version: str = Field("0.0.0", description="Model version (bundles refuse downgrades of it).")
    arch: str = Field(description="Network architecture, e.g. resnet18.")
    classes: tuple[str, ...] = Field(description="Class names in output order.")
    input: InputSpec = Field(default_factory=InputSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    embedding: EmbeddingSpec | None = Field(None, description="The embedding output, where the model has one "
                                                              "(slot states need it).")
    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description="Numeric precision of the artifact.")
    calibration: CalibrationInfo | None = Field(None, description="Set for INT8 artifacts.")
    metrics: dict[str, float] = Field(default_factory=dict, description="e.g. fp32_accuracy, int8_accuracy.")
    provenance: dict[str, Any] = Field(default_factory=dict, description="git commit, dataset digest, date ...")

    @field_validator("schema_version")
    @classmethod
    def _known_schema(cls, v: int) -> int:
        if v > SCHEMA_VERSION:
            raise ValueError(f"manifest schema {v} is newer than this gemsight understands ({SCHEMA_VERSION})")
        return v

    @model_validator(mode="after")
    def _classes_ok(self) -> "Manifest":
        if len(self.classes) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {list(self.classes)}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"class names repeat: {list(self.classes)}")
        if self.embedding is not None and self.embedding.name in (self.output.name, self.input.name):
            raise ValueError(f"embedding output '{self.embedding.name}' has the name of the model's "
                             f"{'output' if self.embedding.name == self.output.name else 'input'}")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    def updated(self, **changes: Any) -> "Manifest":
        """A copy with fields changed, validated again."""
        data = self.model_dump(mode="json")
        data.update({k: (v.model_dump(mode="json") if isinstance(v, BaseModel) else v) for k, v in changes.items()})
        return Manifest.model_validate(data)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "manifest") -> "Manifest":
        """Parse and validate manifest JSON (text, or bytes that must be UTF-8).

        Raises:
            ManifestError: not JSON (or nested past the decoder's limit, or holding NaN/Infinity, which
                JSON does not have), or an invalid manifest; one line per problem, naming ``source``.
        """
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer past Python's digit limit
            raise ManifestError(f"{source}: not valid JSON ({' '.join(str(exc).split())[:200]})") from exc
        except RecursionError as exc:
            raise ManifestError(f"{source}: not valid JSON (nested too deeply)") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ManifestError(error_lines(exc, f"{source}: invalid manifest")) from exc

    @classmethod
    def load(cls, path: str | Path) -> "Manifest":
        """Read ``manifest.json`` (at most :data:`MAX_MANIFEST_BYTES`).

        Raises:
            ManifestError: missing, unreadable, too large, not UTF-8 JSON or invalid; names the file.
        """
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError as exc:
            raise ManifestError(f"{path}: no manifest file") from exc
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from exc
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path}: manifest is larger than {MAX_MANIFEST_BYTES:,} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(f"{path}: manifest is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                                f"{exc.start})") from exc
        return cls.from_json(text, str(path))

    @property
    def output_names(self) -> tuple[str, ...]:
        """The outputs a runtime returns, in order: the class scores, then the embedding if any."""
        return (self.output.name,) + ((self.embedding.name,) if self.embedding is not None else ())

    def check_output_width(self, width: int, source: str = "model") -> None:
        """Raise unless the model's output width equals the number of classes."""
        if width != self.num_classes:
            raise ManifestError(
                f"{source}: output has {width} values but the manifest names {self.num_classes} classes "
                f"({', '.join(self.classes)})")


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file, read with onnx if installed, else ONNX Runtime."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: model file not found")
    try:
        import onnx  # noqa: PLC0415 - optional on devices
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and others
            raise ManifestError(f"{path}: not a readable ONNX model ({exc})") from exc
        return {p.key: p.value for p in model.metadata_props}
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError as exc:
        raise ManifestError(f"{path}: cannot read ONNX metadata (install onnx or onnxruntime)") from exc
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ManifestError(f"{path}: not a readable ONNX model ({exc})") from exc
    return dict(sess.get_modelmeta().custom_metadata_map)


def load_manifest_for(model_path: str | Path) -> Manifest:
    """Find the manifest of a model: ``manifest.json`` in a directory, else the ONNX metadata.

    Args:
        model_path: a bundle/model directory holding ``manifest.json``, or an ``.onnx`` file (its
            embedded manifest wins; a ``manifest.json`` beside it is the fallback).

    Raises:
        ManifestError: no readable manifest was found; the message names the path.
    """
    path = Path(model_path)
    if path.is_dir():
        return Manifest.load(path / MANIFEST_FILENAME)
    meta = read_onnx_metadata(path)
    if ONNX_METADATA_KEY in meta:
        return Manifest.from_json(meta[ONNX_METADATA_KEY], f"{path} (metadata {ONNX_METADATA_KEY})")
    beside = path.with_name(MANIFEST_FILENAME)
    if beside.is_file():
        return Manifest.load(beside)
    raise ManifestError(
        f"{path}: model has no manifest (no '{ONNX_METADATA_KEY}' metadata and no {MANIFEST_FILENAME} beside it); "
        "export it with gemsight-train or add a manifest")


def embed_manifest(model: Any, manifest: Manifest) -> Any:
    """Write the manifest into an ``onnx.ModelProto``'s metadata (replacing any earlier one)."""
    props = [p for p in model.metadata_props if p.key != ONNX_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    entry = model.metadata_props.add()
    entry.key = ONNX_METADATA_KEY
    entry.value = manifest.to_json()
    return model


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
