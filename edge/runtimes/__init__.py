"""Inference backends behind one interface (:mod:`edge.runtimes.base`): ``create_runtime("auto" | name, model, ...)``,
the model folder's artifacts and checksums, and the TensorRT engine cache.

Imports the config and the kernel; each backend's library only when that backend is created.
"""
