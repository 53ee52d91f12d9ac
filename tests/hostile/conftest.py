"""Fixtures of the hostile suite: one faulty upstream, one sentinel, one gateway process.

Figures: tests report what they measured with ``figures.record``; when
``HOSTILE_FIGURES`` names a file, the session writes them there as JSON
(``python -m tests.hostile.report`` does that and prints the table of docs/reliability.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.faulty_upstream import FaultyUpstream, Sentinel
from tests.hostile.harness import Exposure, HostileGateway, gateway_config, keyed

FIGURES: dict[str, dict[str, Any]] = {}


class Figures:
    def record(self, area: str, **values: Any) -> None:
        FIGURES.setdefault(area, {}).update(values)

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


@pytest.fixture(scope="session")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream() as server:
        yield server


@pytest.fixture(scope="session")
def sentinel() -> Iterator[Sentinel]:
    with Sentinel() as server:
        yield server


@pytest.fixture(scope="session")
def gateway(
    upstream: FaultyUpstream, exposure: Exposure, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostileGateway]:
    """The shared gateway process; its log, stdout and stderr join the exposure."""
    home = tmp_path_factory.mktemp("hostile-gateway")
    process = HostileGateway(home, gateway_config(upstream.base_url, home / "gateway.log"))
    process.start()
    exposure.files += [process.log_file, process.stdout_file, process.stderr_file]
    yield process
    process.stop()


@pytest.fixture(scope="session")
def keyed_gateway(
    upstream: FaultyUpstream, exposure: Exposure, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostileGateway]:
    """A gateway process with a ``clients`` section: every API route needs a key."""
    home = tmp_path_factory.mktemp("hostile-keyed-gateway")
    process = HostileGateway(home, keyed(gateway_config(upstream.base_url, home / "gateway.log")))
    process.start()
    exposure.files += [process.log_file, process.stdout_file, process.stderr_file]
    yield process
    process.stop()
