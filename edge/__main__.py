"""``python -m edge`` is ``gemsight-edge``."""
import sys

from edge.cli import main

sys.exit(main())
