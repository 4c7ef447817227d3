"""``python -m kiosk`` is ``gemsight-kiosk``."""
import sys

from kiosk.cli import main

sys.exit(main())
