"""The parts of ``bench/loop.py`` that run in a second."""
import pytest

from bench.loop import message_cost, run_job
from bench.loop_reference import child as reference_child, open_runtime


def test_message_cost_reports_positive_figures():
    cost = message_cost(n=20)
    assert cost["bytes"] > 1000 and cost["build_us"] > 0 and cost["encode_us"] > 0
    assert cost["encode_and_send_us"] > 0 and cost["sent"] == 20


@pytest.mark.slow
def test_the_reference_loop_runs_alone_in_a_child_without_gemsight(untrained_onnx, tmp_path):
    """The reference is a user's own loop: its child process imports nothing of gemsight, measures
    frames/s and CPU as fast as it goes, and gives capture→publish latencies at 10 fps."""
    from trainer.synth import make_video

    video = make_video(tmp_path / "case.mp4", slots=(2, 2), seconds=1.0, fps=10.0, size=(320, 240), seed=1)
    job = {"runtime": "onnxruntime", "options": {"threads": 1}, "model_file": str(untrained_onnx),
           "manifest": str(untrained_onnx.parent / "manifest.json"), "video": str(video["video"]),
           "slots_file": str(video["slots"]), "warm_s": 0.3, "loop_s": 1.0, "paced_s": 0.6}
    out = run_job(job, timeout=120, target=reference_child)
    assert out["gemsight_imported"] == []
    # Measured, not judged (a loaded machine may give it a fraction of a core): it ran and counted its frames.
    assert out["fast"]["frames"] > 0 and out["fast"]["frames_per_s"] > 0
    assert out["fast"]["cpu_ms_per_frame"] > 0
    latencies = out["paced"]["capture_to_publish_ms"]
    assert 3 <= len(latencies) <= 7 and all(0 < x < 1000 for x in latencies)   # 10 fps for 0.6 s


def test_the_reference_loop_refuses_a_runtime_it_does_not_know(untrained_onnx):
    with pytest.raises(ValueError, match="no runtime 'tensorrt'"):
        open_runtime("tensorrt", untrained_onnx, {})
