"""Collecting training crops on the device: only enrolled, present and still slots, labelled by the store,
varied (sampling, near-duplicates, a cap a day), in the trainer's layout with a manifest, with retention, and a
full disk that stops collection but never the loop. Refused with no enrolment."""
from __future__ import annotations

import json
import logging
import os
import time

import cv2
import numpy as np
import pytest

from deploy.demo import make_link_keys
from edge.cli.main import main as edge_main
from edge.config.collect import CollectConfig
from edge.config.device import parse_config
from edge.config.publish import CurveConfig
from edge.errors import ConfigError
from edge.link.publisher import Publisher
from edge.loop.collect import CameraCollector, CollectRefused
from edge.loop.collect_store import MANIFEST, CollectStore, CollectWriter, read_manifest
from edge.loop.device_requests import handlers
from edge.loop.enrolment import jpeg
from tests.helpers import device_config, loopback_publish

from .test_slot_states import PIECE_A, PIECE_B, Case, frame, manifest, unit

DAY0 = time.mktime((2026, 3, 2, 10, 0, 0, 0, 0, -1))   # 10:00 local: the same local day for hours after


class Collecting:
    """A tracker (5 fps, :class:`Case`) with a collector; ``step`` feeds both and returns crops handed over."""

    def __init__(self, tmp_path, cfg: CollectConfig | None = None, man=None):
        self.case = Case(tmp_path / "state", man=man)
        self.cfg = cfg or CollectConfig(every_s=10, min_light_change=0)
        self.writer = CollectWriter(CollectStore(tmp_path / "collect", self.cfg), encode=jpeg)
        self.collector = CameraCollector("case-01", "cam0", self.case.tracker, self.cfg, self.writer,
                                         "gemsight@1.0.0")
        self.root = tmp_path / "collect"

    def step(self, emb=(PIECE_A, PIECE_B), labels=("ring", "watch"), image=None, n=1, t0=DAY0) -> int:
        kept = 0
        for _ in range(n):
            case = self.case
            case.t += 0.2
            img = frame() if image is None else image
            crops = case.smap.crop(img)
            states = case.tracker.update(case.t, t0 + case.t, img, crops, np.stack(emb), list(labels))
            kept += self.collector.offer(case.t, t0 + case.t, crops, np.stack(emb), states)
        return kept

    def entries(self):
        self.writer.flush()
        return read_manifest(self.root / MANIFEST)


def test_collect_with_no_enrolment_is_refused_with_what_to_do(tmp_path):
    c = Collecting(tmp_path)
    with pytest.raises(CollectRefused, match=r"cam0 has no enrolled slot: enrol the case first"):
        c.collector.start(hours=2)
    h = handlers({"cam0": c.case.tracker}, {"cam0": c.collector})
    reply = h["collect"]({"kind": "collect", "camera": "cam0", "on": True, "hours": 2})
    assert reply["status"] == 409 and "enrol the case first" in reply["error"]
    assert not c.collector.on and c.step(n=20) == 0 and not c.root.exists()
    # A model without an embedding has no slot states: refused too, saying why.
    c = Collecting(tmp_path / "b", man=manifest(embedding=False))
    with pytest.raises(CollectRefused, match="no embedding output"):
        c.collector.start()


def test_only_crops_of_present_still_enrolled_slots_labelled_by_the_store(tmp_path):
    c = Collecting(tmp_path)
    c.step(n=8)                                           # enrols itself (auto_enrol), both present
    reply = c.collector.start(hours=1, labels={"r0c1": "bracelet"})
    assert reply["on"] and reply["classes"] == {"r0c0": "ring", "r0c1": "bracelet"}
    assert c.step() == 2
    c.step(image=frame(hand_on=0), emb=(unit(np.ones(8)), PIECE_B), n=4)   # a hand over r0c0: occluded
    entries = c.entries()
    assert [(e["slot"], e["class"], e["label_source"]) for e in entries] == [
        ("r0c0", "ring", "enrolment"), ("r0c1", "bracelet", "planogram")]
    e = entries[0]
    assert e["device"] == "case-01" and e["camera"] == "cam0" and e["model"] == "gemsight@1.0.0"
    assert e["file"] == f"ring/case-01_cam0_r0c0_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(e['ts']))}.jpg"
    crop = cv2.imread(str(c.root / e["file"]))
    assert crop.shape == (40, 40, 3)                       # the slot's crop, never the 40 x 80 frame
    assert sorted(p.name for p in c.root.iterdir()) == ["bracelet", MANIFEST, "ring"]


