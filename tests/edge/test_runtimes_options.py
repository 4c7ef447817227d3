"""The adapters run with the options they are given (read back from the runtime), agree with the raw
runtime on the same input, and refuse a bad option value in one line."""
import copy

import numpy as np
import pytest
import yaml

from edge.cli import example_config
from edge.config import parse_config, runtime_options
from edge.errors import ConfigError
from edge.runtimes import available_runtimes, create_runtime

needs_openvino = pytest.mark.skipif(available_runtimes().get("openvino") is not None, reason="openvino not installed")


def _batch(n=2):
    return np.random.default_rng(1).standard_normal((n, 3, 64, 64), dtype=np.float32)


def _example(**runtime):
    data = yaml.safe_load(example_config())
    data["publish"]["curve"] = None
    if runtime:
        data["runtime"] = runtime
    return data


def test_onnxruntime_options_reach_the_session(untrained_onnx):
    with create_runtime("onnxruntime", untrained_onnx, threads=1, allow_spinning=True, spin_between_runs=False) as rt:
        got = rt.settings()
    assert got["intra_op_num_threads"] == "1"
    assert got["session.intra_op.allow_spinning"] == "1"
    assert got["session.force_spinning_stop"] == "1"
    with create_runtime("onnxruntime", untrained_onnx, allow_spinning=False, spin_between_runs=True) as rt:
        got = rt.settings()
    assert got["intra_op_num_threads"] == "0"   # ONNX Runtime's own default: one per physical core
    assert got["session.intra_op.allow_spinning"] == "0"
    assert got["session.force_spinning_stop"] == "0"


@needs_openvino
def test_openvino_options_reach_the_compiled_model(untrained_onnx):
    with create_runtime("openvino", untrained_onnx, threads=1) as rt:
        got = rt.settings()
    assert got["PERFORMANCE_HINT"] == "LATENCY" and got["NUM_STREAMS"] == "1"
    assert got["INFERENCE_PRECISION_HINT"] == "f32" and got["INFERENCE_NUM_THREADS"] == "1"
    with create_runtime("openvino", untrained_onnx, hint="THROUGHPUT", inference_precision="bf16") as rt:
        got = rt.settings()
    assert got["PERFORMANCE_HINT"] == "THROUGHPUT"
    assert got["INFERENCE_PRECISION_HINT"] == "bf16"


@needs_openvino
def test_the_example_config_reaches_the_adapter(untrained_onnx):
    data = _example()
    data["runtime"]["options"]["openvino"]["hint"] = "THROUGHPUT"
    data["runtime"]["options"]["onnxruntime"]["threads"] = 1
    cfg = parse_config(data, "edge.yaml")
    with create_runtime("openvino", untrained_onnx, **runtime_options(cfg.runtime, "openvino")) as rt:
        got = rt.settings()
    assert got["PERFORMANCE_HINT"] == "THROUGHPUT" and got["INFERENCE_PRECISION_HINT"] == "f32"
    with create_runtime("onnxruntime", untrained_onnx, **runtime_options(cfg.runtime, "onnxruntime")) as rt:
        got = rt.settings()
    assert got["intra_op_num_threads"] == "1" and got["session.force_spinning_stop"] == "1"


