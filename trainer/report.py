"""The run's human-readable outputs: ``metrics.csv``, ``report.json``, ``curves.png``, ``confusion.png``
(``misses.png``: :mod:`trainer.misses`)."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)

METRIC_FIELDS = ("epoch", "train_loss", "val_loss", "val_acc", "macro_f1", "lr", "seconds", "images_per_s")


def write_metrics_csv(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """One row per epoch (1-based epoch numbers), rewritten whole so a resumed run keeps its past."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=METRIC_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    return path


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    """Pretty JSON, newline-terminated."""
    path = Path(path)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def _pyplot():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # headless: no display on training servers
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Loss (train and val) and validation accuracy / macro-F1 per epoch."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], "o-", label="train loss")
    ax_loss.plot(epochs, [row["val_loss"] for row in history], "o-", label="val loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    ax_acc.plot(epochs, [row["val_acc"] for row in history], "o-", label="val accuracy")
    ax_acc.plot(epochs, [row["macro_f1"] for row in history], "o-", label="val macro-F1")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path) -> Path:
    """The confusion matrix with counts, rows true, columns predicted."""
    plt = _pyplot()
    cm = np.asarray(confusion)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * k, 0.8 + 0.6 * k))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > threshold else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
