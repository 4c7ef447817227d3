"""The adapters run with the options they are given (read back from the runtime), agree with the raw
runtime on the same input, and refuse a bad option value in one line."""
import copy

import numpy as np
import pytest
import yaml

from edge.cli.main import example_config
from edge.config.device import parse_config
from edge.config.runtime import runtime_options
from edge.errors import ConfigError
from edge.platform import int8_saturates
from edge.runtimes.registry import available_runtimes, create_runtime

needs_openvino = pytest.mark.skipif(available_runtimes().get("openvino") is not None, reason="openvino not installed")


def _batch(n=2):
    return np.random.default_rng(1).standard_normal((n, 3, 64, 64), dtype=np.float32)


def _example(**runtime):
    data = yaml.safe_load(example_config())
    data["publish"]["curve"] = None
    if runtime:
        data["runtime"] = runtime
    return data


def _saturating_int8(path):
    """One QDQ convolution that ONNX Runtime fuses into a U8S8 kernel: uint8 inputs at 255 times int8
    weights at ±127, whose pairwise sums (64,770) overflow the 16-bit intermediates of that kernel on an
    x86 CPU without VNNI."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edge.manifest import InputSpec, Manifest, embed_manifest

    w = np.full((4, 3, 3, 3), 127, np.int8)
    w[1] = -127
    w[2, ::2] = 100
    consts = {"w_q": w, "w_s": np.float32(0.01), "w_z": np.int8(0), "x_s": np.float32(1 / 255),
              "x_z": np.uint8(0), "y_s": np.float32(0.5), "y_z": np.uint8(128)}
    nodes = [helper.make_node("QuantizeLinear", ["input", "x_s", "x_z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["y", "y_s", "y_z"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "y_s", "y_z"], ["yd"]),
             helper.make_node("GlobalAveragePool", ["yd"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["logits"])]
    graph = helper.make_graph(nodes, "saturating", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                 ["batch", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    manifest = Manifest(arch="qdq-conv", classes=("a", "b", "c", "d"), precision="int8",
                        input=InputSpec(size=(8, 8)))
    onnx.save(embed_manifest(model, manifest), str(path))
    return path


def _has_vnni() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return True
    return any(f in flags.split() for f in ("avx512_vnni", "avx_vnni")) or " avx2" not in flags


def test_int8_saturates_reads_the_cpu_as_proc_cpuinfo_does():
    flags = open("/proc/cpuinfo").read().split()
    if "avx2" not in flags:
        pytest.skip("not an x86 CPU with AVX2")
    assert int8_saturates() is not _has_vnni()


def test_exact_int8_keeps_an_int8_model_exact_where_the_cpu_lacks_vnni(tmp_path):
    import onnxruntime as ort

    path = _saturating_int8(tmp_path / "int8.onnx")
    x = np.ones((2, 3, 8, 8), np.float32)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL   # Q/DQ simulated in float
    want = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.all(np.abs(want) > 20.0)
    with create_runtime("onnxruntime", path, threads=1, exact_int8=True) as rt:
        assert rt.settings()["session.x64quantprecision"] == "1"
        np.testing.assert_allclose(rt(x), want, atol=1e-4)
    with create_runtime("onnxruntime", path, threads=1) as rt:        # the default: exact wherever U8S8 saturates
        assert rt.settings()["session.x64quantprecision"] == ("default" if _has_vnni() else "1")
        np.testing.assert_allclose(rt(x), want, atol=1e-4)
    with create_runtime("onnxruntime", path, threads=1, exact_int8=False) as rt:
        assert rt.settings()["session.x64quantprecision"] == "default"
        fast = rt(x)
    if _has_vnni():
        np.testing.assert_allclose(fast, want, atol=1e-4)
    else:   # what exact_int8 prevents: the saturated U8S8 kernel is off by about half
        assert np.abs(fast - want).max() > 5.0


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
    with pytest.raises(ConfigError, match="exact_int8 must be true or false, got 'yes'"):
        create_runtime("onnxruntime", untrained_onnx, exact_int8="yes")


@needs_openvino
def test_openvino_options_reach_the_compiled_model(untrained_onnx):
    with create_runtime("openvino", untrained_onnx, threads=1) as rt:
        got = rt.settings()
    assert got["PERFORMANCE_HINT"] == "LATENCY" and got["NUM_STREAMS"] == "1"
    assert got["INFERENCE_PRECISION_HINT"] == "f32" and got["INFERENCE_NUM_THREADS"] == "1"
    with create_runtime("openvino", untrained_onnx, hint="THROUGHPUT", inference_precision="bf16") as rt:
        got = rt.settings()
    assert got["PERFORMANCE_HINT"] == "THROUGHPUT"
    # A CPU without bf16 (AVX2 only, e.g. AMD Zen 3) runs f32 whatever the hint asks; OpenVINO says which.
    import openvino as ov

    bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert got["INFERENCE_PRECISION_HINT"] == ("bf16" if bf16 else "f32")


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
