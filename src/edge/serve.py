"""``llm-gateway serve``: the gateway under uvicorn, always with its own HTTP layer.

The config is checked before the server starts (one line naming the file and
the field, exit status 1), and a combination that would break a promise is
refused: several workers with the in-memory state would each enforce their own
limits, so ``--workers`` above 1 needs ``state.backend: "redis"``. Each worker
builds its app from ``GATEWAY_CONFIG`` (``app_from_environment``), which this
command sets to the config it checked.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import ConfigError, config_path, load_config
from ..observability.metrics import MULTIPROC_ENV

_PACKAGE = __package__.rpartition(".")[0]  # "src" in the repository, "llm_gateway" installed
APP_FACTORY = f"{_PACKAGE}.edge.app:app_from_environment"
PROTOCOL = f"{_PACKAGE}.edge.protocol:GatewayProtocol"
MEMORY_WORKERS = (
    '--workers {workers} with state.backend "memory" would give each worker its own'
    " limits and budgets (a client could get {workers} times its limit): set"
    ' state.backend to "redis" in {config} so the workers share them, or run one worker.'
)


def add_command(commands: Any) -> None:
    command = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway (stub mode for providers without a key).",
    )
    command.add_argument(
        "--config",
        type=Path,
        help="the config file (default: $GATEWAY_CONFIG, else config/example.config.json)",
    )
    command.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    command.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    command.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (default: 1; more need Redis state)",
    )
    command.add_argument(
        "--backlog",
        type=int,
        default=2048,
        help="connections the kernel queues before the gateway accepts them"
        " (default: %(default)s; capped by net.core.somaxconn)",
    )
    command.add_argument("--reload", action="store_true", help="restart when the code changes")
    command.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's own log level (the telemetry line is always written)",
    )
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = args.config or config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    if args.workers < 1:
        print("llm-gateway serve: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1 and config.state.backend == "memory":
        message = MEMORY_WORKERS.format(workers=args.workers, config=path)
        print(f"llm-gateway serve: {message}", file=sys.stderr)
        return 2
    if args.backlog < 1:
        print("llm-gateway serve: --backlog must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1 and args.reload:
        print("llm-gateway serve: --reload runs one worker; drop --workers", file=sys.stderr)
        return 2
    os.environ["GATEWAY_CONFIG"] = str(Path(path).resolve())
    import uvicorn  # imported here: the other subcommands do not need it

    with _metrics_dir(args.workers):
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            backlog=args.backlog,
            reload=args.reload,
            http=PROTOCOL,
            access_log=False,  # the telemetry line is the access log
            log_level=args.log_level,
        )
    return 0


@contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """Several workers share one metrics view through a directory (prometheus-client's
    multiprocess mode); made for this run when the environment names none."""
    if workers == 1 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="llm-gateway-metrics-") as folder:
        os.environ[MULTIPROC_ENV] = folder
        try:
            yield
        finally:
            del os.environ[MULTIPROC_ENV]
