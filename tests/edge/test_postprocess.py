"""Postprocessing: softmax, top-k, threshold to unknown, smoothing with hysteresis, stable flag, counts."""
from __future__ import annotations

import numpy as np
import pytest

from edge.contracts import DEFAULT_CLASSES
from edge.errors import ConfigError, InferenceError
from edge.loop.postprocess import Postprocessor, softmax


def onehot_logits(labels: list[str], strength: float = 8.0) -> np.ndarray:
    """Logits that make each slot's class clearly the best (probability ~0.998)."""
    out = np.zeros((len(labels), len(DEFAULT_CLASSES)), dtype=np.float32)
    for i, lab in enumerate(labels):
        out[i, DEFAULT_CLASSES.index(lab)] = strength
    return out


def test_softmax_is_stable_and_rows_sum_to_one():
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1000.0], [0.0, 0.0, 50.0]])
    p = softmax(x)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    assert p[0].argmax() == 1
    np.testing.assert_allclose(softmax(np.array([1.0, 2.0])), softmax(np.array([[1.0, 2.0]]))[0])


def test_topk_is_ordered_best_first_and_clamped():
    pp = Postprocessor(DEFAULT_CLASSES, ["a"], top_k=3, window=1)
    logits = np.array([[0.0, 3.0, 1.0, 5.0, 0.0, 0.0, 2.0, 0.0]])
    slot = pp.update(logits).slots[0]
    assert [lab for lab, _ in slot.topk] == ["bracelet", "necklace", "watch"]
    scores = [s for _, s in slot.topk]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores[0], softmax(logits)[0, 3])
    assert isinstance(scores[0], float)
    assert Postprocessor(DEFAULT_CLASSES[:2], ["a"], top_k=5).top_k == 2


def test_low_score_becomes_unknown():
    pp = Postprocessor(DEFAULT_CLASSES, ["a", "b"], min_score=0.5, window=1)
    logits = np.zeros((2, len(DEFAULT_CLASSES)))
    logits[0, 0] = 8.0  # confident ring
    logits[1, :2] = 1.0  # ring and necklace split the mass: top-1 ~0.27
    res = pp.update(logits)
    assert [s.label for s in res.slots] == ["ring", "unknown"]
    assert res.slots[1].raw_label == "unknown"
    assert res.slots[1].topk[0][0] == "ring"  # top-k still shows what the model saw
    assert res.slots[1].score < 0.5
    assert res.counts["unknown"] == 1 and res.counts["ring"] == 1


def test_probabilities_are_used_as_given():
    pp = Postprocessor(DEFAULT_CLASSES[:3], ["a"], outputs_are="probabilities", window=1, min_score=0.6)
    assert pp.update(np.array([[0.1, 0.7, 0.2]])).slots[0].label == "necklace"
    assert pp.update(np.array([[0.45, 0.1, 0.45]])).slots[0].label == "unknown"


def test_label_flips_only_once_it_dominates_the_window():
    pp = Postprocessor(DEFAULT_CLASSES, ["a"], window=5)
    labels = []
    for lab in ["ring"] * 5 + ["watch"] * 5:
        labels.append(pp.update(onehot_logits([lab])).slots[0].label)
    # After 5 rings, watch needs 3 of the last 5 frames (strictly more than ring's 2) to take over.
    assert labels == ["ring"] * 5 + ["ring", "ring", "watch", "watch", "watch"]


def test_tie_keeps_the_published_label():
    pp = Postprocessor(DEFAULT_CLASSES, ["a"], window=4)
    seq = ["ring", "ring", "ring", "ring", "watch", "watch"]  # last 4: ring ring watch watch -> tie
    out = [pp.update(onehot_logits([lab])).slots[0].label for lab in seq]
    assert out[-1] == "ring"
    assert pp.update(onehot_logits(["watch"])).slots[0].label == "watch"


def test_single_glitch_frame_is_smoothed_away():
    pp = Postprocessor(DEFAULT_CLASSES, ["a"], window=5)
    seq = ["empty"] * 6 + ["brooch"] + ["empty"] * 3
    out = [pp.update(onehot_logits([lab])).slots[0] for lab in seq]
    assert all(s.label == "empty" for s in out)
    assert out[6].raw_label == "brooch"
    assert out[6].stable is False and out[5].stable is True


def test_stable_only_after_a_full_window_of_the_same_label():
    pp = Postprocessor(DEFAULT_CLASSES, ["a"], window=3)
    stable = [pp.update(onehot_logits(["ring"])).slots[0].stable for _ in range(4)]
    assert stable == [False, False, True, True]
    assert Postprocessor(DEFAULT_CLASSES, ["a"], window=1).update(onehot_logits(["ring"])).slots[0].stable


