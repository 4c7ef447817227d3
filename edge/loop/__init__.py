"""The camera loop: run, pipeline, slots, postprocessing, slot states, metrics and what it writes.

Imports capture, runtimes, link, config and the kernel (the direction: ``cli → loop → {capture, runtimes,
link} → config → kernel``).
"""
