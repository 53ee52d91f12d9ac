"""OpenAI's published schemas (``tests/fixtures``): answers are validated against them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jsonschema

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SCHEMA_PATH = FIXTURES / "openai-chat-subset.json"
RESPONSES_SCHEMA_PATH = FIXTURES / "openai-responses-subset.json"

Validate = Callable[[Any, str], None]


def openai_validator() -> Validate:
    """``validate(instance, "CreateChatCompletionResponse")``: raises when it does not match."""
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resource = Resource.from_contents(
        json.loads(SCHEMA_PATH.read_text()), default_specification=DRAFT202012
    )
    registry = Registry().with_resource("urn:openai", resource)

    def validate(instance: Any, name: str) -> None:
        reference = {"$ref": f"urn:openai#/components/schemas/{name}"}
        jsonschema.Draft202012Validator(reference, registry=registry).validate(instance)

    return validate


def responses_validator(name: str) -> jsonschema.protocols.Validator:
    """A validator for the Responses API's schema ``name`` (``Response``, ``ResponseStreamEvent``)."""
    import jsonschema

    document = json.loads(RESPONSES_SCHEMA_PATH.read_text())
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)
