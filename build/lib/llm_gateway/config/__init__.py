"""The gateway's configuration: the typed schema (``schema``), the checks beyond it
(``check``), the differences between two configs (``diff``) and line-precise locations in
the JSON file (``jsonlines``).

The schema's names are re-exported here: ``from ..config import GatewayConfig``.
"""

from .schema import (
    DEFAULT_CONFIG_PATH,
    AliasConfig,
    BreakerConfig,
    BudgetConfig,
    ClientConfig,
    ConfigError,
    GatewayConfig,
    MatchConfig,
    MetricsConfig,
    Mode,
    PolicyConfig,
    PriceConfig,
    ProviderConfig,
    RateLimitConfig,
    RetryConfig,
    RouteMatch,
    RouteRule,
    StateConfig,
    StrictModel,
    TargetConfig,
    TracingConfig,
    WeightedTargetConfig,
    config_path,
    load_config,
    parse_config,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AliasConfig",
    "BreakerConfig",
    "BudgetConfig",
    "ClientConfig",
    "ConfigError",
    "GatewayConfig",
    "MatchConfig",
    "MetricsConfig",
    "Mode",
    "PolicyConfig",
    "PriceConfig",
    "ProviderConfig",
    "RateLimitConfig",
    "RetryConfig",
    "RouteMatch",
    "RouteRule",
    "StateConfig",
    "StrictModel",
    "TargetConfig",
    "TracingConfig",
    "WeightedTargetConfig",
    "config_path",
    "load_config",
    "parse_config",
]
