"""The TensorRT runtime's inference path, on stand-ins shaped like each TensorRT API generation it supports
(tests/edge/fake_trt_infer.py: the 8.4 bindings, 8.6 with both, 10.x and 11.x named tensors) and like
pycuda, where device memory is numpy bytes and the "engine" runs a small two-output ONNX model with
ONNX Runtime. The values are compared with the ONNX Runtime adapter on the same model and batch.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

from edge.errors import InferenceError
from edge.runtimes import create_runtime
from tests.edge.fake_trt_infer import GENERATIONS, State, make_pycuda, make_tensorrt, write_model, write_plan

SIZE, DIM, CLASSES = 16, 16, 4


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The two-output model, its manifest, the same without the embedding, and the ONNX Runtime adapter's
    outputs (the reference) for a batch of 6."""
    path, manifest = write_model(tmp_path_factory.mktemp("two-outputs"), size=SIZE, dim=DIM)
    x = np.random.default_rng(1).normal(size=(6, 3, SIZE, SIZE)).astype(np.float32)
    with create_runtime("onnxruntime", path, manifest=manifest) as ort_rt:
        ref = ort_rt.infer({"input": x})
    return path, manifest, manifest.updated(embedding=None), x, ref


@pytest.fixture
def device(monkeypatch):
    """``install(generation)``: put a fake ``tensorrt`` of that generation and a fake pycuda into
    ``sys.modules``; returns the device's :class:`State`."""
    def install(generation: str) -> State:
        state = State()
        monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt(generation, state))
        for name, mod in make_pycuda(state).items():
            monkeypatch.setitem(sys.modules, name, mod)
        return state
    return install


def tensor(name, mode, width=None, dtype="FLOAT", source=None, batch=-1):
    shape = [batch, 3, SIZE, SIZE] if mode == "input" else [batch, width]
    return {"name": name, "mode": mode, "shape": shape, "dtype": dtype, "source": source or name}


INPUT = tensor("input", "input")
LOGITS = tensor("logits", "output", CLASSES)
EMBEDDING = tensor("embedding", "output", DIM)


def plan(tmp_path, model, generation, tensors, low=1, high=4, size=SIZE):
    profile = [(b, 3, size, size) for b in (low, high, high)]
    return write_plan(tmp_path / "model.engine", generation, model[0], tensors, profile)


def assert_released(state):
    """Every device buffer freed, the context stack as it was, the primary context released once."""
    assert state.memory == {} and state.ctx_stack == [] and state.detached == 1


@pytest.mark.parametrize("generation", list(GENERATIONS))
@pytest.mark.parametrize("order", [(INPUT, LOGITS, EMBEDDING), (EMBEDDING, INPUT, LOGITS)],
                         ids=["logits-first", "embedding-first"])
def test_both_outputs_bound_by_name_and_returned(device, model, tmp_path, generation, order):
    state = device(generation)
    path, manifest, _, x, ref = model
    with create_runtime("tensorrt", plan(tmp_path, model, generation, list(order)), manifest=manifest) as rt:
        assert rt.max_batch == 4
        smaller, full, split = rt.infer({"input": x[:3]}), rt.infer({"input": x[:4]}), rt.infer({"input": x})
        assert state.ctx_stack == []   # pushed around every call, popped again
    for got, n in ((smaller, 3), (full, 4), (split, 6)):
        assert list(got) == ["logits", "embedding"]
        assert got["logits"].shape == (n, CLASSES) and got["embedding"].shape == (n, DIM)
        assert got["logits"].dtype == got["embedding"].dtype == np.float32
        np.testing.assert_allclose(got["logits"], ref["logits"][:n], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got["embedding"], ref["embedding"][:n], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(split["embedding"], axis=1), 1.0, atol=1e-5)
    api = "execute_async_v3" if "tensors" in GENERATIONS[generation][1] else "execute_async_v2"
    runs = state.of(api)
    assert [r[1] for r in runs] == [(n, 3, SIZE, SIZE) for n in (3, 4, 4, 2)]  # 6 > max batch 4: split
    addresses = runs[0][2]   # by name, whatever the engine's order: three distinct buffers
    assert set(addresses) == {"input", "logits", "embedding"} and len(set(addresses.values())) == 3
    assert state.errors == []
    assert_released(state)


@pytest.mark.parametrize("generation", list(GENERATIONS))
def test_a_model_without_an_embedding_returns_its_logits(device, model, tmp_path, generation):
    state = device(generation)
    _, _, plain, x, ref = model
    with create_runtime("tensorrt", plan(tmp_path, model, generation, [INPUT, LOGITS]), manifest=plain) as rt:
        got = rt.infer({"input": x[:2]})
    assert list(got) == ["logits"]
    np.testing.assert_allclose(got["logits"], ref["logits"][:2], rtol=1e-5, atol=1e-5)
    assert state.errors == []
    assert_released(state)


