"""Replay: ``llm-gateway replay --config NEW.json LOG...``: what a new config would change.

Reads telemetry logs (the gateway's JSON lines) and runs each logged request
through the admission pipeline of the new config (routing rules, allow-lists,
policies, prompt and token caps, budgets, rate and token limits) on a
simulated clock that follows the log's timestamps, without calling any
provider. A request is admitted at its start (its line's time less its
latency) and settled at its end with the usage the log recorded, priced at
the new config's prices.

It reports what would differ from what the log recorded, by category, client
and rule: ``denied`` (newly refused by a policy, an allow-list, a cap, a
missing client...), ``rate_limited``, ``over_budget``, ``rerouted`` (another
alias, or a target the old answer did not come from), ``newly_allowed``
(refused then, admitted now), and ``shadow`` (what shadow rules would do).

From the metadata alone it decides everything but content: a line with a
payload (a ``log_payload`` policy) carries the request body, so
``block_pattern``, ``redact`` and hook policies see its text; without one
they see an empty prompt, and such requests are counted as ``undetermined``
for those rules. Budgets start from nothing (the log is the whole history the
replay knows). Requests do not wait for capacity (``queue_timeout_ms``): one
that would have waited counts as rate-limited. Exit status 1 when the config
does not validate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from ..config import GatewayConfig, ProviderConfig
from ..errors import GatewayError
from ..governance.identity import Client
from ..governance.policies import Policies
from ..observability.telemetry import CallRecord
from ..pipeline import tokens
from ..pipeline.admission import Ticket
from ..pipeline.gateway import Gateway
from ..providers import Providers, Usage
from ..state.limiter import Decision, Limits
from ..state.limiter.memory import MemoryLimiter
from ..state.spend.ledger import Ledger
from ..state.spend.memory import MemorySpendStore
from .configtool import validate

ENDPOINTS = {"/v1/chat", "/v1/chat/completions", "/v1/messages", "/v1/embeddings"}
CONTENT_ACTIONS = {"block_pattern", "redact", "hook"}
CATEGORIES = ("denied", "rate_limited", "over_budget", "rerouted", "newly_allowed", "shadow")


class _Clock:
    """The simulated time (Unix seconds), shared by the limiter and the spend store."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _NoWaiting:
    """Replay does not wait for capacity: a request over its limit is refused at once."""

    waiting = 0

    def queued(self, client_id: str) -> bool:
        return False

    def notify(self, client_id: str) -> None:
        return None

    async def wait(
        self,
        client_id: str,
        limits: Limits,
        tokens: int,
        refused: Decision | None,
        *,
        timeout_s: float,
        priority: int,
        max_length: int,
    ) -> Decision:
        assert refused is not None  # never queued, so always sent by a refusal
        return refused


def _offline(spec: ProviderConfig) -> httpx.AsyncBaseTransport:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("replay never calls a provider")

    return httpx.MockTransport(refuse)


@dataclass
class Difference:
    category: str
    client: str
    rule: str
    request_ids: list[str] = field(default_factory=list)


