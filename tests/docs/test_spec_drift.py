"""SPEC.md against the code: routes, error types, config fields and telemetry fields.

The code side is introspected, never listed by hand: the routes of the app
``create_app`` builds for every config in ``config/`` (FastAPI's routes plus
the chat routes ``GatewayApp`` dispatches directly), every ``GatewayError``
subclass in any module of ``src``, every field the pydantic config models
accept, and the keys of a real telemetry line. The SPEC side is read from the
tables SPEC.md marks with ``<!-- drift:NAME -->`` ... ``<!-- /drift:NAME -->``.
Each check runs both ways where the code side is complete, so a change on
either side alone fails here with a message saying what to add or remove.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, create_model
from starlette.routing import Mount, Route, WebSocketRoute

import src
from src.config import GatewayConfig, RateLimitConfig, load_config
from src.edge.app import GatewayApp, create_app
from src.errors import GatewayError
from tests.conftest import UPSTREAM, chat_body, completion, log_lines, make_config

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "SPEC.md"
# `METHOD /path` in backticks, anywhere in SPEC.md: every such mention must be served.
ENDPOINT_MENTION = re.compile(r"`(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|WEBSOCKET) (/[^`\s?]*)")


# ---------------------------------------------------------------- SPEC.md side


def spec_text() -> str:
    return SPEC.read_text(encoding="utf-8")


def marked_table(name: str, text: str | None = None) -> list[list[str]]:
    """The body rows of the table between ``<!-- drift:name -->`` and ``<!-- /drift:name -->``."""
    text = spec_text() if text is None else text
    match = re.search(rf"<!-- drift:{name} -->(.*?)<!-- /drift:{name} -->", text, re.S)
    assert match, f"SPEC.md has no table marked <!-- drift:{name} --> ... <!-- /drift:{name} -->"
    rows = []
    for line in match.group(1).splitlines():
        line = line.strip()
        if not line.startswith("|") or re.fullmatch(r"\|[\s:|-]+\|", line):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]  # the first row is the header


def first_code(cell: str) -> str:
    match = re.search(r"`([^`]+)`", cell)
    assert match, f"SPEC.md table cell {cell!r} names nothing in backticks"
    return match.group(1)


def spec_endpoints(text: str | None = None) -> set[str]:
    return {first_code(row[0]) for row in marked_table("endpoints", text)}


def spec_error_rows(text: str | None = None) -> dict[str, list[str]]:
    """Error type -> the status cells of its rows."""
    rows: dict[str, list[str]] = {}
    for row in marked_table("errors", text):
        rows.setdefault(first_code(row[0]), []).append(row[1])
    return rows


def spec_config_rows(text: str | None = None) -> dict[str, str]:
    """Config path -> its default cell."""
    return {first_code(row[0]): row[2] for row in marked_table("config", text)}


def spec_telemetry_fields(text: str | None = None) -> set[str]:
    return {first_code(row[0]) for row in marked_table("telemetry", text)}


# ------------------------------------------------------------------ code side


def config_files() -> list[Path]:
    return sorted((ROOT / "config").glob("*.json"))


def served_endpoints(app: GatewayApp) -> set[str]:
    """``METHOD /path`` for every route the app answers (HEAD only where GET is absent)."""
    served: set[str] = set()
    for route in app.api.routes:
        if isinstance(route, Route):
            methods = set(route.methods or ())
            if "GET" in methods:
                methods.discard("HEAD")
            served.update(f"{method} {route.path}" for method in methods)
        elif isinstance(route, Mount):
            served.add(f"GET {route.path}/{{path}}")
        elif isinstance(route, WebSocketRoute):
            served.add(f"WEBSOCKET {route.path}")
        else:
            pytest.fail(f"the drift test does not know route type {type(route).__name__}")
    served.update(f"POST {path}" for path in app._direct)
    return served


def app_endpoints() -> set[str]:
    """Union over the configs in config/: a route that only some configs enable still counts."""
    served: set[str] = set()
    for path in config_files():
        served |= served_endpoints(create_app(load_config(path)))
    return served


def import_all_of_src() -> None:
    for module in pkgutil.walk_packages(src.__path__, prefix="src."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)


def error_classes() -> list[type[GatewayError]]:
    import_all_of_src()
    found: list[type[GatewayError]] = [GatewayError]
    stack = list(GatewayError.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls not in found:
            found.append(cls)
            stack.extend(cls.__subclasses__())
    return found


def code_error_types() -> dict[str, list[int]]:
    """Error type -> the statuses its classes declare (a class setting it per instance declares none)."""
    types_: dict[str, list[int]] = {}
    for cls in error_classes():
        statuses = types_.setdefault(cls.type, [])
        if "status" in vars(cls):
            statuses.append(cls.status)
    return types_


_NO_DEFAULT = object()


def config_paths(model: type[BaseModel] = GatewayConfig, prefix: str = "") -> dict[str, Any]:
    """Every field path the config accepts -> its default (``_NO_DEFAULT`` when required).

    Paths as SPEC.md states them: ``a.b`` is field ``b`` of object ``a``; ``*``
    is any key of a map the operator names; ``[]`` is every item of a list.
    """
    paths: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.validation_alias if isinstance(field.validation_alias, str) else None
        path = prefix + (key or field.alias or name)
        if field.is_required():
            paths[path] = _NO_DEFAULT
        else:
            paths[path] = field.get_default(call_default_factory=True)
        for nested, suffix in _models_in(field.annotation, ""):
            paths.update(config_paths(nested, f"{path}{suffix}."))
    return paths


def _models_in(
    annotation: Any, suffix: str, depth: int = 0
) -> Iterator[tuple[type[BaseModel], str]]:
    """The config models reachable inside a type, with the path suffix to reach each."""
    if depth > 8:
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, suffix
    elif origin is typing.Annotated:
        yield from _models_in(args[0], suffix, depth + 1)
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _models_in(arg, suffix, depth + 1)
    elif origin in (dict, typing.Mapping) or (
        isinstance(origin, type) and issubclass(origin, dict)
    ):
        yield from _models_in(args[1], suffix + ".*", depth + 1)
    elif origin in (list, tuple, set, frozenset) or (
        isinstance(origin, type) and issubclass(origin, list | tuple)
    ):
        for arg in args:
            if arg is not Ellipsis:
                yield from _models_in(arg, suffix + "[]", depth + 1)


def documented_default(value: Any) -> str | None:
    """How SPEC.md writes a default, for the JSON scalars and empty containers it can state."""
    if value is _NO_DEFAULT:
        return "required"
    if value is None or isinstance(value, bool | int | float | str) or value in ([], {}):
        return json.dumps(value)
    return None


# ------------------------------------------------------- comparisons (pure)


def endpoint_drift(served: set[str], text: str) -> list[str]:
    listed = spec_endpoints(text)
    mentioned = {" ".join(m) for m in ENDPOINT_MENTION.findall(text)}
    problems = [
        f"the app serves `{e}` but SPEC.md's endpoint table (<!-- drift:endpoints -->)"
        " has no row for it"
        for e in sorted(served - listed)
    ]
    problems += [
        f"SPEC.md names `{e}`, which the app does not serve"
        for e in sorted((listed | mentioned) - served)
    ]
    return problems


def error_drift(code: dict[str, list[int]], text: str) -> list[str]:
    documented = spec_error_rows(text)
    problems = []
    for error_type, statuses in sorted(code.items()):
        if error_type not in documented:
            problems.append(
                f"error type `{error_type}` can be returned but SPEC.md's error table"
                " (<!-- drift:errors -->) has no row for it"
            )
            continue
        cells = " ".join(documented[error_type])
        problems += [
            f"error type `{error_type}` is answered with status {status},"
            f" but SPEC.md's error table says {documented[error_type]}"
            for status in statuses
            if not re.search(rf"\b{status}\b", cells)
        ]
    problems += [
        f"SPEC.md's error table lists `{t}`, which no GatewayError subclass has"
        for t in sorted(set(documented) - set(code))
    ]
    return problems


def config_drift(code: dict[str, Any], text: str) -> list[str]:
    documented = spec_config_rows(text)
    problems = []
    for path, default in sorted(code.items()):
        if path not in documented:
            problems.append(
                f"config field `{path}` is accepted but SPEC.md's config table"
                " (<!-- drift:config -->) has no row for it"
            )
            continue
        expected, cell = documented_default(default), documented[path]
        if expected is None:
            continue
        stated = "required" if cell.startswith("required") else re.findall(r"`([^`]*)`", cell)[:1]
        if stated != expected and stated != [expected]:
            problems.append(
                f"config field `{path}` defaults to {expected} in the code,"
                f" but SPEC.md's config table says {documented[path]!r}"
            )
    problems += [
        f"SPEC.md's config table lists `{p}`, which the config models refuse"
        for p in sorted(set(documented) - set(code))
    ]
    return problems


# ------------------------------------------------------- the code against SPEC.md


def test_routes_served_and_endpoints_listed_match():
    problems = endpoint_drift(app_endpoints(), spec_text())
    assert not problems, "\n".join(problems)


def test_error_types_and_statuses_match():
    problems = error_drift(code_error_types(), spec_text())
    assert not problems, "\n".join(problems)


def test_config_fields_and_defaults_match():
    problems = config_drift(config_paths(), spec_text())
    assert not problems, "\n".join(problems)


async def test_every_telemetry_field_is_in_the_telemetry_table(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    config = make_config(tmp_path)
    client = await gateway_client(config)
    await client.post("/v1/chat/completions", json=chat_body())
    await client.post("/v1/chat", json={"model": "default-chat"})
    await client.post("/v1/chat/completions", json=chat_body(stream=True))
    client.app.state.telemetry.writer.close()
    lines = log_lines(config)
    assert len(lines) == 3
    keys = set().union(*lines)
    missing = keys - spec_telemetry_fields()
    assert not missing, (
        f"telemetry lines carry {sorted(missing)} but SPEC.md's telemetry table"
        " (<!-- drift:telemetry -->) has no row for them"
    )


# ------------------------------------- each comparison fails when one side moves
# Each case changes one side and expects exactly the new problem, on top of
# whatever the unchanged comparison reports (nothing, when the suite is green).


def new_problems(problems: list[str], baseline: list[str]) -> list[str]:
    return [p for p in problems if p not in baseline]


def test_a_route_added_to_the_app_alone_is_caught(tmp_path):
    app = create_app(make_config(tmp_path))

    async def extra(request: Any) -> None: ...

    app.api.add_api_route("/v1/undocumented", extra, methods=["POST"])
    served = app_endpoints()
    problems = endpoint_drift(served | served_endpoints(app), spec_text())
    assert new_problems(problems, endpoint_drift(served, spec_text())) == [
        "the app serves `POST /v1/undocumented` but SPEC.md's endpoint table"
        " (<!-- drift:endpoints -->) has no row for it"
    ]


def test_an_endpoint_added_to_the_spec_alone_is_caught():
    served = app_endpoints()
    text = spec_text().replace(
        "<!-- /drift:endpoints -->",
        "| `DELETE /v1/nowhere` | FR-000 | x |\n<!-- /drift:endpoints -->",
    )
    mention = text + "\nSee `PUT /v1/elsewhere`.\n"
    assert new_problems(endpoint_drift(served, mention), endpoint_drift(served, spec_text())) == [
        "SPEC.md names `DELETE /v1/nowhere`, which the app does not serve",
        "SPEC.md names `PUT /v1/elsewhere`, which the app does not serve",
    ]


def test_an_error_type_or_status_changed_in_the_code_alone_is_caught():
    code = code_error_types()
    baseline = error_drift(code, spec_text())
    assert new_problems(error_drift({**code, "teapot_error": [418]}, spec_text()), baseline) == [
        "error type `teapot_error` can be returned but SPEC.md's error table"
        " (<!-- drift:errors -->) has no row for it"
    ]
    moved = new_problems(error_drift({**code, "request_too_large": [400]}, spec_text()), baseline)
    assert len(moved) == 1 and "`request_too_large` is answered with status 400" in moved[0]


def test_an_error_row_removed_from_the_spec_alone_is_caught():
    code = code_error_types()
    text = re.sub(r"^\s*\| `request_too_large` \|.*$", "", spec_text(), flags=re.M)
    assert new_problems(error_drift(code, text), error_drift(code, spec_text())) == [
        "error type `request_too_large` can be returned but SPEC.md's error table"
        " (<!-- drift:errors -->) has no row for it"
    ]


def test_a_config_field_or_default_changed_in_the_code_alone_is_caught():
    baseline = config_drift(config_paths(), spec_text())
    widened_limit = create_model("WidenedRateLimit", __base__=RateLimitConfig, burst=(int, 5))
    widened = create_model("WidenedConfig", __base__=GatewayConfig, rate_limit=(widened_limit, ...))
    assert new_problems(config_drift(config_paths(widened), spec_text()), baseline) == [
        "config field `rate_limit.burst` is accepted but SPEC.md's config table"
        " (<!-- drift:config -->) has no row for it"
    ]
    moved = {**config_paths(), "retry_after_cap_s": 3.0}
    assert new_problems(config_drift(moved, spec_text()), baseline) == [
        "config field `retry_after_cap_s` defaults to 3.0 in the code,"
        " but SPEC.md's config table says '`2.0`'"
    ]


def test_a_config_row_added_to_the_spec_alone_is_caught():
    code = config_paths()
    text = spec_text().replace(
        "<!-- /drift:config -->",
        "| `rate_limit.burst` | integer | `5` | x |\n<!-- /drift:config -->",
    )
    assert new_problems(config_drift(code, text), config_drift(code, spec_text())) == [
        "SPEC.md's config table lists `rate_limit.burst`, which the config models refuse"
    ]


def test_config_paths_name_maps_lists_and_unions_as_spec_states():
    class Leaf(BaseModel):
        x: int = 1

    class Other(BaseModel):
        y: str

    class Root(BaseModel):
        by_name: dict[str, Leaf] = {}
        items: list[Leaf | Other] = []
        nested: dict[str, dict[str, Leaf]] | None = None

    assert config_paths(Root) == {
        "by_name": {},
        "by_name.*.x": 1,
        "items": [],
        "items[].x": 1,
        "items[].y": _NO_DEFAULT,
        "nested": None,
        "nested.*.*.x": 1,
    }
