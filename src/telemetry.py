"""Telemetry: one JSON line per request, to stdout and appended to the log file.

The line is built from ``CallRecord``'s explicit fields, never from a request
or header dict, so a key cannot slip into it. structlog renders it (orjson);
``LineWriter`` writes it from a background thread, so a slow disk never stalls
the event loop, and a single writer means lines never interleave.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import structlog

_FLUSH_INTERVAL_S = 0.05


class CallRecord:
    """Everything the telemetry line says about one request, filled in as it runs."""

    __slots__ = (
        "alias", "breaker", "client_id", "completion_tokens", "endpoint", "error_type",
        "outcome", "prompt_tokens", "provider", "request_id", "requested_model", "retries",
        "route", "skipped_targets", "started", "status", "stream", "stub", "targets_tried",
        "ttft_ms", "upstream_latency_ms", "upstream_model",
    )  # fmt: skip

    def __init__(self, request_id: str, endpoint: str, client_id: str) -> None:
        self.started = time.perf_counter()
        self.request_id = request_id
        self.endpoint = endpoint
        self.client_id = client_id
        self.alias: str | None = None
        self.requested_model: str | None = None
        self.route: str | None = None
        self.provider: str | None = None
        self.upstream_model: str | None = None
        self.status = 200
        self.error_type: str | None = None
        self.upstream_latency_ms: float | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.stub = False
        self.targets_tried = 0
        self.retries = 0
        self.skipped_targets = 0
        self.breaker: str | None = None
        self.stream = False
        self.ttft_ms: float | None = None
        # completed; refused (by the gateway, or by the provider for a bad request);
        # upstream_error; client_disconnected; error (a gateway fault, status 500)
        self.outcome = "completed"

    def fields(self) -> dict[str, Any]:
        prompt, completion = self.prompt_tokens, self.completion_tokens
        total = None if prompt is None and completion is None else (prompt or 0) + (completion or 0)
        return {
            "request_id": self.request_id,
            "client_id": self.client_id,
            "endpoint": self.endpoint,
            "requested_model": self.requested_model,
            "route": self.route,
            "alias": self.alias,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "status": self.status,
            "error_type": self.error_type,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 3),
            "upstream_latency_ms": self.upstream_latency_ms,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": total,
            "stub": self.stub,
            "targets_tried": self.targets_tried,
            "retries": self.retries,
            "skipped_targets": self.skipped_targets,
            "breaker": self.breaker,
            "stream": self.stream,
            "ttft_ms": self.ttft_ms,
            "outcome": self.outcome,
        }


class LineWriter:
    """Appends byte lines to a file and to stdout from one background thread.

    ``write`` only queues the line. The thread wakes every 50 ms (or on
    ``close``) and writes everything queued in one ``os.write`` per target. A
    failed write is counted in ``dropped`` and does not stop the gateway.
    """

    def __init__(self, path: str | os.PathLike[str], stdout: BinaryIO | None = None) -> None:
        self.path = Path(path)
        self.dropped = 0
        self._stdout = stdout if stdout is not None else sys.stdout.buffer
        self._pending: deque[bytes] = deque()
        self._wake = threading.Event()
        self._closing = False
        self._fd = self._open()
        self._thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
        self._thread.start()

    def write(self, line: bytes) -> None:
        self._pending.append(line)

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        self._thread.join()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError:
            return None

    def _run(self) -> None:
        while True:
            self._wake.wait(_FLUSH_INTERVAL_S)
            self._flush()
            if self._closing:
                self._flush()
                return

    def _flush(self) -> None:
        pending = self._pending
        batch = []
        while pending:
            batch.append(pending.popleft())
        if not batch:
            return
        data = b"\n".join(batch) + b"\n"
        if self._fd is None:
            self._fd = self._open()
        if self._fd is None or not _write_all(self._fd, data):
            self.dropped += len(batch)
        try:
            self._stdout.write(data)
            self._stdout.flush()
        except (OSError, ValueError):
            pass  # stdout gone (closed pipe): the file is the record


def _write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError:
        return False
    return True


class _WriterLogger:
    """The structlog logger at the end of the pipeline: hands rendered lines to the writer."""

    def __init__(self, writer: LineWriter) -> None:
        self._writer = writer

    def msg(self, line: bytes) -> None:
        self._writer.write(line)

    info = warning = error = msg


class Telemetry:
    """Emits one line per request through structlog into a ``LineWriter``."""

    def __init__(self, writer: LineWriter) -> None:
        self.writer = writer
        self._log = structlog.wrap_logger(
            _WriterLogger(writer),
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
            ],
        )

    def emit(self, record: CallRecord) -> None:
        self._log.info("request", **record.fields())

    def close(self) -> None:
        self.writer.close()