def test_crops_vary_sampling_near_duplicates_light_and_a_cap_a_day(tmp_path):
    c = Collecting(tmp_path, CollectConfig(every_s=10, max_cosine=0.97, min_light_change=12, per_slot_per_day=3))
    c.step(n=8)
    c.collector.start()
    assert c.step() == 2
    assert c.step(n=25) == 0                               # 5 s later: not due yet
    assert c.step(n=30) == 0                               # due, but the same crop: near-duplicates
    assert c.collector.duplicates == 2
    brighter = np.clip(frame().astype(int) + 40, 0, 255).astype(np.uint8)
    assert c.step(image=brighter, n=60) == 2               # the same piece in other light is kept
    darker = np.clip(frame().astype(int) - 40, 0, 255).astype(np.uint8)
    assert c.step(image=darker, n=60) == 2                 # a third each: the day's cap
    assert c.step(image=frame(seed=3), n=60) == 0          # the cap holds for the rest of the day
    lighter = np.clip(frame().astype(int) + 80, 0, 255).astype(np.uint8)
    assert c.step(image=lighter, n=60, t0=DAY0 + 86400) == 2   # the next day counts afresh
    assert [sum(e["slot"] == s for e in c.entries()) for s in ("r0c0", "r0c1")] == [4, 4]


def test_a_restart_keeps_the_days_count_from_the_manifest(tmp_path):
    c = Collecting(tmp_path, CollectConfig(every_s=10, min_light_change=0, per_slot_per_day=3))
    c.step(n=8)
    c.collector.start()
    now = time.time()
    assert c.step(t0=now) == 2
    assert c.step(t0=now, n=60) == 0                       # min_light_change 0: the embedding alone decides
    c.writer.flush()
    again = CameraCollector("case-01", "cam0", c.case.tracker, c.cfg, c.writer, "gemsight@1.0.0")
    again.start()
    assert again.status()["today"] == {"r0c0": 1, "r0c1": 1}


def test_collection_ends_after_its_hours_and_turns_off_on_request(tmp_path):
    c = Collecting(tmp_path)
    c.step(n=8)
    h = handlers({"cam0": c.case.tracker}, {"cam0": c.collector})
    on = h["collect"]({"kind": "collect", "camera": "cam0", "on": True, "hours": 0.5, "labels": None})
    assert on["on"] and on["until"] == pytest.approx(time.time() + 1800, abs=5)
    assert c.step(t0=time.time() + 3600) == 0 and not c.collector.on     # past its hours
    assert h["collect"]({"kind": "collect", "camera": "cam0", "on": True})["on"]
    assert h["collect"]({"kind": "collect", "camera": "cam0", "on": False})["on"] is False
    assert h["collect"]({"kind": "collect", "camera": "cam0"})["on"] is False   # status only
    for bad in ({"on": True, "hours": "2"}, {"on": "yes"}, {"on": True, "labels": ["ring"]}, {"extra": 1}):
        assert h["collect"]({"kind": "collect", "camera": "cam0", **bad})["status"] == 400, bad
    assert h["collect"]({"kind": "collect", "camera": "cam9", "on": True})["status"] == 404
    assert h["collect"]({"kind": "collect", "camera": "cam0", "on": True, "labels": {"r9c9": "ring"}})["status"] == 404
    bad_class = h["collect"]({"kind": "collect", "camera": "cam0", "on": True, "labels": {"r0c0": "../x"}})
    assert bad_class["status"] == 400 and "not a class name" in bad_class["error"]
    assert h["collect"]({"kind": "collect", "camera": "cam0", "on": True, "hours": 0})["status"] == 400


