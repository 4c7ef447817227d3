"""``python -m deploy``: the same as ``gemsight-deploy``."""
import sys

from deploy.cli import main

sys.exit(main())
