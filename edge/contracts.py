"""Values that more than one package must agree on, defined once (every other package imports them)."""
from __future__ import annotations

#: The eight classes of a display case, in the output order of every model gemsight trains by default.
DEFAULT_CLASSES: tuple[str, ...] = ("ring", "necklace", "earring", "bracelet", "pendant", "brooch", "watch", "empty")
