"""Text patterns the policies replace or refuse, and the scrubbing of logged payloads.

``PRESETS`` are the named patterns a policy can use instead of writing its own
regular expression. They favour catching a value over never catching too
much: a policy that redacts card numbers should also redact a 16-digit order
number that looks like one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

PRESETS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    # 13 to 19 digits, optionally grouped by single spaces or dashes (Visa, Mastercard, Amex, ...)
    "card_number": r"\b\d(?:[ -]?\d){12,18}\b",
    "iban": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
    "us_ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "phone": r"(?<![\w+])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?(?:[ .-]?\d{2,4}){2,3}\b",
    "ipv4": r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
    # Credentials: OpenAI/Anthropic/gateway style keys, AWS access keys, GitHub and
    # Slack tokens, bearer tokens, JWTs and PEM private keys.
    "secret": (
        r"\b(?:sk|pk|rk|gwk)-[A-Za-z0-9_-]{16,}"
        r"|\bAKIA[0-9A-Z]{16}\b"
        r"|\bgh[pousr]_[A-Za-z0-9]{30,}"
        r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
        r"|\b[Bb]earer\s+[A-Za-z0-9._~+/-]{12,}=*"
        r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
        r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    ),
}

# Body fields whose values are credentials whatever they look like.
_SECRET_FIELDS = re.compile(r"(?i)(api[_-]?key|secret|password|passwd|token|authorization)")
_SECRET_TEXT = re.compile(PRESETS["secret"])
SECRET_MARK = "[REDACTED:secret]"


def compile_patterns(presets: Iterable[str], patterns: Iterable[str]) -> re.Pattern[str]:
    """One alternation of the named presets and the given expressions."""
    parts = [PRESETS[name] for name in presets] + list(patterns)
    return re.compile("|".join(f"(?:{part})" for part in parts))


def map_prompt_text(body: dict[str, Any], change: Callable[[str], str]) -> None:
    """Apply ``change``, in place, to the prompt's text, in every dialect's request: every
    message's string content and text parts (chat, Anthropic's Messages), Anthropic's
    ``system``, the Responses API's ``instructions`` and ``input`` (a string, or items with
    content), an embeddings request's ``input`` strings."""
    _map_messages(body.get("messages"), change)
    for field in ("system", "instructions"):
        value = body.get(field)
        if isinstance(value, str):
            body[field] = change(value)
        elif isinstance(value, list):
            _map_parts(value, change)
    value = body.get("input")
    if isinstance(value, str):
        body["input"] = change(value)
    elif isinstance(value, list):
        body["input"] = [change(item) if isinstance(item, str) else item for item in value]
        _map_messages(value, change)


def _map_messages(messages: object, change: Callable[[str], str]) -> None:
    if not isinstance(messages, list):
        return
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            message["content"] = change(content)
        elif isinstance(content, list):
            _map_parts(content, change)
        output = message.get("output")  # a Responses API function call's output
        if isinstance(output, str):
            message["output"] = change(output)


def _map_parts(parts: list[Any], change: Callable[[str], str]) -> None:
    for part in parts:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            part["text"] = change(part["text"])


def prompt_texts(body: dict[str, Any]) -> list[str]:
    """The texts ``map_prompt_text`` would visit (it changes nothing here)."""
    found: list[str] = []

    def keep(text: str) -> str:
        found.append(text)
        return text

    map_prompt_text(body, keep)
    return found


def scrub_secrets(value: Any) -> Any:
    """A copy of a JSON value with credential-like strings and credential fields masked."""
    if isinstance(value, str):
        return _SECRET_TEXT.sub(SECRET_MARK, value)
    if isinstance(value, dict):
        return {
            key: SECRET_MARK
            if isinstance(key, str) and _SECRET_FIELDS.search(key) and isinstance(item, str)
            else scrub_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [scrub_secrets(item) for item in value]
    return value
