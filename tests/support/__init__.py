"""Helpers for the tests (no tests here): the fake upstream, the launcher, Redis, payloads."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root folder."""
