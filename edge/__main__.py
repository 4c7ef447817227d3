"""``python -m edge`` is ``gemsight-edge``."""
import sys

from edge.cli.main import main

sys.exit(main())
