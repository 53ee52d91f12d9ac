"""The README and the guide under docs/: the site builds strictly, and the examples run.

The convention for examples, in README.md and docs/*.md:

- a fenced ``bash`` or ``python`` block is an example, and this test runs it
  against a real gateway in stub mode on the example config (one gateway per
  file, on a free port that replaces ``127.0.0.1:8000``), in a scratch folder
  holding a copy of ``config/``; it must exit 0;
- a block preceded by ``<!-- needs: WHAT -->`` is not run, and says what it
  needs that the suite does not have (a real provider key, a collector, a
  foreground server);
- a ``json`` block preceded by ``<!-- output -->`` is what the example before
  it prints: the last JSON value the example printed must equal it, ids and
  timestamps aside;
- other shell dialects (``sh``, ``shell``, ``console``) are not allowed, so
  no example escapes the rule; output is fenced ``text``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import running_gateway

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")
NEEDS = re.compile(r"^\s*<!-- needs: (?P<what>.+?) -->\s*$")
OUTPUT = re.compile(r"^\s*<!-- output -->\s*$")
DOCUMENTED_PORT = re.compile(r"(127\.0\.0\.1|localhost):8000\b")
# Fields that differ on every run: ids, clocks, durations.
VOLATILE = {"id", "created", "request_id", "timestamp", "latency_ms", "upstream_latency_ms"}
ADMIN_KEY = "docs-test-admin-key"


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str
    needs: str | None
    is_output: bool

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} ({self.lang})"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, with the marker comment before each, if any."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, lang = opening["indent"], opening["lang"]
        end = index + 1
        while end < len(lines) and lines[end] != f"{indent}```":
            end += 1
        code = "\n".join(line.removeprefix(indent) for line in lines[index + 1 : end])
        previous = next((line for line in reversed(lines[:index]) if line.strip()), "")
        needs = NEEDS.match(previous)
        found.append(
            Block(path, index + 1, lang, code + "\n", needs["what"] if needs else None,
                  bool(OUTPUT.match(previous)))
        )  # fmt: skip
        index = end + 1
    return found


def examples(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.lang in ("bash", "python") and b.needs is None]


# -------------------------------------------------------------------- the site


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """A broken link, a missing anchor or a page left out of the nav fails the build."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "spec" / "index.html").is_file()
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()


def test_the_configuration_reference_is_what_the_models_generate() -> None:
    from src.config.reference import render

    page = ROOT / "docs" / "configuration.md"
    assert page.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale: run `python -m src.config.reference --write`"
    )


# ------------------------------------------------------------ the convention


def test_every_shell_example_is_bash_and_every_marker_says_what_it_needs() -> None:
    problems = []
    for path in DOC_FILES:
        for block in blocks(path):
            if block.lang in ("sh", "shell", "console", "zsh", "shell-session"):
                problems.append(f"{block}: fence shell examples as bash (or output as text)")
            if block.needs is not None and len(block.needs) < 8:
                problems.append(f"{block}: say what the example needs")
    assert not problems, "\n".join(problems)


def test_the_convention_sees_the_readme_examples() -> None:
    readme = blocks(ROOT / "README.md")
    run = [b for b in readme if b in examples(ROOT / "README.md")]
    assert [b.lang for b in run] == ["bash", "bash", "python"]
    assert "for i in $(seq 1 21)" in run[1].code
    assert sum(b.is_output for b in readme) == 2
    assert all(b.needs for b in readme if "pip install" in b.code)


# ------------------------------------------------------------ running them


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("docs-examples")
    shutil.copytree(ROOT / "config", folder / "config")
    return folder


def stub_example_config(folder: Path) -> dict[str, Any]:
    """The example config, its provider held in stub mode whatever the environment holds."""
    config = json.loads((ROOT / "config" / "example.config.json").read_text())
    config["providers"]["openai"].update(
        base_url="http://127.0.0.1:9/v1", api_key_env="GW_TEST_UNSET_KEY"
    )
    config["log_file"] = str(folder / "logs" / "gateway.log")
    return config


@pytest.fixture
def gateway(scratch: Path) -> Iterator[str]:
    with running_gateway(
        stub_example_config(scratch), scratch, env={"GATEWAY_ADMIN_KEY": ADMIN_KEY}
    ) as started:
        yield started.base_url


def run(block: Block, base: str, folder: Path) -> subprocess.CompletedProcess[str]:
    code = DOCUMENTED_PORT.sub(base.removeprefix("http://"), block.code)
    command = [sys.executable, "-"] if block.lang == "python" else ["bash", "-eo", "pipefail", "-s"]
    environment = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")},
        "GATEWAY_CONFIG": "config/example.config.json",
        "GATEWAY_ADMIN_KEY": ADMIN_KEY,
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        command, cwd=folder, env=environment, text=True, start_new_session=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = process.communicate(code, timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def last_json(text: str) -> Any:
    """The last JSON value in a stream of JSON values (pretty-printed or one per line)."""
    decoder, position, last = json.JSONDecoder(), 0, None
    while True:
        start = min((i for i in (text.find("{", position), text.find("[", position)) if i >= 0),
                    default=-1)  # fmt: skip
        if start < 0:
            return last
        try:
            last, position = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 1


def without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", [p for p in DOC_FILES if examples(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_examples_run_as_printed(path: Path, gateway: str, scratch: Path) -> None:
    """Each example of the file runs against a fresh gateway, in order; its output is as shown."""
    found = blocks(path)
    failures = []
    printed = ""
    for block in found:
        if block.is_output:
            shown = json.loads(block.code)
            if without_volatile(last_json(printed)) != without_volatile(shown):
                failures.append(f"{block}: the example before it printed\n{printed}")
            continue
        if block.lang not in ("bash", "python") or block.needs is not None:
            continue
        result = run(block, gateway, scratch)
        printed = result.stdout
        if result.returncode != 0:
            failures.append(
                f"{block} exited {result.returncode}\n--- stdout\n{result.stdout}"
                f"\n--- stderr\n{result.stderr}"
            )
    assert not failures, "\n\n".join(failures)


def test_the_architecture_page_names_every_module() -> None:
    """The folder list is written once, in docs/architecture.md; a new module needs its line."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    tree = page[page.index("```text\nsrc/") : page.index("```", page.index("```text\nsrc/") + 8)]
    missing = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "src").rglob("*"))
        if path.suffix in (".py", ".html")
        and path.name != "__init__.py"
        and "__pycache__" not in path.parts
        and path.name not in tree
    ]
    assert not missing, f"docs/architecture.md's folder list lacks {missing}"
