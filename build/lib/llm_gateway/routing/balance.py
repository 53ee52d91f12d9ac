"""Ordering a group of targets for one request: by weight, or cheapest first."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def weighted_order(
    items: Sequence[T], weights: Sequence[float], healthy: Sequence[bool], rng: random.Random
) -> list[T]:
    """The healthy items in weighted random order (sampling without replacement), then the rest.

    The first item is drawn with probability proportional to its weight among
    the healthy ones, so traffic splits by weight among healthy targets; the
    following ones are the order in which the others are tried if it fails.
    Unhealthy items come last, in config order (the caller skips them while
    they stay unhealthy).
    """
    pool = [i for i, ok in enumerate(healthy) if ok]
    order: list[T] = []
    while pool:
        total = sum(weights[i] for i in pool)
        point = rng.random() * total
        chosen = pool[-1]
        for i in pool:
            point -= weights[i]
            if point < 0:
                chosen = i
                break
        pool.remove(chosen)
        order.append(items[chosen])
    order.extend(items[i] for i, ok in enumerate(healthy) if not ok)
    return order


def cheapest_order(items: Sequence[T], costs: Sequence[float]) -> list[T]:
    """Lowest cost first; ties keep config order (``sorted`` is stable)."""
    return [item for _, item in sorted(zip(costs, items, strict=True), key=lambda pair: pair[0])]
