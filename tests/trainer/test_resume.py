"""Resuming continues from the saved epoch; a run of another architecture is refused."""
from __future__ import annotations

import csv
import logging

import pytest
import torch

from edge.errors import ConfigError
from trainer.checkpoint import load_checkpoint
from trainer.train import train

from tests.helpers import TINY_RECIPE

pytestmark = pytest.mark.slow


def test_resume_continues_from_the_saved_epoch(tiny_data, tmp_path, caplog):
    out = tmp_path / "run"
    recipe = {**TINY_RECIPE, "epochs": 1}
    train(data=str(tiny_data), out=str(out), **recipe)
    first = load_checkpoint(out / "last.pt")
    assert first["epoch"] == 0
    caplog.set_level(logging.INFO)
    train(data=str(tiny_data), resume=str(out), **{**recipe, "epochs": 2})
    assert "resuming" in caplog.text and "from epoch 2 of 2" in caplog.text
    assert "epoch 1/2" not in caplog.text  # epoch 1 was not trained again
    second = load_checkpoint(out / "last.pt")
    assert second["epoch"] == 1
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert rows[0]["train_loss"] == str(first["history"][0]["train_loss"])  # the past is kept, not redone
    assert not torch.equal(first["model"]["conv1.weight"], second["model"]["conv1.weight"])
    steps = second["scheduler"]["last_epoch"]  # stepped per batch
    assert steps == 2 * first["scheduler"]["last_epoch"] > 0


def test_resume_of_another_architecture_is_refused(tiny_run, tiny_data, tmp_path):
    with pytest.raises(ConfigError, match=f"{tiny_run}.*resnet18.*resnet34"):
        train(data=str(tiny_data), out=str(tmp_path / "x"), resume=str(tiny_run), **{**TINY_RECIPE, "arch": "resnet34"})
