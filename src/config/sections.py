"""The config's sections: one strict pydantic model per object of the JSON file.

Unknown fields are refused, so a typo is an error rather than a silently
ignored setting. Secrets never live here: a provider names the environment
variable that holds its key (``api_key_env``). The docstring under each field
is its description in the configuration reference.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

# A full OpenAI embeddings batch (2,048 inputs) of 3,072-dimension vectors is about
# 34 MB in base64 (the OpenAI SDKs' default encoding) and about 41 MB at 1,536
# dimensions as compact JSON floats: 64 MiB holds either with room.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 4096
DEFAULT_POOL_TIMEOUT_S = 5.0


class StrictModel(BaseModel):
    """A config section: unknown fields refused, values frozen once loaded.

    The docstring under each field is its description, and the configuration
    reference (``docs/configuration.md``) is generated from them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ProviderConfig(StrictModel):
    """One upstream API.

    ``type`` picks the adapter: ``openai`` (any OpenAI-compatible API; ``base_url``
    ends in ``/v1``), ``anthropic`` (the Messages API; ``base_url`` ends in ``/v1``)
    or ``azure`` (Azure OpenAI; ``base_url`` is the resource endpoint, the target
    model is the deployment name, ``api_version`` is required).
    """

    type: Literal["openai", "anthropic", "azure"] = "openai"
    """The adapter: any OpenAI-compatible API, Anthropic's Messages API, or Azure OpenAI."""
    base_url: str = Field(pattern=r"^https?://[^\s/]+")
    """The API root: `https://api.openai.com/v1` or `http://localhost:11434/v1` (openai),
    `https://api.anthropic.com/v1` (anthropic), `https://<resource>.openai.azure.com` (azure)."""
    api_key_env: str | None = None
    """The environment variable holding the key (never the key itself). Unset or empty:
    the provider answers in stub mode. `null`: the provider is called without a key."""
    timeout_s: float = Field(default=30.0, gt=0)
    """How long one attempt may take: the whole answer for a non-streamed call; the
    response headers, then each gap between events, for a stream."""
    max_connections: int = Field(default=DEFAULT_MAX_CONNECTIONS, ge=1)
    """Connections the gateway may hold open to this provider at once (one per request
    in progress, streams included). A request that finds them all in use waits for one,
    at most `pool_timeout_s`."""
    pool_timeout_s: float = Field(default=DEFAULT_POOL_TIMEOUT_S, gt=0)
    """How long a request waits for a free connection when all `max_connections` are in
    use (never longer than `timeout_s`); then this target fails with
    `upstream_pool_exhausted` and the next target, if any, is tried."""
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=1024)
    """The largest non-streamed answer (chat completion, embeddings) the gateway reads from
    this provider, in bytes as sent. A larger one is cut where it passes the bound (or
    refused from its `Content-Length`) and fails the attempt with `upstream_error`. Also
    the most text (in characters) a stream keeps for a hook or `log_payload` rule."""
    max_event_bytes: int = Field(default=DEFAULT_MAX_EVENT_BYTES, ge=1024)
    """The largest server-sent event of a stream from this provider, in bytes. A stream
    whose event grows past it fails with one error event (`upstream_error`)."""
    transport: Literal["http1", "aiohttp"] = "http1"
    """The HTTP client behind the adapter: the gateway's own lean HTTP/1.1 client, or
    aiohttp's, more general and about five times the CPU per call."""
    api_version: str | None = Field(default=None, min_length=1)
    """Azure only, and required there: the `api-version` query parameter of every call."""
    anthropic_version: str = Field(default="2023-06-01", min_length=1)
    """Anthropic only: the `anthropic-version` header."""
    default_max_tokens: int = Field(default=4096, ge=1)
    """Anthropic only: the `max_tokens` sent when the client gives neither
    `max_completion_tokens` nor `max_tokens` (Anthropic requires one)."""

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
    """One target: a provider and the model name sent to it."""

    provider: str
    """The provider (a key of `providers`)."""
    model: str = Field(min_length=1)
    """The model name sent to that provider (for azure: the deployment name)."""


class WeightedTargetConfig(TargetConfig):
    """One of several targets sharing an alias's traffic."""

    weight: float = Field(default=1.0, gt=0)
    """Its share of the traffic, relative to the other targets' weights."""


