"""``gemsight-edge`` (:mod:`edge.cli.main`) and its ``check`` command: the top of the edge, imports every room."""
