"""gemsight trainer."""
