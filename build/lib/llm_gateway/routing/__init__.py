"""Routing: rules choose an alias, the alias orders its targets, breakers skip failing ones."""

from __future__ import annotations

from .breaker import Breaker
from .router import Route, Router, Target

__all__ = ["Breaker", "Route", "Router", "Target"]
