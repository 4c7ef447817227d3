"""The link to kiosks: messages and their schemas, the publisher, CURVE keys and the allow-list, the
client (:mod:`edge.link.client`) and ``listen``.

Imports the config and the kernel, never the loop.
"""
