"""How a case's slots sit on the page: rows and columns from ``rNcM`` names, else a plain grid."""
from __future__ import annotations

import re
from typing import Any

_RC = re.compile(r"^r(\d+)c(\d+)$")
DEFAULT_COLUMNS = 4


def case_layout(names: list[str], columns: int | None = None) -> dict[str, Any]:
    """``{"columns": n, "order": [slot names in reading order]}`` for a case's grid.

    Args:
        names: The case's slot names.
        columns: The config's ``columns`` (wins over names).
    """
    parsed = {n: _RC.match(n) for n in names}
    if names and all(parsed.values()):
        pos = {n: (int(m.group(1)), int(m.group(2))) for n, m in parsed.items()}
        order = sorted(names, key=lambda n: pos[n])
        return {"columns": columns or max(c for _, c in pos.values()) + 1, "order": order}
    return {"columns": columns or DEFAULT_COLUMNS, "order": sorted(names)}
