"""Training throughput (images/s) of the recipe's training step, with and without data loading.

Measures, for ResNet-18 at 128 px, batch 32 by default: (a) the optimisation step alone on a
synthetic batch already in memory, and (b) whole training steps fed by the real data pipeline
(JPEG decode, augmentation, DataLoader) over a synthetic image-folder set. Prints a table and writes
``bench/results/train_speed.json``.

    python bench/train_speed.py [--arch resnet18] [--img-size 128] [--batch-size 32] [--steps 20]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def _step_speed(model, criterion, optimizer, batches, device) -> float:
    model.train()
    n = 0
    start = time.perf_counter()
    for images, targets in batches:
        images, targets = images.to(device), targets.to(device)
        loss = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n += images.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement (after 3 warm-up steps)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers for the pipeline measurement")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_speed.json"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from edge.manifest import InputSpec
    from trainer.data import ImageDataset, read_folder
    from trainer.recipe import ClassificationPresetTrain, create_model
    from trainer.synth import make_images

    device = torch.device("cpu")
    classes = 8
    torch.manual_seed(0)
    model = create_model(args.arch, classes, weights="none")
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    b, s = args.batch_size, args.img_size
    fixed = [(torch.randn(b, 3, s, s), torch.randint(0, classes, (b,)))]
    _step_speed(model, criterion, optimizer, fixed * 3, device)
    compute = _step_speed(model, criterion, optimizer, fixed * args.steps, device)

    with tempfile.TemporaryDirectory() as tmp:
        per_class = max(4, (args.steps + 3) * b // classes + 1)
        data = make_images(Path(tmp) / "data", per_class=per_class, size=s, val_fraction=0.0, seed=0)
        files = read_folder(data / "train")
        samples = [(path, files.classes.index(label)) for path, label in files.items]
        ds = ImageDataset(samples, ClassificationPresetTrain(spec=InputSpec(size=(s, s))))
        loader = torch.utils.data.DataLoader(ds, batch_size=b, shuffle=True, drop_last=True,
                                             num_workers=args.workers)
        batches = iter(loader)
        warm = [next(batches) for _ in range(3)]
        _step_speed(model, criterion, optimizer, warm, device)
        timed = (next(batches) for _ in range(args.steps))
        pipeline = _step_speed(model, criterion, optimizer, timed, device)

    result = {"arch": args.arch, "img_size": s, "batch_size": b, "steps": args.steps, "device": str(device),
              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg()[0], "torch": torch.__version__, "python": platform.python_version(),
              "compute_images_per_s": round(compute, 1), "pipeline_images_per_s": round(pipeline, 1),
              "loader_workers": args.workers}
    print(f"{'measurement':<34}{'images/s':>10}")
    print(f"{'train step, batch in memory':<34}{compute:>10.1f}")
    print(f"{'train step + JPEG/augment/loader':<34}{pipeline:>10.1f}")
    print(f"({args.arch}, {s} px, batch {b}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores, "
          f"load average {result['load_average']:.2f})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
