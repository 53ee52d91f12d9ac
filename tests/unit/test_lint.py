"""The code and the tests are lint-clean, formatted and typed: ``ruff check``, ``ruff format
--check`` and ``mypy`` (its settings, files included, are in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import ROOT


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_ruff_check_finds_nothing_in_src_and_tests():
    result = run("ruff", "check", "--no-cache", "src", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_would_change_nothing_in_src_and_tests():
    result = run("ruff", "format", "--check", "--no-cache", "src", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_finds_no_type_error_in_src_and_tests():
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
