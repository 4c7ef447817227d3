"""The model folder is verified at start, in ``run`` and in ``check``: its SHA256SUMS (as a bundle ships
it) and its manifest.json (issue 32 B4)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deploy.bundle import format_sums
from edge.cli.main import main
from edge.config.device import parse_config
from edge.errors import ManifestError
from edge.loop.run import run
from edge.manifest import file_digest
from edge.runtimes.model_files import verify_checksums
from tests.helpers import device_config, loopback_publish, write_video, write_yaml


def _folder(untrained_onnx: Path, root: Path, sums: bool = True) -> Path:
    """A model folder laid out as an installed bundle: bundle.json, manifest.json, model.onnx, SHA256SUMS."""
    folder = root / "model"
    folder.mkdir()
    shutil.copy(untrained_onnx, folder / "model.onnx")
    shutil.copy(untrained_onnx.parent / "manifest.json", folder / "manifest.json")
    (folder / "bundle.json").write_text('{"version": "1.0.0"}\n')
    if sums:
        (folder / "SHA256SUMS").write_bytes(format_sums({p.name: file_digest(p) for p in folder.iterdir()}))
    return folder


def _config(folder: Path, video: Path, checksums: str = "when_present") -> dict:
    return device_config({"path": str(folder), "checksums": checksums}, [{"id": "cam0", "source": f"file://{video}"}],
                         threads=1, publish=loopback_publish(snapshot_endpoint=None))


def _check(tmp_path: Path, data: dict, capsys) -> tuple[int, str, str]:
    path = write_yaml(tmp_path / "edge.yaml", data)
    rc = main(["check", "--config", str(path), "--timeout", "5"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip()


def _flip(path: Path, offset: int = 4096, size: int = 64 << 10) -> None:
    data = bytearray(path.read_bytes())
    end = min(len(data), offset + size)
    data[offset:end] = bytes(b ^ 0xFF for b in data[offset:end])
    path.write_bytes(bytes(data))


@pytest.fixture
def video(tmp_path):
    return write_video(tmp_path / "v.avi", frames=5)


def test_b4_a_verified_folder_passes_check_and_says_so(untrained_onnx, tmp_path, video, capsys):
    folder = _folder(untrained_onnx, tmp_path)
    rc, out, err = _check(tmp_path, _config(folder, video, "required"), capsys)
    assert rc == 0, err
    assert "model files: 3 verified against SHA256SUMS" in out


@pytest.mark.parametrize("name", ["model.onnx", "manifest.json"])
def test_b4_check_and_run_refuse_a_tampered_file(untrained_onnx, tmp_path, video, capsys, name):
    folder = _folder(untrained_onnx, tmp_path)
    _flip(folder / name, offset=0 if name == "manifest.json" else 4096)
    rc, _, err = _check(tmp_path, _config(folder, video), capsys)
    assert rc != 0 and len(err.splitlines()) == 1
    assert f"{folder / name}: does not match its checksum in {folder / 'SHA256SUMS'}" in err
    with pytest.raises(ManifestError, match=f"{name}: does not match its checksum"):
        run(parse_config(_config(folder, video)), max_frames=1)


def test_b4_a_file_added_after_flashing_is_refused(untrained_onnx, tmp_path):
    folder = _folder(untrained_onnx, tmp_path)
    shutil.copy(folder / "model.onnx", folder / "model.int8.onnx")  # would be picked before model.onnx
    with pytest.raises(ManifestError, match=r"model\.int8\.onnx: not listed in .*SHA256SUMS"):
        verify_checksums(folder)
    (folder / "model.int8.onnx").unlink()
    (folder / "model.onnx").unlink()
    with pytest.raises(ManifestError, match=r"model\.onnx: listed in .*SHA256SUMS but missing"):
        verify_checksums(folder)


def test_b4_a_folder_without_sums_warns_or_is_refused(untrained_onnx, tmp_path, video, capsys, caplog):
    folder = _folder(untrained_onnx, tmp_path, sums=False)
    rc, out, err = _check(tmp_path, _config(folder, video), capsys)
    assert rc == 0 and "model files: NOT verified (no SHA256SUMS in" in out
    assert any(r.levelname == "WARNING" and "NOT verified" in r.getMessage() for r in caplog.records)
    rc, _, err = _check(tmp_path, _config(folder, video, "required"), capsys)
    assert rc != 0 and err.endswith("development folder)") and f"{folder / 'SHA256SUMS'}: missing" in err


MANIFESTS = {
    "garbage": (lambda m: "{not json", "manifest.json: not valid JSON"),
    "nan": (lambda m: json.dumps(m).replace('"std": [', '"std": [NaN, '), "not a JSON number"),
    "classes": (lambda m: json.dumps({**m, "classes": m["classes"][:-1]}), "'classes' differs from the manifest"),
    "output": (lambda m: json.dumps({**m, "output": {**m["output"], "name": "scores"}}),
               "'output' differs from the manifest"),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_b4_manifest_json_is_read_and_must_agree_with_the_model(untrained_onnx, tmp_path, video, capsys, case):
    folder = _folder(untrained_onnx, tmp_path, sums=False)  # no checksums: the manifest is still checked
    edit, problem = MANIFESTS[case]
    path = folder / "manifest.json"
    path.write_text(edit(json.loads(path.read_text())))
    rc, _, err = _check(tmp_path, _config(folder, video), capsys)
    assert rc != 0 and problem in err and str(path) in err and "Traceback" not in err


def test_b4_artifact_fields_may_differ(untrained_onnx, tmp_path, video, capsys):
    folder = _folder(untrained_onnx, tmp_path, sums=False)
    path = folder / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "metrics": {"fp32_accuracy": 0.9}}))
    rc, _, err = _check(tmp_path, _config(folder, video), capsys)
    assert rc == 0, err
