"""Data-parallel training: two CPU processes under torchrun end an epoch with identical weights."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_two_processes_end_with_identical_weights(tiny_data, tmp_path):
    digest = tmp_path / "weights.sha256"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "trainer",
         "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--arch", "resnet18", "--weights", "none",
         "--epochs", "1", "--img-size", "32", "--batch-size", "4", "--workers", "0",
         "--debug-digest", str(digest)],
        capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d0 = (tmp_path / "weights.sha256.rank0").read_text()
    d1 = (tmp_path / "weights.sha256.rank1").read_text()
    assert len(d0.strip()) == 64 and d0 == d1
    assert "2 processes" in proc.stderr
    # Only rank 0 writes the run directory (one report, no rank suffixes).
    assert (tmp_path / "run" / "model.onnx").is_file() and (tmp_path / "run" / "report.json").is_file()
