"""Real photos: gemsight's default recipe against a plain torchvision loop, then INT8 for every target.

For each seed, on a photo folder with ``train/`` and ``val/`` (default ``../shared/data/real-dev``,
never copied into this repository), this trains

* **gemsight**: ``trainer.train.train(...)`` with its default recipe (from scratch), and
* **reference**: the plain torchvision loop below (ResNet-18 from scratch, RandomResizedCrop 0.5-1,
  horizontal flip, ColorJitter, SGD momentum 0.9 with cosine decay, class-weighted cross-entropy),

at the same image size, epochs and batch, both scored the same way (the best epoch on ``val/``, and the
last epoch beside it); then calibrates each gemsight model for every target with the gate opened, so
the INT8 drop and agreement are measured rather than refused (``--auto``, as the README advises for
real photos; ``--int8-plain`` for calibration's defaults). Prints a table (mean ± sd over seeds; the
best epoch's recall per class for both recipes, and per seed how many validation photos both recipes
get wrong) and writes ``bench/results/real_photos.json`` (each run with its best epoch's confusion matrix
and the validation photos it gets wrong, by path).

    python bench/real_photos.py --seeds 3                                   # CPU budget (64 px, 20 epochs)
    python bench/real_photos.py --device cuda --img-size 224 --epochs 100   # full size
    python bench/real_photos.py --seeds 1 --epochs 10 --no-int8 --set ema=0.99 --out bench/results/x.json

``--views all`` scores a fixed list of candidate recipes on k folds (whole photo sets per fold) and on
300- and 600-photo subsets instead, each beside the plain loop (:mod:`bench.real_photos_views`):

    OMP_NUM_THREADS=1 python bench/real_photos.py --views all --seeds 3 --img-size 48 --epochs 5 --jobs 2
    python bench/real_photos.py --views all --seeds 3 --device cuda --img-size 224 --epochs 100 --jobs 1
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402

logger = logging.getLogger("bench.real_photos")

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real-dev"
RECIPES = ("gemsight", "reference")
#: The reference loop's optimisation: torchvision's classification reference (lr 0.1 for batch 256,
#: weight decay 1e-4, cosine), its learning rate scaled linearly to the batch.
REF_LR_PER_256 = 0.1
REF_WEIGHT_DECAY = 1e-4
REF_CROP_SCALE = (0.5, 1.0)
REF_JITTER = 0.2  # brightness, contrast and saturation


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="photo folder with train/ and val/ class folders")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per recipe (default 3)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="start the seeds here: FIRST..FIRST+N-1 (to split seeds between processes)")
    p.add_argument("--img-size", type=int, default=64, help="square input size (default 64: the CPU budget)")
    p.add_argument("--epochs", type=int, default=20, help="epochs of both recipes (default 20)")
    p.add_argument("--batch-size", type=int, default=32, help="batch of both recipes (default 32)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--recipes", default=",".join(RECIPES), help="which to run: gemsight,reference (default both)")
    p.add_argument("--no-int8", action="store_true", help="skip calibrating the gemsight models")
    int8 = p.add_mutually_exclusive_group()
    int8.add_argument("--int8-auto", dest="int8_auto", action="store_true", default=True,
                      help="calibrate with gemsight-calibrate --auto (method search, fewest float layers, FPGA "
                           "equalization and bias correction): what a real-photo model needs; the default")
    int8.add_argument("--int8-plain", dest="int8_auto", action="store_false",
                      help="calibrate with gemsight-calibrate's defaults (percentile ranges, no search) instead")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                   help="a gemsight-train option for the gemsight runs (YAML value), e.g. --set ema=0.99 "
                        "(repeatable; for comparing recipes)")
    p.add_argument("--workers", type=int, default=None, help="data-loading processes of both (default: the "
                                                               "trainer's choice)")
    p.add_argument("--workdir", type=Path, help="keep the runs here (default: a temporary folder, removed)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON written (default bench/results/real_photos.json; with --views real_photos_views.json)")
    views = p.add_argument_group("views (issue 33: a recipe chosen so that it generalises)")
    views.add_argument("--views", help="all, folds, subsets or a comma list of views: score the candidates on "
                                       "them (bench/real_photos_views.py) instead of train/ against val/")
    views.add_argument("--candidates", help="--views: a comma list of the candidates (default all of them)")
    views.add_argument("--folds", type=int, default=3, help="--views: k of the k-fold views (default 3)")
    views.add_argument("--jobs", type=int, default=1, help="--views: trainings at once, 1 torch thread each")
    views.add_argument("--resume", type=Path, action="append", metavar="JSON",
                       help="--views: keep the trainings of an earlier result of the same configuration instead of "
                            "running them again (repeatable)")
    return p


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (a run paused from outside costs none)."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


# -- the reference loop ------------------------------------------------------------------------------------

class _RefTrain(torch.utils.data.Dataset):
    """Decoded, resized images in memory; torchvision v2 augmentation; the device's normalisation."""

    def __init__(self, images: list[np.ndarray], labels: list[int], spec) -> None:
        from torchvision.transforms import v2  # noqa: PLC0415

        self.images, self.labels, self.spec = images, labels, spec
        self.augment = v2.Compose([
            v2.RandomResizedCrop(spec.size, scale=REF_CROP_SCALE, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=REF_JITTER, contrast=REF_JITTER, saturation=REF_JITTER),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from edge.preprocess import normalize  # noqa: PLC0415

        rgb = torch.from_numpy(np.ascontiguousarray(self.images[i][..., ::-1].transpose(2, 0, 1)))
        out = self.augment(rgb).numpy().transpose(1, 2, 0)[..., ::-1]  # back to BGR HWC for normalize
        return torch.from_numpy(normalize(np.ascontiguousarray(out)[None], self.spec)[0]), self.labels[i]


def _predict(model: nn.Module, batch: torch.Tensor, device) -> np.ndarray:
    model.eval()
    preds = []
    with torch.inference_mode():
        for i in range(0, len(batch), 128):
            preds.append(model(batch[i:i + 128].to(device)).argmax(1).cpu())
    return torch.cat(preds).numpy()


def _missed(split, data: Path, wrong: np.ndarray) -> list[str]:
    """The validation photos (paths relative to ``data``) a recipe's best epoch gets wrong, sorted."""
    from trainer.misses import shown_path  # noqa: PLC0415

    return sorted(shown_path(split.val[i][0], data) for i in np.flatnonzero(wrong))


def train_reference(split, images: dict, spec, args, seed: int, device: torch.device) -> dict[str, Any]:
    """The plain torchvision loop; returns best-epoch and last-epoch metrics."""
    import torchvision  # noqa: PLC0415

    from trainer.data import class_weights  # noqa: PLC0415
    from trainer.evaluate import classification_report, confusion_matrix  # noqa: PLC0415

    start, start_cpu = time.perf_counter(), _cpu_seconds()
    torch.manual_seed(seed)
    k = len(split.classes)
    ds = _RefTrain([images[p] for p, _ in split.train], [y for _, y in split.train], spec)
    workers = args.workers if args.workers is not None else min(8, (os.cpu_count() or 1) // 2)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0,
                                         generator=torch.Generator().manual_seed(seed))
    val_batch, val_labels = _val_set(split, images, spec)
    model = torchvision.models.resnet18(weights=None, num_classes=k).to(device)
    weights = torch.tensor(class_weights(split.counts("train")), dtype=torch.float32, device=device)
    criterion = nn.CrossEntropyLoss(weight=weights)
    lr = REF_LR_PER_256 * args.batch_size / 256
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=REF_WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    best, last = None, None
    for epoch in range(args.epochs):
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
        pred = _predict(model, val_batch, device)
        last = classification_report(confusion_matrix(val_labels, pred, k), split.classes)
        if best is None or last["accuracy"] > best["accuracy"]:
            best = {**last, "epoch": epoch + 1, "missed": _missed(split, args.data, pred != val_labels)}
        logger.info("reference seed %d epoch %d/%d: val acc %.4f", seed, epoch + 1, args.epochs, last["accuracy"])
    return {"seed": seed, "top1": best["accuracy"], "macro_f1": best["macro_f1"], "best_epoch": best["epoch"],
            "top1_last": last["accuracy"], "macro_f1_last": last["macro_f1"], **_per_class(best),
            "missed": best["missed"],
            "seconds": round(time.perf_counter() - start, 1), "cpu_seconds": round(_cpu_seconds() - start_cpu, 1)}


def _per_class(report: dict[str, Any]) -> dict[str, Any]:
    """The best epoch's recall per class and its confusion matrix (rows: true class), from a classification
    report: which class a recipe loses, and to which, in the same run for both recipes."""
    return {"recall": {name: c["recall"] for name, c in report["per_class"].items()},
            "confusion": report["confusion_matrix"]}


def _val_set(split, images: dict, spec) -> tuple[torch.Tensor, np.ndarray]:
    from edge.preprocess import preprocess  # noqa: PLC0415

    batch = np.stack([preprocess(images[p], spec) for p, _ in split.val])
    return torch.from_numpy(batch), np.array([y for _, y in split.val], np.int64)


def decode_once(split, spec) -> dict:
    """Every photo decoded once and resized to the input (as the trainer's ``--cache-images`` keeps it)."""
    from edge.preprocess import load_image, resize_to  # noqa: PLC0415

    return {p: resize_to(load_image(p), spec) for p, _ in split.train + split.val}


# -- gemsight ----------------------------------------------------------------------------------------------

def _overrides(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair}: expected OPTION=VALUE")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML reads 1e-4 as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key.strip().replace("-", "_")] = parsed
    return out


def train_gemsight(args, seed: int, workdir: Path, overrides: dict[str, Any], val_images: int) -> dict[str, Any]:
    """``trainer.train.train`` with the default recipe (plus ``--set`` options); returns its metrics, with every
    validation photo it gets wrong (its report lists up to ``--misses`` of them: here, all ``val_images``)."""
    import csv  # noqa: PLC0415

    from trainer.train import train  # noqa: PLC0415

    start, start_cpu = time.perf_counter(), _cpu_seconds()
    options = {"weights": "none", "img_size": args.img_size, "epochs": args.epochs, "batch_size": args.batch_size,
               "seed": seed, "device": args.device, "cache_images": "on", "workers": args.workers,
               "misses": val_images, **overrides}
    run = train(data=str(args.data), out=str(workdir / f"gemsight-seed{seed}"), **options)
    report = json.loads((run / "report.json").read_text())
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    resolved = yaml.safe_load((run / "args.yaml").read_text())
    return {"seed": seed, "top1": report["accuracy"], "macro_f1": report["macro_f1"],
            "best_epoch": report["best_epoch"], "top1_last": float(rows[-1]["val_acc"]),
            "macro_f1_last": float(rows[-1]["macro_f1"]), **_per_class(report),
            "missed": sorted(m["path"] for m in report["misses"]),
            "seconds": round(time.perf_counter() - start, 1),
            "cpu_seconds": round(_cpu_seconds() - start_cpu, 1),
            "run": str(run), "recipe": {k: resolved[k] for k in sorted(resolved) if k in _recipe_keys()}}


def _recipe_keys() -> tuple[str, ...]:
    from trainer.presets import RECIPE_OPTIONS  # noqa: PLC0415

    return ("recipe", *RECIPE_OPTIONS)


def calibrate(run: Path, args, workdir: Path, seed: int) -> dict[str, Any]:
    """Every target's INT8 drop and agreement on ``val/`` (gate opened: measured, never refused).

    Runs ``gemsight-calibrate`` (the command a user runs) in a child process, so that a native crash
    in a runtime is reported with its exit status instead of silently ending the benchmark.

    Raises:
        RuntimeError: the calibration process failed; the message has its exit status and last lines.
    """
    import subprocess  # noqa: PLC0415

    targets = ["onnxruntime", "openvino", "tensorrt", "fpga"]
    try:
        import openvino  # noqa: F401, PLC0415
    except ImportError:
        targets.remove("openvino")
        logger.warning("openvino is not installed: its target is left out")
    start = time.perf_counter()
    out = workdir / f"calib-seed{seed}"
    cmd = [sys.executable, "-m", "calibration", str(run / "model.onnx"), "--images", str(args.data / "train"),
           "--out", str(out), "--val", str(args.data / "val"), "--targets", ",".join(targets),
           "--max-drop", "1000", "--force", "--bench-iters", "0", *(["--auto"] if args.int8_auto else [])]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise RuntimeError(f"seed {seed}: gemsight-calibrate exited with status {proc.returncode}:\n{tail}")
    report = json.loads((out / "report.json").read_text())
    rows = {r["name"]: r for r in report["results"]}
    return {"seed": seed, "method": report.get("method"), "auto": args.int8_auto,
            "float_layers": report.get("float_layers", []), "seconds": round(time.perf_counter() - start, 1),
            "fp32_top1": rows["fp32"]["top1"],
            "targets": {t: {"drop": rows[t]["drop"], "agreement": rows[t]["agreement"]} for t in targets if t in rows}}


# -- summary -----------------------------------------------------------------------------------------------

def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "spread": max(values) - min(values)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("top1", "macro_f1", "top1_last", "macro_f1_last", "seconds", "cpu_seconds")
    out = {k: _stats([float(r[k]) for r in runs]) for k in keys if all(k in r for r in runs)}
    if runs and all("recall" in r for r in runs):
        out["recall"] = {name: _stats([float(r["recall"][name]) for r in runs]) for name in runs[0]["recall"]}
    return out


def summarize_int8(rows: list[dict[str, Any]]) -> dict[str, Any]:
    targets = rows[0]["targets"] if rows else {}
    return {t: {"drop": _stats([r["targets"][t]["drop"] for r in rows]),
                "agreement": _stats([r["targets"][t]["agreement"] for r in rows])} for t in targets}


def _pm(s: dict[str, float], scale: float = 100.0, fmt: str = ".1f") -> str:
    return f"{s['mean'] * scale:{fmt}} ± {s['sd'] * scale:{fmt}}"


def print_table(result: dict[str, Any]) -> None:
    recipes = result["recipes"]
    n = result["config"]["seeds"]
    print(f"{'recipe':<12}{'top-1 %':>14}{'spread':>8}{'macro-F1 %':>14}{'last-epoch top-1 %':>20}{'wall s':>14}"
          f"{'CPU s':>14}")
    for name, rec in recipes.items():
        s = rec["summary"]
        cpu = _pm(s["cpu_seconds"], 1.0, ".0f") if "cpu_seconds" in s else "—"
        print(f"{name:<12}{_pm(s['top1']):>14}{s['top1']['spread'] * 100:>8.1f}{_pm(s['macro_f1']):>14}"
              f"{_pm(s['top1_last']):>20}{_pm(s['seconds'], 1.0, '.0f'):>14}{cpu:>14}")
    if "gemsight" in recipes and "reference" in recipes:
        margin = (recipes["gemsight"]["summary"]["top1"]["mean"] - recipes["reference"]["summary"]["top1"]["mean"])
        print(f"gemsight − reference: {margin * 100:+.1f} points of top-1 (mean of {n} seed(s))")
    classes = result["config"]["classes"]
    if any("recall" in rec["summary"] for rec in recipes.values()):
        print(f"\n{'recall % (best epoch)':<22}" + "".join(f"{c[:12]:>13}" for c in classes))
        for name, rec in recipes.items():
            recall = rec["summary"].get("recall", {})
            print(f"{name:<22}" + "".join(f"{_pm(recall[c], fmt='.0f') if c in recall else '—':>13}" for c in classes))
    for row in result.get("missed_by_both", []):
        print(f"seed {row['seed']}: {row['both']} validation photos missed by both recipes (gemsight missed "
              f"{row['gemsight']}, the reference {row['reference']})")
    if result.get("int8"):
        print(f"\n{'INT8 target':<14}{'drop (pts)':>16}{'agreement %':>16}")
        for target, s in result["int8"]["summary"].items():
            print(f"{target:<14}{_pm(s['drop'], 1.0, '.2f'):>16}{_pm(s['agreement'], 1.0, '.2f'):>16}")
    c = result["config"]
    print(f"({c['img_size']} px, {c['epochs']} epochs, batch {c['batch_size']}, {n} seed(s), {c['device']}, "
          f"{c['train_images']} train / {c['val_images']} val photos, {result['machine']['torch_threads']} torch "
          f"threads, {result['machine']['cpu_count']} cores)")


def build_result(args, recipes: list[str], overrides: dict, split, runs: dict[str, list], int8_rows: list,
                 seconds: float) -> dict[str, Any]:
    """The JSON record: configuration, machine, every run and the summaries over seeds."""
    done = {name: rs for name, rs in runs.items() if rs}
    result = {
        "benchmark": "real_photos",
        "config": {"data": str(args.data), "seeds": args.seeds, "first_seed": args.first_seed,
                   "img_size": args.img_size, "epochs": args.epochs, "batch_size": args.batch_size,
                   "device": args.device, "recipes": recipes, "set": overrides,
                   "train_images": len(split.train), "val_images": len(split.val), "classes": list(split.classes),
                   "dataset_digest": split.digest, "scoring": "top1 = best epoch on val/ (both recipes); "
                                                              "top1_last = last epoch"},
        "reference_recipe": {"arch": "resnet18", "weights": "none", "crop_scale": list(REF_CROP_SCALE),
                             "hflip": 0.5, "color_jitter": REF_JITTER, "opt": "sgd", "momentum": 0.9,
                             "lr": REF_LR_PER_256 * args.batch_size / 256, "weight_decay": REF_WEIGHT_DECAY,
                             "schedule": "cosine per epoch", "loss": "class-weighted cross-entropy"},
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average": os.getloadavg()[0], "torch": torch.__version__,
                    "python": platform.python_version(),
                    "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None},
        "recipes": {name: {"runs": [{k: v for k, v in r.items() if k != "run"} for r in rs],
                           "summary": summarize(rs)} for name, rs in done.items()},
        "int8": {"runs": int8_rows, "summary": summarize_int8(int8_rows)} if int8_rows else None,
        "seconds": round(seconds, 1),
    }
    if "gemsight" in done and "reference" in done:
        g, r = result["recipes"]["gemsight"]["summary"], result["recipes"]["reference"]["summary"]
        result["margin_top1_points"] = round((g["top1"]["mean"] - r["top1"]["mean"]) * 100, 2)
        result["missed_by_both"] = missed_by_both(done["gemsight"], done["reference"])
    return result


def missed_by_both(gemsight: list[dict[str, Any]], reference: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per seed both recipes ran: how many validation photos each got wrong, and how many of them both did
    (photos neither recipe learns from the training photos are the data's, not a recipe's)."""
    ref = {r["seed"]: set(r["missed"]) for r in reference if "missed" in r}
    out = []
    for run in gemsight:
        if "missed" in run and run["seed"] in ref:
            mine = set(run["missed"])
            out.append({"seed": run["seed"], "gemsight": len(mine), "reference": len(ref[run["seed"]]),
                        "both": len(mine & ref[run["seed"]])})
    return out


# -- main --------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.views:
        from bench.real_photos_views import main as views_main  # noqa: PLC0415 - only the views need it

        return views_main(args)
    args.out = args.out or ROOT / "bench" / "results" / "real_photos.json"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown or not recipes:
        raise SystemExit(f"--recipes: unknown {unknown or 'empty'} (choose from {', '.join(RECIPES)})")
    if not (args.data / "train").is_dir() or not (args.data / "val").is_dir():
        raise SystemExit(f"--data {args.data}: expected train/ and val/ class folders")
    overrides = _overrides(args.set)

    from trainer.data import load_dataset  # noqa: PLC0415
    from trainer.export import build_manifest  # noqa: PLC0415

    device = torch.device(args.device)
    split = load_dataset(args.data)
    spec = build_manifest(arch="resnet18", classes=split.classes, img_size=args.img_size, name="bench",
                          version="0").input
    started = time.perf_counter()
    runs: dict[str, list] = {name: [] for name in recipes}
    int8_rows: list[dict[str, Any]] = []
    errors: list[str] = []

    def save(complete: bool) -> dict[str, Any]:
        # Written after every run, so that a run cut short still leaves its finished seeds.
        result = build_result(args, recipes, overrides, split, runs, int8_rows, time.perf_counter() - started)
        result["complete"] = complete and not errors
        if errors:
            result["errors"] = errors
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        return result

    with tempfile.TemporaryDirectory(prefix="real-photos-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        images = decode_once(split, spec) if "reference" in recipes else {}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            if "gemsight" in recipes:
                runs["gemsight"].append(train_gemsight(args, seed, workdir, overrides, len(split.val)))
                save(False)
                if not args.no_int8:
                    try:
                        int8_rows.append(calibrate(Path(runs["gemsight"][-1]["run"]), args, workdir, seed))
                    except RuntimeError as exc:   # recorded, and the other seeds still run
                        logger.error("%s", exc)
                        errors.append(str(exc))
                    save(False)
            if "reference" in recipes:
                runs["reference"].append(train_reference(split, images, spec, args, seed, device))
                save(False)
    result = save(True)
    print_table(result)
    print(f"wrote {args.out}")
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
