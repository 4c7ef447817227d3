"""gemsight edge: the on-device camera loop and the contracts every package shares.

`edge` is the kernel: it imports nothing else of gemsight and never torch. The model manifest
(:mod:`edge.manifest`) and the preprocessing function (:mod:`edge.preprocess`) live here so that
the trainer, calibration and the device all run the same code.
"""

__version__ = "0.1.0"
