"""Each slot's reference piece: what enrolment recorded, and where it is kept on the device.

An enrolment belongs to one camera, one slot map and one model: a reference embedding made by another
model, or for slots drawn elsewhere, compares nothing. The file says what it was made for, and a
device that runs something else refuses it, names what differs, and enrols again.

Layout in the device's state folder (``states.state_dir``)::

    enrolment/<camera>.json         what it belongs to, and per slot: embedding, spread, threshold
    enrolment/<camera>/<slot>.jpg   the reference crops (evidence for the kiosk)

The crops are written first and the JSON last, each atomically (:mod:`edge.atomic`): a power cut
leaves the previous enrolment or the new one, never half of one.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge.atomic import write_atomic
from edge.errors import DataError

logger = logging.getLogger(__name__)

ENROLMENT_SCHEMA = 1
MAX_ENROLMENT_BYTES = 8 << 20   # 48 slots x 2048 floats in base64 is ~0.5 MB; anything far bigger is not ours
MAX_CROP_BYTES = 2 << 20


class EnrolmentError(DataError):
    """An enrolment file that cannot be used: unreadable, corrupt, or made for another model or slot map."""


def slot_map_digest(slots: Sequence[Any]) -> str:
    """A short digest of a camera's slot map (names and shapes): an enrolment is bound to it."""
    rows = [[s.name, [round(float(v), 6) for v in getattr(s, "rect", None) or ()],
             [[round(float(x), 6) for x in p] for p in (getattr(s, "polygon", None) or ())]] for s in slots]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def model_key(manifest: Any) -> str:
    """What an enrolment's embeddings depend on: the model's name, version and embedding width."""
    dim = manifest.embedding.dim if manifest.embedding is not None else 0
    return f"{manifest.name}@{manifest.version}/{dim}"


@dataclass
class Reference:
    """One slot's enrolled piece."""

    embedding: np.ndarray          # unit length, float32
    mean_sim: float                # mean similarity of the enrolment frames to ``embedding``
    spread: float                  # their standard deviation
    threshold: float               # below it (once still) the slot holds another piece
    label: str                     # the category the model read at enrolment (a suggestion for the planogram)
    ts: float
    crop_jpeg: bytes = b""

    def as_json(self) -> dict[str, Any]:
        return {"embedding": base64.b64encode(self.embedding.astype("<f4").tobytes()).decode(),
                "mean_sim": round(self.mean_sim, 6), "spread": round(self.spread, 6),
                "threshold": round(self.threshold, 6), "label": self.label, "ts": self.ts}


@dataclass
class Enrolment:
    """Every enrolled slot of one camera, and what they belong to."""

    camera: str
    model: str
    slot_map: str
    slots: dict[str, Reference] = field(default_factory=dict)
    id: str = ""
    ts: float = 0.0

    def touch(self) -> None:
        """A slot was (re-)enrolled: a new id, so consumers know the references changed."""
        self.id = secrets.token_hex(6)
        self.ts = time.time()

    def summary(self) -> dict[str, Any] | None:
        """The ``enrolment`` field of a labels message (``None`` when no slot is enrolled)."""
        if not self.slots:
            return None
        return {"id": self.id, "ts": round(self.ts, 3), "model": self.model.rsplit("/", 1)[0]}


