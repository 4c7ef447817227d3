"""A publisher in a process of its own, for tests that measure what an attack costs the edge.

``python -m tests.edge.guard_edge '<json>'``, the JSON ``{"curve": {...} | null}``: starts a
:class:`edge.link.publisher.Publisher` on random loopback ports, prints one JSON line with its endpoints,
then publishes a labels message every 20 ms until its stdin closes.
"""
from __future__ import annotations

import json
import select
import sys

from edge.config.device import CurveConfig
from edge.link.publisher import Publisher
from tests.helpers import ANY, make_labels


def main(argv: list[str]) -> int:
    options = json.loads(argv[0])
    curve = CurveConfig(**options["curve"]) if options.get("curve") else None
    with Publisher("case-01", ANY, ANY, curve=curve, heartbeat_s=0.2) as pub:
        print(json.dumps({"endpoint": pub.endpoint, "snapshot": pub.snapshot_endpoint}), flush=True)
        msg = make_labels("cam0")
        while not select.select([sys.stdin], [], [], 0.02)[0]:
            pub.publish_labels("cam0", msg)  # seq and publish_ts are set anew each time
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
