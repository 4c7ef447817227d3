"""Reading a YAML file a person wrote (``edge.yaml``, a slots file) without trusting it.

Every way such a file can be wrong ends in a one-line :class:`~edge.errors.ConfigError` naming the
file, never a traceback and never an unbounded amount of work:

* larger than :data:`MAX_YAML_BYTES` (1 MiB; a real device config is a few kB): refused before
  it is parsed (PyYAML parses about 1 MB a second in pure Python and holds ~16x the text in memory);
* not UTF-8: the offset of the first bad byte is named;
* nested deeper than :data:`MAX_YAML_DEPTH` levels (PyYAML's composer recurses once per level, so
  thousands of ``[`` would exhaust the stack): the line is named;
* more than :data:`MAX_YAML_VALUES` values once anchors and aliases are expanded (a "billion
  laughs" file is small on disk but huge to validate);
* not valid YAML, or a value PyYAML cannot construct (an integer of more digits than Python
  converts): the line and the problem are named;
* a string holding a NUL character or a lone surrogate (YAML escapes can write both): the field is named;
* a key written twice in one mapping (PyYAML keeps the last one, so ``curve: {...}`` followed by
  ``curve: null`` would silently mean plaintext): both lines are named. Keys merged in with ``<<:``
  may still be overridden, as YAML intends.

Every YAML file gemsight reads goes through :func:`load_yaml` (device and kiosk configs, slots
files, the trainer's ``--config``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import yaml

from edge.errors import ConfigError
from edge.validation import escaped

MAX_YAML_BYTES = 1 << 20
MAX_YAML_DEPTH = 64
MAX_YAML_VALUES = 1_000_000


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that stops composing past :data:`MAX_YAML_DEPTH` levels of nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: SafeConstructor names it below
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"key {escaped(str(key))[:80]!r} is written twice (first on line {first.start_mark.line + 1}); "
                    "PyYAML would keep the last one", key_node.start_mark)
        return super().construct_mapping(node, deep)

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _TooDeep(self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_values(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values ``node`` stands for with every alias expanded (shared nodes counted once each use)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive anchor (&a [*a]) counts once instead of looping
    if isinstance(node, yaml.SequenceNode):
        n = 1 + sum(_expanded_values(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        n = 1 + sum(_expanded_values(k, memo) + _expanded_values(v, memo) for k, v in node.value)
    else:
        n = 1
    memo[key] = n
    return n


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def read_text(path: Path, what: str, max_bytes: int = MAX_YAML_BYTES) -> str:
    """The UTF-8 text of ``path``, refusing a missing, unreadable, oversized or non-UTF-8 file.

    Raises:
        ConfigError: naming the file and the reason.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise ConfigError(f"{path}: {what} is {size:,} bytes, more than the {max_bytes:,} allowed")
            data = fh.read(max_bytes + 1)  # a pipe or /proc file reports no size: read one byte too many
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: {what} not found") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    except ValueError as exc:  # a path holding a NUL byte
        raise ConfigError(f"{path!r}: not a usable file name ({exc})") from exc
    if len(data) > max_bytes:
        raise ConfigError(f"{path}: {what} is more than the {max_bytes:,} bytes allowed")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                          f"{exc.start})") from exc


def load_yaml(path: str | Path, what: str = "YAML file", max_bytes: int = MAX_YAML_BYTES) -> Any:
    """Parse a YAML file with the bounds of this module (safe loading: plain data only).

    Args:
        path: the file.
        what: what it is, for messages ("config file", "slots file").
        max_bytes: the largest file accepted.

    Returns:
        The document (``None`` for an empty file).

    Raises:
        ConfigError: one line naming the file and what is wrong with it.
    """
    path = Path(path)
    text = read_text(path, what, max_bytes)
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader already refuses characters YAML does not allow
        node = loader.get_single_node()
        if node is None:
            return None
        values = _expanded_values(node, {})
        if values > MAX_YAML_VALUES:
            raise ConfigError(f"{path}: {what} expands to {values:,} values (anchors and aliases included), "
                              f"more than the {MAX_YAML_VALUES:,} allowed")
        data = loader.construct_document(node)
    except _TooDeep as exc:
        raise ConfigError(f"{path}: line {exc.line}: {what} nests deeper than {MAX_YAML_DEPTH} levels") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where}: not valid YAML ({_one_line(exc.problem or exc.context or exc)})") from exc
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, most control characters)
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(f"{path}: not valid YAML (unacceptable character #x{char:04x} at character {exc.position}: "
                          f"{exc.reason})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_one_line(exc)})") from exc
    except (ValueError, OverflowError, IndexError) as exc:  # int() of 5,000 digits, a bad date, an empty !!int
        raise ConfigError(f"{path}: a value cannot be read ({_one_line(exc)})") from exc
    finally:
        if loader is not None:
            loader.dispose()
    for where, problem in _bad_strings(data, (), set()):
        raise ConfigError(f"{path}: {escaped('.'.join(map(str, where))) or '(top level)'}: {problem}")
    return data


def _bad_strings(data: Any, where: tuple, seen: set[int]) -> Iterator[tuple[tuple, str]]:
    """Strings no config value may hold, which YAML escapes can write ("\\0", "\\ud800"): paths and
    URIs would fail far from the file with an error that does not name it."""
    if isinstance(data, str):
        if "\0" in data:
            yield where, "holds a NUL character"
        elif any("\ud800" <= c <= "\udfff" for c in data):
            yield where, "holds a lone surrogate (not a Unicode character)"
        return
    if not isinstance(data, (dict, list)) or id(data) in seen:
        return  # a shared or recursive node (anchors, &a [*a]) is looked at once
    seen.add(id(data))
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _bad_strings(key, where + (key,), seen)
            yield from _bad_strings(value, where + (key,), seen)
    else:
        for i, value in enumerate(data):
            yield from _bad_strings(value, where + (i,), seen)
