"""How long to wait before trying again something that failed: one rule for the edge and the kiosk.

A camera reopened by its grabber, a snapshot asked of a device, a webhook delivered again: each waits
``initial_s`` after its first failure, ``factor`` times longer after each next one, never more than
``max_s``, and starts over from the short wait once it has worked.
"""
from __future__ import annotations

import math


class Backoff:
    """Doubling (by default) waits between tries, capped; :meth:`reset` after a success.

    Args:
        initial_s: The wait after the first failure (seconds, > 0).
        max_s: The longest wait (default: no cap).
        factor: How much longer each next wait is (>= 1).

    Raises:
        ValueError: a wait that is not positive, a cap below the first wait, or a factor below 1.
    """

    def __init__(self, initial_s: float, max_s: float = math.inf, factor: float = 2.0) -> None:
        if not initial_s > 0:
            raise ValueError(f"backoff: the first wait must be positive, got {initial_s}")
        if not max_s >= initial_s:
            raise ValueError(f"backoff: the longest wait ({max_s}) must be at least the first ({initial_s})")
        if not factor >= 1:
            raise ValueError(f"backoff: the factor must be at least 1, got {factor}")
        self.initial_s, self.max_s, self.factor = float(initial_s), float(max_s), float(factor)
        self.failures = 0
        self._next = self.initial_s

    @property
    def delay(self) -> float:
        """The wait the next failure gets."""
        return self._next

    def failed(self) -> float:
        """Count a failure: the seconds to wait before the next try (each longer, up to ``max_s``)."""
        wait = self._next
        self.failures += 1
        self._next = min(self._next * self.factor, self.max_s)
        return wait

    def reset(self) -> None:
        """It worked: the next failure waits ``initial_s`` again."""
        self.failures = 0
        self._next = self.initial_s

    def __repr__(self) -> str:
        return f"Backoff(initial_s={self.initial_s}, max_s={self.max_s}, factor={self.factor}, next={self._next})"