@dataclass
class Report:
    requests: int = 0
    skipped: int = 0
    undetermined: int = 0
    differences: dict[tuple[str, str, str], Difference] = field(default_factory=dict)

    def add(self, category: str, client: str, rule: str, request_id: str) -> None:
        key = (category, client, rule)
        entry = self.differences.get(key)
        if entry is None:
            entry = self.differences[key] = Difference(category, client, rule)
        entry.request_ids.append(request_id)

    def as_dict(self) -> dict[str, Any]:
        summary = {c: 0 for c in CATEGORIES}
        for entry in self.differences.values():
            summary[entry.category] += len(entry.request_ids)
        return {
            "requests": self.requests,
            "skipped": self.skipped,
            "undetermined": self.undetermined,
            "summary": summary,
            "differences": [
                {
                    "category": d.category,
                    "client": d.client,
                    "rule": d.rule,
                    "count": len(d.request_ids),
                    "request_ids": d.request_ids,
                }
                for d in sorted(
                    self.differences.values(),
                    key=lambda d: (CATEGORIES.index(d.category), d.client, d.rule),
                )
            ],
        }

    def text(self) -> str:
        data = self.as_dict()
        lines = [
            f"replayed {data['requests']} request(s), skipped {data['skipped']}"
            f" (not API requests, or refused before a client was known)"
        ]
        if data["undetermined"]:
            lines.append(
                f"{data['undetermined']} request(s) matched content policies but have no"
                " payload in the log: those policies saw an empty prompt"
            )
        if not data["differences"]:
            lines.append("no differences")
        for category in CATEGORIES:
            entries = [d for d in data["differences"] if d["category"] == category]
            if not entries:
                continue
            lines.append(f"{category.replace('_', ' ')}: {data['summary'][category]}")
            for d in entries:
                ids = ", ".join(d["request_ids"][:5]) + (", ..." if d["count"] > 5 else "")
                lines.append(f"  client {d['client']}, {d['rule']}: {d['count']} ({ids})")
        return "\n".join(lines)


