"""Reconciliation counts: per case and class, expected against seen, as a report and as CSV.

For each case (a camera of a device) and class ``c``:

* ``expected``: slots whose planogram says ``c``; ``seen``: slots whose latest label is ``c``;
* ``wrong_slot``: pieces of ``c`` seen in another slot of the case while a slot expecting ``c`` lacks
  one (moved, not gone): ``min(seen elsewhere, expected slots not showing c)``;
* ``missing``: expected slots not showing ``c``, less the ``wrong_slot`` ones;
* ``extra``: pieces of ``c`` in slots that expect something else, less the ``wrong_slot`` ones.

Per slot (:func:`slot_rows`), the same count reads as a list a manager checks against the case: each
slot's place in words, what it should hold and what is seen, its status, and its piece's SKU and
price, so the totals say in money what is present and what is missing.

So ``expected - missing - wrong_slot`` pieces are where they belong and ``seen`` is those plus
``wrong_slot`` plus ``extra``. ``unknown`` and ``empty`` are never a class; a slot without labels yet
counts as not showing its class (the report's ``no_data`` says how many).
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

from kiosk.config import EMPTY_LABELS, STATES

CSV_FIELDS = ("case", "class", "expected", "seen", "missing", "extra", "wrong_slot")


def reconcile(planogram: dict[tuple[str, str, str], str], labels: dict[tuple[str, str, str], str | None],
              titles: dict[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """The count report of a store.

    Args:
        planogram: Slot key -> expected class or state.
        labels: Slot key -> latest label (``None``: no data yet).
        titles: Case -> title for the report (default ``device/camera``).

    Returns:
        ``{"rows": [...], "totals": {...}, "no_data": n, "cases": n}``; rows sorted by case then class.
    """
    titles = titles or {}
    cases = sorted({k[:2] for k in planogram} | {k[:2] for k in labels})
    rows: list[dict[str, Any]] = []
    no_data = 0
    for case in cases:
        keys = sorted({k for k in planogram if k[:2] == case} | {k for k in labels if k[:2] == case})
        expected, seen, unmet, misplaced = Counter(), Counter(), Counter(), Counter()
        for k in keys:
            want = planogram.get(k)
            got = labels.get(k)
            no_data += got is None
            want_class = want if want is not None and want not in STATES else None
            got_class = got if got is not None and got not in EMPTY_LABELS else None
            if want_class:
                expected[want_class] += 1
                if got_class != want_class:
                    unmet[want_class] += 1
            if got_class:
                seen[got_class] += 1
                if got_class != want_class:
                    misplaced[got_class] += 1
        for cls in sorted(set(expected) | set(seen)):
            wrong = min(misplaced[cls], unmet[cls])
            rows.append({"device": case[0], "camera": case[1], "case": titles.get(case, f"{case[0]}/{case[1]}"),
                         "class": cls, "expected": expected[cls], "seen": seen[cls], "missing": unmet[cls] - wrong,
                         "extra": misplaced[cls] - wrong, "wrong_slot": wrong})
    totals = {f: sum(r[f] for r in rows) for f in CSV_FIELDS[2:]}
    return {"rows": rows, "totals": totals, "no_data": no_data, "cases": len(cases)}


def _cell(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula (a leading = + - @ is quoted with ')."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def to_csv(report: dict[str, Any], meta: dict[str, Any] | None = None) -> str:
    """The report as CSV (one row per case and class, then a TOTAL row); ``meta`` goes in ``#`` lines first."""
    out = io.StringIO()
    for k, v in (meta or {}).items():
        out.write(f"# {k}: {v}\n")
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in report["rows"]:
        writer.writerow({**row, "case": _cell(row["case"]), "class": _cell(row["class"])})
    writer.writerow({"case": "TOTAL", "class": "", **report["totals"]})
    return out.getvalue()


def slot_rows(planogram: dict[tuple[str, str, str], str], labels: dict[tuple[str, str, str], str | None],
              titles: dict[tuple[str, str], str], pieces: dict[tuple[str, str, str], dict[str, Any]],
              where: dict[tuple[str, str, str], str]) -> dict[str, Any]:
    """The per-slot count: ``{"slots": [...], "value": {"expected", "present", "missing"}}``.

    A slot is ``ok`` (its class is seen), ``missing`` (nothing seen), ``wrong`` (another class),
    ``extra`` (a piece where the planogram wants none or a state), ``state`` (empty on purpose) or
    ``no data``. Its price counts as present only when ``ok``.
    """
    rows, value = [], {"expected": 0.0, "present": 0.0, "missing": 0.0}
    for key in sorted(set(planogram) | set(labels)):
        want, got = planogram.get(key), labels.get(key)
        want_class = want if want is not None and want not in STATES else None
        got_class = got if got is not None and got not in EMPTY_LABELS else None
        if got is None:
            status = "no data"
        elif want_class is None:
            status = "extra" if got_class else "state"
        elif got_class == want_class:
            status = "ok"
        else:
            status = "wrong" if got_class else "missing"
        piece = pieces.get(key) or {}
        price = piece.get("price") if want_class else None
        if price is not None:
            value["expected"] += price
            value["present" if status == "ok" else "missing"] += price
        rows.append({"device": key[0], "camera": key[1], "slot": key[2], "case": titles.get(key[:2], "/".join(key[:2])),
                     "where": where.get(key, key[2]), "expected": want, "seen": got, "status": status,
                     "sku": piece.get("sku"), "price": price})
    return {"slots": rows, "value": {k: round(v, 2) for k, v in value.items()}}
