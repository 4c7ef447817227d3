"""``bench/real_photos.py --views``: every candidate recipe scored on several views of the real photos.

A default chosen on one validation set learns that set (issue 33), so each candidate is trained and scored on
the views of :mod:`bench.photo_sets` (k folds with whole photo sets per fold; a 300-photo 4-class and a
600-photo 5-class subset scored on a held-out fold), several seeds each, beside the plain torchvision loop of
:mod:`bench.real_photos` in the same run. The candidate list is fixed here, before any view is scored
(:data:`CANDIDATES`); this is a check of a few principled recipes, not a search.

Per view: mean ± sd over seeds of the best epoch's top-1 on the held-out photos, and each candidate's margin
over the plain loop; overall: the mean of the per-view margins. The bar (issue 33): the default loses on no
view and wins by at least :data:`BAR_POINTS` overall. Writes ``bench/results/real_photos_views.json`` after
every training (a run cut short keeps what finished) and a table ``real_photos_views.md`` beside it.

Trainings run in ``--jobs`` child processes with one torch thread each; the views are CSV files of
``path,label`` in a work folder, so the photos are read in place, never copied.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.real_photos_views_results import (  # noqa: E402 - the margins, the bar, the table, merge and --resume
    BAR_POINTS, PLAIN, merge, print_table, resumed_runs, summarize, verdict, write_markdown)

logger = logging.getLogger("bench.real_photos_views")

#: The candidates, fixed before any view was scored: the plain loop (the reference every margin is taken
#: against), the default as it stands, and principled alternatives from issue 33's finding that the training
#: crop is most of the default's loss on a store's own photos: ``gemsight-train`` options on top of the default.
TORCHVISION = {"stem": "standard", "crop": "resized", "crop_scale": 0.5, "source_scale": 1.0, "label_smoothing": 0.0,
               "ema": 0.0, "warmup_epochs": 0.0, "lr": 0.0125, "min_lr": 0.0, "dropout": 0.0}
CANDIDATES: dict[str, dict[str, Any] | None] = {
    PLAIN: None,
    "default": {},
    # Issue 33: --stem standard --crop pad recovered most of the 10 points the default lost on a store's own
    # 300 photos (a reflect-padded crop keeps the whole piece in view; torchvision's stem is what the
    # default itself uses above 128 px).
    "standard-pad": {"stem": "standard", "crop": "pad"},
    # A milder resized crop: the smallest crop 60% of the photo instead of 35% (the plain loop takes 50%), so
    # that a crop can hardly miss the piece, still cut from the photo kept at twice the input.
    "standard-mild": {"stem": "standard", "crop": "resized", "crop_scale": 0.6},
    # Third round (2026-12-07, fixed before these three were scored): the plain loop wins on the subsets at
    # 64 px / 20 epochs, so start from it. ``torchvision`` is the plain loop's settings in gemsight's trainer
    # (resized crop 0.5-1 from the input-size photo, torchvision's stem, no smoothing, weight average or warm-up,
    # SGD lr 0.1 x 32/256 to 0); the other two add one principled change each: the small stem (a 4x4 last map
    # at 64 px instead of 2x2), or the default's regularisers (label smoothing 0.1, weight average, 1 warm-up epoch).
    "torchvision": TORCHVISION,
    "torchvision-small-stem": {**TORCHVISION, "stem": "small"},
    "torchvision-regularised": {**TORCHVISION, "label_smoothing": 0.1, "ema": 0.995, "warmup_epochs": 1.0},
    # Fourth round (2026-12-07, fixed before scoring): ``torchvision`` came within 0.5 points of the plain loop on
    # the subsets and its best epochs were the last ones (still learning when 20 epochs end), so two ways to
    # learn further in the same budget: four times the learning rate (0.05, one warm-up epoch), or AdamW
    # (lr 0.001, weight decay 0.05), which is less sensitive to the step size on few steps.
    "torchvision-lr4x": {**TORCHVISION, "lr": 0.05, "warmup_epochs": 1.0},
    "torchvision-adamw": {**TORCHVISION, "opt": "adamw", "lr": 0.001, "weight_decay": 0.05, "warmup_epochs": 1.0},
    # Fifth round (2026-12-07, fixed before scoring): ``torchvision-adamw`` held on every view but won by 1.1, and
    # its best epochs were 13-19 (median 17) of 20: still learning when the budget ends. Twice its learning rate.
    "torchvision-adamw-lr2x": {**TORCHVISION, "opt": "adamw", "lr": 0.002, "weight_decay": 0.05,
                               "warmup_epochs": 1.0},
}
WHY = {
    PLAIN: "the reference: torchvision's plain loop (RandomResizedCrop 0.5-1, flip, ColorJitter, SGD cosine)",
    "default": "gemsight's default recipe as it stands (resized crop 0.35-1 from 2x source, small stem <=128 px)",
    "standard-pad": "issue 33's finding: torchvision's stem and a reflect-padded crop (--stem standard --crop pad)",
    "standard-mild": "a milder resized crop (area 0.6-1, from 2x source) with torchvision's stem",
    "torchvision": "the plain loop's settings in gemsight's trainer (crop 0.5-1 at 1x, standard stem, lr 0.0125 to 0)",
    "torchvision-small-stem": "torchvision with the small stem (no max-pool: a 4x4 last map at 64 px)",
    "torchvision-regularised": "torchvision with the default's label smoothing 0.1, weight average 0.995, 1 warm-up epoch",
    "torchvision-lr4x": "torchvision at four times the learning rate (SGD 0.05, 1 warm-up epoch)",
    "torchvision-adamw": "torchvision with AdamW (lr 0.001, weight decay 0.05, 1 warm-up epoch)",
    "torchvision-adamw-lr2x": "torchvision-adamw at twice the learning rate (AdamW 0.002)",
}
VIEW_SETS = ("all", "folds", "subsets")


def view_names(spec: str, k: int) -> list[str]:
    """``all``, ``folds``, ``subsets`` or a comma list of view names (``fold1of3,subset300x4``)."""
    folds = [f"fold{f + 1}of{k}" for f in range(k)]
    subsets = ["subset300x4", "subset600x5"]
    if spec == "all":
        return folds + subsets
    if spec == "folds":
        return folds
    if spec == "subsets":
        return subsets
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in folds + subsets]
    if unknown or not names:
        raise SystemExit(f"--views: unknown {unknown or 'empty'} (all, folds, subsets or {', '.join(folds + subsets)})")
    return names


def candidate_names(spec: str | None) -> list[str]:
    names = list(CANDIDATES) if not spec else [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown or not names:
        raise SystemExit(f"--candidates: unknown {unknown or 'empty'} (known: {', '.join(CANDIDATES)})")
    return names


def prepare_views(data: Path, k: int, workdir: Path, subsets: bool = True
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Group the pooled photos, build the views, write each as ``train.csv`` / ``val.csv`` in ``workdir``
    (the subset views only with ``subsets``: they need at least 600 photos).

    Returns the views' descriptions (with the CSV paths and the median background share of their photos)
    and the grouping's summary.
    """
    import numpy as np  # noqa: PLC0415

    from bench.photo_sets import background_fraction, build_views, fingerprint, photo_groups  # noqa: PLC0415
    from edge.preprocess import load_image  # noqa: PLC0415
    from trainer.data import read_folder, scan  # noqa: PLC0415

    items = []
    for part in ("train", "val"):
        good, skipped, _ = scan(read_folder(data / part))
        items += good
        if skipped:
            logger.warning("%s: %d unreadable file(s) left out", data / part, len(skipped))
    images = {p: load_image(p) for p, _ in items}
    groups = photo_groups(items, [fingerprint(images[p]) for p, _ in items])
    background = {p: background_fraction(img) for p, img in images.items()}
    sizes: dict[int, list[str]] = {}
    for (p, label), g in zip(items, groups):
        sizes.setdefault(g, []).append(f"{label}/{p.name}")
    largest = sorted(sizes.values(), key=len, reverse=True)[:5]
    grouping = {"photos": len(items), "groups": len(sizes), "singletons": sum(len(v) == 1 for v in sizes.values()),
                "largest": [{"size": len(v), "examples": v[:3]} for v in largest],
                "median_background": round(float(np.median(list(background.values()))), 3)}
    out = []
    for view in build_views(items, groups, k=k, **({} if subsets else {"subsets": ()})):
        folder = workdir / "views" / view.name
        folder.mkdir(parents=True, exist_ok=True)
        for role, rows in (("train", view.train), ("val", view.held_out)):
            lines = ["path,label"] + [f"{p.resolve()},{label}" for p, label in rows]
            (folder / f"{role}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        train_bg = [background[p] for p, _ in view.train]
        out.append({**view.describe(), "train_csv": str(folder / "train.csv"), "val_csv": str(folder / "val.csv"),
                    "median_background_train": round(float(np.median(train_bg)), 3)})
    return out, grouping


# -- one training, in a child process ----------------------------------------------------------------------

def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """Train ``task['candidate']`` on one view with one seed; returns its scores (best and last epoch)."""
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    start = time.perf_counter()
    if task["candidate"] == PLAIN:
        scores = _run_plain(task)
    else:
        scores = _run_gemsight(task)
    logger.warning("%s %s seed %d: top-1 %.3f (best epoch %d) in %.0f s", task["view"], task["candidate"],
                   task["seed"], scores["top1"], scores["best_epoch"], time.perf_counter() - start)
    return {"view": task["view"], "candidate": task["candidate"], "seed": task["seed"], **scores,
            "seconds": round(time.perf_counter() - start, 1)}


def _run_plain(task: dict[str, Any]) -> dict[str, Any]:
    import torch  # noqa: PLC0415

    from bench.real_photos import decode_once, train_reference  # noqa: PLC0415
    from trainer.data import load_dataset  # noqa: PLC0415
    from trainer.export import build_manifest  # noqa: PLC0415

    split = load_dataset(task["train_csv"], val=task["val_csv"], workers=1)
    spec = build_manifest(arch="resnet18", classes=split.classes, img_size=task["img_size"], name="bench",
                          version="0").input
    ns = argparse.Namespace(data=Path(task["data"]), workers=0, batch_size=task["batch_size"], epochs=task["epochs"])
    r = train_reference(split, decode_once(split, spec), spec, ns, task["seed"], torch.device(task["device"]))
    return {"top1": r["top1"], "top1_last": r["top1_last"], "macro_f1": r["macro_f1"], "best_epoch": r["best_epoch"]}


def _run_gemsight(task: dict[str, Any]) -> dict[str, Any]:
    import csv  # noqa: PLC0415

    from trainer.train import train  # noqa: PLC0415

    out = Path(task["workdir"]) / "runs" / f"{task['view']}-{task['candidate']}-seed{task['seed']}"
    try:
        run = train(data=task["train_csv"], val=task["val_csv"], out=str(out), weights="none",
                    img_size=task["img_size"], epochs=task["epochs"], batch_size=task["batch_size"], seed=task["seed"],
                    device=task["device"], cache_images="on", workers=0, misses=0,
                    **{"recipe": "default", **task["overrides"]})
        report = json.loads((run / "report.json").read_text())
        with open(run / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        return {"top1": report["accuracy"], "top1_last": float(rows[-1]["val_acc"]), "macro_f1": report["macro_f1"],
                "best_epoch": report["best_epoch"]}
    finally:
        shutil.rmtree(out, ignore_errors=True)


# -- main --------------------------------------------------------------------------------------------------

def main(args: argparse.Namespace) -> int:
    """Run ``--views`` (called by :func:`bench.real_photos.main`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    views = view_names(args.views, args.folds)
    cands = candidate_names(args.candidates)
    out = args.out or ROOT / "bench" / "results" / "real_photos_views.json"
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="real-photos-views-") as tmp:
        workdir = args.workdir or Path(tmp)
        described, grouping = prepare_views(args.data, args.folds, workdir,
                                            subsets=any(v.startswith("subset") for v in views))
        described = [v for v in described if v["name"] in views]
        logger.info("%d photos in %d photo sets; views: %s", grouping["photos"], grouping["groups"],
                    ", ".join(f"{v['name']} ({v['train']}/{v['held_out']})" for v in described))
        tasks = [{"view": v["name"], "candidate": cand, "seed": seed, "train_csv": v["train_csv"],
                  "val_csv": v["val_csv"], "overrides": CANDIDATES[cand] or {}, "data": str(args.data),
                  "img_size": args.img_size, "epochs": args.epochs, "batch_size": args.batch_size,
                  "device": args.device, "workdir": str(workdir), "cost": v["train"] * (3 if cand == "default" else 1)}
                 for seed in seeds for v in described for cand in cands]
        # Seed by seed (a run cut short keeps whole seeds), longest first within one (the jobs finish together).
        tasks.sort(key=lambda t: (t["seed"], -t["cost"]))
        runs: list[dict[str, Any]] = resumed_runs(args.resume or [], args, described, cands, seeds)
        done = {(r["view"], r["candidate"], r["seed"]) for r in runs}
        tasks = [t for t in tasks if (t["view"], t["candidate"], t["seed"]) not in done]
        if runs:
            logger.info("--resume: %d training(s) kept from %s, %d to run", len(runs),
                        ", ".join(str(p) for p in args.resume), len(tasks))
        errors: list[str] = []

        def save(complete: bool) -> dict[str, Any]:
            summary = summarize(runs, views, cands)
            result = {
                "benchmark": "real_photos_views", "complete": complete and not errors,
                "config": {"data": str(args.data), "views": args.views, "folds": args.folds, "seeds": args.seeds,
                           "first_seed": args.first_seed, "img_size": args.img_size, "epochs": args.epochs,
                           "batch_size": args.batch_size, "device": args.device, "jobs": args.jobs,
                           "torch_threads_per_training": 1,
                           **({"resumed_from": [str(p) for p in args.resume]} if args.resume else {}),
                           "scoring": "top1 = best epoch on the view's held-out photos (every candidate)"},
                "machine": {"cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0]},
                "grouping": grouping,
                "candidates": {n: {"options": CANDIDATES[n], "why": WHY[n]} for n in cands},
                "views": [{k: v for k, v in d.items() if not k.endswith("_csv")} for d in described],
                "runs": sorted(runs, key=lambda r: (r["view"], r["candidate"], r["seed"])),
                "summary": summary, "verdict": verdict(summary, views), "bar_points": BAR_POINTS,
                "seconds": round(time.perf_counter() - started, 1), **({"errors": errors} if errors else {})}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")
            write_markdown(result, out.with_suffix(".md"))
            return result

        import multiprocessing  # noqa: PLC0415

        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_one, t): t for t in tasks}
            for fut in as_completed(futures):
                t = futures[fut]
                try:
                    runs.append(fut.result())
                except Exception as exc:   # recorded; the other trainings still run
                    errors.append(f"{t['view']} {t['candidate']} seed {t['seed']}: {type(exc).__name__}: {exc}")
                    logger.error("%s", errors[-1])
                save(False)
    result = save(True)
    print_table(result)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 1 if errors else 0


if __name__ == "__main__":
    # python bench/real_photos_views.py merge OUT.json IN.json [IN.json ...]
    if len(sys.argv) < 4 or sys.argv[1] != "merge":
        raise SystemExit("usage: python bench/real_photos_views.py merge OUT.json IN.json [IN.json ...]")
    print_table(merge(Path(sys.argv[2]), [Path(a) for a in sys.argv[3:]]))
