"""The training run: data, model, the epochs with their checkpoints, the final report and the ONNX export.

The per-epoch passes are in :mod:`trainer.epoch` (re-exported here), the loaders in :mod:`trainer.loaders`.

Run as ``gemsight-train --data DIR --out RUN_DIR ...``, ``python -m trainer ...`` or, data-parallel,
``torchrun --nproc_per_node N -m trainer ...``; from Python, ``train(data=..., out=..., ...)``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from edge.errors import ConfigError, DataError, GemsightError
from edge.manifest import InputSpec, Manifest

from trainer import finetune, misses as misses_mod, report as reports
from trainer.args import get_args_parser, parse_args, resolve_args, save_args
from trainer.auto_recipe import apply_auto
from trainer.checkpoint import capture_rng, load_checkpoint, model_from_checkpoint, restore_rng, save_checkpoint
from trainer.data import DatasetSplit, class_weights, load_dataset
from trainer.distributed import DistInfo, average_buffers, barrier, broadcast_object, cleanup, init_distributed
from trainer.epoch import evaluate, state_digest, train_one_epoch
from trainer.evaluate import classification_report
from trainer.export import build_manifest, export_onnx, git_commit, with_embedding
from trainer.loaders import eval_loader, make_loaders
from trainer.recipe import create_model, create_optimizer, make_scheduler, resolve_stem
from trainer.regularize import MixBatch, ModelEma

logger = logging.getLogger(__name__)

__all__ = ["evaluate", "get_args_parser", "main", "parse_args", "train", "train_one_epoch"]


def _load_split(args, info: DistInfo, init: dict[str, Any] | None = None) -> DatasetSplit:
    """Scan the data once on rank 0 and share it, errors included, so every rank stops together."""
    payload: Any = None
    if info.is_main:
        try:
            if init is not None or args.extra_data:
                payload = finetune.load_sources(args, init)
            else:
                payload = load_dataset(args.data, val=args.val, val_split=args.val_split, seed=args.seed)
        except GemsightError as exc:
            payload = exc
    payload = broadcast_object(payload, info)
    if isinstance(payload, Exception):
        raise payload
    return payload


def _resume_state(args) -> dict[str, Any] | None:
    if not args.resume:
        return None
    path = Path(args.resume)
    ckpt = load_checkpoint(path / "last.pt" if path.is_dir() else path)
    if ckpt["arch"] != args.arch:
        raise ConfigError(f"--resume {args.resume}: that run trained {ckpt['arch']}, not --arch {args.arch}")
    if ckpt.get("args", {}).get("opt", "sgd") != args.opt:
        raise ConfigError(f"--resume {args.resume}: that run used --opt {ckpt['args'].get('opt', 'sgd')}, "
                          f"not {args.opt}")
    if ckpt.get("img_size") != args.img_size:
        raise ConfigError(f"--resume {args.resume}: that run used --img-size {ckpt.get('img_size')}, "
                          f"not {args.img_size}")
    return ckpt


@dataclass
class _Data:
    """The dataset as this rank sees it: the split, the class weights, the model's base manifest, the loaders."""

    split: DatasetSplit
    weights: list[float]
    base: Manifest
    sampler: DistributedSampler
    train_loader: DataLoader
    val_loader: DataLoader


@dataclass
class _Training:
    """What the loop updates: the model (bare, and as the loop calls it), the loss and the optimization."""

    model: nn.Module
    net: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    mix: MixBatch
    ema: ModelEma | None = None
    stem: str = "standard"   # what --stem resolved to (saved in the checkpoint)

    @property
    def evaluated(self) -> nn.Module:
        """The model that is validated, kept and exported: the weight average when ``--ema`` is on."""
        return self.ema.module if self.ema is not None else self.model


@dataclass
class _Progress:
    """Where the run stands: the next epoch, the metrics so far and the best epoch yet."""

    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=lambda: {"acc": -1.0, "loss": math.inf, "epoch": -1})


def main(args: argparse.Namespace) -> Path:
    """Train, keep the best model on validation accuracy, export it; returns the run directory.

    With ``--init-from``, the model is read and checked first: a file that is not a gemsight model stops the run
    before anything is written.
    """
    args = argparse.Namespace(**vars(args))
    init = finetune.load_init(args.init_from) if getattr(args, "init_from", None) else None
    if init is not None:
        finetune.adopt(args, init, get_args_parser().get_default("img_size"))
    args = resolve_args(args)
    info = init_distributed(args.device)
    try:
        return _run(args, info, init)
    finally:
        cleanup(info)


