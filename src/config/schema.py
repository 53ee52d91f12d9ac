"""The whole config file's model, and the loader: JSON on disk into it at start-up.

``load_config`` reads the file ``GATEWAY_CONFIG`` names and validates it;
every problem is one ``ConfigError`` line naming the file and the field. The
sections are in ``sections.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import orjson
from pydantic import Field, ValidationError, field_validator, model_validator

from .sections import (
    AliasConfig,
    BreakerConfig,
    ClientConfig,
    MetricsConfig,
    PolicyConfig,
    PriceConfig,
    ProviderConfig,
    RateLimitConfig,
    RetryConfig,
    RouteRule,
    StateConfig,
    StrictModel,
    TracingConfig,
)

DEFAULT_CONFIG_PATH = "config/example.config.json"


class ConfigError(Exception):
    """The config file is missing, not JSON, or does not fit the schema.

    ``str()`` is one line naming the file and the field, ready to print.
    """


class GatewayConfig(StrictModel):
    """The whole config file."""

    providers: dict[str, ProviderConfig] = Field(min_length=1)
    """The upstreams the gateway may call, by a name of your choice."""
    aliases: dict[str, AliasConfig] = Field(min_length=1)
    """The model names clients may ask for, and where each one goes."""
    rate_limit: RateLimitConfig
    """The limits of every client that has none of its own."""
    max_prompt_tokens: int | None = Field(default=None, ge=1)
    """Largest prompt accepted, in approximate tokens; a larger one is 400
    `prompt_too_large`. `null`: no cap."""
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    """Largest request body read; a larger one is 413 `request_too_large` (checked on
    `Content-Length` before reading, and while reading). The default fits several images:
    OpenAI takes images of up to 20 MB, and base64 adds a third."""
    max_json_depth: int = Field(default=64, ge=4, le=128)
    """How deeply a request body may nest objects and arrays (`{}` and `[]` count one
    level each). A deeper body is refused when it is read: 400 `invalid_request_error`,
    on every route. At most 128, so what the gateway forwards always re-encodes."""
    request_read_timeout_s: float = Field(default=30.0, gt=0)
    """HTTP layer: a request's head and body must arrive within this, from the
    connection opening (or the request's first byte on a kept-alive connection);
    slower clients get 408 `request_timeout` and are disconnected."""
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    """HTTP layer: largest request head (request line and headers); a larger one is
    431 `request_too_large`."""
    shutdown_drain_s: float = Field(default=10.0, ge=0)
    """After SIGTERM, how long streams in flight may run on before they end with an
    error event; one second later, connections still being written to are cut."""
    response_write_timeout_s: float = Field(default=30.0, gt=0)
    """How long a client may leave the gateway's output unread: once the connection's send
    buffer is full, a client that takes no byte of it for this long is cut (a stream's
    telemetry line: 499 `client_too_slow`). The gateway's HTTP layer enforces it."""
    log_file: str = "logs/gateway.log"
    """File the telemetry lines are appended to (its directory is created if needed).
    Cannot change on reload."""
    log_max_bytes: int | None = Field(default=None, ge=1024)
    """Rotate `log_file` before a write would take it past this size; `null`: never."""
    log_backups: int = Field(default=5, ge=1, le=1000)
    """Rotated log files kept (`<log_file>.1` to `.N`)."""
    retry_after_cap_s: float = Field(default=2.0, ge=0)
    """Longest upstream `Retry-After` the gateway waits for before retrying a target or
    trying the next one on the same provider; a longer one moves on at once."""
    max_queue_length: int = Field(default=1000, ge=1, le=1_000_000)
    """Requests waiting for capacity (`queue_timeout_ms`) in one process, at most;
    beyond it the 429 is immediate."""
    pricing: dict[str, dict[str, PriceConfig]] = Field(default_factory=dict)
    """USD per million tokens, by provider (a key of `providers`) and upstream model:
    the cost of each answer, budgets and the `cheapest` strategy. A model without a
    price has no cost."""
    state: StateConfig = StateConfig()
    """Where the limit counters and spend live. Read at start-up only."""
    routes: list[RouteRule] = Field(default_factory=list)
    """Routing rules, tried in order before the requested model is looked up."""
    deadline_s: float | None = Field(default=None, gt=0)
    """Overall deadline of a request's upstream attempts and waits, from its arrival
    (for streams, until the first chunk); `null`: none. An alias may set its own."""
    retry: RetryConfig = RetryConfig()
    """Retries per target on a 429, a 5xx or a connection error, for aliases without
    their own."""
    breaker: BreakerConfig = BreakerConfig()
    """The circuit breaker of every target."""
    metrics: MetricsConfig = MetricsConfig()
    """Prometheus metrics and the dashboard."""
    tracing: TracingConfig = TracingConfig()
    """OpenTelemetry traces."""
    clients: dict[Annotated[str, Field(min_length=1, max_length=256)], ClientConfig] | None = None
    """The clients, by client id (1 to 256 characters), and their keys; `null` or absent:
    open mode, where callers name themselves."""
    policies: list[PolicyConfig] = Field(default_factory=list)
    """Policy rules, applied in order to every call they match."""
    ledger_file: str | None = None
    """Where spend is recorded so budgets survive a restart (memory backend); `null`:
    `spend.ledger` next to `log_file`. Cannot change on reload."""
    admin_key_env: str = "GATEWAY_ADMIN_KEY"
    """The environment variable holding the admin key of the operator routes
    (`/admin/reload`, `/metrics`, the dashboard)."""

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
