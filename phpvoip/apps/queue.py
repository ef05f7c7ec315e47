"""The agent queue (seat allocator, issue 11 §3): callers wait, agents are offered
calls in the order a strategy says, and each agent's state comes from its calls.

A caller dialling the queue's `number` is answered, hears the welcome and music
on hold, every `announce_frequency` seconds its position and estimated wait, and
may press `exit_digit` to go to `exit_to` (at any time: agents ringing for it
are CANCELled, and not counted as missing it). The first waiting caller is offered
to the agents the strategy picks (`IAppCall.bridge`: the caller keeps hearing
the music while they ring); the next callers are offered to the agents left.

Agents (`queue_agents.Agent`) are static (listed in `agents:`, logged in from the
start) or dynamic (`dynamic_agents:`), and log in, out and toggle pause by
dialling the feature codes from their phone. The queue observes the switch's
call events: an agent that is a party to any call is busy and never offered
another; when the call ends, however it ends, it is free again (after wrap-up,
for a queue call).

Feature codes when several queues exist: the engine asks the queue modules in
order of weight and the first one takes ``*45``; it acts on every queue of the
switch that accepts the caller as an agent, or, when the code is followed by a
queue's number (``*45700``), on that queue only. Pause toggles in each queue the
agent is logged in to.
"""

from __future__ import annotations

import math
import random
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from phpvoip.apps.base import Application
from phpvoip.apps.queue_agents import AVAILABLE, LOGGED_OUT, Agent, AgentCalls
from phpvoip.apps.queue_config import QueueSettings, parse_settings
from phpvoip.apps.queue_events import (
    AgentStateChanged,
    QueueCallerJoined,
    QueueCallerLeft,
    QueueCallerRefused,
    QueueStats,
)
from phpvoip.apps.queue_strategy import Strategy
from phpvoip.events import CallEnded, Event
from phpvoip.interfaces import CallGone, Cause, ICallObserver
from phpvoip.media.prompts import say_number

__all__ = ["Queue", "QueueLogic", "parse_settings"]

log = Logger()

SUPERVISOR_ACTIONS = ("login", "logout", "pause", "resume")


def _leave_hint(digit: str) -> list[str]:
    """"To leave the queue, press 0" for an exit digit; nothing without one."""
    if not digit:
        return []
    return ["queue-leave", {"*": "star", "#": "pound"}.get(digit, f"number-{digit}")]


class _Caller:
    """One caller waiting: its call, when it joined, the offer ringing for it."""

    __slots__ = ("call", "joined", "offering", "ringing", "pending", "outcome", "gone", "wait_timer",
                 "announce_timer", "finished")

    def __init__(self, call: Any, joined: float) -> None:
        self.call = call
        self.joined = joined
        self.offering: list[Agent] | None = None
        self.ringing: defer.Deferred | None = None  # the offer's bridge(), cancelled by the exit digit
        self.pending = ""  # "exit" / "timeout" / "empty" asked while an offer rang
        self.outcome = ""
        self.gone = False
        self.wait_timer: Any = None
        self.announce_timer: Any = None
        self.finished: defer.Deferred = defer.Deferred()  # the queue is done with the call

    def finish(self) -> None:
        if not self.finished.called:
            self.finished.callback(None)


