"""The contract against the code: routes, error types, config fields and telemetry fields.

The contract is SPEC.md and the reference tables it links: the endpoint and
error tables (docs/api.md) and the telemetry fields (docs/observability.md),
each marked ``<!-- drift:NAME -->`` ... ``<!-- /drift:NAME -->`` and written
once across SPEC.md, README.md and docs/. The configuration reference is
generated from the config models (tests/test_docs.py keeps it current), so
here the config side checks the other way: every config path the documents
name must be one the models accept.

The code side is introspected, never listed by hand: the routes of the app
``create_app`` builds for every config in ``config/`` (FastAPI's routes plus
the chat routes ``GatewayApp`` dispatches directly), every ``GatewayError``
subclass in any module of ``src``, every
field the pydantic config models accept, and the keys of a real telemetry
line. Each check runs both ways where the code side is complete, so a change
on either side alone fails here with a message saying what to add or remove.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.routing import Mount, Route, WebSocketRoute

import src
from src.config import GatewayConfig, load_config
from src.config.reference import field_paths
from src.edge.app import GatewayApp, create_app
from src.errors import GatewayError
from tests.conftest import UPSTREAM, chat_body, completion, log_lines, make_config

ROOT = Path(__file__).resolve().parents[2]
# The generated configuration reference is the code's own words; it is not a document checked here.
DOCUMENTS = [ROOT / "SPEC.md", ROOT / "README.md"] + [
    page for page in sorted((ROOT / "docs").glob("*.md")) if page.name != "configuration.md"
]
# `METHOD /path` in backticks, anywhere in the documents: every such mention must be served.
ENDPOINT_MENTION = re.compile(r"`(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|WEBSOCKET) (/[^`\s?]*)")
# A dotted path in backticks (`state.redis_url`, `clients.<id>.budget`, `routes[].alias`).
CONFIG_MENTION = re.compile(r"`([a-z_]+(?:\[\]|\.[\w*<>-]+)+)`")


# ---------------------------------------------------------------- documents side


def spec_text() -> str:
    """The documents, one after another, each under a line naming it."""
    return "\n".join(
        f"<!-- file: {path.relative_to(ROOT)} -->\n{path.read_text(encoding='utf-8')}"
        for path in DOCUMENTS
    )


def marked_table(name: str, text: str | None = None) -> list[list[str]]:
    """The body rows of the table between ``<!-- drift:name -->`` and ``<!-- /drift:name -->``."""
    text = spec_text() if text is None else text
    tables = re.findall(rf"<!-- drift:{name} -->(.*?)<!-- /drift:{name} -->", text, re.S)
    assert tables, (
        f"no document has a table marked <!-- drift:{name} --> ... <!-- /drift:{name} -->"
    )
    assert len(tables) == 1, f"the table <!-- drift:{name} --> is written {len(tables)} times"
    rows = []
    for line in tables[0].splitlines():
        line = line.strip()
        if not line.startswith("|") or re.fullmatch(r"\|[\s:|-]+\|", line):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]  # the first row is the header


def first_code(cell: str) -> str:
    match = re.search(r"`([^`]+)`", cell)
    assert match, f"table cell {cell!r} names nothing in backticks"
    return match.group(1)


def spec_endpoints(text: str | None = None) -> set[str]:
    return {first_code(row[0]) for row in marked_table("endpoints", text)}


def spec_error_rows(text: str | None = None) -> dict[str, list[str]]:
    """Error type -> the status cells of its rows."""
    rows: dict[str, list[str]] = {}
    for row in marked_table("errors", text):
        rows.setdefault(first_code(row[0]), []).append(row[1])
    return rows


def config_mentions(text: str, top_level: set[str]) -> set[str]:
    """The dotted config paths the documents name: those starting with a top-level field."""
    return {
        mention
        for mention in CONFIG_MENTION.findall(text)
        if re.match(r"[a-z_]+", mention).group(0) in top_level  # type: ignore[union-attr]
    }


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
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {id:path} is written {id}
            served.update(f"{method} {path}" for method in methods)
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


def config_paths(model: type[BaseModel] = GatewayConfig) -> set[str]:
    """Every field path the config models accept, walked as the reference generator walks them."""
    return set(field_paths(model))


def known_path(mention: str, accepted: set[str]) -> bool:
    """Whether a path as the documents write it names a field the config models accept.

    Documents name items by key or index (`clients.billing.rate_limit`,
    `aliases.<alias>.fallbacks.<i>.provider`, `policies.<name>` for a policy's
    rule name), where the models' paths have `*` and `[]`; an item alone
    (`clients.<id>`) names an item of that map or list; a value's own list
    index at the end (`key_sha256.0`) names the field itself.
    """
    segments = re.sub(r"\.\d+$", "", mention.replace("[]", ".*")).split(".")
    patterns = {tuple(path.replace("[]", ".*").split(".")) for path in accepted}
    # An item of a map or list is named too (`clients.<id>`, `policies.<name>`).
    patterns |= {p[: i + 1] for p in patterns for i, part in enumerate(p) if part == "*"}
    for pattern in patterns:
        if len(pattern) == len(segments) and all(
            want in ("*", got) or (want == "*" and got.startswith("<"))
            for want, got in zip(pattern, segments, strict=True)
        ):
            return True
    return False


# ------------------------------------------------------- comparisons (pure)


def endpoint_drift(served: set[str], text: str) -> list[str]:
    listed = spec_endpoints(text)
    mentioned = {" ".join(m) for m in ENDPOINT_MENTION.findall(text)}
    problems = [
        f"the app serves `{e}` but the endpoint table (<!-- drift:endpoints -->) has no row for it"
        for e in sorted(served - listed)
    ]
    problems += [
        f"the documents name `{e}`, which the app does not serve"
        for e in sorted((listed | mentioned) - served)
    ]
    return problems


def error_drift(code: dict[str, list[int]], text: str) -> list[str]:
    documented = spec_error_rows(text)
    problems = []
    for error_type, statuses in sorted(code.items()):
        if error_type not in documented:
            problems.append(
                f"error type `{error_type}` can be returned but the error table"
                " (<!-- drift:errors -->) has no row for it"
            )
            continue
        cells = " ".join(documented[error_type])
        problems += [
            f"error type `{error_type}` is answered with status {status},"
            f" but the error table says {documented[error_type]}"
            for status in statuses
            if not re.search(rf"\b{status}\b", cells)
        ]
    problems += [
        f"the error table lists `{t}`, which no GatewayError subclass has"
        for t in sorted(set(documented) - set(code))
    ]
    return problems


def config_drift(code: set[str], text: str) -> list[str]:
    top_level = {path.split(".")[0].split("[")[0] for path in code}
    return [
        f"the documents name config path `{mention}`, which the config models refuse"
        for mention in sorted(config_mentions(text, top_level))
        if not known_path(mention, code)
    ]


# ------------------------------------------------------- the code against the contract


def test_routes_served_and_endpoints_listed_match():
    problems = endpoint_drift(app_endpoints(), spec_text())
    assert not problems, "\n".join(problems)


def test_error_types_and_statuses_match():
    problems = error_drift(code_error_types(), spec_text())
    assert not problems, "\n".join(problems)


def test_config_paths_the_documents_name_exist():
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
        f"telemetry lines carry {sorted(missing)} but the telemetry table"
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
        "the app serves `POST /v1/undocumented` but the endpoint table"
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
        "the documents name `DELETE /v1/nowhere`, which the app does not serve",
        "the documents name `PUT /v1/elsewhere`, which the app does not serve",
    ]


def test_an_error_type_or_status_changed_in_the_code_alone_is_caught():
    code = code_error_types()
    baseline = error_drift(code, spec_text())
    assert new_problems(error_drift({**code, "teapot_error": [418]}, spec_text()), baseline) == [
        "error type `teapot_error` can be returned but the error table"
        " (<!-- drift:errors -->) has no row for it"
    ]
    moved = new_problems(error_drift({**code, "request_too_large": [400]}, spec_text()), baseline)
    assert len(moved) == 1 and "`request_too_large` is answered with status 400" in moved[0]


def test_an_error_row_removed_from_the_spec_alone_is_caught():
    code = code_error_types()
    text = re.sub(r"^\s*\| `request_too_large` \|.*$", "", spec_text(), flags=re.M)
    assert new_problems(error_drift(code, text), error_drift(code, spec_text())) == [
        "error type `request_too_large` can be returned but the error table"
        " (<!-- drift:errors -->) has no row for it"
    ]


def test_a_config_field_removed_from_the_code_alone_is_caught():
    code = config_paths()
    assert "`retry.max_attempts`" in spec_text()
    shrunk = code - {"retry.max_attempts"}
    assert new_problems(config_drift(shrunk, spec_text()), config_drift(code, spec_text())) == [
        "the documents name config path `retry.max_attempts`, which the config models refuse"
    ]


def test_a_config_path_named_in_the_documents_alone_is_caught():
    code = config_paths()
    text = spec_text() + "\nRaise `rate_limit.burst` or `clients.<id>.budget.usd_per_week`.\n"
    assert new_problems(config_drift(code, text), config_drift(code, spec_text())) == [
        "the documents name config path `clients.<id>.budget.usd_per_week`,"
        " which the config models refuse",
        "the documents name config path `rate_limit.burst`, which the config models refuse",
    ]


def test_documents_name_config_items_by_key_index_or_placeholder():
    accepted = {"clients.*.key_sha256", "aliases.*.fallbacks[].provider", "policies[].name"}
    for mention in (
        "clients.billing.key_sha256",
        "clients.team-a.key_sha256.0",
        "aliases.<alias>.fallbacks.<i>.provider",
        "aliases.x.fallbacks[].provider",
    ):
        assert known_path(mention, accepted), mention
    assert known_path("policies.<name>", accepted) and known_path("clients.billing", accepted)
    assert not known_path("clients.billing.key", accepted)
    assert not known_path("aliases.x.fallbacks", accepted)


def test_config_paths_name_maps_lists_and_unions_as_the_documents_do():
    class Leaf(BaseModel):
        x: int = 1

    class Other(BaseModel):
        y: str

    class Root(BaseModel):
        by_name: dict[str, Leaf] = {}
        items: list[Leaf | Other] = []
        nested: dict[str, dict[str, Leaf]] | None = None

    assert config_paths(Root) == {
        "by_name", "by_name.*.x", "items", "items[].x", "items[].y", "nested", "nested.*.*.x",
    }  # fmt: skip
