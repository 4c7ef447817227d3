"""The training and validation loaders: workers, the in-memory image cache, the sampler and its shuffle."""
from __future__ import annotations

import functools
import math
import os

import torch
from torch.utils.data import DataLoader, DistributedSampler

from edge.preprocess import resize_to

from trainer.data import DatasetSplit, ImageDataset
from trainer.distributed import DistInfo
from trainer.recipe import ClassificationPresetEval, ClassificationPresetTrain

__all__ = ["CACHE_IMAGES_BYTES", "eval_loader", "make_loaders"]


def _default_workers(info: DistInfo) -> int:
    # Leave the cores to the math on small machines; loading 64-224 px images is cheap next to it.
    return min(8, (os.cpu_count() or 1) // info.world_size // 2)


CACHE_IMAGES_BYTES = 2 << 30   # what ``--cache-images auto`` may hold in memory


def _cache_images(mode: str, n_images: int, spec, workers: int) -> bool:
    """Whether to keep decoded, resized images in memory (``--cache-images``)."""
    if mode != "auto":
        return mode == "on"
    h, w = spec.size
    return n_images * h * w * 3 * max(1, workers) <= CACHE_IMAGES_BYTES


def make_loaders(split: DatasetSplit, spec, args, info: DistInfo):
    """The train sampler (``set_epoch`` each epoch) and the train and validation loaders of this rank."""
    workers = _default_workers(info) if args.workers is None else args.workers
    common = {"num_workers": workers, "pin_memory": info.device.type == "cuda",
              "persistent_workers": workers > 0}
    augment = ClassificationPresetTrain.from_args(args, spec=spec)
    cache = _cache_images(args.cache_images, len(split.train) + len(split.val), augment.source_spec(), workers)

    def dataset(samples, transform, kept_at) -> ImageDataset:
        return ImageDataset(samples, transform, prepare=functools.partial(resize_to, spec=kept_at), cache=cache)

    # Training photos are kept at the augmentation's source size (--source-scale), validation at the input's.
    train_ds = dataset(split.train, augment, augment.source_spec())
    # One deterministic shuffle per epoch (set_epoch), alone or sharded: a resumed run sees the same order.
    sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=args.seed)
    per_rank = math.ceil(len(train_ds) / info.world_size)
    train_loader = DataLoader(train_ds, batch_size=args.batch_size, sampler=sampler,
                              drop_last=per_rank > args.batch_size,  # a batch of 1 breaks BatchNorm
                              generator=torch.Generator().manual_seed(args.seed + info.rank), **common)
    # Validation shards without padding so no image counts twice in the reduced metrics.
    val_ds = dataset(split.val[info.rank::info.world_size], ClassificationPresetEval(spec=spec), spec)
    val_loader = DataLoader(val_ds, batch_size=args.batch_size, shuffle=False, **common)
    return sampler, train_loader, val_loader


def eval_loader(samples, spec, args) -> DataLoader:
    """Photos in their order at the device's preprocessing, with the training's loading processes (the final
    report's passes over the validation and the training photos, on the main rank)."""
    workers = _default_workers(DistInfo()) if args.workers is None else args.workers
    return DataLoader(ImageDataset(samples, ClassificationPresetEval(spec=spec)), batch_size=args.batch_size,
                      shuffle=False, num_workers=workers)