class RetryConfig(StrictModel):
    """Attempts per target on a retryable failure (429, 5xx, connection error)."""

    max_attempts: int = Field(default=1, ge=1, le=10)
    """Attempts per target, the first included (1: no retry)."""
    base_backoff_s: float = Field(default=0.1, ge=0)
    """Backoff before the first retry; it doubles on each retry, with jitter."""
    max_backoff_s: float = Field(default=2.0, ge=0)
    """Ceiling of the backoff."""


class BreakerConfig(StrictModel):
    """A target failing ``failure_threshold`` times in a row is skipped for ``cooldown_s``."""

    failure_threshold: int = Field(default=5, ge=1)
    """Consecutive failed attempts that open a target's breaker."""
    cooldown_s: float = Field(default=30.0, gt=0)
    """How long an open breaker skips its target before one request probes it."""


class AliasConfig(StrictModel):
    """Either one ``provider``/``model`` or a list of weighted ``targets``; then ``fallbacks``."""

    provider: str | None = None
    """The target's provider (a key of `providers`); with `model`, unless `targets` is given."""
    model: str | None = Field(default=None, min_length=1)
    """The model name sent to that provider (for azure: the deployment name)."""
    targets: list[WeightedTargetConfig] | None = Field(default=None, min_length=1)
    """Instead of `provider` and `model`: several targets sharing the traffic."""
    strategy: Literal["weighted", "cheapest"] = "weighted"
    """How `targets` are ordered for each request: drawn by weight among those whose
    breaker is closed, or cheapest first for the request, by `pricing`."""
    fallbacks: list[TargetConfig] = []
    """Further targets, tried in order when the ones before have failed."""
    deadline_s: float | None = Field(default=None, gt=0)
    """This alias's request deadline, replacing the top-level `deadline_s`."""
    retry: RetryConfig | None = None
    """This alias's retries, replacing the top-level `retry`."""
    queue_timeout_ms: int | None = Field(default=None, ge=1, le=600_000)
    """A request for this alias over its client's rate limit waits up to this long for
    capacity instead of an immediate 429 (the client's own setting comes first)."""

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
    """The `X-Use-Case` header is one of these."""
    client: list[str] | None = Field(default=None, min_length=1)
    """The client id matches one of these shell-style patterns (`batch-*`)."""
    model: list[str] | None = Field(default=None, min_length=1)
    """The model the client asked for matches one of these patterns (`claude-*`)."""
    min_prompt_tokens: int | None = Field(default=None, ge=0)
    """The approximate prompt is at least this many tokens."""
    max_prompt_tokens: int | None = Field(default=None, ge=0)
    """The approximate prompt is at most this many tokens."""


class RouteRule(StrictModel):
    """A routing rule: requests that match go to its alias. The first match wins."""

    name: str = Field(min_length=1)
    """The rule's name, unique; logged as `route` when it matches."""
    match: RouteMatch = RouteMatch()
    """The conditions; all given ones must hold, and none given matches every request."""
    alias: str
    """The alias a matching request goes to (a key of `aliases`)."""


Mode = Literal["enforce", "shadow"]
"""``shadow``: the rule never refuses; what it would have done goes into the telemetry line."""


Algorithm = Literal["sliding_log", "gcra"]
"""How a rate limit counts: ``sliding_log`` keeps each admission of the last minute (exact,
memory grows with the limit); ``gcra`` keeps one time per client and limit (constant memory)."""


class RateLimitConfig(StrictModel):
    """Per-client limits over any 60 seconds."""

    requests_per_minute: int = Field(ge=1)
    """Requests each client may make in any 60 seconds. A refusal of a known client
    (an unknown model, an invalid body, a policy, ...) counts as one of them."""
    tokens_per_minute: int | None = Field(default=None, ge=1)
    """Tokens (prompt and completion) each client may use in any 60 seconds;
    `null`: no token limit. A request of `n` choices reserves `n` times its completion
    budget; one that could never fit the minute is 400 `invalid_request_error`
    (`param` `n`)."""
    reserve_completion_tokens: int = Field(default=256, ge=0)
    """Completion tokens reserved per choice at admission for a request that gives
    neither `max_completion_tokens` nor `max_tokens`; the real usage replaces the
    reservation when the answer ends."""
    mode: Mode = "enforce"
    """`shadow`: the limits refuse nothing, and the log says what they would have done."""
    algorithm: Algorithm = "sliding_log"
    """How the limits count. `sliding_log`: a request is admitted when fewer than
    `requests_per_minute` were admitted in the 60 seconds before it (one record per
    admission; memory grows with the limit). `gcra`: the generic cell rate algorithm, one
    stored time per client and limit whatever the limit: up to `requests_per_minute` at
    once, then one every 60/`requests_per_minute` seconds (tokens alike)."""


