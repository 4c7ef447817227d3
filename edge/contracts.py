"""Values that more than one package must agree on, defined once (every other package imports them)."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Protocol, Sized

#: The eight classes of a display case, in the output order of every model gemsight trains by default.
DEFAULT_CLASSES: tuple[str, ...] = ("ring", "necklace", "earring", "bracelet", "pendant", "brooch", "watch", "empty")

#: Device, camera and slot ids: they end up in ZeroMQ topics, so no '/' and no spaces.
#: The message schemas (``edge/schemas/*.schema.json``) spell the same pattern.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
#: The manifest of a folder of collected crops (the device writes it, pull-crops merges it, the trainer skips it).
COLLECT_MANIFEST = "manifest.jsonl"

#: Stages every labels message reports in ``latencies_ms``.
REQUIRED_STAGES: tuple[str, ...] = ("capture", "preprocess", "infer", "postprocess")
#: Every stage the loop measures. ``total`` runs from the frame's capture to its labels being ready
#: to publish (the end of postprocessing); ``publish`` (building, encoding and sending the message)
#: follows it, so ``total + publish`` is capture to sent. Message, metrics and bench use these meanings.
STAGES: tuple[str, ...] = (*REQUIRED_STAGES, "publish", "total")
#: The per-frame breakdown of where the loop's time goes (metrics, ``LoopResult.stage_s``, bench/loop.py):
#: ``decode`` (the grabber's read of the frame, before its capture time), ``crop`` and ``preprocess``
#: (this frame's own slots), ``infer`` (its batch's runtime call alone, no waiting), ``postprocess``,
#: ``encode`` (building and JSON-encoding the labels message) and ``send`` (the ZeroMQ send).
BREAKDOWN: tuple[str, ...] = ("decode", "crop", "preprocess", "infer", "postprocess", "encode", "send")

#: The TensorRT optimisation profile's largest batch where no device config says otherwise.
DEFAULT_MAX_BATCH = 16
#: The TensorRT builder's workspace pool limit where the config says nothing (MiB). Small enough for a
#: 4 GB Orin Nano. The config's default and the engine cache's build options share it.
DEFAULT_WORKSPACE_MB = 1024



class StrEnum(str, enum.Enum):
    """A state that is its value: it compares equal to, hashes as, prints as and serialises (JSON) as its
    string, so a message, a log line or a dict keyed by the plain string agrees with it. (Python 3.11's
    ``enum.StrEnum``; a Jetson's Python is 3.10.)"""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

class _Camera(Protocol):
    def slot_list(self) -> Sized: ...


def max_batch_for(cameras: Iterable[_Camera]) -> int:
    """The engine batch a device config needs: every slot of every camera, classified as one batch.

    Args:
        cameras: the config's cameras (:class:`edge.config.device.CameraConfig`); a camera without slots
            counts as one (the whole frame).
    """
    return max(1, sum(len(cam.slot_list()) for cam in cameras))


@dataclass
class SlotResult:
    """The published state of one slot after this frame (what each field means: :mod:`edge.loop.postprocess`)."""

    name: str
    label: str
    score: float
    topk: list[tuple[str, float]]
    stable: bool
    raw_label: str


@dataclass
class FrameResult:
    """All slots of one camera after this frame, and the counts per label over their smoothed labels.

    The loop's postprocessing makes it; the labels message (:func:`edge.link.messages.labels_message`) reads it.
    """

    slots: list[SlotResult]
    counts: dict[str, int]
    items: int = 0  # slots whose label is a class other than empty/unknown
