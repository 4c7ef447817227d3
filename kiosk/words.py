"""What the page says to a store manager: slot places in words, one way of writing times, text checks.

Slots named ``rNcM`` (row N, column M, from the top left) read as "top row, second from left"; other
names stay as they are. Every time on the page and in the API's ``*_text`` fields is written by
:func:`when`, in the store's time zone (``hours.timezone``, else the kiosk's own).
"""
from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

_RC = re.compile(r"^r(\d+)c(\d+)$")
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: The slot colours of the page and what each means (the legend).
LEGEND = (("ok", "the right piece"), ("missing", "piece missing"), ("wrong", "another piece"),
          ("extra", "a piece where none is planned"), ("state", "empty on purpose (sold, repair, ...)"),
          ("nodata", "no picture yet"), ("stale", "camera offline: last known"))


def _ordinal(i: int) -> str:
    return _ORDINALS[i] if i < len(_ORDINALS) else f"{i + 1}th"


def slot_words(name: str, rows: int | None = None, columns: int | None = None) -> str:
    """A slot's place in words: ``r0c1`` -> "top row, second from left" (``rows``: the case's row count)."""
    m = _RC.match(name or "")
    if not m:
        return name
    r, c = int(m.group(1)), int(m.group(2))
    if r == 0:
        row = "top row"
    elif rows is not None and r == rows - 1:
        row = "bottom row"
    elif rows == 3:
        row = "middle row"
    else:
        row = f"{_ordinal(r)} row from the top"
    if columns is not None and c == columns - 1 and c > 0:
        col = "rightmost"
    elif c == 0:
        col = "leftmost"
    else:
        col = f"{_ordinal(c)} from left"
    return f"{row}, {col}"


def case_shape(names: list[str]) -> tuple[int | None, int | None]:
    """``(rows, columns)`` of a case whose slots are all ``rNcM``, else ``(None, None)``."""
    pos = [_RC.match(n) for n in names]
    if not names or not all(pos):
        return None, None
    return max(int(m.group(1)) for m in pos) + 1, max(int(m.group(2)) for m in pos) + 1


def when(ts: float | None, timezone: str | None = None) -> str:
    """A time as the page writes it everywhere (``YYYY-MM-DD HH:MM:SS``, store's time zone); "" for none."""
    if not ts:
        return ""
    tz = ZoneInfo(timezone) if timezone else None
    return dt.datetime.fromtimestamp(ts, tz).strftime(TIME_FORMAT) if tz else \
        dt.datetime.fromtimestamp(ts).astimezone().strftime(TIME_FORMAT)


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored and shown (a NUL, a lone surrogate, a control character), or ``None``."""
    for ch in value:
        o = ord(ch)
        if o == 0:
            return "contains a NUL character"
        if 0xD800 <= o <= 0xDFFF:
            return "contains a lone surrogate (not valid Unicode text)"
        if (o < 32 and ch not in "\t\n\r") or o == 127:
            return f"contains the control character U+{o:04X}"
    return None


def model_words(model: dict | None) -> str:
    """"model gemsight 1.0.1 (int8, openvino)": the model a case's labels say it runs; "" before its first label."""
    if not model or not model.get("version"):
        return ""
    how = ", ".join(str(model[k]) for k in ("precision", "backend") if model.get(k))
    return f"model {model.get('name') or '?'} {model['version']}" + (f" ({how})" if how else "")
