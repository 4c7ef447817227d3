"""``gemsight-demo --learn``: the loop closes on the demo's own case.

While the demo's store day plays, the demo's manager presses the kiosk's "Collect training photos from this case"
(:mod:`deploy.demo_staff`), so the device keeps crops of its enrolled slots labelled with the planogram's classes
(``collect:`` in the demo's ``edge.yaml``, with a short ``every_s`` so that a one-minute day yields crops). After
the day this step does what a technician and a trainer machine would, with the project's own commands:

1. copy the device's collect folder (a local folder here: the demo's device root is on this machine) with
   pull-crops' checks into ``learn/<version>/crops``, holding out one slot per class that filled two or more;
2. ``gemsight-train --init-from <the run of the model the device runs> --data photos --extra-data crops`` for a
   few epochs, with ``--model-version`` the next patch version (above every version installed on the device);
   ``photos`` is a sample of the demo's product photos (40 a class) with all of its validation photos;
3. ``gemsight-calibrate`` (no timing), ``gemsight-deploy bundle`` with the demo's key and ``flash`` into the demo's
   device root (no ``--allow-downgrade``: the version must go up).

The demo then starts the loop again and reads the new version off the kiosk. With no crops collected nothing is
trained and the device's version is left as it was.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploy.bundle import SemVer
from deploy.demo import DEFAULTS, _py, _run
from deploy.layout import DeviceLayout
from deploy.pull import copy_collected
from edge.config.device import load_config
from edge.contracts import COLLECT_MANIFEST
from edge.errors import DataError
from edge.loop.collect_store import read_manifest

logger = logging.getLogger("gemsight.demo")

LEARN = {
    "epochs": 2,
    # A slot gives a crop at most every 5 s of the filmed day (the product default is 10 minutes), so the demo's
    # one-minute day (3 minutes of video) yields a few dozen crops per class.
    "every_s": 5.0,
    "calib_count": 128,
    # Product photos per class trained on beside the crops (all of the validation photos stay): a fine-tune
    # replays a sample of what the model learnt from rather than all of it, and an epoch is a quarter of one.
    "photos_per_class": 40,
    # The INT8 forms a CPU runs (the demo's device here): the TensorRT and FPGA forms are for other devices.
    "targets": "onnxruntime,openvino",
    "frames": 45,        # the restarted loop's frames: enough for the kiosk to read the new version
}
# Fine-tuning starts from a trained model: a quarter of the demo's learning rate and no warm-up, else the first
# epoch would undo what the model knew; no misses sheet (it costs an extra pass).
FINETUNE = ("--recipe", "seed", "--opt", "adamw", "--lr", 0.0005, "--weight-decay", 0.05, "--warmup-epochs", 0,
            "--label-smoothing", 0.1, "--misses", 0)


def collect_section() -> dict:
    """The ``collect:`` section of the demo device's ``edge.yaml`` (off until the kiosk's manager turns it on)."""
    return {"enabled": False, "every_s": LEARN["every_s"]}


def next_version(layout: DeviceLayout) -> str:
    """The patch after the highest version installed on the device: a demo run flashes its own 1.0.0 again
    (``--allow-downgrade``) while an earlier ``--learn``'s 1.0.1 stays installed, and a version is never reused
    with other content."""
    top = max((SemVer.parse(v, "an installed version") for v in layout.installed()),
              default=SemVer.parse(layout.current() or "0.0.0"))
    return f"{top.major}.{top.minor}.{top.patch + 1}"


def run_of(workdir: Path, version: str) -> Path:
    """The training run whose model the device runs as ``version`` (the demo's own, or an earlier --learn's).

    Raises:
        DataError: no run under ``workdir`` made that version (a ``--bundle`` from elsewhere).
    """
    if version == DEFAULTS["version"] and (workdir / "run" / "best.pt").is_file():
        return workdir / "run"      # the demo's own bundle (a demo-out/ from before its model was 1.0.0 says 0.1.0)
    for run in (workdir / "run", *sorted((workdir / "learn").glob("*/run"))):
        try:
            if json.loads((run / "manifest.json").read_text()).get("version") == version:
                return run
        except (OSError, ValueError):
            continue
    raise DataError(f"--learn: the device runs version {version}, which no training run under {workdir} made "
                    "(a --bundle from elsewhere?); --learn fine-tunes the demo's own model")


def split_crops(crops: Path, held: Path) -> dict[str, str]:
    """Move one slot's crops per class (the last slot by name, of classes two or more slots filled) to ``held``:
    pieces the fine-tune never saw. Returns class → held-out slot."""
    slots: dict[str, dict[str, list[str]]] = {}
    for e in read_manifest(crops / COLLECT_MANIFEST):
        file, slot = e.get("file"), e.get("slot")
        if isinstance(file, str) and isinstance(slot, str) and (crops / file).is_file():
            slots.setdefault(file.split("/")[0], {}).setdefault(slot, []).append(file)
    out = {}
    for cls, by_slot in sorted(slots.items()):
        if len(by_slot) < 2:
            continue
        slot = sorted(by_slot)[-1]
        for file in by_slot[slot]:
            (held / cls).mkdir(parents=True, exist_ok=True)
            (crops / file).replace(held / file)
        out[cls] = slot
    return out


def prune_learned(workdir: Path, layout: DeviceLayout) -> list[str]:
    """Remove what earlier ``--learn`` runs made for versions the device no longer has (flash keeps three): every
    demo run makes a version, and each one's bundle and calibration are a hundred megabytes."""
    kept = set(layout.installed())
    gone = [d.name for d in sorted((workdir / "learn").glob("*")) if d.is_dir() and d.name not in kept]
    for version in gone:
        shutil.rmtree(workdir / "learn" / version, ignore_errors=True)
        (workdir / f"gemsight-{version}.gsb").unlink(missing_ok=True)
    return gone


