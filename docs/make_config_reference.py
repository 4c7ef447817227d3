"""Write ``docs/configuration-reference.md`` from the config models' fields, so the reference cannot drift.

    python docs/make_config_reference.py            # rewrite docs/configuration-reference.md
    python docs/make_config_reference.py --check    # exit 1 if the committed file is not current

Every key path of every config file is listed with its type, default and the ``description`` of its
pydantic ``Field`` ("—" where a field has none); nested models are expanded in place (a list of models
as ``key[].field``, a mapping of models as ``key.<name>.field``, each member of a discriminated union
under the value of its tag). The models are named as strings in :data:`MODELS`, so a module that moves
needs one line changed here.
"""
from __future__ import annotations

import argparse
import enum
import importlib
import json
import logging
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

#: config file -> "module:Model", resolved with importlib (the one place to change when a model moves).
MODELS: dict[str, str] = {
    "edge.yaml": "edge.config:DeviceConfig",
    "kiosk.yaml": "kiosk.config:KioskConfig",
    "hq.yaml": "hq.config:HqConfig",
}
#: what each file is, for its heading.
ABOUT: dict[str, str] = {
    "edge.yaml": "The device: model, runtime, cameras and slots, publishing, metrics, slot states "
                 "(`gemsight-edge example-config` prints an annotated one)",
    "kiosk.yaml": "The store's kiosk: devices and planogram, incident policies, hours, web page, webhook, chain "
                  "(`gemsight-kiosk example-config`)",
    "hq.yaml": "Headquarters: broker, database, the chain's stores, web page (`gemsight-hq example-config`)",
}
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "configuration-reference.md"
NONE = "—"

logger = logging.getLogger("docs.config_reference")


class ReferenceError(Exception):
    """A model named in :data:`MODELS` could not be loaded or described."""


@dataclass(frozen=True)
class Row:
    """One key of a config file."""

    path: str
    type: str
    default: str
    description: str
    when: str = ""


def resolve(spec: str) -> type[BaseModel]:
    """The pydantic model named by ``"module:Model"``.

    Raises:
        ReferenceError: the spec is malformed, the module or attribute is missing, or it is not a model.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ReferenceError(f"model {spec!r}: expected 'module:Model'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ReferenceError(f"model {spec!r}: cannot import {module_name}: {exc}") from exc
    model = getattr(module, attr, None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ReferenceError(f"model {spec!r}: {module_name} has no pydantic model {attr!r}")
    return model


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    tp = _strip_annotated(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return None


def type_name(tp: Any) -> str:
    """A YAML reader's name for an annotation: ``int``, ``list of str``, ``"a" | "b"``, ``X | null``."""
    tp = _strip_annotated(tp)
    if tp is type(None):
        return "null"
    members = _union_args(tp)
    if members is not None:
        models = [m for m in map(_strip_annotated, members) if isinstance(m, type) and issubclass(m, BaseModel)]
        if len(models) > 1:   # a discriminated union: name the tag's values
            rest = [type_name(m) for m in members if _strip_annotated(m) not in models]
            return " | ".join([f"mapping ({', '.join(_tag(m) for m in models)})", *rest])
        return " | ".join(type_name(m) for m in members)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a.value if isinstance(a, enum.Enum) else a) for a in args)
    if origin in (tuple, list, set, frozenset):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return "[" + ", ".join(type_name(a) for a in args) + "]"
        return f"list of {type_name(args[0]) if args else 'any'}"
    if origin is dict:
        return f"map of {type_name(args[0])} → {type_name(args[1])}" if args else "map"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(json.dumps(m.value) for m in tp)
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp)).replace("Strict", "").lower() if isinstance(tp, type) else str(tp)


def _bounds(info: FieldInfo) -> str:
    """The field's numeric and length bounds, e.g. ``≥ 1, ≤ 1000``."""
    out = []
    for meta in info.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"),
                           ("min_length", "length ≥"), ("max_length", "length ≤")):
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sign} {value}")
    return ", ".join(out)


def _yaml_value(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, BaseModel):
        return "(see below)"
    if type(value) is object:   # a sentinel that the field's validator refuses: the key must be written
        return "required"
    if isinstance(value, tuple):
        value = list(value)
    try:
        return "`" + json.dumps(value, ensure_ascii=False) + "`"
    except TypeError:
        return f"`{value}`"


def _default(info: FieldInfo, given: Any) -> tuple[str, Any]:
    """The default as shown, and the value nested fields take their defaults from (or ``None``)."""
    if given is not PydanticUndefined:
        value = given
    elif info.default_factory is not None:
        if getattr(info, "default_factory_takes_data", False):
            return "(computed)", None   # the default depends on the other fields: say so rather than guess
        value = info.default_factory()   # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required", None
    else:
        value = info.default
    return _yaml_value(value), value if isinstance(value, BaseModel) else None


