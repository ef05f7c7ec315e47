"""The agent queue on the wire: three SIPp phones register as agents 1001-1003
(their -oocsf scenario answers, refuses, lets ring or goes deaf), a SIPp caller
calls the queue (700) through a trunk ten times, one call after the other, and
the queue's own events say which agent took each call."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task
from zope.interface import implementer

from phpvoip.apps.queue_events import AgentStateChanged, QueueCallerLeft
from phpvoip.interfaces import ICallObserver
from tests.interop.conftest import FAST_TIMERS, SCENARIOS, sipp_args, wait_idle
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.interop

PORTS = "46000-46099"  # the queue's RTP ports: no other test's range
AGENTS = ("1001", "1002", "1003")
CALLS = 10
QUICK_TIMERS = "  timers: {t1: 0.05, t2: 0.2, t4: 0.25}\n"  # an unanswered OPTIONS gives up after 3.2 s


@implementer(ICallObserver)
class QueueLog:
    """The queue's events as they come."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def call_event(self, event: Any) -> None:
        if isinstance(event, (QueueCallerLeft, AgentStateChanged)):
            self.events.append(event)

    def left(self) -> list[QueueCallerLeft]:
        return [e for e in self.events if isinstance(e, QueueCallerLeft)]


def config(queue: str, keepalive: float = 0) -> str:
    users = ", ".join(f'"{a}": {{password: pw{a}}}' for a in AGENTS)
    return (
        f"calls: {{keepalive_interval: {keepalive}}}\n"
        "modules:\n"
        "  - type: registrar\n"
        f"    users: {{{users}}}\n"
        "    algorithms: [MD5]\n"
        "  - type: trunk\n"  # lets the SIPp caller in; carries only 2xxx numbers out
        "    name: sipp\n"
        f"    address: {LOOPBACK}:{free_port()}\n"
        f"    allow: [{LOOPBACK}]\n"
        "    numbers: ['2*']\n"
        "  - type: queue\n"
        "    name: support\n"
        "    number: '700'\n"
        f"    ports: '{PORTS}'\n"
        "    announce_frequency: 0\n" + queue
    )


async def until(reactor: Any, check: Any, timeout: float = 10.0) -> Any:
    deadline = reactor.seconds() + timeout
    while not check() and reactor.seconds() < deadline:
        await task.deferLater(reactor, 0.05, lambda: None)
    return check()


async def start(reactor, sipp, switch, peers, queue: str, phones: dict[str, str], keepalive: float = 0,
                timers: str = FAST_TIMERS):
    """The switch, the queue's event log, and each agent's phone registered with
    its -oocsf scenario."""
    service = await switch(config(queue, keepalive), timers)
    log = QueueLog()
    service.engine.add_observer(log)
    [registrar] = [m for m in service.engine.modules if m.name == "registrar"]
    started = []
    for agent, scenario in phones.items():
        started.append(peers.start(sipp_args(
            sipp, "phone_register_wait.xml", free_port(), service.port,
            "-oocsf", str(SCENARIOS / scenario), "-s", agent, "-au", agent, "-ap", f"pw{agent}",
            "-key", "expires", "300", "-d", "120000", "-m", "1", "-trace_logs", "-timeout", "150",
        ), deadline=150))
    registered = await until(reactor, lambda: all(registrar.contacts(a) for a in phones))
    assert registered, "agents did not register: " + "".join(p.output[-2000:] for p in started)
    [queue_module] = [m for m in service.engine.modules if m.name == "support"]
    return service, log, queue_module


async def call_queue(sipp, service, peers, calls: int, scenario: str = "queue_uac.xml", *extra: str) -> None:
    caller = peers.start(sipp_args(
        sipp, scenario, free_port(), service.port, "-s", "700", "-m", str(calls), "-l", "1",
        "-timeout", "40", "-timeout_error", *extra,
    ), deadline=130)
    assert await caller.wait() == 0, caller.output


def offered(tmp_path: Path, agent: str, what: str = "OFFERED") -> int:
    """How many INVITEs (or, with what="CANCELLED", CANCELs) agent `agent`'s phone
    logged (its -trace_logs file)."""
    text = "".join(p.read_text(errors="replace") for p in tmp_path.glob("phone_register_wait_*_logs.log"))
    return len(re.findall(rf"{what} {agent}\b", text))


ANSWERING = {a: "queue_agent_answer.xml" for a in AGENTS}
CYCLE = [AGENTS[i % 3] for i in range(CALLS)]


