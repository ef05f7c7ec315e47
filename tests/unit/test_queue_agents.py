"""The agent state machine and every strategy's order, under task.Clock."""

from __future__ import annotations

import random

import pytest
from twisted.internet import task

from phpvoip.apps.queue_agents import Agent, AgentStateError
from phpvoip.apps.queue_config import AgentSettings
from phpvoip.apps.queue_strategy import Strategy
from tests.unit.queue_fakes import join, make_queue


def agent(number: str = "1001", static: bool = True, now: float = 0.0, **timers) -> Agent:
    return Agent(AgentSettings(number, **timers), static, now)


def test_state_priority_table():
    """The first fact that holds names the state: logged-out, busy, ringing, paused,
    wrap-up, retry, available."""
    a = agent(wrapup=10, retry_delay=5)
    assert a.state(0) == "available"
    a.retry_until = 5
    assert a.state(0) == "retry"
    a.wrapup_until = 10
    assert a.state(0) == "wrap-up"
    a.paused = True
    assert a.state(0) == "paused"
    a.offered = True
    assert a.state(0) == "ringing"
    a.calls.add("call-1")
    assert a.state(0) == "busy"
    a.logged_in = False
    assert a.state(0) == "logged-out"


def test_dynamic_agent_starts_logged_out_static_logged_in():
    """Static agents are logged in from the start; dynamic ones are not."""
    assert agent(static=True).state(0) == "available"
    assert agent(static=False).state(0) == "logged-out"


@pytest.mark.parametrize("setup", ["paused", "busy", "wrapup", "offered", "logged_out"])
def test_offer_outside_available_raises_naming_state_and_event(setup):
    """An offer in any state but available is a bug: the error names both."""
    a = agent(wrapup=5)
    if setup == "paused":
        a.toggle_pause()
    elif setup == "busy":
        a.calls.add("c")
    elif setup == "wrapup":
        a.wrapup_until = 5
    elif setup == "offered":
        a.offer(0)
    else:
        a.logout()
    with pytest.raises(AgentStateError) as e:
        a.offer(0)
    assert e.value.event == "offer" and e.value.state == a.state(0)


def test_answered_offer_then_end_gives_wrapup_and_talk_time():
    """An answered offer is a queue call: its end adds talk time and starts wrap-up."""
    a = agent(wrapup=8)
    a.offer(0)
    a.offer_answered("call-3", 2)
    assert a.state(2) == "busy" and a.answered == 1
    a.left_call("call-3", 62)
    assert (a.talk_time, a.state(62), a.state(70), a.next_change(62)) == (60, "wrap-up", "available", 70)


def test_other_calls_end_without_wrapup():
    """A call that was not the queue's does not start wrap-up."""
    a = agent(wrapup=8)
    a.calls.add("call-9")
    a.left_call("call-9", 5)
    assert a.state(5) == "available" and a.idle_since == 5


def test_misses_rest_then_pause_at_max_no_answer():
    """Each miss rests the agent retry_delay s; max_no_answer misses in a row pause it."""
    a = agent(retry_delay=3)
    for when in (0, 10):
        a.offer(when)
        a.offer_missed(when, 2)
    assert (a.missed, a.paused, a.auto_paused, a.state(20)) == (2, True, True, "paused")
    assert not a.toggle_pause() and a.missed_in_row == 0


def test_max_no_answer_zero_never_pauses():
    """max_no_answer 0: misses never pause."""
    a = agent(retry_delay=0)
    for when in range(10):
        a.offer(when)
        a.offer_missed(when, 0)
    assert not a.paused and a.missed == 10


# -- strategies ------------------------------------------------------------------------


def members(*numbers: str) -> list[Agent]:
    return [agent(n) for n in numbers]


def picks(strategy: Strategy, everyone: list[Agent], available_each: list[list[str]]) -> list[list[str]]:
    out = []
    for names in available_each:
        available = [a for a in everyone if a.number in names]
        out.append([a.number for a in strategy.pick(available, everyone)])
    return out


def test_ring_all_rings_every_available_agent():
    """ring-all: everyone available, in config order."""
    everyone = members("a", "b", "c")
    chosen = picks(Strategy("ring-all"), everyone, [["a", "b", "c"], ["c", "a"]])
    assert chosen == [["a", "b", "c"], ["a", "c"]]


def test_linear_always_starts_from_the_top():
    """linear: the first available in config order, every time."""
    everyone = members("a", "b", "c")
    assert picks(Strategy("linear"), everyone, [["a", "b", "c"]] * 3 + [["b", "c"]]) == [["a"]] * 3 + [["b"]]


def test_round_robin_remembers_where_it_stopped():
    """round-robin: the next after the last one offered, wrapping, skipping the unavailable."""
    everyone = members("a", "b", "c")
    rr = Strategy("round-robin")
    all3 = ["a", "b", "c"]
    assert picks(rr, everyone, [all3, all3, all3, all3]) == [["a"], ["b"], ["c"], ["a"]]
    assert picks(rr, everyone, [["a", "c"], all3]) == [["c"], ["a"]]
    assert rr.last == "a"


def test_longest_idle_picks_the_earliest_idle_since():
    """longest-idle: the agent whose last call ended longest ago; ties in config order."""
    everyone = members("a", "b", "c")
    everyone[0].idle_since, everyone[1].idle_since, everyone[2].idle_since = 30, 10, 10
    assert picks(Strategy("longest-idle"), everyone, [["a", "b", "c"], ["a", "c"]]) == [["b"], ["c"]]


def test_fewest_calls_picks_the_least_answered():
    """fewest-calls: fewest answered queue calls; ties in config order."""
    everyone = members("a", "b", "c")
    everyone[0].answered, everyone[1].answered, everyone[2].answered = 2, 1, 1
    chosen = picks(Strategy("fewest-calls"), everyone, [["a", "b", "c"], ["a", "c"], ["a"]])
    assert chosen == [["b"], ["c"], ["a"]]


def test_random_follows_the_injected_generator():
    """random: the injected generator's choice, so a seed makes it repeatable; all get calls."""
    everyone = members("a", "b", "c")
    chosen = picks(Strategy("random", random.Random(7)), everyone, [["a", "b", "c"]] * 60)
    expected_rng = random.Random(7)
    assert chosen == [[expected_rng.choice(everyone).number] for _ in range(60)]
    assert {c[0] for c in chosen} == {"a", "b", "c"}


@pytest.mark.parametrize("strategy, order", [
    ("linear", ["1001", "1001", "1001", "1001"]),
    ("round-robin", ["1001", "1002", "1003", "1001"]),
    ("fewest-calls", ["1001", "1002", "1003", "1001"]),
    ("longest-idle", ["1001", "1002", "1003", "1001"]),
])
def test_queue_offers_in_strategy_order(strategy, order):
    """Four callers in turn, each answered and hung up: the agents offered follow the strategy."""
    clock, logic, events, switch = make_queue(strategy=strategy)
    offered = []
    for _ in order:
        clock.advance(1)
        call = join(logic, switch)
        number = call.ringing
        offered.append(number)
        call.agent_answers(number)
        switch.transferred(call.id, number, "switch")
        clock.advance(5)
        switch.end(call.id)
    assert offered == order


def test_clock_is_injected():
    """Nothing reads the wall clock: a queue made on a fresh Clock starts at 0."""
    clock = task.Clock()
    clock.advance(100)
    a = Agent(AgentSettings("1"), True, clock.seconds())
    assert a.idle_since == 100
