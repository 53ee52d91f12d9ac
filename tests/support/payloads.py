"""OpenAI-shaped bodies for fake answers (respx, the fake upstream) and gateway requests."""

from __future__ import annotations

from typing import Any


def completion(
    content: str | None = "Hello there.", *, model: str = "up-model-a", usage: bool = True
) -> dict[str, Any]:
    """A non-streamed chat completion as an OpenAI upstream answers it."""
    answer: dict[str, Any] = {
        "id": "chatcmpl-up1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
    }
    if usage:
        answer["usage"] = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    return answer


def chat_body(content: str = "hi", **extra: Any) -> dict[str, Any]:
    """A chat request for alias ``default-chat``."""
    return {"model": "default-chat", "messages": [{"role": "user", "content": content}], **extra}