def test_a_full_disk_stops_collection_once_and_never_the_loop(tmp_path, caplog):
    c = Collecting(tmp_path, CollectConfig(every_s=1, min_light_change=0, max_cosine=1.0, max_bytes=1 << 20))
    c.step(n=8)
    c.collector.start()
    (c.root / "ring").mkdir(parents=True)
    (c.root / "ring" / "old.jpg").write_bytes(bytes((1 << 20) - 100))   # the folder is at its limit
    with caplog.at_level(logging.WARNING):
        c.step(n=30)
        c.writer.flush()
        assert c.step(n=30) == 0
    assert [r.getMessage() for r in caplog.records].count(
        f"COLLECTION STOPPED: the collect folder {c.root} reached collect.max_bytes (1,048,576 bytes); the loop runs "
        "on (free space, or raise the limit, then ask to collect again)") == 1
    assert c.collector.status()["stopped"].startswith("the collect folder") and not c.entries()
    assert c.step(image=frame(hand_on=1), emb=(PIECE_A, unit(np.ones(8))), n=2) == 0   # states go on
    assert c.case.tracker._tracks[1].state.value == "occluded"
    # A disk that cannot be written (the folder is a file) stops it the same way.
    c = Collecting(tmp_path / "b", CollectConfig(every_s=1, min_light_change=0))
    c.root.parent.mkdir(parents=True, exist_ok=True)
    c.root.write_bytes(b"not a folder")
    c.step(n=8)
    c.collector.start()
    c.step(n=3)
    c.writer.flush()
    assert "cannot write to" in c.collector.status()["stopped"]


def test_the_free_space_is_read_where_the_folder_will_be(tmp_path):
    """Neither the collect folder nor the state folder exists before the first crop: not a reason to stop."""
    assert CollectStore(tmp_path / "state" / "collect", CollectConfig(min_free_bytes=0)).space_problem(10) is None
    assert "below collect.min_free_bytes" in CollectStore(tmp_path / "state" / "collect", CollectConfig(
        min_free_bytes=1 << 62)).space_problem(10)


def test_retention_removes_old_crops_and_their_manifest_lines(tmp_path):
    cfg = CollectConfig(retention_days=2)
    store = CollectStore(tmp_path, cfg)
    now = time.time()
    for i, age in enumerate((5, 3, 1, 0)):
        store.write({"file": f"ring/c_{i}.jpg", "ts": now - age * 86400, "class": "ring"}, b"\xff\xd8\xff" + bytes(9))
    (tmp_path / "ring" / "stray.jpg").write_bytes(b"x")    # a file whose line was torn away: its age decides
    os.utime(tmp_path / "ring" / "stray.jpg", (now - 9 * 86400,) * 2)
    with open(tmp_path / MANIFEST, "ab") as fh:
        fh.write(b'{"file": "ring/torn')                   # a torn last line is skipped
    assert store.prune(now) == 3
    assert sorted(p.name for p in (tmp_path / "ring").iterdir()) == ["c_2.jpg", "c_3.jpg"]
    assert [e["file"] for e in read_manifest(tmp_path / MANIFEST)] == ["ring/c_2.jpg", "ring/c_3.jpg"]


def test_the_collect_section_is_strict_and_its_folder_defaults_to_the_state_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    doc = device_config(cameras=[{"id": "cam0", "source": "file://v.mp4"}])
    cfg = parse_config(doc, "edge.yaml", tmp_path)
    assert cfg.collect.dir == tmp_path / "state" / "collect" and cfg.collect.enabled is False
    assert parse_config({**doc, "collect": {"dir": "crops"}}, "edge.yaml", tmp_path).collect.dir == tmp_path / "crops"
    for bad, where in (({"every_s": "10"}, "collect.every_s"), ({"enabled": 1}, "collect.enabled"),
                       ({"per_slot_per_day": 0}, "collect.per_slot_per_day"), ({"keep": 1}, "collect.keep")):
        with pytest.raises(ConfigError, match=f"edge.yaml: {where}"):
            parse_config({**doc, "collect": bad}, "edge.yaml", tmp_path)


