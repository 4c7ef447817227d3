"""Checkpoints: what ``best.pt`` / ``last.pt`` hold, written atomically, read back safely.

A checkpoint is a plain dict of tensors and builtins (loaded with ``weights_only=True``): ``model``,
``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (the last finished, 0-based), ``best_acc``,
``best_epoch``, ``arch``, ``dropout``, ``stem``, ``classes``, ``manifest`` (the input contract), ``history``
(metrics per epoch), ``args`` and ``rng``; with ``--ema``, also ``ema`` (the weight average and its update
count), and ``best.pt``'s ``model`` is then the average (the model that was validated and is exported).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from edge.atomic import replacing
from edge.errors import ConfigError
from edge.manifest import Manifest

logger = logging.getLogger(__name__)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` through a temporary file, so a crash never leaves half a checkpoint."""
    path = Path(path)
    with replacing(path) as fh:
        torch.save(state, fh)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a gemsight checkpoint.

    Raises:
        ConfigError: missing, unreadable, or not a gemsight checkpoint; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or not {"model", "arch", "manifest"} <= set(ckpt):
        raise ConfigError(f"{path}: not a gemsight checkpoint (no model/arch/manifest)")
    return ckpt


def capture_rng() -> dict[str, Any]:
    """Torch's generator states (the only generators the trainer draws from)."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng` saved (CUDA only where there is CUDA)."""
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])


def model_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint"):
    """The eval-mode CPU model and its manifest from a loaded checkpoint."""
    from trainer.recipe import create_model  # noqa: PLC0415 - avoid a cycle at import time

    manifest = Manifest.from_json(ckpt["manifest"], f"{source} (manifest)")
    model = create_model(ckpt["arch"], manifest.num_classes, weights="none", dropout=float(ckpt.get("dropout", 0.5)),
                         stem=ckpt.get("stem", "standard"))  # checkpoints from before --stem: standard
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ConfigError(f"{source}: weights do not fit {ckpt['arch']} ({str(exc).splitlines()[0]})") from exc
    return model.eval(), manifest
