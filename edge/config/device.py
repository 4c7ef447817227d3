"""The device config: one YAML file, validated by strict pydantic models.

A bad config gives a :class:`~edge.errors.ConfigError` with one line per problem, each naming the
file and the field path, e.g. ``edge.yaml: cameras.0.slots.2.rect: x0 must be below x1``. Secrets
(camera passwords, CURVE keys) never live in the YAML: a camera names a ``credentials`` file that
holds ``user:password``, as :mod:`edge.config.credentials` says (a bare name is looked up in systemd's
``$CREDENTIALS_DIRECTORY``; a path with a ``/`` is relative to the config file).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError, field_validator,
                      model_validator)

from edge.config.credentials import is_name as is_credential_name
from edge.config.credentials import redact
from edge.config.publish import CurveConfig, PublishConfig  # noqa: F401 - CurveConfig re-exported
from edge.config.runtime import (RUNTIME_NAMES, AutoOptions, AutoRuntimeConfig, OnnxRuntimeConfig,  # noqa: F401
                                 OnnxRuntimeOptions, OpenVinoConfig, OpenVinoOptions, RuntimeConfig, TensorRtConfig,
                                 TensorRtOptions, runtime_options)
from edge.config.slot_geometry import check_slot_map
from edge.config.collect import CollectConfig
from edge.config.states import StatesConfig
from edge.config.yaml_files import load_yaml
from edge.contracts import ID_PATTERN, max_batch_for
from edge.errors import ConfigError
from edge.validation import error_lines, Strict

logger = logging.getLogger(__name__)

WHOLE_FRAME_SLOT = "frame"
_SCHEMES = ("file", "v4l2", "rtsp", "rtsps", "http", "https", "csi", "gst")


# -- slots --------------------------------------------------------------------------------------
class SlotConfig(Strict):
    """One named place in the display case, in normalised frame coordinates (0..1)."""

    name: str = Field(pattern=ID_PATTERN, description="Slot name, unique per camera (e.g. r0c0).")
    rect: tuple[StrictFloat, StrictFloat, StrictFloat, StrictFloat] | None = Field(
        None, description="x0, y0, x1, y1 normalised to the frame; derived from `polygon` when that is given.")
    polygon: tuple[tuple[StrictFloat, StrictFloat], ...] | None = Field(
        None, description="Optional outline [[x, y], ...] (normalised); cropped by its bounding box, "
                          "pixels outside it masked.")

    @model_validator(mode="before")
    @classmethod
    def _rect_from_polygon(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("rect") is None and data.get("polygon") is not None:
            pts = data["polygon"]
            if isinstance(pts, (list, tuple)) and len(pts) >= 3 and all(
                    isinstance(p, (list, tuple)) and len(p) == 2 for p in pts):
                try:
                    xs, ys = [float(p[0]) for p in pts], [float(p[1]) for p in pts]
                except (TypeError, ValueError):
                    return data  # the field validator names the bad value
                data = {**data, "rect": (min(xs), min(ys), max(xs), max(ys))}
        return data

    @field_validator("rect")
    @classmethod
    def _rect_ok(cls, v: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if v is None:
            return v
        if not all(math.isfinite(c) for c in v):
            raise ValueError(f"rect {list(v)} has a non-finite coordinate")
        x0, y0, x1, y1 = v
        if x0 >= x1 or y0 >= y1:
            raise ValueError(f"rect {list(v)} is empty: x0 must be below x1 and y0 below y1")
        if min(v) < -1e-6 or max(v) > 1 + 1e-6:
            raise ValueError(f"rect {list(v)} lies outside the frame: coordinates are normalised to 0..1")
        return v

    @field_validator("polygon")
    @classmethod
    def _polygon_ok(cls, v: tuple[tuple[float, float], ...] | None) -> tuple[tuple[float, float], ...] | None:
        if v is None:
            return v
        if len(v) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(v)}")
        if not all(math.isfinite(c) and -1e-6 <= c <= 1 + 1e-6 for p in v for c in p):
            raise ValueError("a polygon point lies outside the frame or is not finite: coordinates are "
                             "normalised to 0..1")
        return v

    @model_validator(mode="after")
    def _has_shape(self) -> "SlotConfig":
        if self.rect is None:
            raise ValueError("a slot needs a rect [x0, y0, x1, y1] or a polygon [[x, y], ...]")
        return self


class SlotsFile(BaseModel):
    """A ``<stem>.slots.yaml`` fragment (written by the synthetic video generator or by hand)."""

    # Other top-level keys (frame size, grid, generator notes) belong to whoever wrote the file.
    model_config = ConfigDict(extra="ignore")
    slots: tuple[SlotConfig, ...] = Field(description="The slot map (at least one slot; slots may not overlap).")

    @field_validator("slots")
    @classmethod
    def _map_ok(cls, v: tuple[SlotConfig, ...]) -> tuple[SlotConfig, ...]:
        check_slot_map(v, WHOLE_FRAME_SLOT)
        return v


# -- cameras ------------------------------------------------------------------------------------
class ReconnectConfig(Strict):
    """How a failed or stalled source is reopened: exponential backoff, capped."""

    initial_s: float = Field(0.5, strict=True, gt=0, le=60, description="First wait before reopening a failed source.")
    max_s: float = Field(30.0, strict=True, gt=0, le=3600, description="Longest wait between reopen attempts.")
    stall_s: float = Field(5.0, strict=True, gt=0, le=600, description="No frame for this long counts as a stall: "
                                                                       "the camera is reported down and reopened.")

    @model_validator(mode="after")
    def _order(self) -> "ReconnectConfig":
        if self.max_s < self.initial_s:
            raise ValueError(f"max_s ({self.max_s}) must be at least initial_s ({self.initial_s})")
        return self


class CameraConfig(Strict):
    """One camera: where frames come from and which slots it sees."""

    id: str = Field(pattern=ID_PATTERN, description="Camera id, unique per device; part of the ZeroMQ topic.")
    source: str = Field(description="file:///path.mp4[?loop=1&realtime=0], v4l2:///dev/video0, rtsp://host/..., "
                                    "http://host/mjpeg, csi://0 or gst://<pipeline>.")
    credentials: str | None = Field(
        None, description="File holding 'user:password' for the source: a bare name is looked up in "
                          "$CREDENTIALS_DIRECTORY, a path (with a '/') is relative to this config file; "
                          "never put the password in `source`.")
    fps: float | None = Field(None, strict=True,
                              gt=0, le=240, description="Optional cap on frames classified per second.")
    slots: tuple[SlotConfig, ...] | None = Field(
        None, description="Slot map (slots may touch, not overlap); left out, the whole frame is one slot.")
    slots_file: Path | None = Field(None, description="A YAML file with `slots: [...]` (relative to the config).")
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig, description="Watchdog and backoff.")

    @field_validator("source")
    @classmethod
    def _source_ok(cls, v: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError(f"source {redact(v)!r} holds a control character (a newline, a tab ...)")
        scheme = v.split("://", 1)[0].lower() if "://" in v else ""
        if scheme not in _SCHEMES:
            raise ValueError(f"unsupported source '{redact(v)}': use one of "
                             + ", ".join(f"{s}://" for s in _SCHEMES))
        if scheme not in ("gst", "file") and urlsplit(v).password:
            raise ValueError("the source URI holds a password: secrets never go in the config; "
                             "put 'user:password' in a file and name it in `credentials`")
        return v

    @field_validator("slots")
    @classmethod
    def _slot_map_ok(cls, v: tuple[SlotConfig, ...] | None) -> tuple[SlotConfig, ...] | None:
        if v is not None:
            check_slot_map(v, WHOLE_FRAME_SLOT)
        return v

    @model_validator(mode="after")
    def _slots_ok(self) -> "CameraConfig":
        if self.slots is not None and self.slots_file is not None:
            raise ValueError("give either `slots` or `slots_file`, not both")
        names = [s.name for s in self.slots or ()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"slot names repeat: {dupes}")
        return self

    def slot_list(self) -> tuple[SlotConfig, ...]:
        """The slots to classify: the configured ones, or the whole frame as one slot."""
        if self.slots:
            return self.slots
        return (SlotConfig(name=WHOLE_FRAME_SLOT, rect=(0.0, 0.0, 1.0, 1.0)),)


# -- model and runtime --------------------------------------------------------------------------
class ModelConfig(Strict):
    """Which model runs, and what the config expects of it (checked against its manifest)."""

    path: Path = Field(description="A model directory (bundle or calibration output) or an .onnx file "
                                   "with its manifest; relative to the config file.")
    precision: Literal["auto", "int8", "fp16", "fp32"] = Field(
        "auto", description="auto: INT8 where the directory has it, else FP32.")
    classes: tuple[str, ...] | None = Field(
        None, description="Optional: the class names the device expects, in output order; must equal the manifest's.")
    input_size: tuple[StrictInt, StrictInt] | None = Field(
        None, description="Optional: the expected input height and width; must equal the manifest's.")
    checksums: Literal["required", "when_present"] = Field(
        "when_present", description="required: run only a folder with SHA256SUMS (an installed bundle; the "
                                    "example config says so), verified at every start; when_present: verify "
                                    "SHA256SUMS where the folder has one, and warn where it has none (a "
                                    "development folder).")


def tensorrt_options(config: "DeviceConfig") -> TensorRtOptions:
    """The TensorRT options that apply: the ``tensorrt`` runtime's, ``auto``'s candidate block, else defaults."""
    runtime = config.runtime
    if runtime.name == "tensorrt":
        return runtime.options
    return runtime.options.tensorrt if runtime.name == "auto" else TensorRtOptions()


def engine_max_batch(config: "DeviceConfig") -> int:
    """The TensorRT engine's largest batch: ``max_batch`` where the config sets it, else every slot of
    every camera (:func:`edge.contracts.max_batch_for`). Flash, build-engine and the edge all use this."""
    return tensorrt_options(config).max_batch or max_batch_for(config.cameras)


# -- the rest -----------------------------------------------------------------------------------
class PostprocessConfig(Strict):
    min_score: float = Field(0.5, strict=True, ge=0, le=1, description="Below this top score a slot is `unknown`.")
    window: int = Field(5, strict=True, ge=1, le=1000, description="Frames a label must hold to be `stable`.")
    top_k: int = Field(3, strict=True, ge=1, le=100, description="How many classes each slot reports.")
    unknown_label: str = Field("unknown", description="Label of a slot below min_score.")
    empty_label: str = Field("empty", description="The class meaning nothing is in the slot (not counted).")


class MetricsConfig(Strict):
    host: str = Field("127.0.0.1", description="Prometheus exporter bind address (keep it on localhost).")
    port: int | None = Field(9108, strict=True,
                             ge=0, le=65535, description="Exporter port; null disables it, 0 picks a free one.")


class DeviceConfig(Strict):
    """The whole device: model, runtime, cameras and where results go."""

    device: str = Field(pattern=ID_PATTERN, description="Device id; part of every ZeroMQ topic.")
    model: ModelConfig = Field(description="The model to run.")
    runtime: RuntimeConfig = Field(default_factory=lambda: AutoRuntimeConfig(name="auto"),
                                   description="Inference backend and its options.")
    # Not min_length: pydantic would add "at least 1 item" to every config whose only camera is invalid.
    cameras: tuple[CameraConfig, ...] = Field(description="One or more cameras.")
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig, description="Scores to labels.")
    publish: PublishConfig = Field(default_factory=dict, validate_default=True,  # type: ignore[arg-type]
                                   description="ZeroMQ publishing; `publish.curve` must be written (CURVE or null).")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus exporter.")
    states: StatesConfig = Field(default_factory=StatesConfig, description="Slot states: enrolment and each "
                                                                           "slot's reference piece.")
    collect: CollectConfig = Field(default_factory=CollectConfig, description="Training photos from the case: "
                                                                              "crops of enrolled, still slots.")

    @field_validator("cameras")
    @classmethod
    def _some_cameras(cls, v: tuple[CameraConfig, ...]) -> tuple[CameraConfig, ...]:
        if not v:
            raise ValueError("at least one camera is needed (the list is empty)")
        return v

    @model_validator(mode="after")
    def _unique_cameras(self) -> "DeviceConfig":
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids repeat: {dupes}")
        return self


# -- loading ------------------------------------------------------------------------------------
def _invalid(exc: ValidationError, source: str) -> ConfigError:
    return ConfigError(error_lines(exc, source, tags={"runtime": RUNTIME_NAMES}))


def _read_yaml(path: Path, what: str) -> Any:
    # Size, encoding, nesting and alias expansion are bounded there (MAX_YAML_BYTES etc.).
    return load_yaml(path, what)


def load_slots_file(path: str | Path) -> tuple[SlotConfig, ...]:
    """Read a ``slots: [{name, rect}]`` fragment.

    Raises:
        ConfigError: missing file, bad YAML or a bad slot (the message names the file and slot index).
    """
    path = Path(path)
    data = _read_yaml(path, "slots file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a `slots` list")
    try:
        return SlotsFile.model_validate(data).slots
    except ValidationError as exc:
        raise _invalid(exc, str(path)) from exc


def _resolve(base: Path, value: str | Path) -> Path:
    p = Path(os.path.expanduser(str(value)))
    return p if p.is_absolute() else (base / p)


def _resolve_source(base: Path, uri: str) -> str:
    # file://relative/x.mp4 and file:x.mp4 are taken relative to the config file.
    if not uri.lower().startswith("file://"):
        return uri
    rest = uri[len("file://"):]
    path, sep, query = rest.partition("?")
    if path.startswith("/"):
        return uri
    return "file://" + str(_resolve(base, path).resolve()) + sep + query


def _resolve_credential(base: Path, ref: str | None) -> str | None:
    # A credential path (one with a '/') is relative to the config file; a bare name stays a name.
    return ref if ref is None or is_credential_name(ref) else str(_resolve(base, ref))


def _slots_from_file(path: Path) -> tuple[SlotConfig, ...]:
    slots = load_slots_file(path)
    names = [s.name for s in slots]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: slot names repeat: {dupes}")
    return slots


def _resolve_camera(base: Path, cam: CameraConfig) -> CameraConfig:
    """Paths in a camera made absolute, and its slots file read in."""
    changes: dict[str, Any] = {"source": _resolve_source(base, cam.source),
                               "credentials": _resolve_credential(base, cam.credentials)}
    if cam.slots_file is not None:
        changes["slots_file"] = _resolve(base, cam.slots_file)
        changes["slots"] = _slots_from_file(changes["slots_file"])
    return cam.model_copy(update=changes)


def parse_config(data: Any, source: str = "config", base_dir: str | Path = ".") -> DeviceConfig:
    """Validate an already-parsed YAML document; relative paths resolve against ``base_dir``.

    Raises:
        ConfigError: one line per problem, each naming ``source`` and the field path.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        cfg = DeviceConfig.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc, source) from exc
    base = Path(base_dir)
    cameras, problems = [], []
    for i, cam in enumerate(cfg.cameras):
        try:
            cameras.append(_resolve_camera(base, cam))
        except ConfigError as exc:
            problems += [f"{source}: cameras.{i}.slots_file: {line}" for line in str(exc).splitlines()]
    if problems:
        raise ConfigError("\n".join(problems))
    model = cfg.model.model_copy(update={"path": _resolve(base, cfg.model.path)})
    publish = cfg.publish
    if publish.curve is not None:
        curve = publish.curve.model_copy(update={
            "server_secret_key": _resolve_credential(base, publish.curve.server_secret_key),
            "allowed_clients": str(_resolve(base, publish.curve.allowed_clients))})
        publish = publish.model_copy(update={"curve": curve})
    states = cfg.states.model_copy(update={"state_dir": _state_dir(base, cfg.states.state_dir)})
    collect = cfg.collect.model_copy(update={"dir": _resolve(base, cfg.collect.dir) if cfg.collect.dir is not None
                                             else states.state_dir / "collect"})
    return cfg.model_copy(update={"cameras": tuple(cameras), "model": model, "publish": publish, "states": states,
                                  "collect": collect})


def _state_dir(base: Path, configured: Path | None) -> Path:
    """``states.state_dir`` resolved: as written (relative to the config), else systemd's StateDirectory, else
    ``state/`` beside the config file."""
    if configured is not None:
        return _resolve(base, configured)
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(systemd) if systemd else base / "state"


def load_config(path: str | Path) -> DeviceConfig:
    """Load and validate the device YAML.

    Raises:
        ConfigError: missing file, bad YAML or invalid fields; one line per problem, each naming the
            file and the field path (``edge.yaml: cameras.0.slots.2.rect: ...``).
    """
    path = Path(path)
    data = _read_yaml(path, "config file")
    cfg = parse_config(data, str(path), path.parent)
    logger.debug("loaded %s: device %s, %d camera(s)", path, cfg.device, len(cfg.cameras))
    return cfg
