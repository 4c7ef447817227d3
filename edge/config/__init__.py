"""The device config: strict pydantic models per concern, YAML files read with limits, credentials.

Imports only the kernel (:mod:`edge.errors`, :mod:`edge.contracts`, :mod:`edge.validation`, ...).
"""
