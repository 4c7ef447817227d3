"""Hypothesis strategies for what gemsight reads from outside: JSON/YAML documents mutated from
valid ones, token soups, raw bytes, nesting far past any parser's stack."""
from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

#: Leaves a hostile or clumsy writer puts anywhere: every JSON/YAML scalar type, and the edges of each.
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.sampled_from([0, -1, 2**31, 2**63, 10**30, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e-300, 1e300, 0.5, 1.0]),
    st.text(max_size=12), st.sampled_from(["", "cam0", "case-01", "../x", "a/b", "\x00", "é", "ring", "up"]),
)
#: Strings that break paths, URIs and terminals; "{}" is replaced by the string being poisoned.
NASTY = st.sampled_from(["{}\x00", "\x00{}", "{}\n{}", "{}/../../etc/passwd", "~/{}", "{}" * 200, "{}\u202e",
                         "{}?{}", "{}%00", "{}\ud800", "{}:{}@host", " {} ", "{}\t", "file://{}", "{}\x1b[2J", ""])


def poisoned(strings: st.SearchStrategy[str], every: int = 4) -> st.SearchStrategy[str]:
    """``strings``, one in ``every`` poisoned with one of :data:`NASTY`'s patterns."""
    return pick(*[strings] * (every - 1), st.tuples(strings, NASTY).map(lambda t: t[1].replace("{}", t[0])))


JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def _slots(doc: Any, out: list) -> None:
    """Every (container, key) position in ``doc``, depth first."""
    if isinstance(doc, dict):
        for key in list(doc):
            out.append((doc, key))
            _slots(doc[key], out)
    elif isinstance(doc, list):
        for i in range(len(doc)):
            out.append((doc, i))
            _slots(doc[i], out)


@st.composite
def mutated(draw: st.DrawFn, base: Any, max_edits: int = 3) -> Any:
    """``base`` with 1..``max_edits`` random edits: a value replaced, a key deleted or added, a list item dropped."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_edits))):
        positions: list = []
        _slots(doc, positions)
        if not positions:
            return draw(JSON_VALUES)
        container, key = draw(st.sampled_from(positions))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "poison"]))
        if action == "poison":  # a string kept a string, but a nasty one (where paths and URIs hide bugs)
            strings = [(c, k) for c, k in positions if isinstance(c[k], str)] or [(container, key)]
            container, key = draw(st.sampled_from(strings))
            old = container[key] if isinstance(container[key], str) else ""
            container[key] = draw(NASTY).replace("{}", old)
        elif action == "replace":
            container[key] = draw(JSON_VALUES)
        elif action == "delete":
            del container[key]
        elif isinstance(container, dict):
            container[draw(st.text(max_size=10))] = draw(JSON_VALUES)
        else:
            container.insert(key, draw(JSON_VALUES))
    return doc


def deep(opener: bytes, closer: bytes, max_depth: int = 6000) -> st.SearchStrategy[bytes]:
    """Nesting from a few levels to far past CPython's recursion limit, closed or not."""
    return st.builds(lambda n, closed: opener * n + (closer * n if closed else b""),
                     st.integers(1, max_depth), st.booleans())


def byte_edits(data: bytes, max_edits: int = 4) -> st.SearchStrategy[bytes]:
    """``data`` with a few bytes replaced, inserted or deleted, or cut short, or with bytes appended."""
    @st.composite
    def edit(draw: st.DrawFn) -> bytes:
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, max_edits))):
            at = draw(st.integers(0, max(0, len(buf) - 1)))
            action = draw(st.sampled_from(["set", "set", "insert", "delete", "truncate", "append"]))
            if action == "set" and buf:
                buf[at] = draw(st.integers(0, 255))
            elif action == "insert":
                buf[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif action == "delete":
                del buf[at:at + draw(st.integers(1, 8))]
            elif action == "truncate":
                del buf[at:]
            else:
                buf += draw(st.binary(min_size=1, max_size=600))
        return bytes(buf)
    return edit()


def json_bytes(base: Any) -> st.SearchStrategy[bytes]:
    """JSON documents: ``base`` mutated (NaN and Infinity included), bytes-edited, nested deep, or noise."""
    text = json.dumps(base).encode()
    return st.one_of(
        mutated(base).map(lambda d: json.dumps(d).encode()),
        byte_edits(text),
        deep(b"[", b"]"), deep(b'{"a":', b"}"),
        st.builds(lambda n: b'{"x": ' + b"9" * n + b"}", st.integers(4000, 6000)),
        st.sampled_from([b"", b"null", b"[]", b'"x"', b"NaN", b"\xff\xfe", b'{"a": 1}{', b"\x00"]),
        st.binary(max_size=64),
    )


YAML_TOKENS = ["[", "]", "{", "}", ":", ": ", "- ", ",", "\n", "  ", "&a ", "*a", "&b ", "*b", "!!str ", "!!int ",
               "!!python/object:os.system ", "? ", "|", ">", "#", "'", '"', "%YAML 1.1\n", "---\n", "...\n",
               "device", "cameras", "slots", "rect", "polygon", "model", "path", "0.5", "1e999", "-.inf", ".nan",
               "9" * 30, "null", "~", "yes", "2026-13-45", "0x1F", "0o17", "\t", "\x00", "\u2028", "é", "\ufeff"]


def yaml_bytes(base: Any) -> st.SearchStrategy[bytes]:
    """YAML documents: ``base`` mutated and dumped, byte-edited, token soup, nested deep, or noise."""
    import yaml  # noqa: PLC0415

    text = yaml.safe_dump(base, sort_keys=False).encode()
    return st.one_of(
        mutated(base).map(lambda d: yaml.safe_dump(d, sort_keys=False, allow_unicode=True)
                          .encode("utf-8", "surrogatepass")),
        byte_edits(text),
        st.lists(st.sampled_from(YAML_TOKENS), max_size=40).map(lambda t: "".join(t).encode("utf-8", "surrogatepass")),
        deep(b"[", b"]"), deep(b"{a: ", b"}"), deep(b"- ", b"", 200).map(lambda d: d + b"x"),
        st.builds(lambda n: b"device: " + b"9" * n + b"\n", st.integers(4000, 6000)),
        st.binary(max_size=64),
    )


# -- messages that pass their schema (edge/schemas/), so a consumer's accepting path is fuzzed too ----
IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,12}\Z")
NAMES = st.text(min_size=1, max_size=10).flatmap(lambda t: poisoned(st.just(t)))
PROB = st.floats(0, 1)
NUMBER = st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False))
MS = st.one_of(st.integers(0, 10**6), st.floats(0, 1e9))


