"""A finished run: its files, the exported ONNX against PyTorch, the manifest, and evaluation parity."""
from __future__ import annotations

import csv
import json

import numpy as np
import onnx
import pytest
import torch
import yaml

from edge.manifest import Manifest, load_manifest_for
from edge.preprocess import load_image, preprocess_batch
from edge.runtimes.registry import create_runtime
from trainer.args import parse_args
from trainer.checkpoint import load_checkpoint, model_from_checkpoint
from trainer.evaluate import evaluate_model
from trainer.report import METRIC_FIELDS

pytestmark = pytest.mark.slow


def test_run_directory_holds_every_output(tiny_run):
    for name in ("args.yaml", "metrics.csv", "best.pt", "last.pt", "model.onnx", "manifest.json", "report.json",
                 "curves.png", "confusion.png"):
        assert (tiny_run / name).stat().st_size > 0, name
    args = yaml.safe_load((tiny_run / "args.yaml").read_text())
    assert args["arch"] == "resnet18" and args["img_size"] == 32 and args["epochs"] == 2
    again = parse_args(["--config", str(tiny_run / "args.yaml")])  # a run's args.yaml reloads as a config
    assert (again.arch, again.img_size, again.epochs, again.data) == ("resnet18", 32, 2, args["data"])
    rows = list(csv.DictReader(open(tiny_run / "metrics.csv")))
    assert tuple(rows[0]) == METRIC_FIELDS and [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["lr"]) < float(rows[0]["lr"])  # cosine annealing
    assert all(float(r["images_per_s"]) > 0 for r in rows)
    last = load_checkpoint(tiny_run / "last.pt")
    assert last["epoch"] == 1 and {"optimizer", "scheduler", "rng"} <= set(last)


def test_report_has_metrics_class_weights_and_skipped_files(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["classes"] == ["empty", "ring", "watch"]
    assert 0.0 <= report["accuracy"] <= 1.0 and 0.0 <= report["macro_f1"] <= 1.0
    assert set(report["per_class"]["ring"]) == {"precision", "recall", "f1", "support"}
    assert sum(v["support"] for v in report["per_class"].values()) == report["images"] == 9
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 9 and abs(np.trace(cm) / 9 - report["accuracy"]) < 1e-9
    assert set(report["class_weights"]) == {"empty", "ring", "watch"}
    assert [s["path"].rsplit("/", 1)[-1] for s in report["skipped"]] == ["broken.jpg"]


def test_onnx_matches_pytorch_logits(tiny_run, tiny_data):
    model, manifest = model_from_checkpoint(load_checkpoint(tiny_run / "best.pt"))
    images = [load_image(p) for p in sorted((tiny_data / "val").rglob("*.jpg"))[:5]]
    batch = preprocess_batch(images, manifest.input)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    with create_runtime("onnxruntime", tiny_run / "model.onnx", threads=2) as rt:
        got = rt(batch)  # batch of 5 also proves the dynamic batch axis
    assert got.shape == (5, 3)
    assert np.max(np.abs(got - expected)) <= 1e-4


def test_manifest_round_trips_and_matches_the_output(tiny_run):
    proto = onnx.load(str(tiny_run / "model.onnx"))
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits", "embedding"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    embedded = load_manifest_for(tiny_run / "model.onnx")
    beside = Manifest.load(tiny_run / "manifest.json")
    assert embedded == beside == Manifest.from_json(beside.to_json())
    width = proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    assert width == embedded.num_classes == 3
    # The embedding: the 512 features ResNet-18's classifier reads, named by the manifest, unit length.
    assert embedded.embedding is not None and embedded.embedding.dim == 512
    import onnxruntime as ort
    logits, emb = ort.InferenceSession(str(tiny_run / "model.onnx")).run(
        None, {"input": np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)})
    assert logits.shape == (2, 3) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert embedded.arch == "resnet18" and embedded.input.size == (32, 32) and embedded.precision == "fp32"
    assert set(embedded.metrics) == {"fp32_accuracy", "fp32_macro_f1"}
    assert {"git_commit", "dataset_digest", "date", "epochs"} <= set(embedded.provenance)
    report = json.loads((tiny_run / "report.json").read_text())
    assert embedded.metrics["fp32_accuracy"] == report["accuracy"]


def test_evaluate_onnx_and_checkpoint_agree(tiny_run, tiny_data):
    on_onnx = evaluate_model(tiny_run / "model.onnx", tiny_data, batch_size=4, threads=2)
    on_ckpt = evaluate_model(tiny_run / "best.pt", tiny_data, batch_size=4)
    assert on_onnx["backend"] == "onnxruntime" and on_ckpt["backend"] == "pytorch"
    assert on_onnx["images"] == on_ckpt["images"] == 9
    assert on_onnx["accuracy"] == on_ckpt["accuracy"]
    assert on_onnx["confusion_matrix"] == on_ckpt["confusion_matrix"]
    report = json.loads((tiny_run / "report.json").read_text())
    assert on_onnx["accuracy"] == report["accuracy"]
