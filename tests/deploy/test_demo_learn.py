"""``gemsight-demo --learn``: the device's collected crops fine-tune the demo's model, the next version is flashed
and current, the crops are counted in the run's report; no crops, a foreign model or a real camera are refused
with the device's version left as it was."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from deploy.bundle import create_bundle
from deploy.demo import main as demo_main
from deploy.demo import get_args_parser, learn_and_reload, make_link_keys, write_config
from deploy.demo_learn import collect_section, learn, next_version, run_of, summary_lines
from deploy.flash import FlashOptions, flash
from deploy.keys import generate_keypair
from deploy.layout import DeviceLayout
from deploy.pull import copy_collected
from edge.config.collect import CollectConfig
from edge.errors import BundleError, DataError
from edge.loop.collect_store import CollectStore

from tests.helpers import TINY_RECIPE

CLASSES = ("ring", "watch", "empty")
# Two slots per class, three crops each: one slot per class is held out, so the fine-tune gets 3 + 3.
SLOTS = {"r0c0": "ring", "r0c1": "ring", "r1c0": "watch", "r1c1": "watch"}
PER_SLOT = 3


def demo_workdir(tmp: Path) -> tuple[Path, Path]:
    """A demo work directory as ``gemsight-demo`` leaves it before the loop (tiny): photos, a run of version
    1.0.0, its calibration, the demo key, a device root with 1.0.0 flashed and its edge.yaml with ``collect:``."""
    import torch

    from calibration.pipeline import CalibrateOptions
    from calibration.pipeline import run as calibrate
    from trainer.synth import make_images
    from trainer.train import train

    work = tmp / "demo-out"
    data = make_images(work / "data", classes=CLASSES, per_class=16, size=32, val_fraction=0.25, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train(data=str(data), out=str(work / "run"), **{**TINY_RECIPE, "epochs": 1, "misses": 0,
                                                               "model_version": "1.0.0"})
    finally:
        torch.set_num_threads(threads)
    calibrate(CalibrateOptions(model=run / "model.onnx", images=data / "train", val=data / "val", out=work / "calib",
                               count=32, targets=("onnxruntime",), bench_iters=0, max_drop=100.0, force=True))
    priv, pub = generate_keypair(work / "keys", "gemsight-signing")
    root = work / "device"
    (root / "etc/gemsight/keys").mkdir(parents=True)
    shutil.copy(pub, root / "etc/gemsight/keys" / pub.name)
    flash(create_bundle(work / "calib", priv, work / "gemsight-1.0.0.gsb", "1.0.0"), root, FlashOptions(restart=False))
    keys = make_link_keys(root, work)
    config = write_config(work, root, f"file://{work}/case.mp4", None, 5555, keys, collect_section())
    return work, config


def collect_like_the_device(work: Path) -> Path:
    """Crops in the device's collect folder, written by the device's own store (photos of the slot's class)."""
    folder = work / "device/etc/gemsight/state/collect"
    store = CollectStore(folder, CollectConfig())
    now = time.time()
    for i, (slot, cls) in enumerate(SLOTS.items()):
        photos = sorted((work / "data/train" / cls).glob("*.jpg"))
        for k in range(PER_SLOT):
            ts = now + 60 * (i * PER_SLOT + k)
            name = f"demo-case_cam0_{slot}_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(ts))}.jpg"
            store.write({"device": "demo-case", "camera": "cam0", "slot": slot, "ts": ts, "class": cls,
                         "file": f"{cls}/{name}", "model": "gemsight@1.0.0"}, photos[k].read_bytes())
    return folder


@pytest.mark.slow
def test_learn_fine_tunes_on_the_collected_crops_and_flashes_the_next_version(tmp_path, caplog):
    work, config = demo_workdir(tmp_path)
    with pytest.raises(DataError, match=r"--learn: the device collected no crops \(nothing in .*collect; .*nothing "
                                        r"was fine-tuned, the device still runs 1\.0\.0"):
        learn(work, config, epochs=1, calib_count=32, photos_per_class=12, targets="onnxruntime", max_drop=100.0)
    # Where the demo learns by default (not asked for with --learn), a day without crops is a warning, not a failure.
    args = get_args_parser().parse_args(["--learn-epochs", "1"])
    args.learn_default = True
    assert learn_and_reload(work, config, args, {}, None) is None
    assert "the device collected no crops" in caplog.text and "(--no-learn skips this step)" in caplog.text
    assert DeviceLayout(work / "device").current() == "1.0.0" and not (work / "learn").exists()

    collect_like_the_device(work)
    done = learn(work, config, epochs=1, calib_count=32, photos_per_class=12, targets="onnxruntime", max_drop=100.0)
    layout = DeviceLayout(work / "device")
    assert (done.before, done.after, layout.current(), layout.previous()) == ("1.0.0", "1.0.1", "1.0.1", "1.0.0")
    flashed = json.loads((layout.version_dir("1.0.1") / "manifest.json").read_text())
    assert flashed["version"] == "1.0.1"
    # One slot per class held out (r0c1, r1c1), the other slot's crops trained on, as the run's report counts.
    assert done.held_slots == {"ring": "r0c1", "watch": "r1c1"}
    assert done.crops == {"ring": PER_SLOT, "watch": PER_SLOT} and done.held == done.crops
    report = json.loads((work / "learn/1.0.1/run/report.json").read_text())
    assert [(s["source"], s["train"]) for s in report["sources"]][1] == ("extra", 2 * PER_SLOT)
    assert report["sources"][1]["train_per_class"] == {"ring": PER_SLOT, "watch": PER_SLOT}
    assert report["init_from"] == str(work / "run")
    assert set(done.val) == set(done.heldout) == {"before", "after"}
    assert set(done.heldout["after"]) == {"fp32", "onnxruntime"}
    text = "\n".join(summary_lines(done))
    assert "version 1.0.0 -> 1.0.1 flashed (gemsight-1.0.1.gsb)" in text
    assert "collected crops used for training: 6 (ring 3, watch 3)" in text
    # The next --learn starts from what the device now runs.
    assert run_of(work, "1.0.1") == work / "learn/1.0.1/run"


def test_the_next_version_is_above_every_installed_one(tmp_path):
    """A second demo run flashes its 1.0.0 again while the first --learn's 1.0.1 stays installed: the next
    --learn makes 1.0.2 (flash refuses a version reused with other content)."""
    layout = DeviceLayout(tmp_path)
    assert next_version(layout) == "0.0.1"
    for v in ("1.0.0", "1.0.1"):
        (layout.models_dir / v).mkdir(parents=True)
    (layout.models_dir / "current").symlink_to("1.0.0")
    assert layout.current() == "1.0.0" and next_version(layout) == "1.0.2"


def test_learn_refuses_a_device_running_a_model_no_demo_run_made(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run/manifest.json").write_text(json.dumps({"version": "1.0.0"}))
    assert run_of(tmp_path, "1.0.0") == tmp_path / "run"
    (tmp_path / "run/manifest.json").write_text(json.dumps({"version": "0.1.0"}))    # a demo-out/ from before
    (tmp_path / "run/best.pt").write_bytes(b"")
    assert run_of(tmp_path, "1.0.0") == tmp_path / "run"     # the demo's own bundle 1.0.0 is that run's model
    with pytest.raises(DataError, match=r"the device runs version 2\.3\.0, which no training run under .* made "
                                        r"\(a --bundle from elsewhere\?\)"):
        run_of(tmp_path, "2.3.0")


@pytest.mark.parametrize(("argv", "says"), [
    (["--learn", "--bundle", "x.gsb", "--pubkey", "k.pub"], "--learn fine-tunes the demo's own model on its own "
                                                            "filmed case: leave out --bundle"),
    (["--learn", "--source", "v4l2:///dev/video0"], "leave out --source"),
    (["--learn", "--learn-epochs", "5"], "--learn-epochs must be 1 to 3, got 5"),
])
def test_learn_options_that_cannot_work_are_refused_before_anything_runs(tmp_path, capsys, argv, says):
    assert demo_main([*argv, "--workdir", str(tmp_path / "out")]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_copy_collected_checks_the_folder_like_pull_crops(tmp_path):
    src = tmp_path / "collect"
    store = CollectStore(src, CollectConfig())
    store.write({"device": "d", "camera": "cam0", "slot": "r0c0", "ts": 1.0, "class": "ring",
                 "file": "ring/d_cam0_r0c0_20260101T000000Z.jpg"}, b"\xff\xd8\xff\xe0" + bytes(60))
    got = copy_collected(src, tmp_path / "crops")
    assert got.new == {"ring": 1} and got.lines == 1
    assert (tmp_path / "crops/ring/d_cam0_r0c0_20260101T000000Z.jpg").is_file()
    (src / "ring" / "stray.txt").write_text("not a crop")
    with pytest.raises(BundleError, match=r"refused '\./ring/stray\.txt' in the collect folder"):
        copy_collected(src, tmp_path / "other")
    assert not (tmp_path / "other").exists()
    with pytest.raises(BundleError, match=r"no collect folder .*/nothing \(is collection on\?"):
        copy_collected(tmp_path / "nothing", tmp_path / "other")