class QueueLogic:
    """The queue's rules over `IAppCall`s: callers, agents, offers, figures.

    `handle(call)` serves one call (a caller or an agent's feature code);
    `call_event(event)` is its `ICallObserver` side. `clock` is an IReactorTime;
    `publish` puts an event on the switch's stream; `peers()` lists the queues of
    the switch (for feature codes). Kept apart from the module glue so that unit
    tests drive it with fake calls under `task.Clock`."""

    def __init__(self, name: str, settings: QueueSettings, clock: Any, publish: Any = None,
                 peers: Any = None, rng: random.Random | None = None) -> None:
        self.name = name
        self.settings = settings
        self.clock = clock
        self.publish = publish if publish is not None else (lambda event: None)
        self.peers = peers if peers is not None else (lambda: [self])
        self.strategy = Strategy(settings.strategy, rng)
        now = clock.seconds()
        self.members: list[Agent] = [Agent(a, True, now) for a in settings.agents]
        self.agents: dict[str, Agent] = {a.number: a for a in self.members}
        self.waiting: list[_Caller] = []
        self.parties = AgentCalls(self._joined, self._left)
        self.answered = self.abandoned = self.timed_out = self.exited = self.emptied = self.refused = 0
        self.answered_in_level = 0
        self.holdtime = 0.0  # moving average of answered callers' waits (as app_queue's)
        self._timer: Any = None
        self._dispatching = False
        self._again = False
        self._changed = False

    # -- figures ---------------------------------------------------------------------

    def queue_stats(self) -> list[dict[str, Any]]:
        """One row: callers waiting, the longest wait, agents, what became of callers,
        and the service level (% of answered callers answered within
        `service_level` seconds; None before the first)."""
        now = self.clock.seconds()
        states = [a.state(now) for a in self.members]
        return [{
            "queue": self.name,
            "number": self.settings.number,
            "strategy": self.settings.strategy,
            "callers_waiting": len(self.waiting),
            "longest_wait": now - self.waiting[0].joined if self.waiting else 0.0,
            "agents_logged_in": sum(s != LOGGED_OUT for s in states),
            "agents_available": states.count(AVAILABLE),
            "answered": self.answered,
            "abandoned": self.abandoned,
            "timed_out": self.timed_out,
            "exited": self.exited,
            "emptied": self.emptied,
            "refused": self.refused,
            "service_level": (100.0 * self.answered_in_level / self.answered) if self.answered else None,
            "holdtime": self.holdtime,
        }]

    def agent_stats(self) -> list[dict[str, Any]]:
        """One row per agent: state, whether paused, its penalty, live calls, answered
        and missed offers, talk time of its queue calls (seconds)."""
        now = self.clock.seconds()
        return [{
            "queue": self.name,
            "agent": a.number,
            "state": a.state(now),
            "paused": a.paused,
            "static": a.static,
            "penalty": a.settings.penalty,
            "calls": len(a.calls),
            "answered": a.answered,
            "missed": a.missed,
            "missed_in_row": a.missed_in_row,
            "talk_time": a.talk_time + (now - a.connected_at if a.queue_call else 0.0),
        } for a in self.members]

    # -- agents ----------------------------------------------------------------------

    def _agent(self, number: str) -> Agent:
        agent = self.agents.get(number)
        if agent is None:
            agent = Agent(self.settings.agent(number), False, self.clock.seconds())
            agent.logged_in = False
            # Calls it is already on count from the start.
            agent.calls = {cid for cid, sides in self.parties.sides.items() if number in sides}
            self.agents[number] = agent
            self.members.append(agent)
        return agent

    def apply(self, settings: QueueSettings) -> None:
        """New settings on a reload, keeping who is logged in, paused or on a call and
        the figures: agents get their new timers, static agents added to the config
        are logged in, those removed become dynamic ones and are logged out unless
        still allowed to log in. Waiting callers keep their timers."""
        now = self.clock.seconds()
        if settings.strategy != self.settings.strategy:
            self.strategy = Strategy(settings.strategy, self.strategy.rng)
        self.settings = settings
        static = [a.number for a in settings.agents]
        for agent in self.members:
            agent.settings = settings.agent(agent.number)
            if agent.static and agent.number not in static:
                agent.static = False
                if not settings.may_log_in(agent.number):
                    agent.logout()
        for number in static:
            agent = self._agent(number)
            if not agent.static:
                agent.static = True
                agent.login(now)
        order = {number: i for i, number in enumerate(static)}
        self.members.sort(key=lambda a: order.get(a.number, len(order)))  # stable: dynamic ones keep theirs
        self._check_empty()
        self.dispatch()

    def login(self, number: str) -> None:
        self._agent(number).login(self.clock.seconds())
        self.dispatch()

    def logout(self, number: str) -> None:
        agent = self.agents.get(number)
        if agent is not None:
            agent.logout()
        self._check_empty()
        self.dispatch()

    def toggle_pause(self, number: str) -> bool | None:
        """Pause or unpause a logged-in agent: whether paused now, None if not logged in."""
        agent = self.agents.get(number)
        if agent is None or not agent.logged_in:
            return None
        paused = agent.toggle_pause()
        self._check_empty()
        self.dispatch()
        return paused

    def supervise(self, number: str, action: str, by: str = "") -> str:
        """A supervisor's `action` on agent `number`, from the manhole or the console:
        one of `SUPERVISOR_ACTIONS`. Returns the agent's state after it; raises
        ValueError saying why not (not an agent of this queue, not logged in)."""
        if action not in SUPERVISOR_ACTIONS:
            raise ValueError(f"no action {action!r} (one of {', '.join(SUPERVISOR_ACTIONS)})")
        agent = self.agents.get(number)
        if action == "login":
            if agent is None and not self.settings.may_log_in(number):
                raise ValueError(f"{number} is not an agent of queue {self.name}")
            self.login(number)
        elif agent is None or not agent.logged_in:
            raise ValueError(f"agent {number} is not logged in to queue {self.name}")
        elif action == "logout":
            self.logout(number)
        elif (action == "pause") != agent.paused:
            self.toggle_pause(number)
        log.info("queue {queue}: agent {agent} {action} by {by}", queue=self.name, agent=number,
                 action=action, by=by or "a supervisor")
        return self.agents[number].state(self.clock.seconds())

    def _empty(self) -> bool:
        """No agent logged in and unpaused: nobody will ever take a waiting caller."""
        return not any(a.logged_in and not a.paused for a in self.members)

    def _check_empty(self) -> None:
        if self.settings.leave_when_empty and self._empty():
            for entry in list(self.waiting):
                self._send_away(entry, "empty")

    # -- the call events (ICallObserver) ------------------------------------------------

    def call_event(self, event: Event) -> None:
        """Keep each agent's set of live calls; re-offer when one frees up."""
        self._changed = False
        self.parties.event(event)
        if type(event) is CallEnded:
            # Whatever the sides said, nobody stays on an ended call.
            call_id = event.call.id  # type: ignore[attr-defined]
            for agent in self.members:
                if call_id in agent.calls:
                    agent.left_call(call_id, event.time)  # type: ignore[attr-defined]
                    self._changed = True
        if self._changed:
            self.dispatch()

    def _joined(self, number: str, call_id: str) -> None:
        agent = self.agents.get(number)
        if agent is not None and call_id not in agent.calls:
            agent.calls.add(call_id)
            self._changed = True

    def _left(self, number: str, call_id: str) -> None:
        agent = self.agents.get(number)
        if agent is not None and call_id in agent.calls:
            agent.left_call(call_id, self.clock.seconds())
            self._changed = True

    # -- offering callers to agents ------------------------------------------------------

    def dispatch(self) -> None:
        """Offer waiting callers, first come first served, to the available agents;
        then report agents' state changes and arm the next timer. Re-entrant
        calls (an offer that fails at once) run one more round instead of nesting."""
        if self._dispatching:
            self._again = True
            return
        self._dispatching = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self._offer_round()
        finally:
            self._dispatching = False
        self._report_states()

    def _offer_round(self) -> None:
        now = self.clock.seconds()
        for entry in list(self.waiting):
            if entry.offering is not None or entry.pending or entry.outcome:
                continue
            available = [a for a in self.members if a.state(now) == AVAILABLE]
            if not available:
                return
            # Penalties: only the available agents of the lowest one are offered.
            lowest = min(a.settings.penalty for a in available)
            available = [a for a in available if a.settings.penalty == lowest]
            self._offer(entry, self.strategy.pick(available, self.members))

    def _offer(self, entry: _Caller, agents: list[Agent]) -> None:
        now = self.clock.seconds()
        for agent in agents:
            agent.offer(now)
        entry.offering = agents
        numbers: Any = agents[0].number if len(agents) == 1 else [a.number for a in agents]
        timeout = max(a.settings.ring_timeout for a in agents)
        log.debug("queue {queue}: call {callID} offered to {agents}", queue=self.name, callID=entry.call.id,
                  agents=numbers)
        # A call that fails at once must still settle the offer: no agent stays "ringing".
        d = entry.ringing = defer.maybeDeferred(entry.call.bridge, numbers, ring_timeout=timeout)
        d.addCallbacks(self._offer_answered, self._offer_failed, callbackArgs=(entry,), errbackArgs=(entry,))

    def _offer_answered(self, number: str, entry: _Caller) -> None:
        now = self.clock.seconds()
        agents, entry.offering, entry.ringing = entry.offering or [], None, None
        for agent in agents:
            if agent.number == number:
                agent.offer_answered(entry.call.id, now)
            else:
                agent.offer_withdrawn()
        self._leave(entry, "answered", number)
        entry.finish()
        self.dispatch()

    def _offer_failed(self, failure: Failure, entry: _Caller) -> None:
        now = self.clock.seconds()
        agents, entry.offering, entry.ringing = entry.offering or [], None, None
        # Gone, or left by the exit digit while they rang: the agents missed nothing.
        if failure.check(CallGone) or entry.gone or entry.pending == "exit":
            for agent in agents:
                agent.offer_withdrawn()
            if entry.pending == "exit" and not entry.gone:
                self._send_away(entry, "exit")
            elif not entry.outcome:
                self._leave(entry, "abandoned")
            entry.finish()
            self.dispatch()
            return
        failures = getattr(failure.value, "failures", None) or {}
        for agent in agents:
            status = failures.get(agent.number, (getattr(failure.value, "status", 408), ""))[0]
            log.info("queue {queue}: agent {agent} missed call {callID} ({status})", queue=self.name,
                     agent=agent.number, callID=entry.call.id, status=status)
            agent.offer_missed(now, self.settings.max_no_answer)
        if entry.pending:
            self._send_away(entry, entry.pending)
        self._check_empty()
        # Not at once: an offer refused synchronously must not loop inside this call.
        self.clock.callLater(0, self.dispatch)

    def _report_states(self) -> None:
        """Publish each agent's state change since the last report; arm the timer
        that ends the next wrap-up or retry."""
        now = self.clock.seconds()
        soonest: float | None = None
        for agent in self.members:
            state = agent.state(now)
            if state != agent.last_state:
                self.publish(AgentStateChanged(now, self.name, agent.number, agent.last_state or LOGGED_OUT,
                                               state))
                agent.last_state = state
            due = agent.next_change(now)
            if due is not None and (soonest is None or due < soonest):
                soonest = due
        if self._timer is not None and self._timer.active():
            if soonest is not None and self._timer.getTime() == soonest:
                return
            self._timer.cancel()
        self._timer = None if soonest is None else self.clock.callLater(soonest - now, self.dispatch)

    # -- callers ---------------------------------------------------------------------

    def handle(self, call: Any) -> defer.Deferred:
        """Serve `call`: a caller to the queue, or an agent's feature code."""
        feature = None if call.number == self.settings.number else self.settings.features.match(call.number)
        if feature is not None:
            return defer.ensureDeferred(self._feature(call, *feature))
        return defer.ensureDeferred(self._serve(call))

    def _refuse(self, call: Any, reason: str, status: int, text: str) -> None:
        overflow = self.settings.overflow
        self.refused += 1
        now = self.clock.seconds()
        self.publish(QueueCallerRefused(now, self.name, call.id, call.caller, reason, overflow))
        if overflow:
            defer.maybeDeferred(call.transfer, overflow).addErrback(self._transfer_failed, call)
        else:
            call.hangup(Cause(status, text, "local"))

    async def _serve(self, call: Any) -> None:
        settings = self.settings
        if settings.max_callers and len(self.waiting) >= settings.max_callers:
            self._refuse(call, "full", 486, "Busy Here")
            return
        if not settings.join_empty and self._empty():
            self._refuse(call, "empty", 480, "No agent logged in")
            return
        try:
            await call.answer()
        except CallGone:
            return
        entry = _Caller(call, self.clock.seconds())
        self.waiting.append(entry)
        self.publish(QueueCallerJoined(entry.joined, self.name, call.id, call.caller, len(self.waiting)))
        self._publish_stats()
        call.ended.addBoth(self._caller_gone, entry)
        if settings.exit_digit:
            call.on_digit(lambda digit: self._digit(entry, digit))
        if settings.max_wait:
            entry.wait_timer = self.clock.callLater(settings.max_wait, self._wait_over, entry)
        if settings.announce_frequency:
            entry.announce_timer = self.clock.callLater(settings.announce_frequency, self._announce, entry)
        self._play(entry, [*settings.welcome, *_leave_hint(settings.exit_digit)])
        self.dispatch()
        await entry.finished  # Application hangs up a call whose run() returned

    def _play(self, entry: _Caller, prompts: list[str]) -> None:
        """Play `prompts`, then music on hold again while the caller still waits."""
        d = defer.maybeDeferred(entry.call.play, prompts)
        d.addCallback(lambda _: entry.outcome or entry.call.hold(self.settings.music))
        d.addErrback(lambda f: f.trap(CallGone))

    def _announce(self, entry: _Caller) -> None:
        """Say the caller's position and estimated wait (whole minutes, rounded up;
        left out until one caller was answered), unless an agent is ringing."""
        entry.announce_timer = self.clock.callLater(self.settings.announce_frequency, self._announce, entry)
        if entry.outcome or entry.offering is not None:
            return
        position = self.waiting.index(entry) + 1
        prompts = ["queue-position", *say_number(min(position, 999))]
        serving = max(1, sum(a.logged_in and not a.paused for a in self.members))
        minutes = math.ceil(self.holdtime * position / serving / 60.0)
        if minutes > 0:
            prompts += ["queue-wait", *say_number(min(minutes, 999)), "minute" if minutes == 1 else "minutes"]
        self._play(entry, prompts)

    def _digit(self, entry: _Caller, digit: str) -> None:
        if digit != self.settings.exit_digit or entry.outcome:
            return
        if entry.offering is not None:
            # Stop the ringing (CANCEL to the agents); the caller leaves as it fails.
            entry.pending = "exit"
            if entry.ringing is not None:
                entry.ringing.cancel()
        else:
            self._send_away(entry, "exit")

    def _wait_over(self, entry: _Caller) -> None:
        entry.wait_timer = None
        if entry.outcome:
            return
        if entry.offering is not None:
            entry.pending = "timeout"
        else:
            self._send_away(entry, "timeout")

    def _send_away(self, entry: _Caller, outcome: str) -> None:
        """The caller leaves unanswered: to `exit_to` for the exit digit, else to
        `overflow`; hung up when there is none."""
        if entry.outcome:
            return
        if entry.offering is not None:
            entry.pending = outcome
            return
        self._leave(entry, outcome)
        target = self.settings.exit_to if outcome == "exit" else self.settings.overflow
        if target:
            defer.maybeDeferred(entry.call.transfer, target).addErrback(self._transfer_failed, entry.call)
        else:
            entry.call.hangup(Cause(408 if outcome == "timeout" else 480, f"queue {outcome}", "local"))
        entry.finish()

    def _transfer_failed(self, failure: Failure, call: Any) -> None:
        """The overflow or exit target did not take the caller (the call object has
        hung it up with the target's status): logged, nothing else to do."""
        if not failure.check(CallGone):
            log.info("queue {queue}: call {callID} not taken by its overflow: {error}", queue=self.name,
                     callID=call.id, error=failure.getErrorMessage())

    def _caller_gone(self, cause: Any, entry: _Caller) -> Any:
        """The caller's call ended. While an agent rings, the bridge's outcome says
        whether it was answered (then the end is the hand-over) or abandoned."""
        entry.gone = True
        if not entry.outcome and entry.offering is None:
            self._leave(entry, "abandoned")
            entry.finish()
            self.dispatch()
        return cause

    def _leave(self, entry: _Caller, outcome: str, agent: str = "") -> None:
        now = self.clock.seconds()
        entry.outcome = outcome
        if entry in self.waiting:
            self.waiting.remove(entry)
        for timer in (entry.wait_timer, entry.announce_timer):
            if timer is not None and timer.active():
                timer.cancel()
        entry.wait_timer = entry.announce_timer = None
        waited = now - entry.joined
        if outcome == "answered":
            self.answered += 1
            if waited <= self.settings.service_level:
                self.answered_in_level += 1
            self.holdtime = waited if self.answered == 1 else (3 * self.holdtime + waited) / 4
        elif outcome == "abandoned":
            self.abandoned += 1
        elif outcome == "timeout":
            self.timed_out += 1
        elif outcome == "exit":
            self.exited += 1
        else:
            self.emptied += 1
        call = entry.call
        self.publish(QueueCallerLeft(now, self.name, call.id, call.caller, outcome, waited, agent))
        self._publish_stats()

    def _publish_stats(self) -> None:
        self.publish(QueueStats(self.clock.seconds(), self.name, self.queue_stats()[0]))

    # -- feature codes ---------------------------------------------------------------

    async def _feature(self, call: Any, action: str, queue_number: str) -> None:
        """An agent's feature code: act on its queues, confirm with a prompt."""
        number = call.caller
        queues = [q for q in self.peers() if q.settings.may_log_in(number)
                  and (not queue_number or q.settings.number == queue_number)]
        if not number or not queues:
            call.hangup(Cause(403 if number else 404, "Not an agent of this queue", "local"))
            return
        if action == "login":
            for queue in queues:
                queue.login(number)
            prompt = "agent-logged-in"
        elif action == "logout":
            for queue in queues:
                queue.logout(number)
            prompt = "agent-logged-out"
        else:
            results = [queue.toggle_pause(number) for queue in queues]
            if all(r is None for r in results):
                call.hangup(Cause(403, "Not logged in", "local"))
                return
            prompt = "agent-paused" if any(results) else "agent-unpaused"
        log.info("queue {queue}: agent {agent} {action} ({queues})", queue=self.name, agent=number,
                 action=action, queues=",".join(q.name for q in queues))
        try:
            await call.answer()
            await call.play(prompt)
        except CallGone:
            return
        call.hangup()

    def stop(self) -> None:
        """Cancel every timer (the module stops; calls end by themselves)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for entry in self.waiting:
            for timer in (entry.wait_timer, entry.announce_timer):
                if timer is not None and timer.active():
                    timer.cancel()


@implementer(ICallObserver)
class Queue(Application):
    """The ``type: queue`` module: an `Application` answering the queue's number and
    the agents' feature codes, and observing the switch's call events."""

    kind = "queue"

    def __init__(self, name: str, settings: QueueSettings, reactor: Any = None, pacer: Any = None,
                 rng: random.Random | None = None) -> None:
        super().__init__(name, settings, reactor, pacer)
        self.rng = rng
        self.logic: QueueLogic | None = None

    def handles(self, invite: Any) -> bool:
        user = invite.to.uri.user or ""
        return user == self.number or self.settings.features.match(user) is not None

    def start(self, engine: Any) -> Any:
        super().start(engine)
        self.logic = QueueLogic(self.name, self.settings, self.reactor, engine.events.publish, self._peers,
                                self.rng)
        engine.add_observer(self)
        self.logic.dispatch()  # static agents' first state

    def stop(self) -> Any:
        if self.engine is not None:
            self.engine.remove_observer(self)
        if self.logic is not None:
            self.logic.stop()

    def reconfigure(self, settings: Any) -> bool:
        """A reload: the running queue takes the new settings in place (`QueueLogic.apply`),
        so agents stay logged in and callers keep their places."""
        if not super().reconfigure(settings):
            return False
        if self.logic is not None:
            self.logic.apply(settings)
        return True

    def _peers(self) -> list[QueueLogic]:
        return [m.logic for m in self.engine.modules if isinstance(m, Queue) and m.logic is not None]

    def call_event(self, event: Event) -> None:
        if self.logic is not None:
            self.logic.call_event(event)

    def run(self, call: Any) -> defer.Deferred:
        assert self.logic is not None, "run before start"
        return self.logic.handle(call)

    def queue_stats(self) -> list[dict[str, Any]]:
        return self.logic.queue_stats() if self.logic is not None else []

    def agent_stats(self) -> list[dict[str, Any]]:
        return self.logic.agent_stats() if self.logic is not None else []

    def supervise(self, number: str, action: str, by: str = "") -> str:
        """`QueueLogic.supervise`: log an agent in or out, pause or resume it."""
        if self.logic is None:
            raise ValueError(f"queue {self.name} is not running")
        return self.logic.supervise(number, action, by)