@st.composite
def valid_message(draw: st.DrawFn, kind: str, device: str = "case-01", camera: str = "cam0") -> dict:
    """A ``kind`` message for ``device``/``camera`` with arbitrary schema-valid content."""
    head = {"schema_version": 1, "kind": kind, "device": device}
    if kind == "status":
        return {**head, "camera": camera, "state": draw(st.sampled_from(["up", "down", "eos"])),
                "detail": draw(st.text(max_size=40)), "ts": draw(NUMBER)}
    if kind == "heartbeat":
        extra = st.dictionaries(NAMES.filter(lambda k: k not in ("seq", "state", "fps", "dropped", "reconnects")),
                                st.one_of(NUMBER, st.text(max_size=8), st.booleans(), st.none()), max_size=2)
        info = st.builds(lambda seq, state, fps, more: {"seq": seq, "state": state, "fps": fps, **more},
                         st.one_of(st.none(), st.integers(0, 2**40)), st.sampled_from(["up", "down", "eos", None]),
                         st.floats(0, 1000), extra)
        return {**head, "ts": draw(NUMBER), "uptime_s": draw(st.floats(0, 1e9)),
                "cameras": draw(st.dictionaries(st.one_of(st.just(camera), IDS), info, max_size=3))}
    topk = st.lists(st.fixed_dictionaries({"label": NAMES, "score": PROB}), min_size=1, max_size=3)
    slot = st.fixed_dictionaries({"name": NAMES, "label": NAMES, "score": PROB, "topk": topk, "stable": st.booleans()})
    msg = {**head, "camera": camera, "seq": draw(st.integers(0, 2**40)), "capture_ts": draw(NUMBER),
           "publish_ts": draw(NUMBER),
           "model": draw(st.fixed_dictionaries({k: NAMES for k in ("name", "version", "precision", "backend")})),
           "slots": draw(st.lists(slot, min_size=1, max_size=5)),
           "counts": draw(st.dictionaries(NAMES, st.integers(0, 10**6), max_size=5)),
           "latencies_ms": {**{k: draw(MS) for k in ("capture", "preprocess", "infer", "postprocess")},
                            **draw(st.dictionaries(NAMES, MS, max_size=2))}}
    if draw(st.booleans()):
        msg["frame_index"] = draw(st.integers(0, 2**40))
    return msg


@st.composite
def valid_slot_map(draw: st.DrawFn) -> list[dict]:
    """A grid of slots, each a rect or a quadrilateral inside its own cell (touching at most): never overlapping."""
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    slots = []
    for r in range(rows):
        for c in range(cols):
            if not draw(st.integers(0, 4)):
                continue  # an empty place in the case
            x0, y0, w, h = c / cols, r / rows, 1 / cols, 1 / rows
            inset = [draw(st.sampled_from([0.0, 0.0, 0.01, 0.1, 0.3])) for _ in range(4)]
            rect = [x0 + inset[0] * w, y0 + inset[1] * h, x0 + w - inset[2] * w, y0 + h - inset[3] * h]
            if draw(st.booleans()):
                slots.append({"name": f"r{r}c{c}", "rect": rect})
            else:  # a slanted quadrilateral within the rect
                lean = draw(st.floats(0, 0.3)) * (rect[2] - rect[0])
                slots.append({"name": f"r{r}c{c}", "polygon": [[rect[0] + lean, rect[1]], [rect[2], rect[1]],
                                                               [rect[2] - lean, rect[3]], [rect[0], rect[3]]]})
    return slots or [{"name": "all", "rect": [0, 0, 1, 1]}]


def pick(*strategies: st.SearchStrategy) -> st.SearchStrategy:
    """One of ``strategies``, each chosen equally often (``st.one_of`` flattens nested one_ofs, so a
    group of many noise branches would crowd out one well-formed branch)."""
    return st.sampled_from(strategies).flatmap(lambda s: s)