@pytest.mark.parametrize("strategy, order", [
    ("linear", [AGENTS[0]] * CALLS),
    ("round-robin", CYCLE),
    ("longest-idle", CYCLE),
    ("fewest-calls", CYCLE),
    ("ring-all", None),
    ("random", None),
])
@pytest_twisted.ensureDeferred
async def test_ten_calls_in_strategy_order(reactor, sipp, switch, peers, tmp_path, strategy, order):
    """Ten callers one after the other: each is answered by the agent the strategy
    names (ring-all rings all three every time; random spreads them)."""
    service, log, queue = await start(reactor, sipp, switch, peers, f"    strategy: {strategy}\n"
                                      "    agents: ['1001', '1002', '1003']\n", ANSWERING)
    await call_queue(sipp, service, peers, CALLS)
    left = log.left()
    assert [e.outcome for e in left] == ["answered"] * CALLS
    took = [e.agent for e in left]
    if order is not None:
        assert took == order
    assert set(took) <= set(AGENTS)
    if strategy == "random":
        assert len(set(took)) > 1  # 3 ** -9 odds of a false failure
    if strategy == "ring-all":
        assert await until(reactor, lambda: all(offered(tmp_path, a) == CALLS for a in AGENTS))
    stats = queue.queue_stats()[0]
    assert (stats["answered"], stats["abandoned"], stats["callers_waiting"]) == (CALLS, 0, 0)
    assert await until(reactor, lambda: {r["state"] for r in queue.agent_stats()} == {"available"})
    assert sum(r["answered"] for r in queue.agent_stats()) == CALLS


@pytest_twisted.ensureDeferred
async def test_refusing_and_silent_agents_are_skipped_then_paused(reactor, sipp, switch, peers, tmp_path):
    """1002 answers 486 and 1003 rings out: each caller still reaches 1001, and after
    max_no_answer (2) misses in a row both are paused and no longer rung."""
    phones = {"1001": "queue_agent_answer.xml", "1002": "queue_agent_busy.xml",
              "1003": "queue_agent_silent.xml"}
    service, log, queue = await start(reactor, sipp, switch, peers, (
        "    strategy: round-robin\n    agents: ['1001', '1002', '1003']\n"
        "    ring_timeout: 1\n    retry_delay: 0.2\n    max_no_answer: 2\n"), phones)
    await call_queue(sipp, service, peers, 5)
    assert [(e.outcome, e.agent) for e in log.left()] == [("answered", "1001")] * 5
    rows = {r["agent"]: r for r in queue.agent_stats()}
    assert [(rows[a]["state"], rows[a]["missed"]) for a in ("1002", "1003")] == [("paused", 2), ("paused", 2)]
    assert (offered(tmp_path, "1002"), offered(tmp_path, "1003")) == (2, 2)
    assert rows["1001"]["answered"] == 5 and rows["1001"]["missed"] == 0


@pytest_twisted.ensureDeferred
async def test_wrapup_is_respected(reactor, sipp, switch, peers, tmp_path):
    """With one agent and 1.5 s of wrap-up, the next caller is offered to it no
    sooner than 1.5 s after the last call ended."""
    service, log, queue = await start(reactor, sipp, switch, peers, (
        "    agents: ['1001']\n    wrapup: 1.5\n"), {"1001": "queue_agent_answer.xml"})
    await call_queue(sipp, service, peers, 3)
    assert [e.outcome for e in log.left()] == ["answered"] * 3
    changes = [e for e in log.events if isinstance(e, AgentStateChanged)]
    wrapups = [e.time for e in changes if e.new == "wrap-up"]
    rung_after = [e.time for e in changes if e.old == "wrap-up"]
    assert len(wrapups) == 3 and len(rung_after) >= 2
    for began, ended in zip(wrapups, rung_after, strict=False):
        assert ended - began >= 1.5 - 1e-6


@pytest_twisted.ensureDeferred
async def test_caller_hanging_up_while_waiting_is_abandoned(reactor, sipp, switch, peers, tmp_path):
    """No agent is logged in: a caller who hangs up after a second is counted abandoned."""
    service, log, queue = await start(reactor, sipp, switch, peers, "    dynamic_agents: ['1001']\n", {},
                                      timers=QUICK_TIMERS)  # transactions end sooner: wait_idle below
    await call_queue(sipp, service, peers, 1, "queue_uac_abandon.xml", "-d", "1000")
    [left] = log.left()
    assert left.outcome == "abandoned" and 0.8 <= left.waited <= 3.0
    stats = queue.queue_stats()[0]
    assert (stats["abandoned"], stats["answered"], stats["callers_waiting"]) == (1, 0, 0)
    counts = await wait_idle(reactor, service.engine, 10.0)
    assert not any(counts.values()), counts