def _run(args: argparse.Namespace, info: DistInfo, init: dict[str, Any] | None = None) -> Path:
    """One run on this rank: data → model → optimizer → loop → export (rank 0)."""
    started = time.perf_counter()
    out = Path(args.out)
    ckpt = _resume_state(args)
    torch.manual_seed(args.seed)
    data = _prepare_data(args, info, ckpt, init)
    if info.is_main:
        _start_run_dir(args, out, info, data)
    training = _prepare_training(args, info, ckpt, data, init)
    progress = _Progress() if ckpt is None else _resume_progress(args, ckpt, training, info)
    _train_epochs(args, info, data, training, progress, out)
    if info.is_main:
        _finish(args, out, data.split, data.weights, progress.history, time.perf_counter() - started, info.device)
    barrier(info)
    return out


def _prepare_data(args: argparse.Namespace, info: DistInfo, ckpt: dict[str, Any] | None,
                  init: dict[str, Any] | None = None) -> _Data:
    """Scan the data, check it against a resumed run, weigh the classes and build the loaders."""
    split = _load_split(args, info, init)
    args.recipe_auto = apply_auto(args, [p for p, _ in split.train])   # --recipe auto: the photos pick the preset
    if ckpt is not None and tuple(ckpt["classes"]) != split.classes:
        raise DataError(f"--resume {args.resume}: that run had classes {list(ckpt['classes'])}, "
                        f"{args.data} has {list(split.classes)}")
    weights = class_weights(split.counts("train"), args.class_weights)
    base = build_manifest(arch=args.arch, classes=split.classes, img_size=args.img_size, name=args.name,
                          version=args.model_version)
    sampler, train_loader, val_loader = make_loaders(split, base.input, args, info)
    return _Data(split, weights, base, sampler, train_loader, val_loader)


def _start_run_dir(args: argparse.Namespace, out: Path, info: DistInfo, data: _Data) -> None:
    """Rank 0: create the run directory, save the resolved arguments and say what is trained where."""
    out.mkdir(parents=True, exist_ok=True)
    save_args(args, out / "args.yaml")
    logger.info("training %s on %s (%s), %d classes, class weights %s", args.arch, info.device,
                f"{info.world_size} processes" if info.enabled else "1 process", len(data.split.classes),
                ", ".join(f"{c}={w:.2f}" for c, w in zip(data.split.classes, data.weights)))


