"""A queue's agents: what each one is doing, derived from facts, never counted.

An agent's state is not stored; it is read from a few facts each time:

    logged_in  (login / logout; static agents start logged in)
    paused     (pause toggle, or max_no_answer missed offers in a row)
    calls      the switch's ids of the calls the agent is a party to right now,
               kept from the call events (`AgentCalls`): any call, placed or
               received, through the queue or not
    offered    this queue is ringing the agent
    wrapup_until / retry_until   clock times

    state        when
    logged-out   not logged_in
    busy         calls is not empty           (on a call: never offered another)
    ringing      offered
    paused       paused
    wrap-up      now < wrapup_until           (after a queue call ended)
    retry        now < retry_until            (after a missed offer)
    available    otherwise                    (the only state an offer starts in)

The first line that holds wins. Because `calls` is a set of live call ids that a
`CallEnded` empties (whatever ended the call: BYE, CANCEL, a keepalive timeout),
an agent cannot stay busy after its last call: there is no counter to drift.
Starting an offer in any state but available raises `AgentStateError`.
"""

from __future__ import annotations

from typing import Any

from phpvoip.apps.queue_config import AgentSettings
from phpvoip.events import CallAttempted, CallEnded, CallRouted, CallTransferred, Event

__all__ = [
    "AVAILABLE", "BUSY", "LOGGED_OUT", "PAUSED", "RETRY", "RINGING", "WRAPUP",
    "Agent", "AgentCalls", "AgentStateError",
]

LOGGED_OUT = "logged-out"
BUSY = "busy"
RINGING = "ringing"
PAUSED = "paused"
WRAPUP = "wrap-up"
RETRY = "retry"
AVAILABLE = "available"


class AgentStateError(Exception):
    """An event that the agent's state does not allow (a bug in the queue)."""

    def __init__(self, agent: str, state: str, event: str) -> None:
        super().__init__(f"agent {agent}: {event} in state {state}")
        self.state = state
        self.event = event


class Agent:
    """One agent of one queue: its facts and its figures."""

    __slots__ = (
        "settings", "number", "static", "logged_in", "paused", "auto_paused", "calls", "offered",
        "wrapup_until", "retry_until", "idle_since", "missed_in_row", "answered", "missed",
        "talk_time", "queue_call", "connected_at", "last_state", "timer",
    )

    def __init__(self, settings: AgentSettings, static: bool, now: float) -> None:
        self.settings = settings
        self.number = settings.number
        self.static = static
        self.logged_in = static
        self.paused = False
        self.auto_paused = False
        self.calls: set[str] = set()
        self.offered = False
        self.wrapup_until = 0.0
        self.retry_until = 0.0
        self.idle_since = now  # for longest-idle: the end of its last call, or its login
        self.missed_in_row = 0
        self.answered = 0
        self.missed = 0
        self.talk_time = 0.0
        self.queue_call: str | None = None  # the id of the queue call it is on
        self.connected_at = 0.0
        self.last_state = ""
        self.timer: Any = None

    def state(self, now: float) -> str:
        if not self.logged_in:
            return LOGGED_OUT
        if self.calls:
            return BUSY
        if self.offered:
            return RINGING
        if self.paused:
            return PAUSED
        if now < self.wrapup_until:
            return WRAPUP
        if now < self.retry_until:
            return RETRY
        return AVAILABLE

    def next_change(self, now: float) -> float | None:
        """When a timer alone would change the state (the end of wrap-up or
        retry), or None."""
        later = [t for t in (self.wrapup_until, self.retry_until) if t > now]
        return min(later) if later else None

    # -- events ----------------------------------------------------------------------

    def login(self, now: float) -> None:
        if not self.logged_in:
            self.logged_in = True
            self.idle_since = now
        self.paused = self.auto_paused = False
        self.missed_in_row = 0

    def logout(self) -> None:
        self.logged_in = False
        self.paused = self.auto_paused = False

    def toggle_pause(self) -> bool:
        """Pause or unpause; returns whether paused now. Unpausing forgets the
        missed offers that paused it."""
        self.paused = not self.paused
        self.auto_paused = False
        if not self.paused:
            self.missed_in_row = 0
        return self.paused

    def offer(self, now: float) -> None:
        state = self.state(now)
        if state != AVAILABLE:
            raise AgentStateError(self.number, state, "offer")
        self.offered = True

    def offer_answered(self, call_id: str, now: float) -> None:
        if not self.offered:
            raise AgentStateError(self.number, self.state(now), "offer answered")
        self.offered = False
        self.missed_in_row = 0
        self.answered += 1
        self.queue_call = call_id
        self.connected_at = now
        self.calls.add(call_id)  # the call event saying so may come later

    def offer_missed(self, now: float, max_no_answer: int) -> None:
        """Not answered or refused: rest for retry_delay; pause after
        `max_no_answer` in a row (0: never)."""
        if not self.offered:
            raise AgentStateError(self.number, self.state(now), "offer missed")
        self.offered = False
        self.missed += 1
        self.missed_in_row += 1
        self.retry_until = now + self.settings.retry_delay
        if max_no_answer and self.missed_in_row >= max_no_answer and not self.paused:
            self.paused = self.auto_paused = True

    def offer_withdrawn(self) -> None:
        """The caller left while this agent rang: not the agent's fault."""
        self.offered = False

    def left_call(self, call_id: str, now: float) -> None:
        """The agent is no longer on call `call_id` (it ended, or the agent was
        transferred out of it). A queue call ends in wrap-up and adds talk time."""
        self.calls.discard(call_id)
        if call_id == self.queue_call:
            self.queue_call = None
            self.talk_time += max(0.0, now - self.connected_at)
            self.wrapup_until = now + self.settings.wrapup
        if not self.calls:
            self.idle_since = now