def test_cli_collect_over_curve(tmp_path, capsys):
    c = Collecting(tmp_path)
    c.step(n=8)
    keys = make_link_keys(tmp_path / "device", tmp_path)
    pub = Publisher("case-01", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", heartbeat_s=5,
                    curve=CurveConfig(server_secret_key=str(keys["server_secret"]),
                                      allowed_clients=str(keys["allowed_clients"])),
                    handlers=handlers({"cam0": c.case.tracker}, {"cam0": c.collector}))
    link = ["--curve-server-key", str(keys["server_public"]), "--curve-client-key", str(keys["client_secret"])]
    try:
        assert edge_main(["collect", pub.snapshot_endpoint, "--camera", "cam0", "--hours", "3", "--label",
                          "r0c1=bracelet", *link]) == 0
        out = capsys.readouterr().out
        assert out.startswith("collection on until ") and "cam0/r0c1: bracelet, 0 crop(s) today" in out
        assert c.collector.on and c.collector.until == pytest.approx(time.time() + 3 * 3600, abs=10)
        assert edge_main(["collect", pub.snapshot_endpoint, "--camera", "cam0", "--off", *link]) == 0
        assert capsys.readouterr().out.startswith("collection off on cam0") and not c.collector.on
        assert edge_main(["collect", pub.snapshot_endpoint, "--camera", "cam0", "--label", "r0c1", *link]) == 2
        assert "--label 'r0c1': expected SLOT=CLASS" in capsys.readouterr().err
    finally:
        pub.close()
    # With no enrolment the device refuses, and the command says why.
    bare = Collecting(tmp_path / "bare")
    pub = Publisher("case-02", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", heartbeat_s=5, curve=None,
                    handlers=handlers({"cam0": bare.case.tracker}, {"cam0": bare.collector}))
    try:
        assert edge_main(["collect", pub.snapshot_endpoint, "--camera", "cam0", "--plaintext"]) == 2
        assert "cam0 has no enrolled slot: enrol the case first" in capsys.readouterr().err
    finally:
        pub.close()


def test_manifest_lines_are_one_json_object_each(tmp_path):
    c = Collecting(tmp_path)
    c.step(n=8)
    c.collector.start()
    c.step()
    c.writer.flush()
    lines = (c.root / MANIFEST).read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["time"].endswith("Z") for x in lines)


@pytest.mark.slow
def test_the_loop_collects_crops_of_its_enrolled_slots_from_a_still_video(tmp_path):
    """The whole loop (a still video, ONNX Runtime, a tiny untrained model with its embedding): the slots enrol
    themselves, and with ``collect.enabled`` the loop hands their crops to the writer; the files are the slots'."""
    import torch
    import torchvision

    from trainer.export import build_manifest, export_onnx, with_embedding
    from edge.loop.run import run

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2).eval()
    manifest = with_embedding(model, build_manifest(arch="resnet18", classes=("ring", "watch"), img_size=32))
    export_onnx(model, manifest, tmp_path / "model.onnx", check_batch=np.zeros((1, 3, 32, 32), np.float32))
    video = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 40))
    for _ in range(150):     # 15 s of a still case: a busy machine's dropped frames still leave enough
        writer.write(frame())
    writer.release()
    data = device_config(tmp_path / "model.onnx", [{"id": "cam0", "source": f"file://{video}?realtime=0",
                                                    "slots": [{"name": "r0c0", "rect": [0, 0, 0.5, 1]},
                                                              {"name": "r0c1", "rect": [0.5, 0, 1, 1]}]}],
                         threads=1, publish=loopback_publish(), postprocess={"min_score": 0.0},
                         states={"state_dir": str(tmp_path / "state"), "still_s": 0.3, "enrol_frames": 2,
                                 "confirm_frames": 1},
                         collect={"enabled": True, "every_s": 1, "min_light_change": 0, "max_cosine": 1.0})
    result = run(parse_config(data, "edge.yaml", tmp_path))
    assert result.stopped_by == "eos"
    entries = read_manifest(tmp_path / "state" / "collect" / MANIFEST)
    assert {e["slot"] for e in entries} == {"r0c0", "r0c1"}
    for e in entries:
        assert e["model"] == "gemsight@0.1.0" and e["label_source"] == "enrolment" and e["class"] in ("ring", "watch")
        assert cv2.imread(str(tmp_path / "state" / "collect" / e["file"])).shape == (40, 40, 3)
