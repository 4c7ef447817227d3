"""Cameras: source URIs (:mod:`edge.capture.uri`) and the grabber threads that read them (:mod:`edge.capture.sources`).

Imports the config and the kernel; OpenCV only where a camera is opened.
"""