def _user(target: str) -> str:
    """The user part of a transfer target ("1001", "sip:1001@host" or "1001@host")."""
    if target.startswith(("sip:", "sips:")):
        target = target.split(":", 1)[1]
    return target.split("@", 1)[0].split(";", 1)[0]


class AgentCalls:
    """Who is a party to which live call, from the call events alone.

    Each live call has two sides: the caller (From user) and the callee (the
    routed number). A transfer puts its target on the side of the party that
    left: the caller's side when the caller asked (a REFER from the caller),
    the callee's otherwise (a REFER from the callee, or an application's
    re-bridge: applications answer calls, so they are on the callee's side).
    `joined(number, call_id)` and `left(number, call_id)` are called as parties
    change; `CallEnded` makes everyone leave."""

    __slots__ = ("sides", "joined", "left")

    def __init__(self, joined: Any, left: Any) -> None:
        self.sides: dict[str, list[str]] = {}
        self.joined = joined
        self.left = left

    def event(self, event: Event) -> None:
        kind = type(event)
        if kind is CallAttempted:
            record = event.call  # type: ignore[attr-defined]
            self.sides[record.id] = [record.caller, ""]
            self.joined(record.caller, record.id)
        elif kind is CallRouted:
            record = event.call  # type: ignore[attr-defined]
            self._replace(record.id, 1, record.routed_to or record.callee)
        elif kind is CallTransferred:
            side = 0 if event.by == "caller" else 1  # type: ignore[attr-defined]
            self._replace(event.call.id, side, _user(event.target))  # type: ignore[attr-defined]
        elif kind is CallEnded:
            sides = self.sides.pop(event.call.id, None)  # type: ignore[attr-defined]
            if sides is not None:
                for number in sides:
                    if number:
                        self.left(number, event.call.id)  # type: ignore[attr-defined]

    def _replace(self, call_id: str, side: int, number: str) -> None:
        sides = self.sides.setdefault(call_id, ["", ""])
        old = sides[side]
        if old == number:
            return
        sides[side] = number
        if old and old not in sides:
            self.left(old, call_id)
        if number:
            self.joined(number, call_id)