class EnrolmentStore:
    """Reads and writes one camera's enrolment in ``root`` (the device's state folder)."""

    def __init__(self, root: str | Path, camera: str) -> None:
        self.root = Path(root) / "enrolment"
        self.camera = camera
        self.path = self.root / f"{camera}.json"
        self.crops = self.root / camera
        self._writes: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None

    def load(self, *, model: str, slot_map: str, slot_names: Sequence[str]) -> Enrolment | None:
        """The stored enrolment, or ``None`` where there is none.

        Raises:
            EnrolmentError: the file is unreadable or corrupt, or was made for another model or slot
                map (the message says what differs).
        """
        if not self.path.exists():
            return None
        try:
            raw = self.path.read_bytes()[:MAX_ENROLMENT_BYTES + 1]
        except OSError as exc:
            raise EnrolmentError(f"{self.path}: cannot read the enrolment ({exc.strerror or exc})") from exc
        if len(raw) > MAX_ENROLMENT_BYTES:
            raise EnrolmentError(f"{self.path}: enrolment file is larger than {MAX_ENROLMENT_BYTES:,} bytes")
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or data.get("schema") != ENROLMENT_SCHEMA:
                schema = data.get("schema") if isinstance(data, dict) else "?"
                raise ValueError(f"not a gemsight enrolment (schema {schema})")
            differs = [f"{what} {data.get(key)!r}, this device runs {mine!r}"
                       for what, key, mine in (("camera", "camera", self.camera), ("model", "model", model),
                                               ("slot map", "slot_map", slot_map)) if data.get(key) != mine]
            if differs:
                raise EnrolmentError(f"{self.path}: made for another setup: " + "; ".join(differs))
            enrolment = Enrolment(self.camera, model, slot_map, id=str(data["id"]), ts=float(data["ts"]))
            dim = int(model.rsplit("/", 1)[1])
            for name, ref in dict(data["slots"]).items():
                if name not in slot_names:
                    raise ValueError(f"slot '{name}' is not in the slot map")
                emb = np.frombuffer(base64.b64decode(ref["embedding"], validate=True), dtype="<f4").astype(np.float32)
                if emb.shape != (dim,) or not np.isfinite(emb).all():
                    raise ValueError(f"slot '{name}': embedding of {emb.size} values, the model gives {dim}")
                values = [float(ref[k]) for k in ("mean_sim", "spread", "threshold", "ts")]
                if not all(np.isfinite(values)):
                    raise ValueError(f"slot '{name}': a number is not finite")
                enrolment.slots[name] = Reference(emb, *values[:3], label=str(ref["label"]), ts=values[3],
                                                  crop_jpeg=self._read_crop(name))
        except EnrolmentError:
            raise
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise EnrolmentError(f"{self.path}: corrupt enrolment ({' '.join(str(exc).split())[:200]})") from exc
        return enrolment

    def _read_crop(self, slot: str) -> bytes:
        path = self.crops / f"{slot}.jpg"
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_CROP_BYTES + 1)
        except OSError:
            logger.warning("camera %s slot %s: reference crop %s is missing; evidence will lack it",
                           self.camera, slot, path)
            return b""
        return data if len(data) <= MAX_CROP_BYTES and data[:3] == b"\xff\xd8\xff" else b""

    @staticmethod
    def document(enrolment: Enrolment) -> str:
        """The JSON that :meth:`save` writes (taken under the tracker's lock, written outside it)."""
        doc = {"schema": ENROLMENT_SCHEMA, "camera": enrolment.camera, "model": enrolment.model,
               "slot_map": enrolment.slot_map, "id": enrolment.id, "ts": enrolment.ts,
               "slots": {name: ref.as_json() for name, ref in sorted(enrolment.slots.items())}}
        return json.dumps(doc, indent=1) + "\n"

    def save(self, document: str, crops: Mapping[str, bytes]) -> Path:
        """Write the (re-)enrolled slots' crops, then the JSON (each atomically)."""
        self.crops.mkdir(parents=True, exist_ok=True)
        for name, data in crops.items():
            if data:
                write_atomic(self.crops / f"{name}.jpg", data)
        return write_atomic(self.path, document)

    def save_later(self, document: str, crops: Mapping[str, bytes]) -> None:
        """:meth:`save` on a writer thread of its own: the loop's thread never waits for a disk."""
        self._writes.put((document, crops))
        if self._writer is None:
            self._writer = threading.Thread(target=self._write, name=f"enrolment-{self.camera}", daemon=True)
            self._writer.start()

    def _write(self) -> None:
        while True:
            item = self._writes.get()
            try:
                self.save(*item)
            except OSError as exc:  # a full or read-only disk: the references still hold until a restart
                logger.error("camera %s: cannot save the enrolment to %s (%s); it lasts until the device restarts",
                             self.camera, self.path, exc.strerror or exc)
            finally:
                self._writes.task_done()

    def flush(self) -> None:
        """Wait until every enrolment given to :meth:`save_later` was written."""
        if self._writer is not None:
            self._writes.join()


def unit(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


def make_reference(embeddings: np.ndarray, label: str, *, spread_k: float, min_margin: float,
                   max_margin: float, crop_jpeg: bytes = b"") -> Reference:
    """A slot's reference from its embeddings over a still moment.

    The threshold comes from the slot's own spread: ``mean - spread_k * sd`` of the frames'
    similarities to their mean, kept between ``min_margin`` and ``max_margin`` below the mean (a
    perfectly still slot has almost no spread; light and small shifts still move it a little).
    """
    rows = unit(embeddings)
    ref = unit(rows.mean(axis=0))
    sims = rows @ ref
    mean, sd = float(sims.mean()), float(sims.std())
    margin = min(max(spread_k * sd, min_margin), max_margin)
    return Reference(ref, mean, sd, mean - margin, label, time.time(), crop_jpeg)


def jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    """A BGR crop as JPEG bytes (evidence and reference crops)."""
    import cv2  # noqa: PLC0415 - the device has OpenCV; edge's kernel does not import it at module level

    ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise DataError("cannot encode the crop as JPEG")
    return buf.tobytes()


def thumbnail(crop: np.ndarray, side: int = 16) -> np.ndarray:
    """A slot crop as a tiny colour image (``side x side x 3``) divided by its grey mean: motion is the change
    of its grey, identity after a hand the change of its colours, and light's gain cancels out of both."""
    import cv2  # noqa: PLC0415

    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    if small.ndim == 2:
        small = small[:, :, None]
    return small / max(float(small.mean()), 1.0)
