"""Tracing set-up: the exporter follows the standard OTEL_ variables."""

from __future__ import annotations

import pytest

from src.config import ConfigError
from src.observability.tracing import exporter_names
from tests.support.configs import make_config


def test_exporter_choice_follows_the_standard_variables(tmp_path, monkeypatch):
    config, enabled = make_config(tmp_path), make_config(tmp_path, tracing={"enabled": True})
    for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    assert exporter_names(config) is None
    assert exporter_names(enabled) == ["otlp"]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    assert exporter_names(config) == ["console", "otlp"]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert exporter_names(enabled) is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert exporter_names(enabled) is None
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER: unknown exporter 'zipkin'"):
        exporter_names(config)
