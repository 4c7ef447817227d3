"""One pass over the data: ``train_one_epoch`` (with mixing, AMP, the weight average) and ``evaluate``."""
from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from edge.errors import GemsightError

from trainer.distributed import DistInfo, all_reduce_sum
from trainer.recipe import head_output
from trainer.regularize import MixBatch, ModelEma

__all__ = ["evaluate", "state_digest", "to_device", "train_one_epoch"]


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return images.to(device, non_blocking=True, memory_format=fmt)


def train_one_epoch(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
                    device: torch.device, epoch: int, *, scaler: torch.amp.GradScaler | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, info: DistInfo = DistInfo(),
                    show_progress: bool = False, mix: MixBatch | None = None,
                    ema: ModelEma | None = None) -> dict[str, float]:
    """One pass over the training data (``scheduler`` stepped per batch); returns the mean loss and images
    seen, summed over ranks. ``mix`` mixes each batch (mixup/CutMix); ``ema`` is updated after every step."""
    from tqdm import tqdm  # noqa: PLC0415

    model.train()
    amp = scaler is not None and scaler.is_enabled()
    totals = torch.zeros(2, dtype=torch.float64)  # loss * images, images
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", unit="batch", leave=False, disable=not show_progress)
    for images, targets in bar:
        images, targets = to_device(images, device), targets.to(device, non_blocking=True)
        if mix is not None and mix.enabled:
            images, targets, partners, lam = mix(images, targets)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                logits = head_output(model(images))
                loss = lam * criterion(logits, targets) + (1.0 - lam) * criterion(logits, partners)
        else:
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = criterion(head_output(model(images)), targets)
        optimizer.zero_grad(set_to_none=True)
        if amp:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(getattr(model, "module", model))  # the bare model under DDP
        value = float(loss.detach())
        if not math.isfinite(value):
            raise GemsightError(f"epoch {epoch + 1}: the training loss became {value}; lower --lr")
        totals += torch.tensor([value * images.shape[0], images.shape[0]], dtype=torch.float64)
        bar.set_postfix(loss=f"{value:.3f}")
    seconds = time.perf_counter() - start
    totals = all_reduce_sum(totals.to(device), info).cpu()  # NCCL reduces CUDA tensors only
    return {"loss": float(totals[0] / max(totals[1], 1)), "images": int(totals[1]), "seconds": seconds}


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, num_classes: int, *,
             info: DistInfo = DistInfo(), amp: bool = True) -> dict[str, Any]:
    """Mean (unweighted) cross-entropy and the confusion matrix over ``loader``, summed over ranks.

    ``amp`` uses FP16 autocast on CUDA (per-epoch validation); the final FP32 metrics turn it off.
    """
    model.eval()
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    autocast = torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda")
    with torch.inference_mode(), autocast:
        for images, targets in loader:
            images, targets = to_device(images, device), targets.to(device, non_blocking=True)
            logits = head_output(model(images)).float()
            totals[0] += F.cross_entropy(logits, targets, reduction="sum").double()
            totals[1] += targets.numel()
            confusion += torch.bincount(targets * num_classes + logits.argmax(1), minlength=num_classes ** 2)
    all_reduce_sum(totals, info)
    all_reduce_sum(confusion, info)
    totals, confusion = totals.cpu(), confusion.cpu()
    return {"loss": float(totals[0] / max(totals[1], 1)),
            "confusion": confusion.reshape(num_classes, num_classes).numpy()}


def state_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
