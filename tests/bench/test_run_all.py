"""``bench/run_all.py`` writes its tables into ``docs/benchmarks.md`` between markers, keeping the prose
around them; run here on a small page and fake result files (the benchmarks themselves are not run)."""
import json
import shutil

import pytest

from bench import run_all
from bench.loop import README_END as LOOP_END, README_START as LOOP_START

PAGE = f"""# Benchmarks

Prose before, kept.

{run_all.START}
| stale | table | row |
{run_all.END}

Prose between, kept.

{LOOP_START}
stale loop tables
{LOOP_END}

Prose after, kept.
"""


@pytest.fixture()
def results(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "synth_speed.json").write_text(json.dumps({"images_per_s": 123.4}))
    return out


def test_the_table_goes_between_the_markers_and_the_prose_stays(tmp_path, results):
    page = tmp_path / "benchmarks.md"
    page.write_text(PAGE)
    assert run_all.rewrite_doc(page, results) == ["the figures"]
    text = page.read_text()
    for kept in ("Prose before, kept.", "Prose between, kept.", "Prose after, kept.", "stale loop tables"):
        assert kept in text
    assert "| stale | table | row |" not in text
    between = text.split(run_all.START)[1].split(run_all.END)[0]
    assert "| synthetic generator, 224 px images/s on one core (render + JPEG) | 123 | " \
           "`python bench/synth_speed.py` |" in between
    run_all.rewrite_doc(page, results)
    assert page.read_text() == text, "a second rewrite from the same results changes nothing"


def test_the_loop_tables_come_from_loop_json(tmp_path, results):
    shutil.copy(run_all.RESULTS / "loop.json", results / "loop.json")
    page = tmp_path / "benchmarks.md"
    page.write_text(PAGE)
    assert run_all.rewrite_doc(page, results) == ["the figures", "the loop's tables"]
    text = page.read_text()
    assert "stale loop tables" not in text and "Prose after, kept." in text
    assert "| runtime | reference loop | gemsight |" in text.split(LOOP_START)[1].split(LOOP_END)[0]


def test_an_unreadable_result_is_a_row_that_says_so(tmp_path, results):
    (results / "train_speed.json").write_text("{not json")
    page = tmp_path / "benchmarks.md"
    page.write_text(PAGE)
    run_all.rewrite_doc(page, results)
    assert "| train_speed: unreadable result (JSONDecodeError" in page.read_text()


@pytest.mark.parametrize("broken, says", [
    (PAGE.replace(run_all.END, ""), "needs one <!-- bench:start --> and one <!-- bench:end --> (found 1 and 0)"),
    (PAGE.replace(run_all.START, "").replace(run_all.END, ""), "(found 0 and 0)"),
    (PAGE + run_all.START, "(found 2 and 1)"),
    (PAGE.replace(run_all.START, "@@").replace(run_all.END, run_all.START).replace("@@", run_all.END),
     "<!-- bench:end --> comes before <!-- bench:start -->"),
])
def test_a_page_with_broken_markers_is_refused_and_left_untouched(tmp_path, results, broken, says):
    page = tmp_path / "benchmarks.md"
    page.write_text(broken)
    with pytest.raises(run_all.MarkersError) as exc:
        run_all.rewrite_doc(page, results)
    assert str(exc.value).startswith(f"{page}: ") and says in str(exc.value) and "\n" not in str(exc.value)
    assert page.read_text() == broken


def test_broken_loop_markers_lose_nothing(tmp_path, results):
    shutil.copy(run_all.RESULTS / "loop.json", results / "loop.json")
    page = tmp_path / "benchmarks.md"
    page.write_text(PAGE.replace(LOOP_END, ""))
    with pytest.raises(run_all.MarkersError, match="loop:end"):
        run_all.rewrite_doc(page, results)
    assert page.read_text() == PAGE.replace(LOOP_END, ""), "the figures' table is not written either"


def test_main_says_what_is_wrong_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run_all, "DOC", tmp_path / "missing.md")
    assert run_all.main(["--table-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "missing.md" in err and "\n" not in err


def test_the_committed_page_has_both_pairs_of_markers():
    text = run_all.DOC.read_text()
    for marker in (run_all.START, run_all.END, LOOP_START, LOOP_END):
        assert text.count(marker) == 1, marker
