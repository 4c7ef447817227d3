"""The test model's cache key: what makes its bytes, nothing else."""
from __future__ import annotations

import json

from tests import synthetic_model


def test_docstrings_and_comments_do_not_change_a_module_digest_but_code_does(tmp_path):
    a = tmp_path / "a.py"
    a.write_text('"""Module doc."""\nimport os\n\n\ndef f(x):\n    """Doc."""\n    return x + 1  # why\n')
    before = synthetic_model.module_digest(a)
    a.write_text('"""Another doc."""\nimport os\n\n# a comment\ndef f(x):\n    """Other."""\n    return x + 1\n')
    assert synthetic_model.module_digest(a) == before
    a.write_text('"""Module doc."""\nimport os\n\n\ndef f(x):\n    """Doc."""\n    return x + 2\n')
    assert synthetic_model.module_digest(a) != before


def test_a_cached_model_stays_valid_while_its_sources_do(tmp_path, monkeypatch):
    root, cache = tmp_path / "repo", tmp_path / "repo" / ".cache" / "test-model"
    (root / "pkg").mkdir(parents=True)
    src = root / "pkg" / "m.py"
    src.write_text("X = 1\n")
    entry = cache / "abc"
    entry.mkdir(parents=True)
    monkeypatch.setattr(synthetic_model, "ROOT", root)
    monkeypatch.setattr(synthetic_model, "CACHE", cache)
    (entry / synthetic_model.SOURCES).write_text(json.dumps({"pkg/m.py": synthetic_model.module_digest(src)}))
    assert synthetic_model.find_cached() == entry
    src.write_text('"""Now documented."""\nX = 1\n')
    assert synthetic_model.find_cached() == entry
    src.write_text("X = 2\n")
    assert synthetic_model.find_cached() is None
    src.write_text("X = 1\n")
    (entry / synthetic_model.SOURCES).write_text("{not json")
    assert synthetic_model.find_cached() is None            # an unreadable record is not a hit


def test_the_record_lists_the_repository_modules_imported_and_nothing_made_up():
    sources = synthetic_model._imported_sources()
    assert "tests/synthetic_model.py" in sources and "edge/contracts.py" in sources
    assert all((synthetic_model.ROOT / rel).is_file() for rel in sources)
    assert not any(rel.startswith(".venv/") for rel in sources)


def test_stop_prebuild_stops_the_build_make_started_and_nothing_else(tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys

    monkeypatch.setattr(synthetic_model, "CACHE", tmp_path)

    def as_make_starts_it() -> None:
        # make's shell starts the build with SIGTERM at its default; a child of this pytest inherits what earlier
        # tests or plugins left on its main thread (an ignored or blocked SIGTERM would hang the wait below).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    build = subprocess.Popen([*sleeper, "tests.synthetic_model"], preexec_fn=as_make_starts_it)
    other = subprocess.Popen(sleeper, preexec_fn=as_make_starts_it)
    try:
        (tmp_path / "prebuild.pid").write_text(f"{other.pid}\n")
        synthetic_model.stop_prebuild()
        assert other.poll() is None and not (tmp_path / "prebuild.pid").exists()   # a reused pid is left alone
        (tmp_path / "prebuild.pid").write_text(f"{build.pid}\n")
        synthetic_model.stop_prebuild()
        assert build.wait(timeout=10) == -15
        synthetic_model.stop_prebuild()   # no file: nothing to do
    finally:
        for p in (build, other):
            p.kill()
            p.wait()
