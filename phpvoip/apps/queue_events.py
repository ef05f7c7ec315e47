"""The queue's events on the switch's one event stream (`phpvoip.events`), for the
console, the manhole and anything else that observes: callers joining and
leaving, agents changing state, and the queue's figures after each change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phpvoip.events import Event

__all__ = ["AgentStateChanged", "QueueCallerJoined", "QueueCallerLeft", "QueueCallerRefused", "QueueStats"]


@dataclass(frozen=True, slots=True)
class QueueCallerJoined(Event):
    """Call `call_id` (the switch's id) from `caller` waits in `queue` at `position` (1: first)."""

    time: float
    queue: str
    call_id: str
    caller: str
    position: int


@dataclass(frozen=True, slots=True)
class QueueCallerLeft(Event):
    """A caller left `queue` after `waited` seconds. `outcome`: "answered" (by
    `agent`), "abandoned" (hung up), "timeout" (max_wait), "exit" (pressed the
    exit digit), "empty" (no agent left, leave_when_empty)."""

    time: float
    queue: str
    call_id: str
    caller: str
    outcome: str
    waited: float
    agent: str = ""


@dataclass(frozen=True, slots=True)
class QueueCallerRefused(Event):
    """A caller was not let in: `reason` "full" (max_callers) or "empty"
    (join_empty false); `overflow` the number it was sent to, "" if refused."""

    time: float
    queue: str
    call_id: str
    caller: str
    reason: str
    overflow: str = ""


@dataclass(frozen=True, slots=True)
class AgentStateChanged(Event):
    """Agent `agent` of `queue` went from `old` to `new` (`phpvoip.apps.queue_agents`
    state names)."""

    time: float
    queue: str
    agent: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class QueueStats(Event):
    """The queue's figures (the row `Queue.queue_stats()` gives) after a caller
    joined or left."""

    time: float
    queue: str
    stats: Any