def read_lines(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        with path.open("rb") as handle:
            for raw in handle:
                try:
                    line = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(line, dict) and line.get("endpoint") in ENDPOINTS:
                    yield line


def _times(line: dict[str, Any]) -> tuple[float, float]:
    end = datetime.fromisoformat(str(line["timestamp"])).timestamp()
    return end - (line.get("latency_ms") or 0) / 1000, end


class Replay:
    def __init__(self, config: GatewayConfig, source: str) -> None:
        self.clock = _Clock()
        self._ledger_dir = tempfile.TemporaryDirectory()
        spend = MemorySpendStore(Ledger(Path(self._ledger_dir.name) / "replay.ledger"), self.clock)
        self.gateway = Gateway(
            config, Providers(config, _offline), MemoryLimiter(self.clock), spend,
            Policies(config, source), queue=_NoWaiting(),
        )  # fmt: skip
        self.report = Report()

    async def run(self, lines: list[dict[str, Any]]) -> Report:
        events: list[tuple[float, int, int]] = []  # (time, 0 end / 1 start, index)
        for index, line in enumerate(lines):
            start, end = _times(line)
            events += [(start, 1, index), (end, 0, index)]
        events.sort()
        admitted: dict[int, tuple[CallRecord, Ticket]] = {}
        for moment, kind, index in events:
            self.clock.now = moment
            if kind == 1:
                outcome = await self._admit(lines[index])
                if outcome is not None:
                    admitted[index] = outcome
            elif index in admitted:
                record, ticket = admitted.pop(index)
                await self.gateway.settle(record, ticket, _usage(lines[index]))
        await self.gateway.providers.aclose()
        await self.gateway.spend.aclose()
        self._ledger_dir.cleanup()
        return self.report

    async def _admit(self, line: dict[str, Any]) -> tuple[CallRecord, Ticket] | None:
        client_id, request_id = str(line.get("client_id")), str(line.get("request_id"))
        if line.get("error_type") == "authentication_error" or not line.get("requested_model"):
            self.report.skipped += 1
            return None
        self.report.requests += 1
        gateway = self.gateway
        client: Client | None = gateway.identity.default
        if not gateway.identity.open:
            client = gateway.identity.by_id.get(client_id)
        if client is None:
            self._compare(line, "authentication_error", f"clients.{client_id} (no such client)")
            return None
        body, prompt, budget = _request(line)
        record = CallRecord(request_id, str(line["endpoint"]), client_id)
        try:
            ticket = await gateway.admit(
                record, client, str(line["requested_model"]), prompt, budget, body,
                use_case=line.get("use_case"), completes=line["endpoint"] != "/v1/embeddings",
            )  # fmt: skip
        except GatewayError as exc:
            self._note_content(line, record)
            self._compare(line, exc.type, exc.rule.name if exc.rule else exc.type)
            self._shadow(record, client_id, request_id)
            return None
        self._note_content(line, record)
        self._shadow(record, client_id, request_id)
        first = (
            ticket.within
            or ticket.route.plan(prompt, ticket.completion_estimate, gateway.router.rng)
        )[0]
        record.provider, record.upstream_model = first.provider, first.model
        self._compare(line, None, "", ticket)
        return record, ticket

    def _compare(
        self, line: dict[str, Any], refused: str | None, rule: str, ticket: Ticket | None = None
    ) -> None:
        client, request_id = str(line.get("client_id")), str(line.get("request_id"))
        old = line.get("error_type") if line.get("outcome") == "refused" else None
        if refused is not None:
            if refused == old:
                return
            category = {"rate_limit_exceeded": "rate_limited", "budget_exceeded": "over_budget"}
            self.report.add(
                category.get(refused, "denied"), client, f"{rule} ({refused})", request_id
            )
            return
        if old is not None:
            self.report.add("newly_allowed", client, f"was {old}", request_id)
            return
        assert ticket is not None
        targets = {(t.provider, t.model) for t in (*ticket.route.group, *ticket.route.fallbacks)}
        old_alias, served = line.get("alias"), (line.get("provider"), line.get("upstream_model"))
        if old_alias != ticket.alias:
            self.report.add("rerouted", client, f"alias {old_alias} -> {ticket.alias}", request_id)
        elif served[0] is not None and served not in targets:
            self.report.add(
                "rerouted",
                client,
                f"alias {ticket.alias}: {served[0]}/{served[1]} is no longer a target",
                request_id,
            )

    def _shadow(self, record: CallRecord, client: str, request_id: str) -> None:
        for note in record.shadow or ():
            self.report.add("shadow", client, f"{note['rule']} (would {note['would']})", request_id)

    def _note_content(self, line: dict[str, Any], record: CallRecord) -> None:
        if "payload" in line or not record.policies:
            return
        content = {r.name for r in self.gateway.policies.rules if r.action in CONTENT_ACTIONS}
        if content.intersection(record.policies):
            self.report.undetermined += 1


def _request(line: dict[str, Any]) -> tuple[dict[str, Any], int, int | None]:
    """The body (from the payload when logged), the approximate prompt, the completion budget."""
    payload = line.get("payload")
    request = payload.get("request") if isinstance(payload, dict) else None
    if isinstance(request, dict) and isinstance(request.get("messages"), list):
        budget = request.get("max_completion_tokens") or request.get("max_tokens")
        return (
            request,
            tokens.prompt_tokens(request["messages"]),
            budget if type(budget) is int else None,
        )
    body = {"model": line.get("requested_model"), "messages": [{"role": "user", "content": ""}]}
    return body, int(line.get("prompt_tokens") or 0), None


def _usage(line: dict[str, Any]) -> Usage | None:
    prompt, completion = line.get("prompt_tokens"), line.get("completion_tokens")
    if prompt is None and completion is None:
        return None
    return Usage(int(prompt or 0), int(completion or 0))


def add_command(commands: Any) -> None:
    command = commands.add_parser(
        "replay",
        help="what a new config would have done to logged traffic",
        description="Run logged requests through a new config's admission, calling no provider.",
    )
    command.add_argument("--config", type=Path, required=True, help="the new config")
    command.add_argument("--json", action="store_true", help="the report as JSON")
    command.add_argument("logs", type=Path, nargs="+", help="telemetry log files, oldest first")
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config, problems, failed = validate(args.config)
    if failed or config is None:
        print("\n".join(problems), file=sys.stderr)
        return 1
    lines = list(read_lines(args.logs))
    report = asyncio.run(Replay(config, str(args.config)).run(lines))
    print(orjson.dumps(report.as_dict()).decode() if args.json else report.text())
    return 0
