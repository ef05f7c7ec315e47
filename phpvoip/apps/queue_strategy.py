"""Which available agents a queue rings for its next caller.

Each strategy gets the available agents in the order of the config (`members`
is everyone, in that order, for the strategies that walk it) and returns the
agents to ring at once: all of them for ring-all, one for the others.

    ring-all      every available agent; the first to answer takes the call
    linear        the first available in config order, always from the top
    round-robin   the next available after the one offered last, in config order
                  (it remembers where it stopped, across callers)
    longest-idle  the one whose last call ended longest ago (or who logged in)
    fewest-calls  the one who answered fewest queue calls
    random        any one, from the injected random generator
Ties go to config order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from phpvoip.apps.queue_agents import Agent

__all__ = ["Strategy", "make_strategy"]


class Strategy:
    """Picks agents; keeps the round-robin position between callers."""

    __slots__ = ("name", "rng", "last")

    def __init__(self, name: str, rng: random.Random | None = None) -> None:
        self.name = name
        self.rng = rng if rng is not None else random.Random()
        self.last: str | None = None  # round-robin: the number offered last

    def pick(self, available: Sequence[Agent], members: Sequence[Agent]) -> list[Agent]:
        """The agents to ring now, out of `available` (never empty)."""
        if not available:
            return []
        name = self.name
        if name == "ring-all":
            return list(available)
        if name == "linear":
            chosen = available[0]
        elif name == "round-robin":
            chosen = self._next_after_last(available, members)
        elif name == "longest-idle":
            chosen = min(available, key=lambda a: a.idle_since)  # min keeps the first of ties
        elif name == "fewest-calls":
            chosen = min(available, key=lambda a: a.answered)
        elif name == "random":
            chosen = self.rng.choice(list(available))
        else:
            raise ValueError(f"unknown strategy {name!r}")
        self.last = chosen.number
        return [chosen]

    def _next_after_last(self, available: Sequence[Agent], members: Sequence[Agent]) -> Agent:
        order = [m.number for m in members]
        if self.last not in order:
            return available[0]
        start = order.index(self.last) + 1
        ranked = {number: (i - start) % len(order) for i, number in enumerate(order)}
        return min(available, key=lambda a: ranked.get(a.number, len(order)))


def make_strategy(name: str, rng: random.Random | None = None) -> Strategy:
    return Strategy(name, rng)
