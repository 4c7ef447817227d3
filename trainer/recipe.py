"""The jewelry recipe: a torchvision classifier with dropout before its last layer, the transforms, the
optimizer and its schedule (mixup/CutMix and the weight average are in :mod:`trainer.regularize`).

The validation transform is :func:`edge.preprocess.preprocess` itself (one source of truth with the
device). The training transform works on the same BGR ``uint8`` images and ends with the same
:func:`edge.preprocess.normalize`, so train and device differ only by the augmentation.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision
from torch import nn

from edge.errors import ConfigError
from edge.manifest import InputSpec
from edge.preprocess import normalize, preprocess, resize_to
from trainer.presets import CROPS, OPTIMIZERS, SMALL_STEM_MAX_SIZE, STEMS

logger = logging.getLogger(__name__)


class ClassificationPresetTrain:
    """Augmentation: resize, a random crop, a zoom-out, rotation, flips, brightness/contrast.

    Random draws come from torch's generator, which the DataLoader seeds per worker (numpy's global
    generator would repeat the same augmentations in every worker). An augmentation that is off draws
    nothing, so the seed recipe's draws (and models) are those of the recipe before the others existed.

    Args:
        spec: the model's input spec (size, colour order, mean/std, resize rule).
        hflip_prob: probability of a horizontal flip.
        brightness: brightness shift, as a fraction of the full range (±).
        contrast: contrast factor range (1 ± contrast).
        pad_fraction: ``crop="pad"``: reflect padding on each side before the random crop, as a fraction
            of the size.
        crop: ``pad`` (reflect-pad and crop back to the size) or ``resized`` (a random area/aspect crop
            resized to the size, like torchvision's ``RandomResizedCrop``).
        crop_scale: ``crop="resized"``: the smallest crop area, as a fraction of the image (the largest is 1).
        crop_ratio: ``crop="resized"``: the largest aspect ratio R (drawn log-uniformly in [1/R, R]).
        vflip_prob: probability of a vertical flip.
        rotate: largest rotation in degrees (uniform in ±rotate); the corners are filled by reflection.
        source_scale: ``crop="resized"``: crop from the photo at this multiple of the input size (the
            dataset should keep its photos that large: :meth:`source_spec`), so that a zoomed-in crop is
            shrunk to the input and keeps its detail instead of being blown up from an input-size image.
        zoom_out: largest zoom-out, as the side of a canvas in multiples of the crop's (``<= 1``: off). Half
            the crops are placed at a random spot of a canvas ``[1, zoom_out]`` times their side, filled with
            the median colour of the crop's border, then shrunk to the input (torchvision's ``RandomZoomOut``,
            p 0.5): the piece appears smaller, whole, with room around it, as a piece lies in a case.
    """

    def __init__(self, *, spec: InputSpec, hflip_prob: float = 0.5, brightness: float = 0.2,
                 contrast: float = 0.2, pad_fraction: float = 0.125, crop: str = "pad", crop_scale: float = 0.35,
                 crop_ratio: float = 4 / 3, vflip_prob: float = 0.0, rotate: float = 0.0,
                 source_scale: float = 1.0, zoom_out: float = 1.0) -> None:
        if crop not in CROPS:
            raise ConfigError(f"--crop {crop}: unknown crop (known: {', '.join(CROPS)})")
        if source_scale < 1.0:
            raise ConfigError(f"--source-scale must be at least 1, got {source_scale}")
        self.spec = spec
        self.hflip_prob = hflip_prob
        self.vflip_prob = vflip_prob
        self.brightness = brightness
        self.contrast = contrast
        self.crop = crop
        self.crop_scale = crop_scale
        self.crop_ratio = crop_ratio
        self.rotate = rotate
        self.zoom_out = zoom_out
        self.source_scale = source_scale if crop == "resized" else 1.0
        h, w = spec.size
        self._source = spec if self.source_scale == 1.0 else spec.model_copy(
            update={"size": (round(h * self.source_scale), round(w * self.source_scale))})
        self.pad = (round(spec.size[0] * pad_fraction), round(spec.size[1] * pad_fraction))

    @staticmethod
    def _uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand(()))

    def _resized_crop(self, img: np.ndarray) -> np.ndarray:
        """A random crop of area ``[crop_scale, 1]`` and aspect ``[1/R, R]`` (10 tries, then the whole image,
        as torchvision does), at the source's resolution: :meth:`_fit` brings it to the input."""
        ih, iw = img.shape[:2]
        area = ih * iw
        log_r = math.log(self.crop_ratio)
        for _ in range(10):
            target = area * self._uniform(self.crop_scale, 1.0)
            ratio = math.exp(self._uniform(-log_r, log_r))
            cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < cw <= iw and 0 < ch <= ih:
                y0 = int(torch.randint(0, ih - ch + 1, ()))
                x0 = int(torch.randint(0, iw - cw + 1, ()))
                return img[y0:y0 + ch, x0:x0 + cw]
        return img

    def _zoomed_out(self, img: np.ndarray) -> np.ndarray:
        """Half the time, ``img`` at a random spot of a canvas up to ``zoom_out`` times its side, filled with
        the median colour of its border; otherwise ``img`` (no draw at all when the zoom-out is off)."""
        if self.zoom_out <= 1.0 or float(torch.rand(())) >= 0.5:
            return img
        side = self._uniform(1.0, self.zoom_out)
        ih, iw = img.shape[:2]
        ch, cw = round(ih * side), round(iw * side)
        top = int(torch.randint(0, ch - ih + 1, ()))
        left = int(torch.randint(0, cw - iw + 1, ()))
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        fill = [float(v) for v in np.median(border, axis=0)]
        return cv2.copyMakeBorder(img, top, ch - ih - top, left, cw - iw - left, cv2.BORDER_CONSTANT, value=fill)

    def _fit(self, img: np.ndarray) -> np.ndarray:
        """``img`` at the input size: shrunk by area, enlarged linearly, untouched when it already is."""
        h, w = self.spec.size
        if img.shape[:2] == (h, w):
            return img
        shrink = img.shape[0] > h and img.shape[1] > w
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    def source_spec(self) -> InputSpec:
        """The input spec at ``source_scale`` times the size: what the training photos are kept at."""
        return self._source

    def _rotated(self, img: np.ndarray) -> np.ndarray:
        angle = self._uniform(-self.rotate, self.rotate)
        h, w = img.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        return cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

    def augment(self, image: np.ndarray) -> np.ndarray:
        """BGR uint8 in, augmented BGR uint8 at the model's size out."""
        h, w = self.spec.size
        img = resize_to(image, self.source_spec())
        ph, pw = self.pad
        if self.crop == "resized":
            img = self._resized_crop(img)
        elif ph or pw:
            img = cv2.copyMakeBorder(img, ph, ph, pw, pw, cv2.BORDER_REFLECT_101)
            y0 = int(torch.randint(0, 2 * ph + 1, ()))
            x0 = int(torch.randint(0, 2 * pw + 1, ()))
            img = img[y0:y0 + h, x0:x0 + w]
        img = self._fit(self._zoomed_out(img))
        if self.rotate > 0:
            img = self._rotated(np.ascontiguousarray(img))
        if float(torch.rand(())) < self.hflip_prob:
            img = img[:, ::-1]
        if self.vflip_prob > 0 and float(torch.rand(())) < self.vflip_prob:
            img = img[::-1]
        alpha = self._uniform(1.0 - self.contrast, 1.0 + self.contrast)
        beta = self._uniform(-self.brightness, self.brightness) * 255.0
        if alpha != 1.0 or beta != 0.0:
            # Contrast about the image mean so that it does not also shift brightness.
            mean = float(img.mean())
            img = np.clip((img.astype(np.float32) - mean) * alpha + mean + beta, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(img)

    @classmethod
    def from_args(cls, args, *, spec: InputSpec) -> "ClassificationPresetTrain":
        """The training transform of a run's resolved options."""
        return cls(spec=spec, hflip_prob=args.hflip, crop=args.crop, crop_scale=args.crop_scale,
                   crop_ratio=args.crop_ratio, vflip_prob=args.vflip, rotate=args.rotate,
                   source_scale=args.source_scale, zoom_out=args.zoom_out)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return normalize(self.augment(image)[None], self.spec)[0]


class ClassificationPresetEval:
    """The device's preprocessing (:func:`edge.preprocess.preprocess`), nothing else."""

    def __init__(self, *, spec: InputSpec) -> None:
        self.spec = spec

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return preprocess(image, self.spec)


def known_archs() -> list[str]:
    """Classifier names torchvision can build."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def imagenet_weights_path(arch: str) -> tuple[Path, str]:
    """Where torch's cache keeps ``arch``'s default ImageNet weights, and the URL they come from."""
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    url = weights.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


def _replace_head(model: nn.Module, num_classes: int, dropout: float) -> nn.Module:
    """Make the last fully-connected layer output ``num_classes``, with dropout ``p`` right before it."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ConfigError(f"--arch {type(model).__name__}: no fully-connected layer to replace")
    parent_name, _, attr = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old: nn.Linear = getattr(parent, attr)
    new = nn.Linear(old.in_features, num_classes)
    if isinstance(parent, nn.Sequential) and attr.isdigit() and int(attr) > 0 \
            and isinstance(parent[int(attr) - 1], nn.Dropout):
        parent[int(attr) - 1].p = dropout  # the head already has a dropout (MobileNet, EfficientNet ...)
        parent[int(attr)] = new
    else:
        setattr(parent, attr, nn.Sequential(nn.Dropout(dropout), new))
    return model


def resolve_stem(stem: str, arch: str, img_size: int) -> str:
    """``standard`` or ``small`` for ``--stem`` (``auto``: ``small`` for a ResNet-family ``arch`` at inputs
    up to :data:`~trainer.presets.SMALL_STEM_MAX_SIZE` px, where the standard stem's 32x downsampling
    leaves the last layers a 2x2 map at 64 px; ``standard`` otherwise).

    Raises:
        ConfigError: an unknown stem, or ``small`` for an arch without a max-pool stem.
    """
    if stem not in STEMS:
        raise ConfigError(f"--stem {stem}: unknown stem (known: {', '.join(STEMS)})")
    pooled = arch.startswith(("resnet", "resnext", "wide_resnet"))
    if stem == "small" and not pooled:
        raise _no_max_pool(arch)
    if stem == "auto":
        return "small" if pooled and img_size <= SMALL_STEM_MAX_SIZE else "standard"
    return stem


def create_model(arch: str, num_classes: int, *, weights: str = "none", dropout: float = 0.5,
                 stem: str = "standard") -> nn.Module:
    """Build a torchvision classifier for ``num_classes`` with dropout before the final layer.

    Args:
        arch: a torchvision classification model name (``resnet50``, ``resnet18``, ``mobilenet_v3_large`` ...).
        num_classes: output width.
        weights: ``none`` (from scratch), ``imagenet`` (torchvision's default weights, from the local
            torch cache only, never downloaded) or a path to a local state dict / gemsight checkpoint.
        dropout: dropout probability before the final fully-connected layer.
        stem: ``standard`` (torchvision's) or ``small`` (a ResNet without the max-pool after its first
            convolution; it holds no weights, so any ResNet weights still load); see :func:`resolve_stem`.

    Raises:
        ConfigError: unknown arch, ImageNet weights missing from the cache (the message names the
            exact path to put the file at), or a weights file that does not fit the model.
    """
    if arch not in known_archs():
        raise ConfigError(f"--arch {arch}: not a torchvision classifier (known: {', '.join(known_archs())})")
    aux = arch in ("googlenet", "inception_v3")  # their auxiliary heads only matter in training mode
    if weights == "imagenet":
        path, url = imagenet_weights_path(arch)
        if not path.is_file():
            raise ConfigError(
                f"--weights imagenet: the {arch} ImageNet weights are not in the local torch cache and gemsight "
                f"never downloads; put {url.rsplit('/', 1)[-1]} (from {url}) at {path}")
        model = torchvision.models.get_model(arch, weights=None, **({"init_weights": False} if aux else {}))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        if aux:
            model.aux_logits = False  # type: ignore[attr-defined]
        logger.info("loaded ImageNet weights for %s from %s", arch, path)
        return _with_stem(_follow_batches(_replace_head(model, num_classes, dropout), arch), arch, stem)
    model = _replace_head(torchvision.models.get_model(
        arch, weights=None, num_classes=num_classes, **({"aux_logits": False, "init_weights": True} if aux else {})),
                          num_classes, dropout)
    if weights not in ("none", "", None):
        _load_local(model, Path(weights))
    return _with_stem(_follow_batches(model, arch), arch, stem)


#: The least BatchNorm momentum a model trains with: torchvision's default, ResNets' own.
BN_MOMENTUM = 0.1


def _follow_batches(model: nn.Module, arch: str) -> nn.Module:
    """Raise BatchNorm momenta below :data:`BN_MOMENTUM` to it (MobileNetV3 and EfficientNet-B5–B7 ship 0.01, MNASNet
    0.0003: tuned for ImageNet's long schedules). At 0.01 the running statistics that validation and the
    exported model use trail the weights by ~100 steps: on the real-photo benchmark a MobileNetV3 from scratch
    validated at 0.20 (one class) for its first 8 epochs of 20 and at 0.39 after 10, while its training loss
    fell from the first epoch; at 0.1 it validated at 0.61 after 3 epochs, and both runs peaked at 0.88
    (``bench/results/real_photos_recipe_search.md``). Pretrained models get the same rule: their ImageNet
    statistics then move to the store's photos within the run. ResNets already use 0.1 and are untouched."""
    raised = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.momentum is not None \
                and module.momentum < BN_MOMENTUM:
            module.momentum = BN_MOMENTUM
            raised += 1
    if raised:
        logger.info("%s: BatchNorm momentum raised to %.2f in %d layers, so that validation follows training",
                    arch, BN_MOMENTUM, raised)
    return model


def _no_max_pool(arch: str) -> ConfigError:
    return ConfigError(f"--stem small: {arch} has no max-pool stem to remove (the ResNet family has; use "
                       f"--stem standard or auto)")


def _with_stem(model: nn.Module, arch: str, stem: str) -> nn.Module:
    if stem == "standard":
        return model
    if stem != "small":
        raise ConfigError(f"--stem {stem}: create_model takes standard or small (resolve_stem turns auto into one)")
    if not isinstance(getattr(model, "maxpool", None), nn.MaxPool2d):
        raise _no_max_pool(arch)
    model.maxpool = nn.Identity()
    return model


def _load_local(model: nn.Module, path: Path) -> None:
    """Load every tensor of a local state dict that fits; the head may differ (other classes)."""
    if not path.is_file():
        raise ConfigError(f"--weights {path}: file not found (use imagenet, none or a state-dict file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"--weights {path}: not a readable PyTorch state dict ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a gemsight checkpoint
    if not isinstance(state, dict):
        raise ConfigError(f"--weights {path}: expected a state dict, got {type(state).__name__}")
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and getattr(v, "shape", None) == own[k].shape}
    if not fitting:
        raise ConfigError(f"--weights {path}: no tensor in it fits --arch {type(model).__name__}")
    model.load_state_dict(fitting, strict=False)
    left = sorted(set(own) - set(fitting))
    logger.info("loaded %d/%d tensors from %s%s", len(fitting), len(own), path,
                f" (not loaded: {', '.join(left[:4])}{' ...' if len(left) > 4 else ''})" if left else "")


def head_output(out):
    """Logits from a model's output (GoogLeNet/Inception return named tuples in training mode)."""
    return out.logits if hasattr(out, "logits") else out


def create_optimizer(params, name: str, *, lr: float, momentum: float,
                     weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer named by ``--opt``: ``sgd`` (with momentum, the recipe) or ``adamw``.

    Args:
        params: the parameters to optimize.
        name: ``sgd`` or ``adamw``.
        lr: the base learning rate (the scheduler scales it).
        momentum: SGD momentum (AdamW ignores it).
        weight_decay: L2 penalty (SGD) or decoupled weight decay (AdamW).

    Raises:
        ConfigError: an unknown ``name``; the message names ``--opt``.
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"--opt {name}: not an optimizer gemsight trains with (known: {', '.join(OPTIMIZERS)})")


def make_scheduler(optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int, base_lr: float,
                   min_lr: float, warmup_epochs: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine annealing from ``base_lr`` to ``min_lr``, stepped every batch, after an optional linear warm-up.

    Stepping per batch (not per epoch) keeps short runs smooth; the factor depends only on the step
    count, so a resumed run with the saved ``last_epoch`` continues on the same curve.
    """
    total = max(1, epochs * steps_per_epoch)
    warmup = int(round(warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return (min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))) / base_lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