@pytest.mark.parametrize("generation", list(GENERATIONS))
def test_an_engine_output_the_manifest_does_not_name_is_bound_not_returned(device, model, tmp_path, generation):
    # An engine built from a model with an embedding, run under a manifest without one: TensorRT needs an
    # address for every output, so the embedding gets a buffer of its own.
    state = device(generation)
    _, _, plain, x, ref = model
    with create_runtime("tensorrt", plan(tmp_path, model, generation, [INPUT, EMBEDDING, LOGITS]),
                        manifest=plain) as rt:
        got = rt.infer({"input": x[:3]})
    assert list(got) == ["logits"]
    np.testing.assert_allclose(got["logits"], ref["logits"][:3], rtol=1e-5, atol=1e-5)
    api = "execute_async_v3" if "tensors" in GENERATIONS[generation][1] else "execute_async_v2"
    assert "embedding" in state.of(api)[0][2] and state.errors == []
    assert_released(state)


@pytest.mark.parametrize("generation", list(GENERATIONS))
@pytest.mark.parametrize("tensors, match", [
    ([INPUT, LOGITS, tensor("feat", "output", DIM, source="embedding")],
     r"has no output 'embedding' \(its outputs: 'logits', 'feat'\); the manifest names 'logits', 'embedding'"),
    ([INPUT, LOGITS], r"has no output 'embedding' \(its outputs: 'logits'\)"),
    ([INPUT, LOGITS, tensor("embedding", "output", 8)],
     r"output 'embedding' has shape \(-1, 8\), the manifest says N x 16"),
    ([INPUT, tensor("logits", "output", 5), EMBEDDING],
     r"output 'logits' has shape \(-1, 5\), the manifest says N x 4"),
    ([tensor("images", "input"), LOGITS, EMBEDDING], r"takes input\(s\) 'images', the manifest says 'input'"),
], ids=["embedding-renamed", "embedding-missing", "embedding-width", "logits-width", "input-renamed"])
def test_outputs_that_do_not_match_the_manifest_are_refused_by_name(device, model, tmp_path, generation, tensors,
                                                                    match):
    state = device(generation)
    with pytest.raises(InferenceError, match=match):
        create_runtime("tensorrt", plan(tmp_path, model, generation, tensors), manifest=model[1])
    assert_released(state)   # nothing allocated is left behind, the context popped and released


def test_an_engine_for_another_input_size_is_refused(device, model, tmp_path):
    state = device("10")
    with pytest.raises(InferenceError, match=r"takes \(4, 3, 32, 32\), manifest says N x 3 x 16 x 16"):
        create_runtime("tensorrt", plan(tmp_path, model, "10", [INPUT, LOGITS, EMBEDDING], size=32),
                       manifest=model[1])
    assert_released(state)


def test_an_engine_of_another_tensorrt_says_to_rebuild(device, model, tmp_path):
    state = device("10")
    with pytest.raises(InferenceError, match="cannot deserialize .*build-engine --rebuild"):
        create_runtime("tensorrt", plan(tmp_path, model, "8.6", [INPUT, LOGITS, EMBEDDING]), manifest=model[1])
    assert_released(state)


def test_a_profile_starting_above_one_image_runs_padded_rows(device, model, tmp_path):
    state = device("10")
    _, manifest, _, x, ref = model
    engine = plan(tmp_path, model, "10", [INPUT, LOGITS, EMBEDDING], low=2)
    with create_runtime("tensorrt", engine, manifest=manifest) as rt:
        got = rt.infer({"input": x[:1]})
    assert got["logits"].shape == (1, CLASSES) and got["embedding"].shape == (1, DIM)
    np.testing.assert_allclose(got["embedding"], ref["embedding"][:1], rtol=1e-5, atol=1e-6)
    assert [c[2] for c in state.of("set_input_shape")] == [(2, 3, SIZE, SIZE)] and state.errors == []


def test_half_precision_outputs_come_back_as_float32(device, model, tmp_path):
    state = device("10")
    _, manifest, _, x, ref = model
    tensors = [INPUT, tensor("logits", "output", CLASSES, "HALF"), tensor("embedding", "output", DIM, "HALF")]
    with create_runtime("tensorrt", plan(tmp_path, model, "10", tensors), manifest=manifest) as rt:
        got = rt.infer({"input": x[:4]})
    assert got["logits"].dtype == got["embedding"].dtype == np.float32
    np.testing.assert_allclose(got["logits"], ref["logits"][:4], rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(got["embedding"], ref["embedding"][:4], rtol=1e-2, atol=1e-3)
    assert state.errors == []