@pytest_twisted.ensureDeferred
async def test_caller_hanging_up_while_an_agent_rings_is_no_miss(reactor, sipp, switch, peers, tmp_path):
    """Agent 1001 rings (ring timeout 10 s, max_no_answer 1) and the caller hangs
    up after a second: 1001 gets CANCEL, the caller counts as abandoned, and 1001
    is neither counted as missing the call nor paused for it."""
    service, log, queue = await start(reactor, sipp, switch, peers, (
        "    agents: ['1001']\n    ring_timeout: 10\n    max_no_answer: 1\n"),
        {"1001": "queue_agent_silent.xml"}, timers=QUICK_TIMERS)
    await call_queue(sipp, service, peers, 1, "queue_uac_abandon.xml", "-d", "1000")
    [left] = log.left()
    assert left.outcome == "abandoned" and left.waited < 3.0
    assert await until(reactor, lambda: offered(tmp_path, "1001", "CANCELLED") == 1)
    row = queue.agent_stats()[0]
    assert (row["missed"], row["state"]) == (0, "available")


@pytest_twisted.ensureDeferred
async def test_agent_whose_call_died_by_keepalive_gets_the_next_call(reactor, sipp, switch, peers, tmp_path):
    """Agent 1001 stops answering the switch's keepalive OPTIONS after answering:
    the switch ends that call, and the next caller is offered to 1001 again."""
    service, log, queue = await start(reactor, sipp, switch, peers, "    agents: ['1001']\n",
                                      {"1001": "queue_agent_deaf.xml"}, keepalive=0.5,
                                      timers=QUICK_TIMERS)
    await call_queue(sipp, service, peers, 2)
    assert [(e.outcome, e.agent) for e in log.left()] == [("answered", "1001")] * 2
    ended = [r for r in service.engine.records if r.transfers == ["1001"]]
    assert [(r.hangup_by, r.cause) for r in ended] == [("switch", "SIP;cause=408")] * 2, [
        (r.hangup_by, r.reason, r.cause) for r in ended]
    assert all(r.reason == "No answer to keepalive" for r in ended)
    assert await until(reactor, lambda: queue.agent_stats()[0]["state"] == "available")


async def dial_code(sipp, service, peers, agent: str, code: str) -> None:
    """Agent `agent` dials feature code `code` and hears it confirmed until the BYE."""
    phone = peers.start(sipp_args(
        sipp, "queue_feature_uac.xml", free_port(), service.port, "-s", code, "-key", "agent", agent,
        "-m", "1", "-timeout", "20", "-timeout_error",
    ), deadline=30)
    assert await phone.wait() == 0, phone.output


@pytest_twisted.ensureDeferred
async def test_feature_codes_from_the_agents_phone(reactor, sipp, switch, peers, tmp_path):
    """A dynamic agent logs in with *45 (then takes a caller), pauses with *47 (a
    caller waits unoffered and gives up) and logs out with *46; each code is
    answered, confirmed and hung up by the queue."""
    service, log, queue = await start(reactor, sipp, switch, peers, "    dynamic_agents: ['1001']\n",
                                      {"1001": "queue_agent_answer.xml"})
    assert queue.agent_stats() == []
    await dial_code(sipp, service, peers, "1001", "*45")
    assert await until(reactor, lambda: queue.agent_stats()[0]["state"] == "available")
    await call_queue(sipp, service, peers, 1)
    await dial_code(sipp, service, peers, "1001", "*47")
    assert await until(reactor, lambda: queue.agent_stats()[0]["state"] == "paused")
    await call_queue(sipp, service, peers, 1, "queue_uac_abandon.xml", "-d", "1000")
    await dial_code(sipp, service, peers, "1001", "*46")
    assert await until(reactor, lambda: queue.agent_stats()[0]["state"] == "logged-out")
    assert [(e.outcome, e.agent) for e in log.left()] == [("answered", "1001"), ("abandoned", "")]
    assert offered(tmp_path, "1001") == 1
    changes = [(e.old, e.new) for e in log.events if isinstance(e, AgentStateChanged)]
    assert ("logged-out", "busy") in changes and changes[-1][1] == "logged-out"


