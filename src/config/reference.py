"""The configuration reference, generated from the config models.

Every field's path, type, bounds, default and description come from the
pydantic models themselves (the docstring under each field is its
description), so the reference cannot drift from what the gateway accepts::

    python -m src.config.reference           # print the reference (markdown)
    python -m src.config.reference --write   # write it to docs/configuration.md

``field_paths`` walks the models the same way for the drift test.
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .schema import GatewayConfig

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

INTRO = """\
# Configuration

The config is one JSON file, read at start-up from the path `--config` or
`GATEWAY_CONFIG` names (default `config/example.config.json`; see
[Getting started](getting-started.md)), and again on [reload](operations.md#reload).
Every field the gateway accepts is below, with its type, bounds, default and
meaning; any other field is refused, so a typo stops start-up with a line naming
it. Keys are never in the file: a provider names the environment variable that
holds its key.

A field is named by its path: `a.b` is field `b` of object `a`, `*` is any key you
choose (a provider's or an alias's name), `[]` is every item of a list.

This page is generated from the config models (`src/config/sections.py`,
`src/config/schema.py`) by `python -m src.config.reference --write`; the test
suite fails when it is out of date. Edit the docstrings there, not this page.
"""


def nested_models(annotation: Any, suffix: str = "") -> Iterator[tuple[type[BaseModel], str]]:
    """The config models inside a type, each with the path suffix that reaches it.

    A map's values are reached by ``.*``, a list's items by ``[]``; optional
    and union types are looked through.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, suffix
    elif origin is typing.Annotated:
        yield from nested_models(args[0], suffix)
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from nested_models(arg, suffix)
    elif origin is dict:
        yield from nested_models(args[1], suffix + ".*")
    elif origin is list:
        yield from nested_models(args[0], suffix + "[]")


def field_paths(model: type[BaseModel] = GatewayConfig, prefix: str = "") -> dict[str, FieldInfo]:
    """Every field path the config accepts, in document order, with its pydantic field."""
    paths: dict[str, FieldInfo] = {}
    for name, field in model.model_fields.items():
        path = prefix + name
        paths[path] = field
        for nested, suffix in nested_models(field.annotation):
            paths.update(field_paths(nested, f"{path}{suffix}."))
    return paths


# ------------------------------------------------------------------ rendering


def _plain(text: str) -> str:
    """Docstring text as one markdown paragraph: rst ``code`` as `code`, lines joined."""
    return " ".join(re.sub(r"``([^`]+)``", r"`\1`", text).split())


def _anchor(heading: str) -> str:
    """The id the site's table of contents gives a heading (python-markdown's slugify)."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _type(annotation: Any, sections: dict[type[BaseModel], str]) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0], sections)
    if origin in (typing.Union, types.UnionType):
        kinds = [_type(arg, sections) for arg in args if arg is not type(None)]
        if type(None) in args:
            kinds.append("`null`")
        return " or ".join(kinds)
    if origin is typing.Literal:
        return " or ".join(f"`{json.dumps(value)}`" for value in args)
    if origin is list:
        item = _type(args[0], sections)
        return f"list of {item}s" if item in ("string", "integer", "number") else f"list of {item}"
    if origin is dict:
        return f"object: name → {_type(args[1], sections)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        path = sections.get(annotation)
        return f"object [`{path}`](#{_anchor(path)})" if path else "object"
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(field: FieldInfo) -> str:
    found: dict[str, Any] = {}
    for item in field.metadata:
        for key in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern"):
            value = getattr(item, key, None)
            if value is not None:
                found[key] = value
    parts = []
    low = ("≥", found["ge"]) if "ge" in found else (">", found["gt"]) if "gt" in found else None
    high = ("≤", found["le"]) if "le" in found else ("<", found["lt"]) if "lt" in found else None
    if low and high and low[0] == "≥" and high[0] == "≤":
        parts.append(f"{low[1]:,} to {high[1]:,}")
    else:
        parts += [f"{bound[0]} {bound[1]:,}" for bound in (low, high) if bound is not None]
    if "min_length" in found or "max_length" in found:
        least, most = found.get("min_length"), found.get("max_length")
        if most is not None:
            parts.append(f"length {least or 0} to {most}")
        elif least:
            parts.append("not empty" if least == 1 else f"length ≥ {least}")
    if "pattern" in found:
        parts.append(f"matching `{found['pattern']}`")
    return ", ".join(parts)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "its fields' defaults"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _sections() -> list[tuple[str, type[BaseModel]]]:
    """Each model once, in document order, named by the shortest path that reaches it.

    A model reached from several places (`retry` and `aliases.*.retry`) is one
    section; the other places link to it.
    """
    paths: dict[type[BaseModel], str] = {GatewayConfig: ""}
    for path, field in field_paths().items():
        for nested, suffix in nested_models(field.annotation):
            known = paths.get(nested)
            if known is None or (path + suffix).count(".") < known.count("."):
                paths[nested] = path + suffix
    return [(path, model) for model, path in paths.items()]


def render() -> str:
    """The whole reference page, as markdown."""
    sections = _sections()
    paths = {model: path for path, model in sections if path}
    lines = [INTRO]
    for path, model in sections:
        lines.append(f"## `{path}`" if path else "## Top level")
        lines.append("")
        if model.__doc__ and path:
            lines += [_plain(model.__doc__.split("\n\n")[0]), ""]
        lines += ["| Field | Type | Default | Meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            if not field.description:
                where = f"{path}.{name}" if path else name
                raise ValueError(f"config field {where} has no docstring")
            kind = _type(field.annotation, paths)
            bounds = _bounds(field)
            cells = [
                f"`{name}`",
                f"{kind}, {bounds}" if bounds else kind,
                _default(field),
                _plain(field.description),
            ]
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        PAGE.write_text(render(), encoding="utf-8")
        return 0
    if argv:
        print("usage: python -m src.config.reference [--write]", file=sys.stderr)
        return 2
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
