"""The parts of ``bench/runtimes.py`` that run in a second: raw runners, interleaving, ``--option``."""
import numpy as np
import pytest

from bench.raw_runtimes import interleaved, open_raw, ratio_summary
from bench.runtimes import adapter_options
from edge.errors import ConfigError
from edge.runtimes.registry import available_runtimes, create_runtime


@pytest.mark.parametrize("backend, extra", [("onnxruntime", {}), ("openvino", {"inference_precision": "f32"})])
def test_raw_runner_gives_the_adapters_logits(untrained_onnx, backend, extra):
    if available_runtimes().get(backend) is not None:
        pytest.skip(f"{backend} not installed")
    x = np.random.default_rng(2).standard_normal((3, 3, 64, 64), dtype=np.float32)
    raw = open_raw(backend, untrained_onnx, 1, **extra)
    with create_runtime(backend, untrained_onnx, threads=1) as rt:
        np.testing.assert_allclose(raw(x), rt(x), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(raw(x[:1]), rt(x[:1]), rtol=1e-5, atol=1e-5)   # another batch size
    assert raw.settings()
    raw.close()


def test_rounds_alternate_which_runner_goes_first():
    calls = []
    runners = {"adapter": lambda x: calls.append("adapter"), "raw": lambda x: calls.append("raw")}
    speeds = interleaved(runners, np.zeros((2, 1)), rounds=4, iters=1, warmup=0)
    assert calls == ["adapter", "raw", "raw", "adapter", "adapter", "raw", "raw", "adapter"]
    assert {k: len(v) for k, v in speeds.items()} == {"adapter": 4, "raw": 4}
    summary = ratio_summary([2.0, 1.0, 3.0], [2.0, 2.0, 2.0])
    assert summary == {"median": 1.0, "min": 0.5, "max": 1.5, "rounds": [1.0, 0.5, 1.5]}


def test_option_overrides_are_validated_like_the_config():
    assert adapter_options("onnxruntime", None, ["onnxruntime.allow_spinning=false", "openvino.hint=THROUGHPUT"]) == \
        {"allow_spinning": False, "spin_between_runs": False}
    assert adapter_options("openvino", 2, ["openvino.hint=THROUGHPUT"])["hint"] == "THROUGHPUT"
    with pytest.raises(ConfigError, match=r"^--option: openvino.hint: Input should be 'LATENCY' or 'THROUGHPUT'$"):
        adapter_options("openvino", None, ["openvino.hint=FAST"])
    with pytest.raises(ConfigError, match=r"^--option 'hint=FAST': expected onnxruntime.KEY=VALUE or openvino.KEY=VALUE$"):
        adapter_options("openvino", None, ["hint=FAST"])
