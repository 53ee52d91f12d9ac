"""Offline operator tools behind the ``llm-gateway`` command: keys, config checks, the usage
report, replay."""
