"""OpenAI's published schemas (``tests/fixtures``): answers are validated against them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "openai-chat-subset.json"

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
