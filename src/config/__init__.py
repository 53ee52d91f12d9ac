"""The gateway's configuration: the typed schema (``schema`` and its ``sections``), the checks
beyond it (``check``), the differences between two configs (``diff``), line-precise locations
in the JSON file (``jsonlines``) and the reference generated from the models (``reference``).

The schema's names are re-exported here: ``from ..config import GatewayConfig``.
"""

from .schema import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    GatewayConfig,
    config_path,
    load_config,
    parse_config,
)
from .sections import (
    Algorithm,
    AliasConfig,
    BreakerConfig,
    BudgetConfig,
    ClientConfig,
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
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Algorithm",
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
