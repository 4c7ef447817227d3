"""``--recipe auto``: the preset chosen from the training photos themselves (issue 33).

No single recipe held on every view of the real photos (``bench/results/real_photos_views.md``): which
training crop wins depends on how many photos a store has and on how much of each photo is the piece. So
``auto`` measures both once the data is scanned (the number of training photos, and the median share of
near-white background over up to :data:`SAMPLE` of them) and picks a preset by :func:`choose`, saying what it
picked and why in the log and in ``report.json`` (``recipe_auto``).

Only the options the command line (or ``--config``) left out come from the picked preset, as with any
preset; ``apply_recipe`` fills them from ``default`` first, so that the options can be checked before the
data is read, and :func:`apply_auto` replaces exactly those.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any, Sequence

import cv2
import numpy as np

from edge.preprocess import load_image
from trainer.presets import AUTO_KEYS_ATTR, AUTO_RULE, RECIPES

logger = logging.getLogger(__name__)

#: At most this many training photos are read to measure the background (spread evenly over the list).
SAMPLE = 200
#: A pixel is background when every channel is at least this bright (product shots on white).
WHITE_LEVEL = 225


def background_share(image: np.ndarray) -> float:
    """The share of near-white pixels of a BGR photo (at most 64 px on its longer side: the measure is coarse)."""
    h, w = image.shape[:2]
    scale = 64 / max(h, w)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    if image.ndim == 2:
        return float((image >= WHITE_LEVEL).mean())
    return float((image >= WHITE_LEVEL).all(axis=-1).mean())


def median_background(paths: Sequence, sample: int = SAMPLE) -> float:
    """The median :func:`background_share` of up to ``sample`` photos, taken evenly from ``paths``."""
    if not paths:
        return 0.0
    idx = np.unique(np.linspace(0, len(paths) - 1, min(sample, len(paths))).round().astype(int))
    return float(np.median([background_share(load_image(paths[i])) for i in idx]))


def choose(train_photos: int, background: float) -> tuple[str, str]:
    """The preset for a training set of ``train_photos`` photos whose median photo is ``background`` near-white,
    and why (one sentence for the log and the report). The first rule of :data:`~trainer.presets.AUTO_RULE`
    that applies wins."""
    for name, max_photos, max_background, why in AUTO_RULE:
        if train_photos <= max_photos and background <= max_background:
            return name, why.format(photos=train_photos, background=background)
    raise AssertionError("AUTO_RULE ends with a rule that always applies")


def apply_auto(args: argparse.Namespace, train_paths: Sequence) -> dict[str, Any] | None:
    """With ``--recipe auto``: measure the training photos, pick the preset, fill the options ``apply_recipe``
    took from ``default`` from it instead; returns the record for the report (``None`` for any other recipe)."""
    keys = getattr(args, AUTO_KEYS_ATTR, None)
    if args.recipe != "auto" or keys is None:
        return None
    if getattr(args, "init_from", None):
        # A fine-tune keeps the layers of the model it starts from (trainer/finetune.py: adopt).
        keys = [k for k in keys if k not in ("arch", "stem", "dropout", "img_size")]
    background = median_background(list(train_paths))
    name, why = choose(len(train_paths), background)
    for key in keys:
        setattr(args, key, RECIPES[name][key])
    if "warmup_epochs" in keys and args.epochs > 0:
        args.warmup_epochs = min(args.warmup_epochs, args.epochs / 2)
    delattr(args, AUTO_KEYS_ATTR)
    given = sorted(set(RECIPES[name]) - set(keys))
    record = {"picked": name, "why": why, "train_photos": len(train_paths),
              "median_background": round(background, 3), "options_given": given}
    logger.info("--recipe auto: picked %s: %s%s", name, why,
                f" (options given on the command line kept: {', '.join(given)})" if given else "")
    return record
