"""gemsight edge: the on-device camera loop and the contracts every package shares.

`edge` imports nothing else of gemsight and never torch. Its top level is the kernel, which every
package imports: the model manifest (:mod:`edge.manifest`), the preprocessing function
(:mod:`edge.preprocess`) that the trainer, calibration and the device all run, the shared values
(:mod:`edge.contracts`), errors, atomic writes, validation with the one strict model base, the
platform facts and :class:`edge.backoff.Backoff`. Above it the rooms, whose imports flow one way
(``tests/edge/test_layout.py`` checks it)::

    cli  →  loop  →  {capture, runtimes, link}  →  config  →  kernel

Importing ``edge`` or a room's package loads no optional library (OpenCV, ONNX Runtime, OpenVINO,
TensorRT); a module loads the one it needs.
"""

__version__ = "0.1.0"
