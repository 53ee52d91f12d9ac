"""Observability: the call record, its telemetry line and writer, metrics, the dashboard's
rolling figures, tracing."""
