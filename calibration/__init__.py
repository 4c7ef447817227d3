"""gemsight calibration."""
