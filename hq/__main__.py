"""``python -m hq``: the same as ``gemsight-hq``."""
import sys

from hq.cli import main

sys.exit(main())
