"""Translation across dialects: one translator per inbound -> outbound pair, and the choice.

A request travels in its inbound operation. For each target the pipeline
asks ``pick``: a provider that speaks that operation gets it passed through
(``None``: no translator); otherwise the first translator from the inbound
operation into one the provider speaks carries it, and refuses what does not
map with ``UnsupportedField`` (a 400 naming the field). A provider that
nothing reaches refuses the request the same way.

The translators, each in the module named for its pair:

- ``openai_anthropic``: chat completions in, Anthropic Messages upstream;
- ``anthropic_openai``: Anthropic Messages in, chat completions upstream;
- ``responses_chat``: the Responses API in, chat completions upstream (a
  provider without the Responses API: the stub);
- ``responses_anthropic``: the Responses API in, Anthropic Messages upstream
  (the two translators it is made of, composed).
"""

from __future__ import annotations

from ..errors import UnsupportedField
from ..providers import Provider
from ..providers.operations import Operation
from .anthropic_openai import MESSAGES_TO_CHAT
from .base import Context, StreamTranslator, Translator
from .openai_anthropic import CHAT_TO_MESSAGES
from .responses_anthropic import RESPONSES_TO_MESSAGES
from .responses_chat import RESPONSES_TO_CHAT

__all__ = ["TRANSLATORS", "Context", "StreamTranslator", "Translator", "pick"]

TRANSLATORS: tuple[Translator, ...] = (
    CHAT_TO_MESSAGES,
    MESSAGES_TO_CHAT,
    RESPONSES_TO_MESSAGES,
    RESPONSES_TO_CHAT,
)


def pick(inbound: Operation, provider: Provider) -> Translator | None:
    """``None`` to pass the request through, else the translator that carries it."""
    if inbound.name in provider.speaks:
        return None
    for translator in TRANSLATORS:
        if translator.inbound is inbound and translator.outbound.name in provider.speaks:
            return translator
    reason = f"{provider.kind.capitalize()} offers no {inbound.name} API"
    raise UnsupportedField(provider.who, "model", reason)
