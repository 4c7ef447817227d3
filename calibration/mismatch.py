"""Do the calibration photos look like the validation photos?

Ranges are only as good as the images they are computed on: synthetic renders used to calibrate a
model trained on real photos give ranges for activations the device will never see. This compares
the two sets on what the model sees and what it makes of it:

* per image, each input channel's mean and standard deviation (after the manifest's preprocessing);
* the FP32 model's features (the input of its classifier head) and its softmax entropy.

Each statistic's shift is a standardised mean difference (``|mean_a - mean_b| / pooled sd``; for
the feature vector, the distance between the mean vectors over the root-mean-square spread around
them). The largest is the score; above :data:`THRESHOLD` the report and the log carry a warning.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

#: Above this standardised shift the sets are called unlike. Measured (untrained ResNet-18 at 64 px,
#: so mostly the input statistics): real-dev train vs real-dev val 0.08; the tests' synthetic discs vs
#: real-dev val 2.13; two small synthetic draws (40 vs 16 images) 0.62 (few images make it noisy).
THRESHOLD = 1.0
_CHUNK = 32


@dataclass
class Mismatch:
    score: float
    worst: str
    shifts: dict[str, float]
    warning: bool

    def message(self) -> str:
        return (f"the calibration photos look unlike the validation photos (shift {self.score:.2f} in {self.worst}, "
                f"warning above {THRESHOLD:g}): calibrate on photos from the same cameras and cases as the "
                "validation set (e.g. the training photos), not on renders or another store's photos")

    def to_json(self) -> dict:
        return {"score": round(float(self.score), 3), "worst": self.worst, "threshold": THRESHOLD,
                "warning": bool(self.warning), "shifts": {k: round(float(v), 3) for k, v in self.shifts.items()}}


def _smd(a: np.ndarray, b: np.ndarray) -> float:
    pooled = np.sqrt((a.var() + b.var()) / 2)
    return float(abs(a.mean() - b.mean()) / pooled) if pooled > 0 else (0.0 if a.mean() == b.mean() else np.inf)


def _vector_shift(a: np.ndarray, b: np.ndarray) -> float:
    spread = np.sqrt((((a - a.mean(0)) ** 2).sum(1).mean() + ((b - b.mean(0)) ** 2).sum(1).mean()) / 2)
    dist = float(np.linalg.norm(a.mean(0) - b.mean(0)))
    return float(dist / spread) if spread > 0 else (0.0 if dist == 0 else float("inf"))


def _model_outputs(fp32, batch: np.ndarray, input_name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(logits, head features or None) of the FP32 model."""
    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    from calibration.qdq import output_nodes  # noqa: PLC0415

    model = onnx.load(str(fp32))
    head = [n for n in model.graph.node if n.name in set(output_nodes(fp32))]
    feature = head[0].input[0] if head and head[0].input[0] != input_name else None
    names = [model.graph.output[0].name]
    if feature is not None:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(feature))
        names.append(feature)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    parts = [session.run(names, {input_name: batch[i:i + _CHUNK]}) for i in range(0, len(batch), _CHUNK)]
    logits = np.concatenate([p[0] for p in parts])
    feats = np.concatenate([p[1].reshape(len(p[1]), -1) for p in parts]) if feature is not None else None
    return logits, feats


def _entropy(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(1)


def compare(fp32, calib: np.ndarray, val: np.ndarray, input_name: str) -> Mismatch:
    """Score how unlike ``calib`` is from ``val`` (both preprocessed ``N x 3 x H x W``)."""
    shifts = {}
    for c in range(calib.shape[1]):
        shifts[f"channel {c} mean"] = _smd(calib[:, c].mean((1, 2)), val[:, c].mean((1, 2)))
        shifts[f"channel {c} std"] = _smd(calib[:, c].std((1, 2)), val[:, c].std((1, 2)))
    logits_c, feats_c = _model_outputs(fp32, calib, input_name)
    logits_v, feats_v = _model_outputs(fp32, val, input_name)
    shifts["softmax entropy"] = _smd(_entropy(logits_c), _entropy(logits_v))
    if feats_c is not None:
        shifts["head features"] = _vector_shift(feats_c, feats_v)
    worst = max(shifts, key=shifts.get)
    result = Mismatch(shifts[worst], worst, shifts, shifts[worst] > THRESHOLD)
    if result.warning:
        logger.warning("%s", result.message())
    else:
        logger.info("calibration vs validation photos: largest shift %.2f (%s)", result.score, worst)
    return result
