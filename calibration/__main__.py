"""``python -m calibration`` is ``gemsight-calibrate``."""
import sys

from calibration.cli import main

sys.exit(main())