def photo_sample(data: Path, out: Path, per_class: int) -> Path:
    """``out/train``: the first ``per_class`` training photos of each class of ``data``; ``out/val``: all of its
    validation photos (hard links where the file system allows, else copies)."""
    for split, limit in (("train", per_class), ("val", None)):
        for d in sorted(p for p in (data / split).iterdir() if p.is_dir()):
            (out / split / d.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(d.iterdir())[:limit]:
                try:
                    os.link(f, out / split / d.name / f.name)
                except OSError:
                    shutil.copy2(f, out / split / d.name / f.name)
    return out


def per_class(folder: Path) -> dict[str, int]:
    if not folder.is_dir():
        return {}
    return {d.name: n for d in sorted(folder.iterdir()) if d.is_dir() and (n := len(list(d.glob("*.jpg"))))}


def top1(calib: Path, folder: Path, targets: tuple[str, ...] = ("onnxruntime",)) -> dict[str, float]:
    """FP32 and INT8 (each of ``targets``) top-1 of the calibrated model in ``calib`` on the photos in ``folder``."""
    from calibration import gate  # noqa: PLC0415 - only when there is a held-out part
    from calibration.data import load_labelled_set  # noqa: PLC0415
    from edge.manifest import Manifest  # noqa: PLC0415

    manifest = Manifest.load(calib / "manifest.json")
    photos = load_labelled_set(folder, manifest.input, tuple(manifest.classes))
    rows = gate.evaluate(calib, targets, photos.batch, np.asarray(photos.labels), bench_iters=0)
    return {r.name: r.top1 for r in rows}


def val_top1(calib: Path) -> dict[str, float]:
    """FP32 and INT8 (ONNX Runtime) top-1 on the demo's validation photos, from the calibration's report."""
    rows = json.loads((calib / "report.json").read_text()).get("results", [])
    return {r["name"]: r["top1"] for r in rows
            if r.get("name") in ("fp32", "onnxruntime") and r.get("top1") is not None}


@dataclass
class Learned:
    """What ``--learn`` did, for the demo's summary."""

    before: str
    after: str
    crops: dict[str, int]               # training crops per class
    held: dict[str, int]                # held-out crops per class
    held_slots: dict[str, str]
    epochs: int
    seconds: float
    sources: list[dict]                 # the fine-tune's report: photos per source
    val: dict[str, dict[str, float]] = field(default_factory=dict)     # "before"/"after" → fp32/onnxruntime top-1
    heldout: dict[str, dict[str, float]] = field(default_factory=dict)
    bundle: Path | None = None
    reload_s: float | None = None
    kiosk_version: str | None = None


def learn(workdir: Path, config: Path, *, epochs: int = LEARN["epochs"], calib_count: int = LEARN["calib_count"],
          photos_per_class: int = LEARN["photos_per_class"], targets: str = LEARN["targets"],
          max_drop: float = DEFAULTS["max_drop"]) -> Learned:
    """Collected crops → fine-tune → calibrate → bundle → flash (see the module's docstring).

    Raises:
        DataError: the device collected no crops, or runs a model no run here made; nothing is flashed.
        GemsightError: a step failed (its command and exit status); the device's version is left as it was.
    """
    started = time.monotonic()
    root = workdir / "device"
    layout = DeviceLayout(root)
    before = layout.current()
    if before is None:
        raise DataError(f"--learn: nothing is flashed in {root} yet")
    collect_dir = load_config(config).collect.dir
    if collect_dir is None or not any(collect_dir.glob("*/*.jpg")):
        raise DataError(f"--learn: the device collected no crops (nothing in {collect_dir}; the kiosk's \"Collect "
                        "training photos\" keeps crops of enrolled, still slots): nothing was fine-tuned, the device "
                        f"still runs {before}")
    run = run_of(workdir, before)
    after = next_version(layout)
    here = workdir / "learn" / after
    shutil.rmtree(here, ignore_errors=True)      # an earlier, unfinished try at this version
    crops, held = here / "crops", here / "heldout"
    got = copy_collected(collect_dir, crops)
    logger.info("learn: copied %d crops from %s (%s)", got.total, collect_dir,
                ", ".join(f"{c} {n}" for c, n in sorted(got.new.items())))
    held_slots = split_crops(crops, held)
    data, keys = workdir / "data", workdir / "keys"
    photos = photo_sample(data, here / "photos", photos_per_class)
    new_run, new_calib, bundle = here / "run", here / "calib", workdir / f"gemsight-{after}.gsb"
    _run(_py("trainer", "--init-from", run, "--data", photos, "--extra-data", crops, "--out", new_run, "--epochs",
             epochs, "--batch-size", 32, "--seed", 0, "--model-version", after, *FINETUNE), "fine-tune")
    _run(_py("calibration", new_run / "model.onnx", "--images", data / "train", "--val", data / "val", "--out",
             new_calib, "--count", calib_count, "--max-drop", max_drop, "--targets", targets, "--bench-iters", 0,
             "--force"), "calibrate")
    _run(_py("deploy", "bundle", new_calib, "--key", keys / "gemsight-signing.key", "--out", bundle), "bundle")
    _run(_py("deploy", "flash", bundle, "--root", root, "--no-restart"), "flash")
    prune_learned(workdir, layout)
    report = json.loads((new_run / "report.json").read_text())
    old_calib = workdir / "calib" if run == workdir / "run" else run.parent / "calib"
    done = Learned(before=before, after=layout.current() or "?", crops=per_class(crops), held=per_class(held),
                   held_slots=held_slots, epochs=epochs, seconds=time.monotonic() - started,
                   sources=report.get("sources", []), bundle=bundle,
                   val={"before": val_top1(old_calib), "after": val_top1(new_calib)})
    if done.held:
        done.heldout = {"before": top1(old_calib, held), "after": top1(new_calib, held)}
    return done


def summary_lines(done: Learned) -> list[str]:
    """The ``--learn`` part of the demo's summary."""
    crops = ", ".join(f"{c} {n}" for c, n in done.crops.items())
    lines = [f"collected crops used for training: {sum(done.crops.values())} ({crops})"]
    if done.held:
        lines.append(f"held out (pieces the fine-tune never saw): {sum(done.held.values())} crops of "
                     + ", ".join(f"{s} ({c})" for c, s in done.held_slots.items()))
    for src in done.sources:
        lines.append(f"  fine-tune source {src.get('source')}: {src.get('train')} training photos ({src.get('path')})")

    def pair(d: dict[str, dict[str, float]], what: str) -> str:
        b, a = d.get("before", {}), d.get("after", {})
        return (f"{what}: FP32 {b.get('fp32', float('nan')):.1f}% -> {a.get('fp32', float('nan')):.1f}%, "
                f"INT8 {b.get('onnxruntime', float('nan')):.1f}% -> {a.get('onnxruntime', float('nan')):.1f}%")

    lines.append(f"{done.epochs} epoch(s) of fine-tuning from {done.before}")
    lines.append(pair(done.val, "top-1 on the demo's validation photos"))
    if done.heldout:
        lines.append(pair(done.heldout, "top-1 on the held-out crops"))
    lines.append(f"version {done.before} -> {done.after} flashed ({done.bundle.name if done.bundle else '-'}); "
                 f"the step took {done.seconds:.0f} s")
    if done.reload_s is not None:
        lines.append(f"loop restarted: the kiosk shows {done.kiosk_version or 'no model yet'} "
                     f"({done.reload_s:.0f} s after the restart)")
    return lines
