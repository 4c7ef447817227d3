"""The training options: the parser (reusable by other tools), ``--config`` files and resolved ``args.yaml``."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import yaml

from edge.errors import ConfigError
from trainer.presets import (
    AUTO_KEYS_ATTR, CROPS, DEFAULT, OPTIMIZERS, RECIPE_OPTIONS, RECIPES, SEED, STEMS, apply_recipe,
)

logger = logging.getLogger(__name__)

# Keys in args.yaml that describe the run rather than configure a new one.
_NOT_SAVED = ("config", "debug_digest", "verbose", AUTO_KEYS_ATTR, "recipe_auto")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The ``gemsight-train`` options (torchvision-references style, so other tools can extend them)."""
    p = argparse.ArgumentParser(prog="gemsight-train", add_help=add_help,
                                description="Train a jewelry classifier and export it to ONNX with its manifest. "
                                            "Subcommand: 'gemsight-train evaluate MODEL --data DIR'.")
    p.add_argument("--data", help="DIR/<class>/*, DIR/train + DIR/val, or a CSV of path,label")
    p.add_argument("--out", help="run directory (default with --resume: the resumed directory)")
    p.add_argument("--val", help="separate validation folder or CSV")
    p.add_argument("--val-split", type=float, default=0.2,
                   help="fraction of each class held out when there is no validation set (default 0.2)")
    p.add_argument("--recipe", default="auto", choices=("auto", *RECIPES),
                   help="preset of every option marked [recipe] that the command line (or --config) does not "
                        "give: default (chosen by measurement on real product photos, bench/real_photos.py: "
                        "resnet18, SGD, no dropout, no stem max-pool up to 128 px, random resized crop, label "
                        "smoothing, warm-up, weight average), scene (the default with torchvision's stem and the "
                        "padded crop, for pieces worn in scenes rather than alone on white), torchvision-adamw "
                        "(torchvision's resized crop 0.5-1 and stem, AdamW lr 0.001, no smoothing or weight "
                        "average), auto (scene when the median training photo is at most 50%% near-white "
                        "background, torchvision-adamw otherwise; the log and report.json say which and why) "
                        "or seed (the original recipe: resnet50, SGD lr 0.01, dropout 0.5, "
                        "flip/brightness/contrast/padded crop). Default: auto")
    p.add_argument("--arch", help="[recipe] torchvision classifier name")
    p.add_argument("--stem", choices=STEMS,
                   help="[recipe] the first layers of a ResNet: standard (torchvision's: a stride-2 convolution "
                        "then a max-pool, 32x downsampling in all), small (no max-pool: 16x, for small inputs; "
                        "4x the compute of the layers after it) or auto (small up to 128 px, standard above)")
    p.add_argument("--epochs", type=int, default=100, help="total epochs (default 100)")
    p.add_argument("--img-size", type=int, default=224, help="square input size in pixels (default 224)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch and process (default 32)")
    p.add_argument("--opt", choices=OPTIMIZERS, help="[recipe] optimizer: sgd or adamw")
    p.add_argument("--lr", type=float, help="[recipe] learning rate")
    p.add_argument("--momentum", type=float, help="[recipe] SGD momentum")
    p.add_argument("--weight-decay", type=float, help="[recipe] weight decay")
    p.add_argument("--label-smoothing", type=float, help="[recipe] cross-entropy label smoothing")
    p.add_argument("--min-lr", type=float, help="[recipe] cosine annealing floor")
    p.add_argument("--warmup-epochs", type=float,
                   help="[recipe] linear learning-rate warm-up before the cosine decay, in epochs")
    p.add_argument("--dropout", type=float, help="[recipe] dropout before the final layer")
    p.add_argument("--crop", choices=CROPS,
                   help="[recipe] training crop: pad (reflect-pad 1/8 and crop back) or resized (a random "
                        "area/aspect crop resized to the input, like RandomResizedCrop)")
    p.add_argument("--crop-scale", type=float,
                   help="[recipe] --crop resized: smallest crop area as a fraction of the image (the largest is 1)")
    p.add_argument("--crop-ratio", type=float,
                   help="[recipe] --crop resized: largest aspect ratio of the crop, R (drawn in [1/R, R], log-uniform)")
    p.add_argument("--source-scale", type=float,
                   help="[recipe] --crop resized: crop from the photo kept at this multiple of the input size")
    p.add_argument("--zoom-out", type=float,
                   help="[recipe] largest zoom-out: half the training crops are placed on a canvas up to ZOOM_OUT "
                        "times their side, filled with their border's colour (1: off)")
    p.add_argument("--hflip", type=float, help="[recipe] probability of a horizontal flip")
    p.add_argument("--vflip", type=float, help="[recipe] probability of a vertical flip")
    p.add_argument("--rotate", type=float,
                   help="[recipe] largest rotation in degrees, drawn uniformly in ±ROTATE (180: any angle; "
                        "the corners are filled by reflection)")
    p.add_argument("--mixup", type=float, help="[recipe] mixup Beta(a, a) parameter a (0: off)")
    p.add_argument("--cutmix", type=float,
                   help="[recipe] cutmix Beta(a, a) parameter a (0: off; with --mixup, one of the two per batch)")
    p.add_argument("--ema", type=float,
                   help="[recipe] decay of an exponential moving average of the weights per step (0: off); when "
                        "on, the averaged model is the one validated, kept and exported. The decay ramps up as "
                        "(1 + n) / (10 + n) after n steps and reaches 0.99 only after 890 steps, so in a short run "
                        "a larger value changes nothing (at 980 steps, 0.995 and 0.998 train the same model)")
    p.add_argument("--weights", default="imagenet",
                   help="imagenet (from the local torch cache only), none (from scratch) or PATH to a state dict")
    p.add_argument("--class-weights", default="auto",
                   help="auto (inverse class frequency), none, or w1,w2,... in class order")
    p.add_argument("--workers", type=int, default=None, help="data-loading processes (default: from the cores)")
    p.add_argument("--cache-images", default="auto", choices=("auto", "on", "off"),
                   help="keep decoded images, resized to --img-size, in memory after the first epoch "
                        "(auto: when they take at most 2 GiB, workers' copies included)")
    p.add_argument("--misses", type=int, default=48,
                   help="list this many of the validation photos the final model gets wrong (surest first) in "
                        "report.json, each with the training photo it looks most like (one pass over the training "
                        "photos after the last epoch), and draw them in misses.png (0: neither; default 48)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto")
    p.add_argument("--name", default="gemsight", help="model name in the manifest")
    p.add_argument("--model-version", default="0.1.0", help="model version in the manifest")
    p.add_argument("--resume", help="RUN_DIR (or its last.pt) to continue from its last finished epoch")
    p.add_argument("--init-from", metavar="RUN_DIR|best.pt",
                   help="fine-tune: start from this trained model's weights and class list (its arch, stem, dropout "
                        "and input size are kept; a class the data has and the model does not is refused unless "
                        "--new-head); docs/training.md")
    p.add_argument("--new-head", action="store_true",
                   help="with --init-from: a new last layer for the data's classes (every other layer is kept)")
    p.add_argument("--extra-data", action="append", metavar="DIR",
                   help="more photos in DIR/<class>/* for training only, e.g. crops collected in the case "
                        "(gemsight-deploy pull-crops); repeatable. Validation stays on --data")
    p.add_argument("--extra-repeat", type=int, default=1, metavar="N",
                   help="with --extra-data: every extra photo is trained on N times an epoch (default 1): a day's "
                        "few case crops beside many product photos (docs/training.md)")
    p.add_argument("--config", help="YAML of option defaults (e.g. a run's args.yaml); the command line wins")
    p.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    # Test/debug aid: each rank writes a digest of its weights after every epoch to PATH.rank<N>.
    p.add_argument("--debug-digest", help=argparse.SUPPRESS)
    for action in p._actions:
        if action.dest in RECIPE_OPTIONS:
            action.help += f" (default {_shown(DEFAULT[action.dest])}; seed {_shown(SEED[action.dest])})"
    return p


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def load_config(path: str | Path, parser: argparse.ArgumentParser) -> dict:
    """Option defaults from a YAML mapping.

    Raises:
        ConfigError: unreadable file, not a mapping, or a key that is not an option (the message names it).
    """
    from edge.config.yaml_files import load_yaml  # noqa: PLC0415 - bounded, refuses duplicate keys

    path = Path(path)
    try:
        data = load_yaml(path, "--config file")
    except ConfigError as exc:
        raise ConfigError(f"--config {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option: value")
    known = {a.dest for a in parser._actions if a.dest != "help"}
    for key in data:
        dest = str(key).replace("-", "_")
        if dest not in known or dest in ("config", "debug_digest"):
            raise ConfigError(f"--config {path}: unknown option '{key}'")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line, taking defaults from ``--config`` first when it is given."""
    parser = get_args_parser()
    first, _ = parser.parse_known_args(argv)
    if first.config:
        parser.set_defaults(**load_config(first.config, parser))
    return parser.parse_args(argv)


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Check the options and fill in what follows from others.

    Raises:
        ConfigError: a missing or out-of-range option; the message names it.
    """
    args = apply_recipe(argparse.Namespace(**vars(args)))
    if not args.data:
        raise ConfigError("--data is required (a folder of class folders, train/val folders or a CSV)")
    if not args.out:
        if not args.resume:
            raise ConfigError("--out is required")
        resume = Path(args.resume)
        args.out = str(resume if resume.is_dir() else resume.parent)
    for name in ("epochs", "img_size", "batch_size"):
        if int(getattr(args, name)) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.img_size < 16:
        raise ConfigError(f"--img-size must be at least 16, got {args.img_size}")
    if args.lr <= 0 or args.min_lr < 0:
        raise ConfigError(f"--lr must be positive and --min-lr not negative (got {args.lr}, {args.min_lr})")
    if not 0.0 <= args.warmup_epochs < args.epochs:
        raise ConfigError(f"--warmup-epochs must be in [0, --epochs), got {args.warmup_epochs}")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise ConfigError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if not 0.0 <= args.dropout < 1.0:
        raise ConfigError(f"--dropout must be in [0, 1), got {args.dropout}")
    for name in ("hflip", "vflip"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ConfigError(f"--{name} must be a probability in [0, 1], got {getattr(args, name)}")
    if not 0.0 < args.crop_scale <= 1.0:
        raise ConfigError(f"--crop-scale must be in (0, 1], got {args.crop_scale}")
    if args.source_scale < 1.0:
        raise ConfigError(f"--source-scale must be at least 1, got {args.source_scale}")
    if args.crop_ratio < 1.0:
        raise ConfigError(f"--crop-ratio must be at least 1, got {args.crop_ratio}")
    if not 1.0 <= args.zoom_out <= 4.0:
        raise ConfigError(f"--zoom-out must be in [1, 4] (1: off), got {args.zoom_out}")
    if not 0.0 <= args.rotate <= 180.0:
        raise ConfigError(f"--rotate must be in [0, 180] degrees, got {args.rotate}")
    for name in ("mixup", "cutmix"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name} must not be negative, got {getattr(args, name)}")
    if not 0.0 <= args.ema < 1.0:
        raise ConfigError(f"--ema must be in [0, 1), got {args.ema}")
    if args.misses < 0:
        raise ConfigError(f"--misses must not be negative, got {args.misses}")
    if getattr(args, "new_head", False) and not getattr(args, "init_from", None):
        raise ConfigError("--new-head replaces the last layer of the model given with --init-from; there is none")
    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers must not be negative, got {args.workers}")
    args.extra_data = [str(d) for d in args.extra_data] if getattr(args, "extra_data", None) else None
    repeat = getattr(args, "extra_repeat", 1)
    if not isinstance(repeat, int) or not 1 <= repeat <= 100:
        raise ConfigError(f"--extra-repeat must be a whole number from 1 to 100, got {repeat}")
    if repeat > 1 and not args.extra_data:
        raise ConfigError(f"--extra-repeat {repeat} repeats the photos of --extra-data; there are none")
    for name in ("data", "out", "val", "resume", "init_from"):
        if getattr(args, name, None) is not None:
            setattr(args, name, str(getattr(args, name)))
    args.weights = str(args.weights)
    return args


def save_args(args: argparse.Namespace, path: Path) -> Path:
    """Write the resolved options as YAML (loadable again with ``--config``)."""
    data = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_SAVED}
    path.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")
    return path
