"""Typed, strict configuration: JSON on disk into pydantic models at start-up.

Unknown fields are refused, so a typo is an error rather than a silently
ignored setting. Secrets never live here: a provider names the environment
variable that holds its key (``api_key_env``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_CONFIG_PATH = "config/example.config.json"


class ConfigError(Exception):
    """The config file is missing, not JSON, or does not fit the schema.

    ``str()`` is one line naming the file and the field, ready to print.
    """


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(StrictModel):
    """One upstream API.

    ``type`` picks the adapter: ``openai`` (any OpenAI-compatible API; ``base_url``
    ends in ``/v1``), ``anthropic`` (the Messages API; ``base_url`` ends in ``/v1``)
    or ``azure`` (Azure OpenAI; ``base_url`` is the resource endpoint, the target
    model is the deployment name, ``api_version`` is required).
    """

    type: Literal["openai", "anthropic", "azure"] = "openai"
    base_url: str = Field(pattern=r"^https?://[^\s/]+")
    api_key_env: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=256, ge=1)
    # The HTTP client behind the adapter: the gateway's own lean HTTP/1.1 client,
    # or aiohttp's (HTTP/1.1 too, more general, about five times the CPU per call).
    transport: Literal["http1", "aiohttp"] = "http1"
    # azure only: the api-version query parameter of every call
    api_version: str | None = Field(default=None, min_length=1)
    # anthropic only: the anthropic-version header, and max_tokens when the client gives none
    anthropic_version: str = Field(default="2023-06-01", min_length=1)
    default_max_tokens: int = Field(default=4096, ge=1)

    @model_validator(mode="after")
    def _type_fields(self) -> ProviderConfig:
        if self.type == "azure" and self.api_version is None:
            raise ValueError("api_version: required for type 'azure'")
        if self.type != "azure" and self.api_version is not None:
            raise ValueError(f"api_version: only for type 'azure', not {self.type!r}")
        return self

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


class WeightedTargetConfig(TargetConfig):
    weight: float = Field(default=1.0, gt=0)


class RetryConfig(StrictModel):
    """Attempts per target on a retryable failure (429, 5xx, connection error)."""

    max_attempts: int = Field(default=1, ge=1, le=10)
    base_backoff_s: float = Field(default=0.1, ge=0)
    max_backoff_s: float = Field(default=2.0, ge=0)


class BreakerConfig(StrictModel):
    """A target failing ``failure_threshold`` times in a row is skipped for ``cooldown_s``."""

    failure_threshold: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)


class AliasConfig(StrictModel):
    """Either one ``provider``/``model`` or a list of weighted ``targets``; then ``fallbacks``."""

    provider: str | None = None
    model: str | None = Field(default=None, min_length=1)
    targets: list[WeightedTargetConfig] | None = Field(default=None, min_length=1)
    strategy: Literal["weighted", "cheapest"] = "weighted"
    fallbacks: list[TargetConfig] = []
    deadline_s: float | None = Field(default=None, gt=0)
    retry: RetryConfig | None = None
    # A request over its client's rate limit waits up to this long for capacity (see queue).
    queue_timeout_ms: int | None = Field(default=None, ge=1, le=600_000)

    @model_validator(mode="after")
    def _one_form(self) -> AliasConfig:
        single = self.provider is not None or self.model is not None
        if single and self.targets is not None:
            raise ValueError("give either provider/model or targets, not both")
        if self.targets is None and (self.provider is None or self.model is None):
            raise ValueError("provider and model are required (or a targets list)")
        return self

    def primary(self) -> list[WeightedTargetConfig]:
        """The targets traffic is split between (one for the simple form)."""
        if self.targets is not None:
            return list(self.targets)
        assert self.provider is not None and self.model is not None
        return [WeightedTargetConfig(provider=self.provider, model=self.model)]

    def all_targets(self) -> list[tuple[str, TargetConfig]]:
        """Every target with its config path relative to the alias."""
        if self.targets is None:
            named: list[tuple[str, TargetConfig]] = [("provider", self.primary()[0])]
        else:
            named = [(f"targets.{i}.provider", t) for i, t in enumerate(self.targets)]
        return named + [(f"fallbacks.{i}.provider", t) for i, t in enumerate(self.fallbacks)]


class RouteMatch(StrictModel):
    """Conditions of a routing rule; all given ones must hold. Lists mean any of."""

    use_case: list[str] | None = Field(default=None, min_length=1)
    client: list[str] | None = Field(default=None, min_length=1)
    # shell-style patterns on the model the client asked for, e.g. "claude-*"
    model: list[str] | None = Field(default=None, min_length=1)
    min_prompt_tokens: int | None = Field(default=None, ge=0)
    max_prompt_tokens: int | None = Field(default=None, ge=0)


class RouteRule(StrictModel):
    name: str = Field(min_length=1)
    match: RouteMatch = RouteMatch()
    alias: str


Mode = Literal["enforce", "shadow"]
"""``shadow``: the rule never refuses; what it would have done goes into the telemetry line."""


class RateLimitConfig(StrictModel):
    requests_per_minute: int = Field(ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    # Reserved for the completion when a request gives no max_tokens; the real
    # usage replaces the reservation when the answer ends.
    reserve_completion_tokens: int = Field(default=256, ge=0)
    mode: Mode = "enforce"


class PriceConfig(StrictModel):
    """USD per million tokens for one provider model."""

    input_usd_per_mtok: float = Field(ge=0)
    """USD per million input tokens not read from or written to the provider's prompt cache."""
    output_usd_per_mtok: float = Field(ge=0)
    """USD per million output tokens, reasoning tokens included."""
    cached_input_usd_per_mtok: float | None = Field(default=None, ge=0)
    """USD per million input tokens read from the provider's prompt cache (OpenAI's
    ``cached_tokens``, Anthropic's ``cache_read_input_tokens``); unset: the input rate."""
    cache_write_usd_per_mtok: float | None = Field(default=None, ge=0)
    """USD per million input tokens written to the provider's prompt cache (Anthropic's
    ``cache_creation_input_tokens``); unset: the input rate."""


