"""Inference backends behind one interface: ``create_runtime("auto" | name, model, ...)``."""
from edge.runtimes.base import (AUTO_ORDER, Runtime, available_runtimes, create_runtime, register_runtime,
                                registered_runtimes, resolve_runtime_name)

__all__ = ["AUTO_ORDER", "Runtime", "available_runtimes", "create_runtime", "register_runtime",
           "registered_runtimes", "resolve_runtime_name"]
