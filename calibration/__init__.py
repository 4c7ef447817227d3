"""gemsight calibration: one set of INT8 ranges → QDQ ONNX, TensorRT cache and engines, OpenVINO IR, FPGA QDQ.

Entry points: ``gemsight-calibrate`` (:mod:`calibration.cli`) on the trainer machine, and
:func:`calibration.tensorrt.ensure_engine` on the device.
"""
