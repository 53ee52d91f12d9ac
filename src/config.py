"""Typed, strict configuration: JSON on disk into pydantic models at start-up.

Unknown fields are refused, so a typo is an error rather than a silently
ignored setting. Secrets never live here: a provider names the environment
variable that holds its key (``api_key_env``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_CONFIG_PATH = "config/example.config.json"


class ConfigError(Exception):
    """The config file is missing, not JSON, or does not fit the schema.

    ``str()`` is one line naming the file and the field, ready to print.
    """


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(StrictModel):
    type: Literal["openai"] = "openai"
    base_url: str = Field(pattern=r"^https?://[^\s/]+")
    api_key_env: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=256, ge=1)

    def api_key(self) -> str | None:
        """The key from the environment; ``None`` when unset or empty."""
        if self.api_key_env is None:
            return None
        return os.environ.get(self.api_key_env) or None

    @property
    def stub(self) -> bool:
        """A provider that names a key variable which is unset answers in stub mode."""
        return self.api_key_env is not None and self.api_key() is None


class TargetConfig(StrictModel):
    provider: str
    model: str = Field(min_length=1)


class AliasConfig(StrictModel):
    provider: str
    model: str = Field(min_length=1)
    fallbacks: list[TargetConfig] = []

    def targets(self) -> list[TargetConfig]:
        return [TargetConfig(provider=self.provider, model=self.model), *self.fallbacks]


class RateLimitConfig(StrictModel):
    requests_per_minute: int = Field(ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    # Reserved for the completion when a request gives no max_tokens; the real
    # usage replaces the reservation when the answer ends.
    reserve_completion_tokens: int = Field(default=256, ge=0)


class PriceConfig(StrictModel):
    """USD per million tokens for one provider model."""

    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)


class StateConfig(StrictModel):
    """Where limit counters live: this process's memory, or a Redis every replica shares."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", pattern=r"^(redis|rediss|unix)://\S+$"
    )
    key_prefix: str = Field(default="gw:", min_length=1, max_length=64)
    # Envoy's and Kong's global limiters also default to serving on when their store fails.
    on_error: Literal["fail_open", "fail_closed"] = "fail_open"
    # Connect and reply timeout of one Redis call: a dead Redis costs a request at most this.
    timeout_s: float = Field(default=0.5, gt=0, le=10)
    max_connections: int = Field(default=64, ge=1)


class GatewayConfig(StrictModel):
    providers: dict[str, ProviderConfig] = Field(min_length=1)
    aliases: dict[str, AliasConfig] = Field(min_length=1)
    rate_limit: RateLimitConfig
    max_prompt_tokens: int | None = Field(default=None, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    log_file: str = "logs/gateway.log"
    retry_after_cap_s: float = Field(default=2.0, ge=0)
    # provider name -> upstream model -> price
    pricing: dict[str, dict[str, PriceConfig]] = {}
    state: StateConfig = StateConfig()

    @model_validator(mode="after")
    def _aliases_name_known_providers(self) -> GatewayConfig:
        for alias, spec in self.aliases.items():
            for index, target in enumerate(spec.targets()):
                if target.provider not in self.providers:
                    where = "provider" if index == 0 else f"fallbacks.{index - 1}.provider"
                    raise ValueError(
                        f"aliases.{alias}.{where}: unknown provider {target.provider!r}"
                        f" (known: {', '.join(sorted(self.providers))})"
                    )
        for provider in self.pricing:
            if provider not in self.providers:
                raise ValueError(f"pricing.{provider}: unknown provider {provider!r}")
        return self


def load_config(path: str | os.PathLike[str] | None = None) -> GatewayConfig:
    """Read and validate the config; raise ``ConfigError`` with a one-line reason."""
    path = Path(path or os.environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read: {exc.strerror}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"config {path}: not valid JSON: {exc}") from None
    return parse_config(data, source=str(path))


def parse_config(data: object, *, source: str = "<config>") -> GatewayConfig:
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"config {source}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{field}: {message}" if field else message)
    return "; ".join(problems)
