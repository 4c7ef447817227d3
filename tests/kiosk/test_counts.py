"""Reconciliation counts: expected, seen, missing, extra, wrong slot; CSV."""
from __future__ import annotations

import csv
import io

from kiosk.counts import reconcile, to_csv

PLAN = {("d", "c", "a"): "ring", ("d", "c", "b"): "ring", ("d", "c", "x"): "watch", ("d", "c", "s"): "sold",
        ("d", "c", "e"): "empty by design"}


def test_reconcile_splits_missing_moved_and_extra():
    seen = {("d", "c", "a"): "ring", ("d", "c", "b"): "empty", ("d", "c", "x"): "ring", ("d", "c", "s"): "brooch",
            ("d", "c", "e"): None}
    rep = reconcile(PLAN, seen)
    rows = {r["class"]: r for r in rep["rows"]}
    # ring: 2 expected, 2 seen (a, x); b lacks one and x holds one that belongs elsewhere: moved, not missing.
    assert rows["ring"] == {**rows["ring"], "expected": 2, "seen": 2, "missing": 0, "wrong_slot": 1, "extra": 0}
    assert rows["watch"] == {**rows["watch"], "expected": 1, "seen": 0, "missing": 1, "wrong_slot": 0, "extra": 0}
    assert rows["brooch"] == {**rows["brooch"], "expected": 0, "seen": 1, "missing": 0, "extra": 1}
    assert rep["no_data"] == 1 and rep["totals"]["missing"] == 1


def test_csv_has_every_row_and_a_total():
    rep = reconcile(PLAN, {k: "empty" for k in PLAN})
    text = to_csv(rep, {"store": "Test", "user": "mia"})
    assert text.startswith("# store: Test\n# user: mia\n")
    rows = list(csv.DictReader(io.StringIO("".join(line + "\n" for line in text.splitlines() if not line.startswith("#")))))
    assert [r["class"] for r in rows] == ["ring", "watch", ""]
    assert rows[-1]["case"] == "TOTAL" and rows[-1]["missing"] == "3"


def test_csv_cells_never_run_as_formulas():
    rep = reconcile({("d", "c", "a"): "ring"}, {("d", "c", "a"): "ring"}, titles={("d", "c"): "=HYPERLINK(1)"})
    assert "\n'=HYPERLINK(1),ring,1,1,0,0,0\n" in to_csv(rep)
