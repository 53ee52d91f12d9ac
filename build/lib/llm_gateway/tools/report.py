"""``llm-gateway report``: usage and cost per UTC day, client and alias, from the log files.

    llm-gateway report                      # the config's log_file and its rotated copies
    llm-gateway report logs/gateway.log --since 2026-11-01 --until 2026-11-30 --format csv

Each path named is read with its rotated copies (``<path>.N`` ... ``<path>.1``,
then ``<path>``), oldest first, one line at a time, so the log is never loaded
whole. Damaged lines are skipped and counted on stderr. Exit status: 0, or 2
for a bad argument or a file that cannot be read.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from ..config import ConfigError, load_config
from ..observability.logfile import rotated_paths
from .usage import COLUMNS, UsageReport, parse_bound

_READ_BUFFER = 1 << 20


def add_command(commands: Any) -> None:
    command = commands.add_parser(
        "report",
        help="usage and cost per day, client and alias",
        description="Requests, errors, tokens, cost and p50/p95 latency"
        " per UTC day, client and alias, from the gateway's log files.",
    )
    command.add_argument(
        "logs", nargs="*", metavar="LOG",
        help="log file(s); each is read with its rotated copies (default: the config's log_file)",
    )  # fmt: skip
    command.add_argument("--since", help="from this UTC date or date-time (inclusive)")
    command.add_argument(
        "--until", help="up to this UTC date (inclusive, whole day) or date-time (exclusive)"
    )
    command.add_argument("--format", choices=("table", "csv", "json"), default="table")
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        since = parse_bound(args.since, end=False) if args.since else None
        until = parse_bound(args.until, end=True) if args.until else None
    except ValueError as exc:
        print(f"report: bad --since/--until: {exc}", file=sys.stderr)
        return 2
    files = _files(args.logs)
    if not files:
        print("report: no log file found", file=sys.stderr)
        return 2
    report = UsageReport(since, until)
    for path in files:
        try:
            with open(path, "rb", buffering=_READ_BUFFER) as lines:
                for line in lines:
                    report.feed(line)
        except OSError as exc:
            print(f"report: {path}: {exc.strerror}", file=sys.stderr)
            return 2
    rows = report.rows()
    {"table": _table, "csv": _csv, "json": _json}[args.format](rows, sys.stdout)
    print(
        f"report: {report.lines} lines in {len(files)} file(s),"
        f" {report.damaged} damaged line(s) skipped",
        file=sys.stderr,
    )
    return 0


def _files(logs: list[str]) -> list[Path]:
    if not logs:
        try:
            logs = [load_config().log_file]
        except ConfigError as exc:
            print(f"report: {exc}; name the log file instead", file=sys.stderr)
            return []
    files: list[Path] = []
    for log in logs:
        found = rotated_paths(log)
        if not found:
            print(f"report: {log}: no such file", file=sys.stderr)
        files.extend(found)
    return files


def _table(rows: list[dict[str, Any]], out: TextIO) -> None:
    cells = [list(COLUMNS)] + [[_cell(row[c]) for c in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    text_columns = 3  # day, client_id, alias: left-aligned; figures right-aligned
    for line in cells:
        out.write(
            "  ".join(
                value.ljust(width) if i < text_columns else value.rjust(width)
                for i, (value, width) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
            + "\n"
        )
    if not rows:
        out.write("(no requests in the period)\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)


def _csv(rows: list[dict[str, Any]], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _json(rows: list[dict[str, Any]], out: TextIO) -> None:
    out.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
