"""The dashboard in headless Chromium: loads behind the admin key, shows live data, no console error.

Needs Debian's ``chromium`` at /usr/bin/chromium (``.ci/run`` installs it).
Without it the test skips, except under CI (``CI=true``), where it fails.
The test also takes the README's screenshot: with ``GATEWAY_SCREENSHOTS=1`` it
refreshes ``docs/dashboard.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway_process import ROOT, gateway_process, stub_config

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


def test_dashboard_shows_live_figures_in_chromium(tmp_path):
    sync_playwright = _require_browser()
    config = stub_config(tmp_path, rate_limit={"requests_per_minute": 6})
    env = {"GATEWAY_ADMIN_KEY": ADMIN_KEY}
    with gateway_process(tmp_path, config, env=env) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 1440, "height": 900},
            http_credentials={"username": "admin", "password": ADMIN_KEY},
        )
        page = context.new_page()
        problems: list[str] = []
        page.on(
            "console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None
        )
        page.on("pageerror", lambda e: problems.append(str(e)))
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))

        page.goto(base + "/dashboard")
        page.wait_for_selector("body[data-loaded]")
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
        browser.close()
    assert problems == []
    assert outside == []
