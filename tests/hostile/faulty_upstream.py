"""The hostile suite's former names for the one fake upstream, ``tests/support/upstream/``.

New code imports from there: ``FakeUpstream`` (was ``FaultyUpstream``),
``Received`` (was ``Attempt``), ``directive``, ``ACTIONS`` and ``action`` (to
add a fault), and ``Sentinel`` from ``tests/support/loopback.py``.
"""

from __future__ import annotations

from tests.support.loopback import Sentinel
from tests.support.upstream import ACTIONS, Behaviour, Exchange, action, directive
from tests.support.upstream import FakeUpstream as FaultyUpstream
from tests.support.upstream import Received as Attempt

__all__ = [
    "ACTIONS",
    "Attempt",
    "Behaviour",
    "Exchange",
    "FaultyUpstream",
    "Sentinel",
    "action",
    "directive",
]
