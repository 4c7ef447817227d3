"""Fine-tuning from a trained model (``--init-from``) on product photos plus crops collected in the case
(``--extra-data``).

The case's own crops, labelled by the store, show pieces at the case's scale and light, which product shots do not
(docs/training.md, "Fine-tuning on the case's own crops"). A fine-tune starts from a trained model's weights *and
its class list*: the classes keep their order, so the model a device runs and the one it gets next mean the same
thing by each output. A class the data has and the model does not is refused, naming both lists, unless
``--new-head`` is given: then the last layer is made afresh for the data's classes and every other layer keeps its
weights.

``--extra-data DIR`` (repeatable) adds folders of ``<class>/*`` photos to the *training* set only: collected
crops come many to a piece, and splitting them would put near-copies of training photos into validation. The
validation set stays the one of ``--data``, so the fine-tuned model is compared with the one it came from on the
same photos. The report says how many photos came from each source.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from edge.errors import ConfigError, DataError
from trainer.checkpoint import load_checkpoint, model_from_checkpoint
from trainer.data import DatasetSplit, load_dataset, read_folder, scan

logger = logging.getLogger(__name__)

#: what a fine-tune takes from the model it starts from (its layers), and the option that would change each.
KEPT = (("arch", "arch"), ("stem", "stem"), ("dropout", "dropout"))


def load_init(path: str | Path) -> dict[str, Any]:
    """The checkpoint ``--init-from`` names (a run directory means its ``best.pt``), checked to load.

    Raises:
        ConfigError: no such file, or not a gemsight checkpoint (an ONNX model, a stray file, weights that do not
            fit their architecture); the message names the file.
    """
    p = Path(path)
    if p.is_dir():
        if not (p / "best.pt").is_file():
            raise ConfigError(f"--init-from {p}: no best.pt in that folder (a gemsight-train run directory has one)")
        p = p / "best.pt"
    elif not p.is_file():
        raise ConfigError(f"--init-from {p}: no such file or run directory")
    if p.suffix.lower() == ".onnx":
        raise ConfigError(f"--init-from {p}: an ONNX model holds no training state; give its run directory or best.pt")
    try:
        ckpt = load_checkpoint(p)
    except ConfigError as exc:
        raise ConfigError(f"--init-from {exc} (expected a gemsight-train run directory or its best.pt)") from None
    if not isinstance(ckpt.get("classes"), list) or not all(isinstance(c, str) for c in ckpt["classes"]):
        raise ConfigError(f"--init-from {p}: not a gemsight checkpoint (no class list)")
    try:
        _, manifest = model_from_checkpoint(ckpt, f"--init-from {p}")
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any way a foreign file fails to load is the same answer
        raise ConfigError(f"--init-from {p}: not a gemsight checkpoint ({type(exc).__name__}: {exc})") from None
    ckpt["_path"], ckpt["_manifest"] = str(p), manifest
    return ckpt


def adopt(args: argparse.Namespace, ckpt: dict[str, Any], default_img_size: int) -> None:
    """Take the architecture, stem, dropout and input size of the model fine-tuned from; a different value given
    on the command line is refused (the layers would not fit), the name kept and the version moved on.

    Raises:
        ConfigError: ``--resume`` together with ``--init-from``, or an option that contradicts the model.
    """
    where = f"--init-from {ckpt['_path']}"
    if args.resume:
        raise ConfigError("--resume continues a run, --init-from starts a new one from a model: give one of them")
    saved = {"arch": ckpt["arch"], "stem": ckpt.get("stem", "standard"), "dropout": float(ckpt.get("dropout", 0.5))}
    for key, option in KEPT:
        given = getattr(args, key, None)
        if given is not None and given != saved[key] and not (key == "stem" and given == "auto"):
            raise ConfigError(f"{where}: that model has --{option} {saved[key]}, not {given}; a fine-tune keeps its "
                              f"layers (leave --{option} out)")
        setattr(args, key, saved[key])
    size = int(ckpt.get("img_size") or ckpt["_manifest"].input.size[0])
    if args.img_size != size:
        if args.img_size != default_img_size:
            raise ConfigError(f"{where}: that model takes {size} px, not --img-size {args.img_size}")
        args.img_size = size
    manifest = ckpt["_manifest"]
    if args.name == manifest.name and args.model_version == manifest.version:
        args.model_version = next_version(manifest.version)
        logger.info("%s: the fine-tuned model is %s %s (a device binds its enrolment to name@version, so it needs "
                    "a version of its own; --model-version sets another)", where, args.name, args.model_version)
    args.weights = "none"


def next_version(version: str) -> str:
    """``1.2.3`` → ``1.2.4`` (a pre-release or build suffix is dropped)."""
    core = version.split("-")[0].split("+")[0].split(".")
    if len(core) != 3 or not all(p.isdigit() for p in core):
        raise ConfigError(f"--init-from: the model's version {version!r} is not x.y.z; give --model-version")
    return f"{core[0]}.{core[1]}.{int(core[2]) + 1}"


def _per_class(samples: Sequence[tuple[Path, int]], classes: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, y in samples:
        counts[classes[y]] = counts.get(classes[y], 0) + 1
    return dict(sorted(counts.items()))


def load_sources(args: argparse.Namespace, init: dict[str, Any] | None) -> DatasetSplit:
    """``--data`` (split into training and validation as always) plus every ``--extra-data`` folder (training only),
    on the class list of ``init`` (the model fine-tuned from), or the data's with ``--new-head`` or no model.

    Raises:
        DataError: a class the model does not know (without ``--new-head``), or an extra folder's class that is not
            in the data; the message names the classes.
    """
    split = load_dataset(args.data, val=args.val, val_split=args.val_split, seed=args.seed)
    extras = []
    for folder in args.extra_data or ():
        files = read_folder(Path(folder))
        logger.info("checking %d collected file(s) in %s", len(files.items), folder)
        good, skipped, _ = scan(files)
        if not good:
            raise DataError(f"--extra-data {folder}: no usable image")
        extras.append((str(folder), good, skipped))
    found = set(split.classes) | {label for _, good, _ in extras for _, label in good}
    if init is not None and not args.new_head:
        classes = tuple(init["classes"])
        new = sorted(found - set(classes))
        if new:
            raise DataError(f"the data has class(es) {', '.join(new)} that the model from --init-from "
                            f"{init['_path']} does not know (its classes: {', '.join(classes)}); add --new-head to "
                            "train a new last layer for the data's classes")
    elif init is not None:
        classes = tuple(sorted(found))
    else:
        classes = split.classes
        new = sorted(found - set(classes))
        if new:
            raise DataError(f"--extra-data has class(es) {', '.join(new)} with no photo in --data {args.data} "
                            f"(its classes: {', '.join(classes)})")
    index = {c: i for i, c in enumerate(classes)}
    old = split.classes
    train = [(p, index[old[y]]) for p, y in split.train]
    val = [(p, index[old[y]]) for p, y in split.val]
    sources = [{"source": "data", "path": str(args.data), "train": len(train), "val": len(val),
                "train_per_class": _per_class(train, classes)}]
    skipped = list(split.skipped)
    h = hashlib.sha256(f"{split.digest}\n{','.join(classes)}".encode())
    repeat = getattr(args, "extra_repeat", 1) or 1
    if extras and repeat > 1:
        h.update(f"extra-repeat:{repeat}".encode())
    for folder, good, bad in extras:
        rows = [(p, index[label]) for p, label in good]
        train += rows * repeat          # --extra-repeat: each seen that many times an epoch
        skipped += bad
        sources.append({"source": "extra", "path": folder, "train": len(rows), "val": 0,
                        "train_per_class": _per_class(rows, classes), **({"repeat": repeat} if repeat > 1 else {})})
        for p, label in sorted(good):
            h.update(f"extra:{label}:{p.name}:{p.stat().st_size}".encode())
    out = DatasetSplit(classes=classes, train=train, val=val, skipped=skipped,
                       digest=h.hexdigest() if extras or classes != old else split.digest)
    out.sources = sources
    return out


def init_weights(model: nn.Module, init: dict[str, Any], new_head: bool) -> None:
    """Load the model's weights; with ``new_head``, all but the last linear layer's (which stays as made).

    Raises:
        ConfigError: weights that do not fit (other than the head with ``new_head``).
    """
    state = init["model"]
    if not new_head:
        model.load_state_dict(state)
        return
    head = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    own = model.state_dict()
    keep = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    misfit = [k for k, v in keep.items() if k not in own or own[k].shape != v.shape]
    if misfit:
        raise ConfigError(f"--init-from {init['_path']}: weights do not fit ({', '.join(misfit[:3])})")
    model.load_state_dict(keep, strict=False)
    logger.info("--new-head: %s made afresh for %d classes; every other layer from %s", head,
                model.get_submodule(head).out_features, init["_path"])


def summary(sources: Sequence[dict[str, Any]]) -> str:
    """``'240 from photos/ (data; 60 val), 96 from crops/ (extra)'``: what the log says of the sources."""
    return ", ".join(f"{s['train']} from {s['path']} ({s['source']}" + (f"; {s['val']} val" if s["val"] else "")
                     + (f"; each {s['repeat']} times an epoch" if s.get("repeat", 1) > 1 else "") + ")"
                     for s in sources)
