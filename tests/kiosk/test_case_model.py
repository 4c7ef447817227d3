"""The store page names the model each case runs (its labels' ``model``), and follows a newly flashed version: the
demo's ``--learn`` reads the new version there."""
from __future__ import annotations

from kiosk.config import parse_config
from kiosk.words import model_words

from tests.helpers import MODEL, labels_message as labels

from .feeds import config_dict, heartbeat

FULL = {"r0c0": "ring", "r0c1": "ring", "r1c0": "watch", "r1c1": "brooch"}


def test_the_case_shows_its_models_version_and_follows_a_new_one(tmp_path):
    from kiosk.service import Kiosk

    k = Kiosk(parse_config(config_dict(tmp_path)), feed=False)
    try:
        case = k.state()["cases"][0]["camera_health"]
        assert case["model"] is None and case["model_text"] == ""          # no label yet: nothing to name
        k.on_message("heartbeat", heartbeat({"cam0": 0}))
        k.on_message("labels", labels(FULL, seq=0))
        case = k.state()["cases"][0]["camera_health"]
        assert case["model"] == MODEL and case["model_text"] == "model m 1.0.0 (int8, onnxruntime)"
        k.on_message("labels", labels(FULL, seq=1, model={**MODEL, "version": "1.0.1"}))
        case = k.state()["cases"][0]["camera_health"]
        assert case["model_text"] == "model m 1.0.1 (int8, onnxruntime)"
        events = [i for i in k.state()["incidents"] if i["kind"] == "model"]
        assert len(events) == 1 and "from m 1.0.0 (int8, onnxruntime) to m 1.0.1" in events[0]["reason"]
    finally:
        k.stop()


def test_model_words_leaves_out_what_a_label_did_not_say():
    assert model_words(None) == "" and model_words({"name": "m"}) == ""
    assert model_words({"name": "gemsight", "version": "2.0.0"}) == "model gemsight 2.0.0"
    assert model_words({"version": "2.0.0", "backend": "openvino"}) == "model ? 2.0.0 (openvino)"
