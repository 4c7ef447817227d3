"""ONNX export with the manifest in its metadata, checked against PyTorch on the same batch."""
from __future__ import annotations

import copy
import logging
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from edge.errors import InferenceError
from edge.manifest import EmbeddingSpec, InputSpec, Manifest, embed_manifest

logger = logging.getLogger(__name__)

OPSET = 17
# Legacy exporter + ONNX Runtime reproduce PyTorch's FP32 logits to ~1e-5; past this, something is wrong.
MATCH_TOLERANCE = 1e-4


def git_commit() -> str:
    """The commit of the source tree the trainer runs from, or ``unknown``."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def build_manifest(*, arch: str, classes: Sequence[str], img_size: int, name: str = "gemsight",
                   version: str = "0.1.0", metrics: dict[str, float] | None = None,
                   provenance: dict[str, Any] | None = None) -> Manifest:
    """The FP32 manifest of a trained classifier (stretch resize, ImageNet mean/std, RGB, NCHW)."""
    return Manifest(name=name, version=version, arch=arch, classes=tuple(classes),
                    input=InputSpec(size=(img_size, img_size), resize="stretch"), precision="fp32",
                    metrics=dict(metrics or {}), provenance=dict(provenance or {}))


def _last_linear(model: torch.nn.Module) -> torch.nn.Linear:
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not last:
        raise InferenceError(f"{type(model).__name__}: no linear classifier layer to take the embedding from")
    return last[-1]


def with_embedding(model: torch.nn.Module, manifest: Manifest) -> Manifest:
    """``manifest`` naming the embedding output :func:`export_onnx` adds: the unit-length features the
    model's last linear layer (its classifier) reads."""
    return manifest.updated(embedding=EmbeddingSpec(dim=_last_linear(model).in_features))


class WithEmbedding(torch.nn.Module):
    """A classifier that returns its logits and, beside them, the L2-normalised features its last
    linear layer reads (after dropout, which is the identity in eval mode): what the device compares
    with each slot's reference at enrolment."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = _last_linear(model)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen: list[torch.Tensor] = []
        handle = self.head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
        try:
            out = self.model(x)
        finally:
            handle.remove()
        logits = out.logits if hasattr(out, "logits") else out
        return logits, torch.nn.functional.normalize(seen[-1].flatten(1), dim=1)


def _onnx_outputs(path: Path, batch: np.ndarray, names: Sequence[str]) -> list[np.ndarray]:
    import onnxruntime as ort  # noqa: PLC0415

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(list(names), {"input": batch})


def export_onnx(model: torch.nn.Module, manifest: Manifest, out_path: str | Path, *, opset: int = OPSET,
                check_batch: np.ndarray | None = None) -> dict[str, Any]:
    """Export ``model`` to ONNX (input ``input``, output ``logits``, dynamic batch), embed the manifest.

    Where the manifest names an embedding (:func:`with_embedding`), the model gains that second output.
    The export runs on a CPU FP32 copy in eval mode; afterwards ONNX Runtime and PyTorch run the same
    batch (``check_batch``, or two random images) and every output is compared.

    Returns:
        ``{"path", "bytes", "seconds", "max_abs_diff"}``.

    Raises:
        InferenceError: the ONNX logits differ from PyTorch's by more than 100x the tolerance (a
            broken export); a smaller excess is logged as a warning.
    """
    import onnx  # noqa: PLC0415

    out_path = Path(out_path)
    start = time.perf_counter()
    cpu = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float().eval()
    if manifest.embedding is not None:
        cpu = WithEmbedding(cpu).eval()
    names = list(manifest.output_names)
    h, w = manifest.input.size
    if check_batch is None:
        check_batch = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0)).numpy()
    dummy = torch.from_numpy(check_batch[:1].astype(np.float32))
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    with torch.no_grad(), warnings.catch_warnings():
        # dynamo=False on purpose: the legacy exporter handles dynamic_axes for every torchvision classifier.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(cpu, (dummy,), str(tmp), input_names=[manifest.input.name],
                          output_names=names, opset_version=opset, dynamo=False,
                          dynamic_axes={manifest.input.name: {0: "batch"}, **{n: {0: "batch"} for n in names}})
    proto = onnx.load(str(tmp))
    onnx.checker.check_model(proto)
    onnx.save(embed_manifest(proto, manifest), str(tmp))
    tmp.replace(out_path)
    with torch.no_grad():
        expected = cpu(torch.from_numpy(check_batch.astype(np.float32)))
    expected = [t.numpy() for t in (expected if isinstance(expected, tuple) else (expected,))]
    got = _onnx_outputs(out_path, check_batch.astype(np.float32), names)
    diff = max(float(np.max(np.abs(e - g))) for e, g in zip(expected, got))
    seconds = time.perf_counter() - start
    size = out_path.stat().st_size
    logger.info("exported %s (%.1f MB, opset %d) in %.1f s; max |ONNX - PyTorch| = %.2e",
                out_path, size / 1e6, opset, seconds, diff)
    if diff > 100 * MATCH_TOLERANCE:
        raise InferenceError(f"{out_path}: ONNX logits differ from PyTorch by {diff:.3g} (tolerance {MATCH_TOLERANCE})")
    if diff > MATCH_TOLERANCE:
        logger.warning("%s: ONNX logits differ from PyTorch by %.3g (> %g)", out_path, diff, MATCH_TOLERANCE)
    return {"path": str(out_path), "bytes": size, "seconds": round(seconds, 2), "max_abs_diff": diff}