class MetricsConfig(StrictModel):
    """Prometheus metrics at ``GET /metrics`` and the dashboard's live figures."""

    enabled: bool = True
    # Distinct client ids given their own label value; later ones share "other",
    # so a caller inventing ids cannot grow the series without bound.
    max_clients: int = Field(default=100, ge=1, le=10_000)


class TracingConfig(StrictModel):
    """OpenTelemetry traces; the exporter is configured by the standard OTEL_* variables."""

    enabled: bool = False


class BudgetConfig(StrictModel):
    """USD a client may spend per UTC day and per UTC month; ``None`` is no cap."""

    usd_per_day: float | None = Field(default=None, gt=0)
    usd_per_month: float | None = Field(default=None, gt=0)
    mode: Mode = "enforce"


def _sha256_hex(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError("must be 64 hexadecimal digits (llm-gateway keys new CLIENT_ID)")
    return value.lower()


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


KeyHash = Annotated[str, AfterValidator(_sha256_hex)]


class ClientConfig(StrictModel):
    """One client: its key hash(es) and what it may do. Unset limits fall back to the globals."""

    # One hash, or several while a client rotates its key.
    key_sha256: Annotated[list[KeyHash], BeforeValidator(_one_or_many), Field(min_length=1)]
    rate_limit: RateLimitConfig | None = None
    allowed_models: list[str] | None = None
    budget: BudgetConfig | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    tags: dict[str, str] = {}
    # A request over the rate limit waits up to this long for capacity, instead of a 429.
    queue_timeout_ms: int | None = Field(default=None, ge=1, le=600_000)
    # Waiting clients with a higher priority are served first when capacity frees.
    priority: int = Field(default=0, ge=-100, le=100)

    def key_hashes(self) -> list[str]:
        return self.key_sha256


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


def _hook_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
        raise ValueError(f"{value!r} is not 'module:function'")
    return value


Names = str | list[str]


class MatchConfig(StrictModel):
    """Which calls a policy applies to: every given field must match; none given matches all."""

    client: Names | None = None
    alias: Names | None = None
    provider: Names | None = None
    tags: dict[str, str] = {}
    use_case: Names | None = None


class PolicyConfig(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    match: MatchConfig = MatchConfig()
    action: Literal["deny", "log_payload", "redact", "block_pattern", "hook"]
    # redact and block_pattern: named presets and/or regular expressions
    presets: list[str] = []
    patterns: list[Annotated[str, AfterValidator(_regex)]] = []
    replacement: str = "[REDACTED]"
    # hook: "module:function"
    hook: Annotated[str, AfterValidator(_hook_name)] | None = None
    mode: Mode = "enforce"

    @model_validator(mode="after")
    def _action_has_what_it_needs(self) -> PolicyConfig:
        from ..governance.redaction import (
            PRESETS,  # the preset table lives with the code that applies it
        )

        unknown = [p for p in self.presets if p not in PRESETS]
        if unknown:
            raise ValueError(
                f"presets: unknown preset {unknown[0]!r} (known: {', '.join(sorted(PRESETS))})"
            )
        if self.action in ("redact", "block_pattern") and not (self.presets or self.patterns):
            raise ValueError(f"action {self.action} needs presets or patterns")
        if self.action == "hook" and self.hook is None:
            raise ValueError('action hook needs hook: "module:function"')
        if self.action != "hook" and self.hook is not None:
            raise ValueError("hook is only for action hook")
        return self


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
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    """The largest request body, in bytes (refused with 413 before it is buffered). The
    default fits several images: OpenAI takes images of up to 20 MB, base64 adds a third."""
    # HTTP layer (edge.protocol.GatewayProtocol): a request's head and body must arrive
    # within this; a head may be at most this large
    request_read_timeout_s: float = Field(default=30.0, gt=0)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    # after SIGTERM: how long streams in flight may run on before they end with an error event
    shutdown_drain_s: float = Field(default=10.0, ge=0)
    log_file: str = "logs/gateway.log"
    log_max_bytes: int | None = Field(default=None, ge=1024)
    log_backups: int = Field(default=5, ge=1, le=1000)
    retry_after_cap_s: float = Field(default=2.0, ge=0)
    # Requests waiting for capacity (queue_timeout_ms), at most, in this process.
    max_queue_length: int = Field(default=1000, ge=1, le=1_000_000)
    # provider name -> upstream model -> price
    pricing: dict[str, dict[str, PriceConfig]] = {}
    state: StateConfig = StateConfig()
    routes: list[RouteRule] = []
    # the whole time a request may spend on its upstream attempts; null: no overall deadline
    deadline_s: float | None = Field(default=None, gt=0)
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()
    # client_id -> client; absent means open mode (callers name themselves)
    clients: dict[Annotated[str, Field(min_length=1, max_length=256)], ClientConfig] | None = None
    policies: list[PolicyConfig] = []
    # Where spend is recorded so budgets survive a restart (memory backend);
    # default: spend.ledger next to log_file.
    ledger_file: str | None = None
    # Environment variable holding the admin key (POST /admin/reload, /metrics, the dashboard).
    admin_key_env: str = "GATEWAY_ADMIN_KEY"

    def ledger_path(self) -> Path:
        if self.ledger_file is not None:
            return Path(self.ledger_file)
        return Path(self.log_file).parent / "spend.ledger"

    @field_validator("policies")
    @classmethod
    def _policy_names_unique(cls, policies: list[PolicyConfig]) -> list[PolicyConfig]:
        seen: set[str] = set()
        for policy in policies:
            if policy.name in seen:
                raise ValueError(f"duplicate policy name {policy.name!r}")
            seen.add(policy.name)
        return policies

    @model_validator(mode="after")
    def _aliases_name_known_providers(self) -> GatewayConfig:
        for alias, spec in self.aliases.items():
            for where, target in spec.all_targets():
                if target.provider not in self.providers:
                    raise ValueError(
                        f"aliases.{alias}.{where}: unknown provider {target.provider!r}"
                        f" (known: {', '.join(sorted(self.providers))})"
                    )
        for index, rule in enumerate(self.routes):
            if rule.alias not in self.aliases:
                raise ValueError(
                    f"routes.{index}.alias: unknown alias {rule.alias!r}"
                    f" (known: {', '.join(self.aliases)})"
                )
        names = [rule.name for rule in self.routes]
        if len(set(names)) != len(names):
            raise ValueError("routes: rule names must be unique")
        for provider in self.pricing:
            if provider not in self.providers:
                raise ValueError(f"pricing.{provider}: unknown provider {provider!r}")
        self._check_clients()
        return self

    def _check_clients(self) -> None:
        owners: dict[str, str] = {}
        for client_id, client in (self.clients or {}).items():
            for alias in client.allowed_models or ():
                if alias not in self.aliases:
                    raise ValueError(
                        f"clients.{client_id}.allowed_models: unknown alias {alias!r}"
                        f" (known: {', '.join(self.aliases)})"
                    )
            for digest in client.key_hashes():
                if digest in owners:
                    raise ValueError(
                        f"clients.{client_id}.key_sha256: the same key hash as client"
                        f" {owners[digest]!r}"
                    )
                owners[digest] = client_id


def config_path() -> Path:
    """The config file the environment names (``GATEWAY_CONFIG``), or the default."""
    return Path(os.environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str] | None = None) -> GatewayConfig:
    """Read and validate the config; raise ``ConfigError`` with a one-line reason."""
    path = Path(path) if path else config_path()
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
