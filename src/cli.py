"""``llm-gateway``: the one command an operator runs.

    llm-gateway serve [--config PATH] [--host H] [--port P] [--workers N] [--reload]
    llm-gateway keys new CLIENT_ID | keys hash
    llm-gateway config validate FILE | config diff OLD NEW
    llm-gateway report [LOG...] [--since D] [--until D] [--format table|csv|json]
    llm-gateway replay --config NEW LOG...

Each subcommand lives with the code it drives (``edge.serve``, ``tools.*``) and
registers itself here. Exit status: 0 on success, 1 when the thing checked is
wrong (an invalid config), 2 for a bad invocation.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .edge import serve
from .tools import configtool, keys, replay, report

PROG = "llm-gateway"


def parser() -> argparse.ArgumentParser:
    """The command line, every subcommand registered."""
    main_parser = argparse.ArgumentParser(
        prog=PROG, description="The governed LLM gateway and its operator tools."
    )
    main_parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (serve, keys, configtool, report, replay):
        module.add_command(commands)
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
