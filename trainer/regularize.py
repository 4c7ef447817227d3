"""What a training step adds on top of the loss: mixup/CutMix of a batch, and the weight average.

Both are recipe options (``--mixup``, ``--cutmix``, ``--ema``); :mod:`trainer.epoch` applies them.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class MixBatch:
    """Mixup and CutMix on a batch (timm-style): with both on, one of the two per batch, at even odds.

    Draws come from torch's generator in the main process; with both off, nothing is drawn.

    Not torchvision's ``v2.MixUp``/``v2.CutMix``: those return soft labels, and class-weighted
    cross-entropy on soft labels divides by the batch size instead of by the targets' weights, so the
    loss (and every model trained with ``--mixup``/``--cutmix``) would change. This returns both targets
    and their weight for :mod:`trainer.epoch`'s two-target loss.

    Args:
        mixup: Beta(a, a) parameter of mixup (0: off).
        cutmix: Beta(a, a) parameter of CutMix (0: off).
    """

    def __init__(self, *, mixup: float = 0.0, cutmix: float = 0.0) -> None:
        self.mixup = mixup
        self.cutmix = cutmix

    @property
    def enabled(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def __call__(self, images: torch.Tensor, targets: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Returns (mixed images, targets, partner targets, weight of ``targets``)."""
        use_cutmix = self.cutmix > 0 and (self.mixup <= 0 or float(torch.rand(())) < 0.5)
        alpha = self.cutmix if use_cutmix else self.mixup
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        order = torch.randperm(images.shape[0], device="cpu").to(images.device)
        partner = images[order]
        if use_cutmix:
            h, w = images.shape[-2:]
            cut = math.sqrt(1.0 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy, cx = int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
            images = images.clone()
            images[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)  # the area actually pasted
        else:
            images = images * lam + partner * (1.0 - lam)
        return images, targets, targets[order], lam


class ModelEma:
    """An exponential moving average of a model's weights and buffers, updated after every step.

    torch's :class:`~torch.optim.swa_utils.AveragedModel` (buffers averaged too) with one difference from
    its ``get_ema_multi_avg_fn``: the decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n``
    updates, so that a short run's average is not dominated by its random start. The average starts as a
    copy of the model; integer buffers (BatchNorm's batch count) are copied, not averaged.

    Args:
        model: the model being trained (copied; the copy is the average).
        decay: the decay per update, in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0   # training steps averaged (counted here: reading AveragedModel's count would sync a GPU)
        self.averaged = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=True)
        self.averaged.update_parameters(model)   # its first call copies the model; every later one averages
        self.module = self.averaged.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def _lerp(self, averages: list[torch.Tensor], currents: list[torch.Tensor], _n_averaged: torch.Tensor) -> None:
        # AveragedModel groups tensors by device and dtype: a group is all floating point or all integer.
        if not averages[0].is_floating_point():
            for average, current in zip(averages, currents):
                average.copy_(current)
            return
        n = self.updates
        torch._foreach_lerp_(averages, currents, 1.0 - min(self.decay, (1.0 + n) / (10.0 + n)))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights."""
        self.updates += 1
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.averaged.n_averaged.fill_(self.updates + 1)