class PriceConfig(StrictModel):
    """USD per million tokens for one provider model."""

    input_usd_per_mtok: float = Field(ge=0)
    """USD per million prompt (input) tokens."""
    output_usd_per_mtok: float = Field(ge=0)
    """USD per million completion (output) tokens, reasoning tokens included."""
    cached_input_usd_per_mtok: float | None = Field(default=None, ge=0)
    """USD per million input tokens read from the provider's prompt cache (OpenAI's
    `cached_tokens`, Anthropic's `cache_read_input_tokens`); unset: the input rate."""
    cache_write_usd_per_mtok: float | None = Field(default=None, ge=0)
    """USD per million input tokens written to the provider's prompt cache (Anthropic's
    `cache_creation_input_tokens`); unset: the input rate."""


class MetricsConfig(StrictModel):
    """Prometheus metrics at ``GET /metrics`` and the dashboard's live figures."""

    enabled: bool = True
    """Serve `/metrics`, `/dashboard` and `/dashboard/data`, and feed them; `false`
    removes the routes and their work."""
    max_clients: int = Field(default=100, ge=1, le=10_000)
    """Distinct client ids given their own label value; later ones share `other`, so
    a caller inventing ids cannot grow the series without bound."""


class TracingConfig(StrictModel):
    """OpenTelemetry traces; the exporter is configured by the standard OTEL_* variables."""

    enabled: bool = False
    """Turn tracing on (naming an exporter in `OTEL_TRACES_EXPORTER` does too)."""


class BudgetConfig(StrictModel):
    """USD a client may spend per UTC day and per UTC month; ``None`` is no cap."""

    usd_per_day: float | None = Field(default=None, gt=0)
    """USD the client may spend per UTC day; `null`: no daily cap."""
    usd_per_month: float | None = Field(default=None, gt=0)
    """USD the client may spend per UTC month; `null`: no monthly cap."""
    mode: Mode = "enforce"
    """`shadow`: the budget refuses nothing (spend is still counted), and the log says
    what it would have done."""


