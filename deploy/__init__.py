"""gemsight deploy."""