def _models_in(tp: Any) -> tuple[str, list[type[BaseModel]]]:
    """The models a field holds and how its key path continues: ``""``, ``"[]"`` or ``".<name>"``."""
    tp = _strip_annotated(tp)
    members = _union_args(tp) or (tp,)
    members = tuple(_strip_annotated(m) for m in members if m is not type(None))
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if models:
        return "", models
    if len(members) == 1:
        origin, args = typing.get_origin(members[0]), typing.get_args(members[0])
        inner = args[-1] if origin is dict and args else args[0] if origin in (tuple, list) and args else None
        if inner is not None and (origin is dict or len(args) == 1 or args[-1] is Ellipsis):
            suffix, found = _models_in(inner)
            if found:
                return (".<name>" if origin is dict else "[]") + suffix, found
    return "", []


def _tag(model: type[BaseModel]) -> str:
    """``name: onnxruntime`` for a member of a discriminated union (a one-value Literal field)."""
    for name, info in model.model_fields.items():
        tp = _strip_annotated(info.annotation)
        if typing.get_origin(tp) is typing.Literal and len(typing.get_args(tp)) == 1:
            return f"{name}: {typing.get_args(tp)[0]}"
    return model.__name__


def rows(model: type[BaseModel], prefix: str = "", defaults: BaseModel | None = None, when: str = "",
         seen: tuple[type, ...] = ()) -> Iterator[Row]:
    """Every key of ``model``, depth first, nested models expanded under their key path."""
    if model in seen:
        raise ReferenceError(f"model {model.__name__} contains itself at {prefix.rstrip('.')}")
    for name, info in model.model_fields.items():
        key = info.alias or name
        path = f"{prefix}{key}"
        given = getattr(defaults, name, PydanticUndefined) if defaults is not None else PydanticUndefined
        default, nested_defaults = _default(info, given)
        kind = type_name(info.annotation)
        bounds = _bounds(info)
        yield Row(path, f"{kind} ({bounds})" if bounds else kind, default,
                  " ".join((info.description or NONE).split()), when)
        suffix, models = _models_in(info.annotation)
        for sub in models:
            sub_when = _tag(sub) if len(models) > 1 else ""
            inherited = nested_defaults if isinstance(nested_defaults, sub) and not suffix else None
            yield from rows(sub, f"{path}{suffix}.", inherited, " · ".join(w for w in (when, sub_when) if w),
                            seen + (model,))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(model: type[BaseModel]) -> list[str]:
    """The markdown table of one config file."""
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for row in rows(model):
        key = f"`{row.path}`" + (f" (with `{row.when}`)" if row.when else "")
        lines.append(f"| {key} | {_cell(row.type)} | {_cell(row.default)} | {_cell(row.description)} |")
    return lines


def render(models: dict[str, str] | None = None) -> str:
    """The whole reference, as it should be committed."""
    models = MODELS if models is None else models
    out = ["# Configuration reference", "",
           "<!-- Generated by docs/make_config_reference.py from the config models; do not edit by hand. -->", "",
           "Every key of every config file, generated from the pydantic models that validate them (every model "
           "is strict: a key not listed here is refused, with the file and the key path named). "
           "How to write and check a config, with examples: [configuration.md](configuration.md). "
           "`required` means the key must be written; a type `X | null` takes `null`; a key under `[]` belongs "
           "to each item of a list, under `<name>` to each entry of a mapping; a key marked (with `name: x`) "
           "exists when its section's tag has that value.", ""]
    for filename, spec in models.items():
        model = resolve(spec)
        undocumented = sum(1 for r in rows(model) if r.description == NONE)
        out += [f"## {filename}", "", f"{ABOUT.get(filename, filename)}. Model: `{spec}`"
                f"{f'; {undocumented} keys without a description' if undocumented else ''}.", ""]
        out += table(model) + [""]
    return "\n".join(out)


def undocumented(models: dict[str, str] | None = None) -> dict[str, list[str]]:
    """File -> the key paths whose field has no description."""
    models = MODELS if models is None else models
    return {f: [r.path for r in rows(resolve(spec)) if r.description == NONE] for f, spec in models.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed file is current")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="where to write (default: docs/configuration-reference.md)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        text = render()
    except ReferenceError as exc:
        logger.error("error: %s", exc)
        return 2
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            logger.error("error: %s is not current: run python docs/make_config_reference.py", args.out)
            return 1
        logger.info("%s is current", args.out)
        return 0
    args.out.write_text(text, encoding="utf-8")
    missing = undocumented()
    logger.info("wrote %s (%s)", args.out, ", ".join(f"{f}: {len(v)} keys without a description"
                                                       for f, v in missing.items()))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
