"""The dashboard in headless Chromium: loads behind the admin key, shows live data, no console
error; every chart label is whole on the rendered page, and an empty chart says what it shows.

Needs Debian's ``chromium`` at /usr/bin/chromium (``.ci/run`` installs it).
Without it the tests skip, except under CI (``CI=true``), where they fail.
The first test also takes the README's screenshot: with ``GATEWAY_SCREENSHOTS=1``
it refreshes ``docs/dashboard.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT
from tests.support.configs import stub_config
from tests.support.gateway import running_gateway

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip
ADMIN_KEY = "adm-browser-7Qx2"
SCREENSHOT = ROOT / "docs" / "dashboard.png"
# a function, not an expression: the page's CSP forbids the eval an expression needs
SHOWS_REQUESTS = "(n) => document.getElementById('kpi-requests').textContent === n"
BODY = {"model": "default-chat", "messages": [{"role": "user", "content": "Explain rate limits."}]}
CHARTS = ("#chart-requests", "#chart-latency", "#chart-clients", "#chart-limited")
# Each text of a chart, with its rectangle and the chart's, as the browser laid them out.
TEXTS = """(selector) => {
  const svg = document.querySelector(selector), outer = svg.getBoundingClientRect();
  return [...svg.querySelectorAll("text")].map((node) => {
    const box = node.getBoundingClientRect();
    return { text: node.textContent, cls: node.getAttribute("class") || "",
             left: box.left - outer.left, right: outer.right - box.right,
             top: box.top - outer.top, bottom: outer.bottom - box.bottom };
  });
}"""
LATENCY_LABEL = re.compile(r"(0|[0-9]+(\.[0-9]+)?) (ms|s)")


def _require_browser() -> Any:
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = missing or "playwright is not installed (pip install -r requirements-dev.txt)"
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser test cannot run in CI: {missing}")
        pytest.skip(missing)
    return sync_playwright


def traffic(base: str) -> int:
    """Requests from three clients, some refused by the limit, one for an unknown model."""
    sent = 0
    with httpx.Client(base_url=base) as client:
        for team, count in (("search-team", 9), ("support-bot", 4), ("data-science", 2)):
            for _ in range(count):
                client.post("/v1/chat/completions", json=BODY, headers={"X-Client-Id": team})
                sent += 1
        client.post("/v1/chat/completions", json={**BODY, "stream": True},
                    headers={"X-Client-Id": "support-bot"})  # fmt: skip
        client.post("/v1/chat/completions", json={**BODY, "model": "gpt-9"},
                    headers={"X-Client-Id": "data-science"})  # fmt: skip
    return sent + 2


@contextmanager
def dashboard_page(playwright: Any, base: str, width: int) -> Iterator[tuple[Any, list[str]]]:
    """The dashboard at ``width`` px, loaded once; the console's errors and warnings, the page's
    exceptions and every request leaving the gateway are collected in ``problems``."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        http_credentials={"username": "admin", "password": ADMIN_KEY},
    )
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith(base) else problems.append(r.url))
    page.goto(base + "/dashboard")
    page.wait_for_selector("body[data-loaded]")
    try:
        yield page, problems
    finally:
        browser.close()


