"""Recipe presets (``--recipe``): the defaults of every recipe option that the command line leaves out.

``default`` was chosen by measurement on real product photos against a plain torchvision loop
(``bench/real_photos.py``; the candidates and their figures are in
``bench/results/real_photos_recipe_search.md``). ``scene`` is the default with the crop that lost least on
photos of pieces worn in scenes (issue 33). ``torchvision-adamw`` is the plain loop's crop and stem with AdamW,
the first candidate that held on every view of the real photos. ``auto`` (the command's default) picks
``scene`` or ``torchvision-adamw`` from the training photos (:mod:`trainer.auto_recipe`;
``docs/real-photos.md``). ``seed`` is the recipe gemsight started with, kept exactly: the same options give the
same model, bit for bit, as before presets existed.

This module imports nothing heavy: the argument parser reads it.
"""
from __future__ import annotations

import argparse
from typing import Any

from edge.errors import ConfigError

#: The optimizers ``--opt`` may name.
OPTIMIZERS = ("sgd", "adamw")
#: The training crops ``--crop`` may name.
CROPS = ("pad", "resized")
#: The stems ``--stem`` may name: ``standard`` (torchvision's), ``small`` (a ResNet without the max-pool
#: after its first convolution, for small inputs), ``auto`` (``small`` up to :data:`SMALL_STEM_MAX_SIZE`).
STEMS = ("auto", "standard", "small")
#: ``--stem auto`` keeps the max-pool above this input size (pixels, the larger side).
SMALL_STEM_MAX_SIZE = 128

#: The original recipe (resnet50, SGD, dropout 0.5, flip / brightness / contrast / reflect-padded crop).
SEED = {
    "arch": "resnet50", "opt": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "label_smoothing": 0.0,
    "min_lr": 1e-5, "warmup_epochs": 0.0, "dropout": 0.5, "crop": "pad", "crop_scale": 0.35, "crop_ratio": 4 / 3,
    "source_scale": 1.0, "hflip": 0.5, "vflip": 0.0, "rotate": 0.0, "mixup": 0.0, "cutmix": 0.0, "ema": 0.0,
    "stem": "standard", "zoom_out": 1.0,
}

#: The recipe named ``default``, chosen on real-dev's validation photos (see the module docstring); ``auto``
#: picked it for product shots until issue 33's fourth round replaced it there with :data:`TORCHVISION_ADAMW`.
DEFAULT = {
    **SEED,
    "arch": "resnet18", "dropout": 0.0, "label_smoothing": 0.1, "warmup_epochs": 1.0, "crop": "resized",
    "crop_scale": 0.35, "source_scale": 2.0, "ema": 0.995, "stem": "auto",
}

#: The default for photos of pieces worn in scenes rather than alone on white: torchvision's stem and the
#: reflect-padded crop, which keeps the whole photo (and the piece) in every training crop. Issue 33, on a
#: store's own 300 photos in 4 classes whose median photo is 84% non-white (ResNet-18, 96 px, 30 epochs):
#: the default 0.705 / 0.651 (seeds 0 / 1), this 0.767, the plain torchvision loop 0.798 / 0.767; its
#: ``--stem standard`` alone 0.690: the resized crop (a third of a scene can miss the piece) was the loss.
SCENE = {**DEFAULT, "stem": "standard", "crop": "pad"}

#: torchvision's plain loop in gemsight's trainer, with AdamW: a resized crop of 50-100% of the photo at its own
#: scale, torchvision's stem, no label smoothing, weight average or dropout, AdamW (lr 0.001, weight decay 0.05,
#: one warm-up epoch, cosine to 0). Issue 33's fourth round (``bench/results/real_photos_views*_round4*``):
#: fixed before it was scored, then scored on every view of the real photos (3 folds and two store-sized
#: subsets, 3 seeds each) beside the plain loop; ``auto`` picks it for product shots (:data:`AUTO_RULE`).
TORCHVISION_ADAMW = {
    **DEFAULT,
    "stem": "standard", "crop": "resized", "crop_scale": 0.5, "source_scale": 1.0, "label_smoothing": 0.0,
    "ema": 0.0, "warmup_epochs": 1.0, "min_lr": 0.0, "dropout": 0.0, "opt": "adamw", "lr": 0.001,
    "weight_decay": 0.05,
}

RECIPES: dict[str, dict[str, Any]] = {"default": DEFAULT, "scene": SCENE, "torchvision-adamw": TORCHVISION_ADAMW,
                                      "seed": SEED}
#: The options a preset supplies.
RECIPE_OPTIONS = tuple(SEED)

#: ``--recipe auto`` picks ``scene`` when the median training photo is at most this share near-white.
SCENE_BACKGROUND = 0.5
#: ``--recipe auto``: the rules :func:`trainer.auto_recipe.choose` reads, first match wins: (preset, at most this
#: many training photos, at most this median share of near-white background, why). The last always applies.
#: The median real-dev photo is 83% near-white, the median photo of issue 33's store set about 16%.
AUTO_RULE: tuple[tuple[str, float, float, str], ...] = (
    ("scene", float("inf"), SCENE_BACKGROUND,
     "the median training photo is {background:.0%} near-white background (at most 50%): pieces in scenes, where "
     "a small random crop can miss the piece, so the padded crop that keeps the whole photo ({photos} photos)"),
    ("torchvision-adamw", float("inf"), 1.0,
     "the median training photo is {background:.0%} near-white background (over 50%): product shots on white, "
     "torchvision's crop and stem with AdamW, which held on every view of real product photos ({photos} photos)"),
)
#: Where :func:`apply_recipe` notes, for ``--recipe auto``, the options it filled provisionally from ``default``
#: (:func:`trainer.auto_recipe.apply_auto` replaces exactly those once the photos are measured).
AUTO_KEYS_ATTR = "auto_recipe_keys"


def apply_recipe(args: argparse.Namespace) -> argparse.Namespace:
    """Fill every recipe option that is ``None`` from the preset ``args.recipe`` (given options win).

    Raises:
        ConfigError: an unknown preset, optimizer or crop; the message names the option.
    """
    name = getattr(args, "recipe", None) or "default"
    if name not in RECIPES and name != "auto":
        raise ConfigError(f"--recipe {name}: unknown preset (known: auto, {', '.join(RECIPES)})")
    args.recipe = name
    supplied = []
    for key, value in RECIPES["default" if name == "auto" else name].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
            supplied.append(key)
    if name == "auto":
        setattr(args, AUTO_KEYS_ATTR, supplied)   # provisional: the photos decide (trainer.auto_recipe)
    if "warmup_epochs" in supplied and isinstance(args.epochs, (int, float)) and args.epochs > 0:
        # A preset's warm-up must not make a short run (--epochs 1) invalid: at most half the run.
        args.warmup_epochs = min(args.warmup_epochs, args.epochs / 2)
    if args.opt not in OPTIMIZERS:
        raise ConfigError(f"--opt {args.opt}: not an optimizer gemsight trains with (known: {', '.join(OPTIMIZERS)})")
    if args.crop not in CROPS:
        raise ConfigError(f"--crop {args.crop}: unknown crop (known: {', '.join(CROPS)})")
    if args.stem not in STEMS:
        raise ConfigError(f"--stem {args.stem}: unknown stem (known: {', '.join(STEMS)})")
    return args