def _sha256_hex(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError("must be 64 hexadecimal digits (llm-gateway keys new CLIENT_ID)")
    return value.lower()


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


KeyHash = Annotated[str, AfterValidator(_sha256_hex)]


class ClientConfig(StrictModel):
    """One client: its key hash(es) and what it may do. Unset limits fall back to the globals."""

    key_sha256: Annotated[list[KeyHash], BeforeValidator(_one_or_many), Field(min_length=1)]
    """The SHA-256 of the client's key, 64 hex digits (`llm-gateway keys new` prints it);
    a list of them while the client rotates its key. One hash may not belong to two
    clients."""
    rate_limit: RateLimitConfig | None = None
    """The client's own limits, replacing the top-level `rate_limit`."""
    allowed_models: list[str] | None = None
    """The aliases the client may use (others are 403 `model_not_allowed`, and
    `/v1/models` lists only these); `null`: every alias."""
    budget: BudgetConfig | None = None
    """Spend caps per UTC day and month; `null`: no budget."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Most completion tokens one request may ask for, across its `n` choices: more is a
    400; a request that asks for nothing is sent with `max_tokens` set to this divided
    among its choices (400 when that is less than one token)."""
    tags: dict[str, str] = {}
    """Labels for policies to match (`{"team": "finance"}`)."""
    queue_timeout_ms: int | None = Field(default=None, ge=1, le=600_000)
    """A request over the client's rate limit waits up to this long for capacity
    instead of an immediate 429."""
    priority: int = Field(default=0, ge=-100, le=100)
    """Among waiting clients, higher priorities are served first when capacity frees."""

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
    """The client id is this one, or one of these."""
    alias: Names | None = None
    """The alias serving the call (after routing rules) is this one, or one of these."""
    provider: Names | None = None
    """Any provider the alias may reach (its targets and fallbacks) is one of these."""
    tags: dict[str, str] = {}
    """Every tag listed equals the client's tag."""
    use_case: Names | None = None
    """The `X-Use-Case` header is this one, or one of these."""


class PolicyConfig(StrictModel):
    """A policy rule, applied in order to every call it matches."""

    name: str = Field(min_length=1, max_length=200)
    """The rule's name, unique; named in refusals and in the telemetry field `policies`."""
    match: MatchConfig = MatchConfig()
    """Which calls the rule applies to; none given: every call."""
    action: Literal["deny", "log_payload", "redact", "block_pattern", "hook"]
    """What the rule does to a matching call."""
    presets: list[str] = []
    """For `redact` and `block_pattern`: named patterns, from `email`, `card_number`,
    `iban`, `us_ssn`, `phone`, `ipv4` and `secret`."""
    patterns: list[Annotated[str, AfterValidator(_regex)]] = []
    """For `redact` and `block_pattern`: regular expressions (Python syntax; double the
    backslashes in JSON). One of `presets` or `patterns` is required."""
    replacement: str = "[REDACTED]"
    """For `redact`: what replaces each match."""
    hook: Annotated[str, AfterValidator(_hook_name)] | None = None
    """For `hook`, and required there: the Python function to call, `module:function`."""
    mode: Mode = "enforce"
    """`shadow`: the rule changes and refuses nothing, and the log says what it would
    have done."""

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
    """`memory`: counters in this process (each worker or replica counts alone).
    `redis`: counters in one Redis shared by every worker and replica. The other fields
    are read only with `redis`."""
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", pattern=r"^(redis|rediss|unix)://\S+$"
    )
    """The Redis to use, with its database number; a password goes in the URL
    (`redis://:secret@host:6379/0`) and is never logged."""
    redis_mode: Literal["standalone", "cluster", "sentinel"] = "standalone"
    """How `redis_url` is read. `standalone`: one Redis server. `cluster`: any one node
    of a Redis Cluster (the others are discovered; MOVED, ASK and failover are followed).
    `sentinel`: a Sentinel (several as `redis://host1:26379,host2:26379/0`), which names
    the primary of `sentinel_service`; the URL's password is the primary's (the Sentinels
    are asked without one), and `rediss://` means TLS to the Sentinels and the primary.
    `cluster` and `sentinel` take a `redis://` or `rediss://` URL, not `unix://`."""
    sentinel_service: str | None = Field(default=None, min_length=1, max_length=200)
    """With `redis_mode` `sentinel`: the name the Sentinels monitor the primary by
    (`sentinel monitor <name> ...`). Required then, refused otherwise."""
    key_prefix: str = Field(default="gw:", min_length=1, max_length=64)
    """Prefix of every key the gateway writes, so several gateways can share one Redis."""
    on_error: Literal["fail_open", "fail_closed"] = "fail_open"
    """While Redis cannot be reached: serve without limits, or refuse with 503
    `limiter_unavailable`."""
    timeout_s: float = Field(default=0.5, gt=0, le=10)
    """Connect and reply timeout of one Redis call, and the longest wait for its turn
    (`max_connections`): what a dead Redis costs a call at most. On a cluster a call that
    timed out is retried once, so a node that hangs costs up to twice this."""
    max_connections: int = Field(default=64, ge=1)
    """Redis connections per process: at most this many calls in flight, in every mode;
    the others wait for their turn, at most `timeout_s`."""

    @model_validator(mode="after")
    def _sentinel_needs_a_service(self) -> StateConfig:
        if self.redis_mode == "sentinel" and self.sentinel_service is None:
            raise ValueError('sentinel_service: required with redis_mode "sentinel"')
        if self.redis_mode != "sentinel" and self.sentinel_service is not None:
            raise ValueError('sentinel_service: only with redis_mode "sentinel"')
        if self.redis_mode != "standalone" and self.redis_url.startswith("unix://"):
            raise ValueError(f"redis_url: a unix socket cannot name a {self.redis_mode} node")
        if self.redis_mode == "sentinel":
            database = self.redis_url.partition("//")[2].partition("/")[2].partition("?")[0]
            if database and not database.isdigit():
                raise ValueError(f"redis_url: the database must be a number, not {database!r}")
        return self
