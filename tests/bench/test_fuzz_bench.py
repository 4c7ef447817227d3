"""``bench/fuzz.py`` in a tiny run: the same targets as ``tests/fuzz``, a table and a JSON report."""
import json

from bench import fuzz


def test_fuzz_bench_writes_counts_per_target(tmp_path, capsys):
    out = tmp_path / "fuzz.json"
    assert fuzz.main(["--examples", "8", "--targets", "manifest,messages", "--seed", "3", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [t["target"] for t in report["targets"]] == ["manifest", "messages"]
    assert all(t["cases"] >= 4 and t["failures"] == 0 and sum(t["outcomes"].values()) == t["cases"]
               for t in report["targets"])
    assert report["total_cases"] == sum(t["cases"] for t in report["targets"]) and report["seed"] == 3
    table = capsys.readouterr().out
    assert "manifest" in table and "messages" in table and "total" in table


def test_fuzz_bench_refuses_an_unknown_target(capsys):
    assert fuzz.main(["--targets", "nope"]) == 2
    assert "unknown targets ['nope']" in capsys.readouterr().err
