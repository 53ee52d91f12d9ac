"""Fixtures of the hostile suite: one fake upstream, one sentinel, the shared gateway processes,
and the canary scan of what each test made the gateway say.

Figures: tests report what they measured with ``figures.record`` (or ``add``,
to sum over tests); when ``HOSTILE_FIGURES`` names a file, the session writes
them there as JSON (``python -m tests.hostile.report`` does that and prints
the table of docs/reliability.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.harness import (
    CANARIES,
    Exposure,
    gateway_config,
    hostile_gateway,
    keyed,
    leaks,
    secret_forms,
)
from tests.support.gateway import GatewayProcess
from tests.support.loopback import Sentinel
from tests.support.upstream import FakeUpstream

FIGURES: dict[str, dict[str, Any]] = {}


class Figures:
    def record(self, area: str, **values: Any) -> None:
        FIGURES.setdefault(area, {}).update(values)

    def maximum(self, area: str, **values: float) -> None:
        figures = FIGURES.setdefault(area, {})
        for key, value in values.items():
            figures[key] = max(figures.get(key, value), value)

    def add(self, area: str, **counts: int) -> None:
        figures = FIGURES.setdefault(area, {})
        for key, count in counts.items():
            figures[key] = figures.get(key, 0) + count


@pytest.fixture(scope="session")
def figures() -> Figures:
    return Figures()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("HOSTILE_FIGURES")
    if target and FIGURES:
        Path(target).write_text(json.dumps(FIGURES, indent=2, sort_keys=True))


@pytest.fixture(scope="session")
def exposure() -> Exposure:
    return Exposure()


def scan(exposure: Exposure, figures: Figures, *, final: bool = False) -> list[tuple[str, str]]:
    """Scan what the gateway said since the last scan for every form of every canary."""
    texts = exposure.unscanned(final=final)
    found = leaks(texts, CANARIES)
    figures.record("secrets", forms_checked=sum(len(secret_forms(c)) for c in CANARIES))
    figures.add(
        "secrets",
        texts_scanned=len(texts),
        bytes_scanned=sum(len(t) for t in texts),
        leaks=len(found),
    )
    return found


@pytest.fixture(autouse=True)
def no_canary_in_what_the_gateway_said(exposure: Exposure, figures: Figures) -> Iterator[None]:
    """After each test: nothing the gateway said since the previous scan holds a canary."""
    yield
    found = scan(exposure, figures)
    if found:
        pytest.fail(f"a canary key leaked: {found[:5]}", pytrace=False)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(scope="session")
def sentinel() -> Iterator[Sentinel]:
    with Sentinel() as server:
        yield server


def _shared_gateway(
    config: dict[str, Any], home: Path, exposure: Exposure, figures: Figures
) -> Iterator[GatewayProcess]:
    process = hostile_gateway(home, config).start()
    exposure.files += [process.log_file, process.stdout_file, process.stderr_file]
    yield process
    process.stop()
    found = scan(exposure, figures, final=True)  # what it wrote while stopping
    if found:
        pytest.fail(f"a canary key leaked: {found[:5]}", pytrace=False)


@pytest.fixture(scope="session")
def gateway(
    upstream: FakeUpstream,
    exposure: Exposure,
    figures: Figures,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    """The shared gateway process; its log, stdout and stderr join the exposure."""
    home = tmp_path_factory.mktemp("hostile-gateway")
    config = gateway_config(upstream.base_url, home / "gateway.log")
    yield from _shared_gateway(config, home, exposure, figures)


@pytest.fixture(scope="session")
def keyed_gateway(
    upstream: FakeUpstream,
    exposure: Exposure,
    figures: Figures,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    """A gateway process with a ``clients`` section: every API route needs a key."""
    home = tmp_path_factory.mktemp("hostile-keyed-gateway")
    config = keyed(gateway_config(upstream.base_url, home / "gateway.log"))
    yield from _shared_gateway(config, home, exposure, figures)