def test_score_is_the_window_mean_of_the_label():
    pp = Postprocessor(DEFAULT_CLASSES[:2], ["a"], window=2, outputs_are="probabilities", min_score=0.0)
    pp.update(np.array([[0.9, 0.1]]))
    slot = pp.update(np.array([[0.7, 0.3]])).slots[0]
    assert slot.label == "ring"
    assert slot.score == pytest.approx(0.8)


def test_counts_hold_every_label_and_sum_to_the_slots():
    names = [f"s{i}" for i in range(12)]
    pp = Postprocessor(DEFAULT_CLASSES, names, window=1)
    truth = ["ring", "ring", "watch", "empty", "empty", "empty", "pendant", "empty", "ring", "brooch", "empty", "empty"]
    res = pp.update(onehot_logits(truth))
    assert [s.label for s in res.slots] == truth
    assert [s.name for s in res.slots] == names
    assert set(res.counts) == set(DEFAULT_CLASSES) | {"unknown"}
    assert res.counts["ring"] == 3 and res.counts["empty"] == 6 and res.counts["necklace"] == 0
    assert sum(res.counts.values()) == 12
    assert res.items == 6  # empty and unknown are not items


def test_counts_use_smoothed_labels():
    pp = Postprocessor(DEFAULT_CLASSES, ["a", "b"], window=3)
    for _ in range(3):
        pp.update(onehot_logits(["ring", "empty"]))
    res = pp.update(onehot_logits(["watch", "empty"]))
    assert res.counts["ring"] == 1 and res.counts["watch"] == 0


def test_reset_forgets_one_slot():
    pp = Postprocessor(DEFAULT_CLASSES, ["a", "b"], window=5)
    for _ in range(5):
        pp.update(onehot_logits(["ring", "ring"]))
    pp.reset("a")
    res = pp.update(onehot_logits(["watch", "watch"]))
    assert res.slots[0].label == "watch"   # history gone: the new label wins at once
    assert res.slots[1].label == "ring"    # the other slot still smooths
    pp.reset()
    assert pp.update(onehot_logits(["watch", "watch"])).slots[1].label == "watch"
    with pytest.raises(ConfigError, match="no slot named 'zz'"):
        pp.reset("zz")


@pytest.mark.parametrize("shape", [(3, 8), (2, 7), (16,), (2, 8, 1)])
def test_wrong_shape_names_the_mismatch(shape):
    pp = Postprocessor(DEFAULT_CLASSES, ["a", "b"])
    with pytest.raises(InferenceError, match=r"expected \(2, 8\)"):
        pp.update(np.zeros(shape, dtype=np.float32))


def test_non_numeric_logits_are_refused():
    with pytest.raises(InferenceError, match="numeric"):
        Postprocessor(DEFAULT_CLASSES[:2], ["a"]).update(np.array([["a", "b"]]))


def test_non_finite_outputs_become_unknown(caplog):
    pp = Postprocessor(DEFAULT_CLASSES, ["a", "b"], window=1)
    logits = onehot_logits(["ring", "ring"])
    logits[1, 3] = np.nan
    res = pp.update(logits)
    assert res.slots[0].label == "ring"
    assert res.slots[1].label == "unknown" and res.slots[1].score == 0.0
    assert "non-finite" in caplog.text
    pp0 = Postprocessor(DEFAULT_CLASSES, ["a"], window=1, min_score=0.0)
    assert pp0.update(np.full((1, 8), np.inf)).slots[0].label == "unknown"


@pytest.mark.parametrize("kwargs, match", [
    ({"classes": []}, "classes must not be empty"),
    ({"classes": ["ring", "ring"]}, "duplicates"),
    ({"slot_names": []}, "slot_names must not be empty"),
    ({"slot_names": ["a", "a"]}, "duplicates"),
    ({"unknown_label": "ring"}, "unknown_label"),
    ({"min_score": 1.5}, "min_score"),
    ({"window": 0}, "window"),
    ({"window": 2.5}, "window"),
    ({"top_k": 0}, "top_k"),
    ({"outputs_are": "logprobs"}, "outputs_are"),
])
def test_bad_arguments_are_named(kwargs, match):
    args = {"classes": DEFAULT_CLASSES, "slot_names": ["a"], **kwargs}
    with pytest.raises(ConfigError, match=match):
        Postprocessor(args.pop("classes"), args.pop("slot_names"), **args)