def _prepare_training(args: argparse.Namespace, info: DistInfo, ckpt: dict[str, Any] | None,
                      data: _Data, init: dict[str, Any] | None = None) -> _Training:
    """The model (resumed or fine-tuned-from weights loaded, on the device, DDP-wrapped when distributed), the
    loss, the optimizer and the per-batch schedule."""
    stem = resolve_stem(args.stem, args.arch, args.img_size)
    model = create_model(args.arch, len(data.split.classes), weights="none" if ckpt or init else args.weights,
                         dropout=args.dropout, stem=stem)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
    elif init is not None:
        finetune.init_weights(model, init, args.new_head)
    cuda = info.device.type == "cuda"
    model = model.to(info.device, memory_format=torch.channels_last if cuda else torch.contiguous_format)
    net = nn.parallel.DistributedDataParallel(model, device_ids=[info.local_rank] if cuda else None) \
        if info.enabled else model
    criterion = nn.CrossEntropyLoss(weight=torch.tensor(data.weights, dtype=torch.float32, device=info.device),
                                    label_smoothing=args.label_smoothing)
    optimizer = create_optimizer(model.parameters(), args.opt, lr=args.lr, momentum=args.momentum,
                                 weight_decay=args.weight_decay)
    scheduler = make_scheduler(optimizer, epochs=args.epochs, steps_per_epoch=len(data.train_loader),
                               base_lr=args.lr, min_lr=args.min_lr, warmup_epochs=args.warmup_epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    ema = ModelEma(model, args.ema) if args.ema > 0 else None
    if ema is not None and ckpt is not None and ckpt.get("ema"):
        ema.load_state_dict(ckpt["ema"])
    return _Training(model, net, criterion, optimizer, scheduler, scaler,
                     MixBatch(mixup=args.mixup, cutmix=args.cutmix), ema, stem)


def _resume_progress(args: argparse.Namespace, ckpt: dict[str, Any], training: _Training,
                     info: DistInfo) -> _Progress:
    """Restore the optimizer, schedule, scaler and random state of a resumed run; returns where it stood."""
    training.optimizer.load_state_dict(ckpt["optimizer"])
    training.scheduler.load_state_dict(ckpt["scheduler"])
    if info.device.type == "cuda" and ckpt.get("scaler"):
        training.scaler.load_state_dict(ckpt["scaler"])
    restore_rng(ckpt.get("rng", {}))
    progress = _Progress(start_epoch=int(ckpt["epoch"]) + 1, history=list(ckpt.get("history", [])),
                         best={"acc": float(ckpt["best_acc"]), "loss": float(ckpt.get("best_loss", math.inf)),
                               "epoch": int(ckpt["best_epoch"])})
    logger.info("resuming %s from epoch %d of %d", args.resume, progress.start_epoch + 1, args.epochs)
    return progress


def _train_epochs(args: argparse.Namespace, info: DistInfo, data: _Data, training: _Training, progress: _Progress,
                  out: Path) -> None:
    """The loop: train, validate, keep the best; rank 0 logs and saves every epoch."""
    show_progress = info.is_main and sys.stderr.isatty()
    common = {"arch": args.arch, "dropout": args.dropout, "stem": training.stem, "classes": list(data.split.classes),
              "img_size": args.img_size, "manifest": data.base.to_json(),
              "args": {k: v for k, v in vars(args).items() if v is not None}}
    for epoch in range(progress.start_epoch, args.epochs):
        data.sampler.set_epoch(epoch)
        row = _train_and_validate(info, data, training, epoch, show_progress)
        progress.history.append(row)
        improved = (row["val_acc"], -row["val_loss"]) > (progress.best["acc"], -progress.best["loss"])
        if improved:
            progress.best = {"acc": row["val_acc"], "loss": row["val_loss"], "epoch": epoch}
        if info.is_main:
            logger.info("epoch %d/%d: train loss %.4f, val loss %.4f, val acc %.4f, macro-F1 %.4f, lr %.2e, "
                        "%.1f s, %.0f img/s%s", epoch + 1, args.epochs, row["train_loss"], row["val_loss"],
                        row["val_acc"], row["macro_f1"], row["lr"], row["seconds"], row["images_per_s"],
                        " (best)" if improved else "")
            _save_epoch(out, common, training, progress, epoch, improved, info)
        if args.debug_digest:
            Path(f"{args.debug_digest}.rank{info.rank}").write_text(state_digest(training.model) + "\n")


def _train_and_validate(info: DistInfo, data: _Data, training: _Training, epoch: int,
                        show_progress: bool) -> dict[str, Any]:
    """One epoch of training then validation; returns its row of ``metrics.csv``."""
    lr = training.optimizer.param_groups[0]["lr"]
    t0 = time.perf_counter()
    tr = train_one_epoch(training.net, training.criterion, training.optimizer, data.train_loader, info.device, epoch,
                         scaler=training.scaler, scheduler=training.scheduler, info=info, show_progress=show_progress,
                         mix=training.mix, ema=training.ema)
    average_buffers(training.model, info)
    if training.ema is not None:
        average_buffers(training.ema.module, info)
    # The bare module, not the DDP wrapper: shards differ in length and DDP's forward may sync buffers.
    ev = evaluate(training.evaluated, data.val_loader, info.device, len(data.split.classes), info=info)
    metrics = classification_report(ev["confusion"], data.split.classes)
    return {"epoch": epoch + 1, "train_loss": round(tr["loss"], 6), "val_loss": round(ev["loss"], 6),
            "val_acc": round(metrics["accuracy"], 6), "macro_f1": round(metrics["macro_f1"], 6),
            "lr": lr, "seconds": round(time.perf_counter() - t0, 2),
            "images_per_s": round(tr["images"] / max(tr["seconds"], 1e-9), 1)}


def _save_epoch(out: Path, common: dict[str, Any], training: _Training, progress: _Progress, epoch: int,
                improved: bool, info: DistInfo) -> None:
    """Rank 0: ``best.pt`` when the epoch improved, ``last.pt`` (with everything a resume needs) and the metrics."""
    best = progress.best
    state = {**common, "model": training.model.state_dict(), "epoch": epoch, "best_acc": best["acc"],
             "best_loss": best["loss"], "best_epoch": best["epoch"], "history": progress.history}
    if improved:
        save_checkpoint({**state, "model": training.evaluated.state_dict()}, out / "best.pt")
    cuda = info.device.type == "cuda"
    extra = {"ema": training.ema.state_dict()} if training.ema is not None else {}
    save_checkpoint({**state, **extra, "optimizer": training.optimizer.state_dict(),
                     "scheduler": training.scheduler.state_dict(),
                     "scaler": training.scaler.state_dict() if cuda else None, "rng": capture_rng()}, out / "last.pt")
    reports.write_metrics_csv(progress.history, out / "metrics.csv")


def _finish(args, out: Path, split: DatasetSplit, weights: list[float], history: list[dict], seconds: float,
            device: torch.device) -> None:
    """Rank 0: evaluate the best model, export it with its manifest, write the report and plots."""
    if not (out / "best.pt").is_file():
        raise ConfigError(f"{out}: no best.pt (did any epoch run? --epochs {args.epochs})")
    ckpt = load_checkpoint(out / "best.pt")
    model, base = model_from_checkpoint(ckpt, str(out / "best.pt"))
    loader = eval_loader(split.val, base.input, args)
    ev = evaluate(model.to(device), loader, device, len(split.classes), amp=False)
    model = model.cpu()
    metrics = classification_report(ev["confusion"], split.classes)
    manifest = base.updated(
        metrics={"fp32_accuracy": metrics["accuracy"], "fp32_macro_f1": metrics["macro_f1"]},
        provenance={"git_commit": git_commit(), "dataset_digest": split.digest,
                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "epochs": args.epochs, "best_epoch": int(ckpt["best_epoch"]) + 1, "seed": args.seed,
                    "weights": str(args.weights), "train_images": len(split.train), "val_images": len(split.val),
                    "data": str(args.data)} | _fine_tuned(args, split))
    manifest = with_embedding(model, manifest)
    check = next(iter(loader))[0][:4].numpy()
    export = export_onnx(model, manifest, out / "model.onnx", check_batch=check)
    manifest.save(out / "manifest.json")
    report = {**metrics, "val_loss": ev["loss"], "best_epoch": int(ckpt["best_epoch"]) + 1,
              "epochs": args.epochs, "class_weights": dict(zip(split.classes, weights)),
              "train_counts": dict(zip(split.classes, split.counts("train"))),
              "val_counts": dict(zip(split.classes, split.counts("val"))),
              "skipped": split.skipped, "dataset_digest": split.digest, "export": export,
              "train_seconds": round(seconds, 1),
              **({"recipe_auto": args.recipe_auto} if getattr(args, "recipe_auto", None) else {})} \
        | _fine_tuned(args, split)
    report["missed"] = int(ev["confusion"].sum() - ev["confusion"].trace())
    report["misses"] = _misses(args, split, model.to(device), loader, base.input, device, out / "misses.png", report)
    reports.write_json(report, out / "report.json")
    reports.plot_curves(history, out / "curves.png")
    reports.plot_confusion(metrics["confusion_matrix"], split.classes, out / "confusion.png")
    logger.info("best epoch %d: val accuracy %.4f, macro-F1 %.4f; run in %s (%.0f s)", report["best_epoch"],
                metrics["accuracy"], metrics["macro_f1"], out, seconds)
    if split.sources:
        logger.info("training photos: %s", finetune.summary(split.sources))
    if split.skipped:
        logger.warning("%d file(s) were skipped (listed in %s): %s", len(split.skipped), out / "report.json",
                       ", ".join(s["path"] for s in split.skipped[:5]) + (" ..." if len(split.skipped) > 5 else ""))


def _fine_tuned(args, split: DatasetSplit) -> dict[str, Any]:
    """What the report and the manifest's provenance say of a fine-tune and of the photos' sources."""
    out: dict[str, Any] = {"sources": split.sources} if split.sources else {}
    if getattr(args, "init_from", None):
        out |= {"init_from": str(args.init_from), "new_head": bool(args.new_head)}
    return out


def _misses(args, split: DatasetSplit, model: nn.Module, val_loader: DataLoader, spec: InputSpec, device: torch.device,
            png: Path, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``--misses`` validation photos the model is surest of and gets wrong, each with its nearest training
    photo (one pass over the training photos, at the validation preprocessing), drawn in ``misses.png``."""
    if png.is_file():
        png.unlink()   # a resumed run must not keep a sheet of an older model
    if args.misses == 0 or report["missed"] == 0:
        return []
    probs, features = misses_mod.model_outputs(model, val_loader, device)
    found = misses_mod.list_misses([p for p, _ in split.val], [y for _, y in split.val], probs, split.classes,
                                   args.misses)
    train_features = (f for _, f in misses_mod.outputs(model, eval_loader(split.train, spec, args), device))
    misses_mod.add_nearest(found, features, train_features, [p for p, _ in split.train], [y for _, y in split.train],
                           split.classes)
    try:
        misses_mod.plot_misses(found, png, total=report["missed"], images=report["images"])
    except DataError as exc:   # the run's report and model matter more than its picture
        logger.warning("no misses sheet: %s", exc)
    return misses_mod.for_report(found, args.data)


def train(**kwargs: Any) -> Path:
    """Train from Python with the command's options as keywords (``data=..., out=..., arch=...``).

    Raises:
        ConfigError: a keyword that is not an option of ``gemsight-train``.
    """
    args = get_args_parser().parse_args([])
    known = vars(args)
    for key, value in kwargs.items():
        if key not in known:
            raise ConfigError(f"train(): unknown option '{key}' (known: {', '.join(sorted(known))})")
        setattr(args, key, value)
    return main(args)
