"""The fault-campaign benches (``bench/soak.py``, ``bench/consumers.py``, ``bench/camera_faults.py``)
in tiny configurations: each runs the real edge process and a real subscriber for a few seconds and
must write a report of the right shape with figures that say the edge behaved."""
import json

import pytest

from bench import camera_faults, consumers, soak


@pytest.mark.slow
def test_soak_writes_samples_plot_and_verdict(tmp_path):
    out = tmp_path / "soak.json"
    rc = soak.main(["--minutes", "0.03", "--every", "0.4", "--warmup", "0.4", "--video-seconds", "1",
                    "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0 and report["pass"] is True
    assert len(report["samples"]) >= 3 and report["labels"] > 10 and report["gaps"] == 0
    assert {"rss_mib", "open_files", "threads", "gaps", "fps", "cpu"} <= set(report["samples"][0])
    assert report["rss_mib"]["growth_after_warmup"] < 0.05 and report["edge_exit_code"] == 0
    assert (tmp_path / "soak.png").read_bytes()[:4] == b"\x89PNG"


def test_soak_refuses_a_bad_duration(capsys):
    assert soak.main(["--minutes", "0"]) == 2
    assert "--minutes" in capsys.readouterr().err


@pytest.mark.slow
def test_consumers_vanishing_and_dead_subscribers(tmp_path):
    r = consumers.run_bench(minutes=0.02, vanish=3, every=1.0, hwm=1000, work=tmp_path, video_seconds=1.0,
                            settle_s=0.5)
    v, d = r["vanish"], r["dead"]
    assert v["subscribers"] == 3 and v["open_files_peak"] >= v["open_files_after"] + 3
    assert v["open_files_after"] <= v["open_files_before"]  # the vanished subscribers' sockets were closed
    assert d["dead_consumer"]["received"] > 5 and d["dead_consumer"]["gaps"] == 0  # well under the HWM
    assert r["healthy_subscriber"]["gaps"] == 0 and r["labels_message_bytes"] > 500
    assert r["bound_mib"] == r["hwm"] * (r["labels_message_bytes"] + 64) / 2**20 and r["edge_exit_code"] == 0
    nodrop = r["drops_counted"]["xpub_nodrop_demo"]  # refusing sends would stall the reading subscriber too
    assert nodrop["refused_eagain"] > 0 and nodrop["reading_subscriber_received"] == nodrop["sent"] < nodrop["sends"]


@pytest.mark.slow
def test_camera_faults_file_removed_goes_down_and_recovers(tmp_path):
    r = camera_faults.run_matrix(["file-removed"], down=2.0, work=tmp_path, video_seconds=1.0)
    row = r["faults"]["file-removed"]
    states = [m["state"] for m in row["status"]]
    assert "down" in states and states[-1] == "up", row["status"]
    assert row["edge_alive_throughout"] and row["edge_exit_code"] == 0 and row["gaps"] == 0
    assert row["recovery_s"] is not None and row["recovery_s"] < 10 and row["cpu_while_down"] < 0.5