def texts_outside_their_chart(page: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every chart text whose rendered box is not wholly inside its chart's box."""
    return [
        (chart, text)
        for chart in CHARTS
        for text in page.evaluate(TEXTS, chart)
        if min(text["left"], text["right"], text["top"], text["bottom"]) < 0
    ]


def test_dashboard_shows_live_figures_in_chromium(tmp_path):
    sync_playwright = _require_browser()
    config = stub_config(tmp_path, rate_limit={"requests_per_minute": 6})
    env = {"GATEWAY_ADMIN_KEY": ADMIN_KEY}
    with (
        running_gateway(config, tmp_path, env=env) as gateway,
        sync_playwright() as playwright,
        dashboard_page(playwright, gateway.base_url, 1440) as (page, problems),
    ):
        base = gateway.base_url
        assert page.text_content("#kpi-requests") == "0"
        assert "No requests" in page.text_content("#chart-requests")

        sent = traffic(base)
        page.click("button[data-window='hour']")  # refresh now rather than at the next poll
        page.wait_for_function(SHOWS_REQUESTS, arg=str(sent))
        assert page.locator("#chart-requests rect.bar.succeeded").count() >= 1
        assert page.locator("#chart-requests rect.bar.errors").count() >= 1
        assert page.locator("#chart-latency circle.point.p95").count() >= 1
        clients = page.locator("#chart-clients rect.client")
        names = {clients.nth(i).get_attribute("data-client") for i in range(clients.count())}
        assert names == {"search-team", "support-bot", "data-science"}
        assert page.locator("#chart-limited rect.bar.refused").count() >= 1
        assert "rate_limit_exceeded: 3" in page.text_content("#limited-types")
        assert page.text_content("#circuits") == "openaigpt-4o-miniclosed"
        assert page.text_content("#kpi-limited") == "3"

        page.click("button[data-window='day']")
        page.wait_for_selector("button.on[data-window='day']")
        page.wait_for_function(SHOWS_REQUESTS, arg=str(sent))
        page.click("button[data-window='hour']")
        page.wait_for_function(SHOWS_REQUESTS, arg=str(sent))

        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("GATEWAY_SCREENSHOTS") == "1":  # refresh README's picture on request
            SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT)
    assert problems == []


def test_at_1280_px_labels_are_whole_and_empty_charts_say_what_they_show(tmp_path):
    sync_playwright = _require_browser()
    env = {"GATEWAY_ADMIN_KEY": ADMIN_KEY}
    with (
        running_gateway(stub_config(tmp_path), tmp_path, env=env) as gateway,
        sync_playwright() as playwright,
        dashboard_page(playwright, gateway.base_url, 1280) as (page, problems),
    ):
        empty = {chart: page.text_content(chart) for chart in CHARTS}
        assert "No requests in this window" in empty["#chart-requests"]
        assert "No latency figures in this window" in empty["#chart-latency"]
        assert "No spend by client in this window" in empty["#chart-clients"]
        assert "No rate-limit refusals" in empty["#chart-limited"]

        with httpx.Client(base_url=gateway.base_url) as client:
            for _ in range(25):
                assert client.post("/v1/chat/completions", json=BODY).status_code == 200
        page.click("button[data-window='hour']")
        page.wait_for_function(SHOWS_REQUESTS, arg="25")
        refusals = page.text_content("#chart-limited")
        assert "No rate-limit refusals in this window: 25 requests, none refused" in refusals
        assert "No requests" not in refusals
        assert page.locator("#chart-latency circle.point").count() >= 1
        assert texts_outside_their_chart(page) == []
        ticks = [t["text"] for t in page.evaluate(TEXTS, "#chart-latency") if "tick y" in t["cls"]]
        assert len(ticks) == 5 and all(LATENCY_LABEL.fullmatch(t) for t in ticks), ticks

        # The widest latency labels come with sub-millisecond figures ("0.13 ms" .. "0.50 ms"):
        # the page's own renderer draws the live figures with such latencies, still whole.
        data = page.evaluate("async () => (await fetch('/dashboard/data?window=hour')).json()")
        for point in data["series"]:
            if point["p50_ms"] is not None:
                point["p50_ms"], point["p95_ms"] = 0.21, 0.47
        page.evaluate("(data) => render(data)", data)
        ticks = [t["text"] for t in page.evaluate(TEXTS, "#chart-latency") if "tick y" in t["cls"]]
        assert ticks == ["0 ms", "0.13 ms", "0.25 ms", "0.38 ms", "0.50 ms"]
        assert texts_outside_their_chart(page) == []
    assert problems == []
