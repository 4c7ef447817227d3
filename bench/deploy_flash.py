"""Time to flash a ResNet-18 bundle, per step (verify, unpack, engine, smoke, switch), and the edge unit's exposure.

Makes a key pair and bundles of a model directory, then flashes an upgrade into fresh temporary
device roots a few times per runtime; prints a table of median step times and writes
``bench/results/deploy_flash.json``.

    python bench/deploy_flash.py                       # random-init ResNet-18 at 224 px, exported here
    python bench/deploy_flash.py --model-dir OUT       # an existing calibration output
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.cli_support import run_main, setup_logging  # noqa: E402
from edge.contracts import DEFAULT_CLASSES  # noqa: E402

logger = logging.getLogger("bench.deploy_flash")
CLASSES = DEFAULT_CLASSES
STEPS = ("verify", "unpack", "engine", "smoke", "switch", "total")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, help="a model directory (default: export a 224 px ResNet-18 here)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeat", type=int, default=3, help="flashes per runtime")
    p.add_argument("--runtimes", default="onnxruntime,openvino")
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/deploy_flash.json")
    return p


def _export(out: Path, size: int) -> Path:
    import onnx
    import torch
    import torchvision

    from edge.manifest import InputSpec, Manifest, embed_manifest

    torch.manual_seed(0)
    out.mkdir(parents=True)
    model = torchvision.models.resnet18(num_classes=len(CLASSES)).eval()
    torch.onnx.export(model, (torch.randn(1, 3, size, size),), str(out / "model.onnx"), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    manifest = Manifest(name="bench", version="1.0.0", arch="resnet18", classes=CLASSES, input=InputSpec(size=(size, size)))
    onnx.save(embed_manifest(onnx.load(str(out / "model.onnx")), manifest), str(out / "model.onnx"))
    manifest.save(out / "manifest.json")
    return out


def exposure() -> float | None:
    unit = ROOT / "systemd/gemsight-edge.service"
    try:
        out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True,
                             text=True, timeout=60)
    except OSError:
        return None
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out.stdout + out.stderr)
    return float(m.group(1)) if m else None


def _run(args: argparse.Namespace) -> int:
    from deploy.bundle import create_bundle
    from deploy.flash import FlashOptions, flash
    from deploy.keys import generate_keypair

    work = Path(tempfile.mkdtemp(prefix="gemsight-bench-deploy-"))
    try:
        model_dir = args.model_dir or _export(work / "model", args.size)
        priv, pub = generate_keypair(work / "keys")
        b1 = create_bundle(model_dir, priv, work / "v1.gsb", "1.0.0")
        b2 = create_bundle(model_dir, priv, work / "v2.gsb", "1.1.0")
        rows = {}
        for runtime in args.runtimes.split(","):
            samples = []
            for i in range(args.repeat):
                root = work / f"root-{runtime}-{i}"
                (root / "etc/gemsight/keys").mkdir(parents=True)
                shutil.copy(pub, root / "etc/gemsight/keys")
                opts = FlashOptions(restart=False, runtime=runtime)
                flash(b1, root, opts)
                samples.append(flash(b2, root, opts).timings)  # the upgrade: what a technician waits for
                shutil.rmtree(root)
            rows[runtime] = {s: statistics.median(t.get(s, 0.0) for t in samples) for s in STEPS}
        result = {"bundle_mb": round(b2.stat().st_size / 1e6, 1), "model_dir": str(args.model_dir or f"resnet18@{args.size}"),
                  "repeat": args.repeat, "median_s": rows, "edge_unit_exposure": exposure(),
                  "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"flash of a {result['bundle_mb']} MB bundle ({result['model_dir']}), median of {args.repeat}, ms")
    print(f"{'runtime':<12}" + "".join(f"{s:>9}" for s in STEPS))
    for runtime, row in rows.items():
        print(f"{runtime:<12}" + "".join(f"{row[s] * 1000:9.1f}" for s in STEPS))
    print(f"gemsight-edge.service exposure: {result['edge_unit_exposure']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def main() -> int:
    args = get_args_parser().parse_args()
    setup_logging(0)
    logging.getLogger("deploy").setLevel(logging.WARNING)
    return run_main(lambda: _run(args), "bench/deploy_flash.py")


if __name__ == "__main__":
    sys.exit(main())