@pytest_twisted.ensureDeferred
async def test_exit_digit_takes_the_caller_to_exit_to(reactor, sipp, switch, peers, tmp_path):
    """No agent is logged in; the caller presses 0 (SIP INFO) and is transferred to
    exit_to, extension 1002, who answers: counted as exited, not abandoned."""
    service, log, queue = await start(reactor, sipp, switch, peers, (
        "    dynamic_agents: ['1001']\n    exit_digit: '0'\n    exit_to: '1002'\n"),
        {"1002": "queue_agent_answer.xml"})
    await call_queue(sipp, service, peers, 1, "queue_uac_exit.xml", "-d", "500")
    [left] = log.left()
    assert left.outcome == "exit" and left.waited >= 0.4
    stats = queue.queue_stats()[0]
    assert (stats["exited"], stats["abandoned"], stats["answered"]) == (1, 0, 0)
    assert offered(tmp_path, "1002") == 1
    assert service.engine.records[-1].transfers == ["1002"]


@pytest_twisted.ensureDeferred
async def test_exit_digit_while_an_agent_rings(reactor, sipp, switch, peers, tmp_path):
    """Agent 1001 rings (ring timeout 10 s) when the caller presses 0 after half a
    second: 1001 gets CANCEL at once, is not counted as missing the call, and the
    caller reaches exit_to (1002) without waiting out the ring."""
    service, log, queue = await start(reactor, sipp, switch, peers, (
        "    agents: ['1001']\n    ring_timeout: 10\n    exit_digit: '0'\n    exit_to: '1002'\n"),
        {"1001": "queue_agent_silent.xml", "1002": "queue_agent_answer.xml"})
    await call_queue(sipp, service, peers, 1, "queue_uac_exit.xml", "-d", "500")
    [left] = log.left()
    assert left.outcome == "exit" and 0.4 <= left.waited < 3.0
    assert await until(reactor, lambda: offered(tmp_path, "1001", "CANCELLED") == 1)
    assert offered(tmp_path, "1001") == 1 and offered(tmp_path, "1002") == 1
    row = {r["agent"]: r for r in queue.agent_stats()}["1001"]
    assert (row["missed"], row["state"]) == (0, "available")
    assert service.engine.records[-1].transfers == ["1002"]


def caller(sipp, service, peers, scenario: str, *extra: str) -> Any:
    return peers.start(sipp_args(sipp, scenario, free_port(), service.port, "-s", "700", "-m", "1",
                                 "-timeout", "20", "-timeout_error", *extra), deadline=30)


@pytest_twisted.ensureDeferred
async def test_max_wait_and_max_callers_overflow(reactor, sipp, switch, peers, tmp_path):
    """No agent is logged in, max_callers 1: a second caller goes straight to the
    overflow number (1002, who answers); the first follows after max_wait (2 s)."""
    service, log, queue = await start(reactor, sipp, switch, peers, (
        "    dynamic_agents: ['1001']\n    max_callers: 1\n    max_wait: 2\n    overflow: '1002'\n"),
        {"1002": "queue_agent_answer.xml"})
    first = caller(sipp, service, peers, "queue_uac.xml")
    assert await until(reactor, lambda: queue.queue_stats()[0]["callers_waiting"] == 1)
    second = caller(sipp, service, peers, "queue_uac.xml")
    assert await second.wait() == 0, second.output
    assert await first.wait() == 0, first.output
    [left] = log.left()
    assert left.outcome == "timeout" and 2.0 <= left.waited < 3.5
    stats = queue.queue_stats()[0]
    assert (stats["refused"], stats["timed_out"], stats["abandoned"]) == (1, 1, 0)
    assert offered(tmp_path, "1002") == 2
    assert [r.transfers for r in list(service.engine.records)[-2:]] == [["1002"], ["1002"]]


@pytest_twisted.ensureDeferred
async def test_full_queue_without_overflow_answers_486(reactor, sipp, switch, peers, tmp_path):
    """max_callers 1 and no overflow: while one caller waits, the next gets 486 Busy Here."""
    service, log, queue = await start(reactor, sipp, switch, peers,
                                      "    dynamic_agents: ['1001']\n    max_callers: 1\n", {})
    first = caller(sipp, service, peers, "queue_uac_abandon.xml", "-d", "2000")
    assert await until(reactor, lambda: queue.queue_stats()[0]["callers_waiting"] == 1)
    busy = caller(sipp, service, peers, "uac_busy.xml")
    assert await busy.wait() == 0, busy.output
    assert await first.wait() == 0, first.output
    stats = queue.queue_stats()[0]
    assert (stats["refused"], stats["abandoned"]) == (1, 1)
    assert sorted(r.status for r in service.engine.records if r.callee == "700") == [200, 486]