def test_onnxruntime_adapter_equals_the_raw_session(untrained_onnx):
    import onnxruntime as ort

    x = _batch()
    raw = ort.InferenceSession(str(untrained_onnx), providers=["CPUExecutionProvider"])
    want = raw.run(None, {raw.get_inputs()[0].name: x})[0]
    with create_runtime("onnxruntime", untrained_onnx, allow_spinning=True, spin_between_runs=False) as rt:
        got = rt(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@needs_openvino
def test_openvino_adapter_equals_the_raw_request_and_keeps_its_outputs(untrained_onnx):
    import openvino as ov

    x, y = _batch(), _batch() + 1.0
    x_before = x.copy()
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(untrained_onnx)), "CPU",
                                  {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    want = compiled.create_infer_request().infer({0: x})[0].copy()
    with create_runtime("openvino", untrained_onnx) as rt:
        got = rt(x)
        later = rt(y)   # the input is shared with OpenVINO, the output must not be
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(x, x_before)
    assert not np.shares_memory(got, later) and not np.allclose(got, later)


@pytest.mark.parametrize("backend, key, value, message", [
    ("openvino", "hint", "FAST", "runtime.options.openvino.hint: Input should be 'LATENCY' or 'THROUGHPUT'"),
    ("openvino", "hint", "latency", "runtime.options.openvino.hint: Input should be 'LATENCY' or 'THROUGHPUT'"),
    ("openvino", "inference_precision", "fp32",
     "runtime.options.openvino.inference_precision: Input should be 'f32', 'bf16' or 'f16'"),
    ("openvino", "threads", 0, "runtime.options.openvino.threads: Input should be greater than or equal to 1"),
    ("openvino", "num_streams", 2, "runtime.options.openvino.num_streams: unknown field"),
    ("onnxruntime", "allow_spinning", "sometimes", "runtime.options.onnxruntime.allow_spinning: Input should be a "
                                                   "valid boolean"),
    ("onnxruntime", "spin_between_runs", "maybe", "runtime.options.onnxruntime.spin_between_runs: Input should be "
                                                  "a valid boolean"),
    ("onnxruntime", "threads", -1, "runtime.options.onnxruntime.threads: Input should be greater than or equal to 1"),
    ("onnxruntime", "threads", "two", "runtime.options.onnxruntime.threads: Input should be a valid integer"),
])
def test_bad_runtime_option_in_the_config_is_one_named_line(backend, key, value, message):
    data = _example()
    data["runtime"]["options"][backend][key] = value
    with pytest.raises(ConfigError) as info:
        parse_config(copy.deepcopy(data), "edge.yaml")
    text = str(info.value)
    assert text.startswith("edge.yaml: ") and message in text and "\n" not in text


@pytest.mark.parametrize("backend, options, message", [
    ("openvino", {"hint": "FAST"}, "openvino: hint must be one of LATENCY, THROUGHPUT, got 'FAST'"),
    ("openvino", {"inference_precision": "int8"}, "openvino: inference_precision must be one of f32, bf16, f16, "
                                                  "got 'int8'"),
    ("openvino", {"threads": 0}, "openvino: threads must be a whole number of at least 1, got 0"),
    ("onnxruntime", {"threads": "2"}, "onnxruntime: threads must be a whole number of at least 1, got '2'"),
    ("onnxruntime", {"allow_spinning": "no"}, "onnxruntime: allow_spinning must be true or false, got 'no'"),
    ("onnxruntime", {"spin_between_runs": 1}, "onnxruntime: spin_between_runs must be true or false, got 1"),
    ("onnxruntime", {"uint8_input": True}, "onnxruntime: uint8_input is not supported by this runtime (it takes the "
                                           "manifest's float32 N x 3 x H x W batch)"),
    ("openvino", {"uint8_input": "yes"}, "openvino: uint8_input must be true or false, got 'yes'"),
])
def test_bad_option_given_to_the_adapter_is_refused_before_loading(untrained_onnx, backend, options, message):
    if available_runtimes().get(backend) is not None:
        pytest.skip(f"{backend} not installed")
    with pytest.raises(ConfigError) as info:
        create_runtime(backend, untrained_onnx, **options)
    assert str(info.value) == message


def _crops(n=3, seed=2):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (50 + 7 * i, 90 - 5 * i, 3), dtype=np.uint8) for i in range(n)]


@needs_openvino
@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_openvino_uint8_input_gives_the_float_paths_logits(untrained_onnx, color):
    """The crops resized to uint8 and normalised inside OpenVINO's model give the logits of the float batch
    the loop would otherwise build (for either colour order), and the loop's writer makes that batch."""
    from edge.manifest import load_manifest_for
    from edge.preprocess import BatchWriter, preprocess_batch

    manifest = load_manifest_for(untrained_onnx)
    manifest = manifest.updated(input=manifest.input.model_copy(update={"color": color}))
    crops = _crops()
    with create_runtime("openvino", untrained_onnx, manifest=manifest) as float_rt:
        want = float_rt(preprocess_batch(crops, manifest.input))
        assert float_rt.input_kind == "float32"
    with create_runtime("openvino", untrained_onnx, manifest=manifest, uint8_input=True) as rt:
        assert rt.input_kind == "uint8" and rt.blank(2).shape == (2, 64, 64, 3)
        writer = BatchWriter(manifest.input, uint8=rt.input_kind == "uint8")
        batch = writer.allocate(len(crops))
        for i, crop in enumerate(crops):
            writer.write(batch, crop, i)
        got = rt(batch)
    assert batch.dtype == np.uint8 and batch.shape == (3, 64, 64, 3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert (got.argmax(1) == want.argmax(1)).all()


@needs_openvino
def test_a_uint8_runtime_refuses_a_float_batch_by_name(untrained_onnx):
    from edge.errors import InferenceError

    with create_runtime("openvino", untrained_onnx, uint8_input=True) as rt:
        with pytest.raises(InferenceError, match=r"openvino: input 'input' must be N x 64 x 64 x 3 \(uint8 images\), "
                                                 r"got \(2, 3, 64, 64\)"):
            rt(_batch())
        with pytest.raises(InferenceError, match="openvino: input 'input' must be uint8, got float32"):
            rt(np.zeros((1, 64, 64, 3), np.float32))


@needs_openvino
def test_the_device_defaults_give_openvino_the_crops_and_onnxruntime_floats(untrained_onnx):
    cfg = parse_config(_example(), "edge.yaml")
    with create_runtime("openvino", untrained_onnx, **runtime_options(cfg.runtime, "openvino")) as rt:
        assert rt.input_kind == "uint8" and rt.batch_writer().allocate(2).shape == (2, 64, 64, 3)
    with create_runtime("onnxruntime", untrained_onnx, **runtime_options(cfg.runtime, "onnxruntime")) as rt:
        assert rt.input_kind == "float32" and rt.batch_writer().allocate(2).dtype == np.float32
