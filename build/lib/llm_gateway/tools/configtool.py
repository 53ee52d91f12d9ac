"""Config as code: ``llm-gateway config validate FILE`` and ``config diff OLD NEW``.

``validate`` reports every problem of a config file with its line, as
``FILE:LINE: error|warning: PATH: MESSAGE``: JSON syntax, the schema
(unknown fields, wrong types, missing fields, unknown providers and aliases),
and the cross-section checks of ``config.check`` (rules that can never match,
environment variables named but not set, fallbacks leaving a client's
allow-list). Exit status 1 when there is an error, 0 otherwise (warnings
allowed): the gateway refuses to start on exactly these errors.

``diff OLD NEW`` says what changed, in plain words (``config.diff``); exit
status 1 when either file does not validate.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..config import GatewayConfig
from ..config.check import check
from ..config.diff import diff
from ..config.jsonlines import line_map, line_of

# A cross-section check raised inside the schema names its field first: "aliases.a.provider: ..."
_LEADING_PATH = re.compile(r"^([A-Za-z_][\w-]*(?:\.[\w-]+)+): (.*)$", re.DOTALL)


def validate(path: Path) -> tuple[GatewayConfig | None, list[str], bool]:
    """The config (when it loads), the report lines, and whether there was an error."""
    try:
        text = path.read_text()
    except OSError as exc:
        return None, [f"{path}: error: cannot read: {exc.strerror}"], True
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [f"{path}:{exc.lineno}: error: not valid JSON: {exc.msg}"], True
    lines = line_map(text)
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        report = [_schema_line(path, lines, error) for error in exc.errors(include_url=False)]
        return None, report, True
    findings = check(config)
    report = [
        f"{path}:{line_of(lines, f.path)}: {f.severity}: {f.where}: {f.message}" for f in findings
    ]
    return config, report, any(f.severity == "error" for f in findings)


def _schema_line(path: Path, lines: dict[tuple[str | int, ...], int], error: object) -> str:
    assert isinstance(error, dict)
    location = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    leading = _LEADING_PATH.match(message)
    if not location and leading:
        location = tuple(int(p) if p.isdigit() else p for p in leading.group(1).split("."))
        message = leading.group(2)
    where = ".".join(str(part) for part in location) or "(top level)"
    return f"{path}:{line_of(lines, location)}: error: {where}: {message}"


def add_command(commands: Any) -> None:
    command = commands.add_parser(
        "config", help="validate a config file, or diff two", description=__doc__.split("\n\n")[1]
    )
    actions = command.add_subparsers(dest="action", required=True, metavar="ACTION")
    check_command = actions.add_parser("validate", help="check a config file")
    check_command.add_argument("file", type=Path)
    check_command.set_defaults(run=_run_validate)
    diff_command = actions.add_parser("diff", help="what changed between two config files")
    diff_command.add_argument("old", type=Path)
    diff_command.add_argument("new", type=Path)
    diff_command.set_defaults(run=_run_diff)


def _run_validate(args: argparse.Namespace) -> int:
    _, report, failed = validate(args.file)
    for line in report:
        print(line)
    errors = sum(": error: " in line for line in report)
    print(
        f"{args.file}: {'invalid' if failed else 'valid'}"
        f" ({errors} error(s), {len(report) - errors} warning(s))"
    )
    return 1 if failed else 0


def _run_diff(args: argparse.Namespace) -> int:
    configs = []
    for file in (args.old, args.new):
        config, report, failed = validate(file)
        if failed or config is None:
            for line in report:
                print(line, file=sys.stderr)
            return 1
        configs.append(config)
    changes = diff(configs[0], configs[1])
    for line in changes or ["no changes"]:
        print(line)
    return 0
