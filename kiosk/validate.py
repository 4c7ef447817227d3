"""Messages as the kiosk receives them: the schema check of :func:`edge.link.messages.parse_message`, fast.

A store of 32 devices sends about 256 labels messages a second; the reference validator
(``jsonschema``) takes about 1.2 ms for one, a third of a core. The same schema files
(:func:`edge.link.messages.load_schema`) compiled by ``jsonschema-rs`` check a message in a few
microseconds. Only a message that fails is handed to :func:`edge.link.messages.parse_message`, which
raises the project's one-line error naming the field (and has the last word: if it accepts the
message, the message is used).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from edge.link import messages


@lru_cache(maxsize=None)
def _fast(kind: str) -> Any:
    import jsonschema_rs  # noqa: PLC0415 - the kiosk extra brings it

    return jsonschema_rs.validator_for(messages.load_schema(kind))


def parse(topic: bytes, payload: bytes) -> tuple[str, str | None, str, dict]:
    """``(device, camera, kind, message)`` of one received ``[topic, json]``.

    Raises:
        MessageError: a bad topic, not JSON, not valid against its schema, or naming another
            device/camera than its topic (one line, from :mod:`edge.link.messages`).
    """
    device, camera, kind = messages.parse_topic(topic)
    msg = messages.decode(payload)
    if _fast(kind).is_valid(msg) and msg["device"] == device and msg.get("camera") == camera:
        return device, camera, kind, msg
    return messages.parse_message(topic, payload)
