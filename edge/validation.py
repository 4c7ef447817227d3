"""The one strict base of every model read from a file, and its validation errors as messages for people.

Each line names the file and the field path, e.g. ``edge.yaml: camras: unknown field (not allowed
here)``, so one run of ``gemsight-edge check`` shows everything that is wrong with a config, not the
first problem and a count.
"""
from __future__ import annotations

from typing import Any, Collection, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError

class Strict(BaseModel):
    """The base of every config, manifest and inventory model (edge, kiosk, hq, deploy): an unknown field
    is an error, not ignored, and a validated model is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


TOP_LEVEL = "(top level)"
# A key or value holding a line break or another control character would split one problem over
# several lines (or drive a terminal): escaped where it is echoed.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(32), 127, 0x85]} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


def escaped(text: str) -> str:
    """``text`` kept on one line: line breaks and other control characters written as escapes."""
    return text.translate(_ESCAPES)


def _where(loc: tuple[Any, ...], tags: Mapping[str, Collection[str]], prefix: str) -> str:
    parts = list(loc)
    # A discriminated union puts the tag in the path (runtime.openvino.options...): drop it.
    for i in range(len(parts) - 1):
        if parts[i] in tags and parts[i + 1] in tags[parts[i]]:
            del parts[i + 1]
            break
    where = ".".join(str(p) for p in parts)
    if prefix:
        return f"{prefix}.{where}" if where else prefix
    return where or TOP_LEVEL


def _message(err: Mapping[str, Any], tags: Mapping[str, Collection[str]]) -> str:
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "unknown field (not allowed here)"
    if kind == "union_tag_invalid":
        loc = err.get("loc", ())
        field = str(loc[-1]) if loc else "value"
        tag = err.get("ctx", {}).get("tag", "?")
        known = tags.get(field)
        return f"unknown {field} '{tag}'" + (f" (known: {', '.join(known)})" if known else "")
    return str(err.get("msg", "invalid")).removeprefix("Value error, ")


def error_lines(exc: ValidationError, source: str, *, prefix: str = "",
                tags: Mapping[str, Collection[str]] | None = None) -> str:
    """Every problem of ``exc``, one ``source: field.path: message`` line each.

    Args:
        exc: the pydantic error.
        source: the file (or other source) that was validated.
        prefix: a field path the validated data sits under (e.g. ``cameras.0``).
        tags: discriminated unions: field name -> its tag values (dropped from paths, and listed
            when a tag is unknown).
    """
    tags = tags or {}
    return "\n".join(f"{source}: {_where(tuple(err.get('loc', ())), tags, prefix)}: {_message(err, tags)}"
                     .translate(_ESCAPES) for err in exc.errors())  # escaped(), the whole line
