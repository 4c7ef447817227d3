"""What every command's ``main`` shares: logging set-up and turning errors into one-line exits."""
from __future__ import annotations

import logging
import sys
from typing import Callable

from edge.errors import GemsightError

logger = logging.getLogger(__name__)


def setup_logging(verbose: int = 0) -> None:
    """Log to stderr (journald picks it up); ``-v`` for debug."""
    level = logging.DEBUG if verbose > 0 else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_main(func: Callable[[], int | None], prog: str) -> int:
    """Run a command body; a :class:`GemsightError` becomes ``prog: error: message`` and its exit code."""
    try:
        return int(func() or 0)
    except GemsightError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
