"""The agent queue under task.Clock with fake calls: offers, wrap-up, retry, limits,
abandon counting, agents' state derived from call events, feature codes, figures."""

from __future__ import annotations

import pytest
from twisted.internet import task
from zope.interface.verify import verifyObject

from phpvoip.apps.queue import Queue, QueueLogic
from phpvoip.apps.queue_events import AgentStateChanged, QueueCallerLeft, QueueCallerRefused
from phpvoip.interfaces import IApplication, ICallObserver
from phpvoip.settings import ConfigError, Section
from tests.unit.queue_fakes import FakeCall, join, make_queue, settings


def test_queue_provides_the_application_and_observer_interfaces():
    """The module is an IApplication and observes call events."""
    queue = Queue("q", settings())
    verifyObject(IApplication, queue)
    verifyObject(ICallObserver, queue)


def test_settings_defaults():
    """Defaults: ring-all, 15 s ring, 5 s retry, no wrap-up, 3 misses, *45/*46/*47."""
    from phpvoip.apps.queue_config import parse_settings
    s = parse_settings(Section("f.yaml", "m", {"number": "700"}))
    assert (s.strategy, s.ring_timeout, s.retry_delay, s.wrapup) == ("ring-all", 15.0, 5.0, 0.0)
    assert s.max_no_answer == 3
    assert (s.announce_frequency, s.max_wait, s.max_callers, s.join_empty, s.leave_when_empty) == (
        30.0, 0.0, 0, True, False)
    assert (s.features.login, s.features.logout, s.features.pause) == ("*45", "*46", "*47")
    assert s.features.match("*45700") == ("login", "700")


@pytest.mark.parametrize("keys, key, words", [
    ({"strategy": "leastrecent"}, "m.strategy", "must be one of"),
    ({"exit_digit": "5"}, "m.exit_to", "is required"),
    ({"exit_digit": "55", "exit_to": "1"}, "m.exit_digit", "one digit"),
    ({"agents": ["1001", "1001"]}, "m.agents[1]", "listed twice"),
    ({"agents": [{"number": "1001", "wrap": 3}]}, "m.agents[0].wrap", "unknown key"),
    ({"feature_codes": {"login": "*1", "logout": "*1"}}, "m.feature_codes", "must differ"),
    ({"ring_timeout": 0}, "m.ring_timeout", "at least"),
])
def test_bad_settings_name_the_key(keys, key, words):
    """A bad queue setting names the file, the key and the problem."""
    from phpvoip.apps.queue_config import parse_settings
    with pytest.raises(ConfigError) as e:
        parse_settings(Section("f.yaml", "m", {"number": "700", **keys}))
    assert "f.yaml" in str(e.value) and key in str(e.value) and words in str(e.value)


def test_agent_override_of_timers():
    """An agent's own ring_timeout/retry_delay/wrapup win over the queue's."""
    s = settings(agents=[{"number": "1001", "wrapup": 7}, "1002"], wrapup=2)
    assert s.agent("1001").wrapup == 7 and s.agent("1002").wrapup == 2 and s.agent("9").wrapup == 2


@pytest.mark.parametrize("welcome, played", [([], []), ("hello", ["hello"]),
                                             (["greeting", "please-hold"], ["greeting", "please-hold"])])
def test_the_welcome_is_configurable_and_may_be_nothing(welcome, played):
    """`welcome:` names the prompts (one or a list) a caller hears on joining; []
    puts callers straight on music."""
    clock, logic, events, switch = make_queue(welcome=welcome)
    call = join(logic, switch)
    assert call.played[0] == played and call.holds == 1


def test_caller_is_answered_welcomed_and_offered_to_an_agent():
    """A caller is answered, hears the welcome then music, and ring-all rings all three."""
    clock, logic, events, switch = make_queue()
    call = join(logic, switch)
    assert call.answered and call.played[0] == ["queue-welcome"] and call.holds == 1
    assert call.ringing == ["1001", "1002", "1003"] and call.bridges[0][1] == 15.0
    assert [r["state"] for r in logic.agent_stats()] == ["ringing"] * 3
    call.agent_answers("1002")
    switch.transferred(call.id, "1002", "switch")
    states = {r["agent"]: r["state"] for r in logic.agent_stats()}
    assert states == {"1001": "available", "1002": "busy", "1003": "available"}
    left = [e for e in events if isinstance(e, QueueCallerLeft)]
    assert [(e.outcome, e.agent) for e in left] == [("answered", "1002")]


def test_agent_busy_until_the_call_ends_then_wrapup():
    """After a queue call the agent is busy until CallEnded, then in wrap-up for
    `wrapup` seconds, and only then offered the next caller."""
    clock, logic, events, switch = make_queue(strategy="linear", agents=["1001"], wrapup=10)
    first = join(logic, switch)
    first.agent_answers("1001")
    switch.transferred(first.id, "1001", "switch")
    clock.advance(30)
    second = join(logic, switch, "2002")
    assert second.ringing is None
    switch.end(first.id)
    assert logic.agent_stats()[0]["state"] == "wrap-up" and logic.agent_stats()[0]["talk_time"] == 30
    clock.advance(9.9)
    assert second.ringing is None
    clock.advance(0.1)
    assert second.ringing == "1001"
    changes = [(e.old, e.new) for e in events if isinstance(e, AgentStateChanged)]
    assert ("busy", "wrap-up") in changes and ("wrap-up", "ringing") in changes


def test_agent_on_any_call_is_not_offered_and_freed_by_call_ended():
    """An agent placing or receiving any call is busy (derived from the events) and
    is offered the waiting caller as soon as that call ends, however it ended."""
    clock, logic, events, switch = make_queue(strategy="linear", agents=["1001", "1002"])
    own = switch.call("1001", "5555")  # the agent places a call of its own
    incoming = switch.call("3000", "1002")  # the other receives one
    call = join(logic, switch)
    assert call.ringing is None
    assert {r["agent"]: r["calls"] for r in logic.agent_stats()} == {"1001": 1, "1002": 1}
    switch.end(incoming)
    assert call.ringing == "1002"
    switch.end(own)
    assert logic.agent_stats()[0]["state"] == "available"


def test_agent_transferred_out_of_a_call_is_free():
    """An agent who transfers its caller away (REFER from the callee) is off that call."""
    clock, logic, events, switch = make_queue(strategy="linear", agents=["1001"])
    cid = switch.call("3000", "1001")
    assert logic.agent_stats()[0]["state"] == "busy"
    switch.transferred(cid, "sip:4000@example.org", "callee")
    assert logic.agent_stats()[0]["state"] == "available"
    switch.end(cid)


def test_missed_offer_rests_the_agent_then_auto_pause():
    """A missed offer rests the agent `retry_delay` s while others are offered; after
    max_no_answer misses in a row it is paused."""
    clock, logic, events, switch = make_queue(strategy="linear", agents=["1001", "1002"], retry_delay=4,
                                              max_no_answer=2)
    busy = switch.call("1002", "9")  # keep 1002 busy
    call = join(logic, switch)
    call.agents_miss(486)
    clock.advance(0)
    assert logic.agent_stats()[0]["state"] == "retry" and call.ringing is None
    clock.advance(4)
    assert call.ringing == "1001"
    call.agents_miss(408)
    clock.advance(0)
    row = logic.agent_stats()[0]
    assert (row["state"], row["paused"], row["missed"], row["missed_in_row"]) == ("paused", True, 2, 2)
    clock.advance(60)
    assert call.ringing is None
    switch.end(busy)
    assert call.ringing == "1002"


def test_retry_delay_does_not_block_other_agents():
    """After 1001 misses, round-robin offers 1002 at once."""
    clock, logic, events, switch = make_queue(strategy="round-robin")
    call = join(logic, switch)
    assert call.ringing == "1001"
    call.agents_miss()
    clock.advance(0)
    assert call.ringing == "1002"


def test_unpause_forgets_missed_offers():
    """Unpausing by hand clears the count of misses in a row."""
    clock, logic, events, switch = make_queue(agents=["1001"], max_no_answer=1)
    call = join(logic, switch)
    call.agents_miss()
    clock.advance(5)
    assert logic.toggle_pause("1001") is False
    assert logic.agent_stats()[0]["missed_in_row"] == 0
    assert call.ringing == "1001"


def test_max_wait_overflows():
    """A caller waiting max_wait s goes to the overflow number, counted timed out."""
    clock, logic, events, switch = make_queue(agents=[], max_wait=30, overflow="1999")
    call = join(logic, switch)
    clock.advance(29)
    assert call.transferred == []
    clock.advance(1)
    assert call.transferred == ["1999"] and logic.queue_stats()[0]["timed_out"] == 1
    assert logic.queue_stats()[0]["callers_waiting"] == 0


def test_max_wait_while_ringing_waits_for_the_offer():
    """max_wait during an offer: if the agent answers, the caller stays answered."""
    clock, logic, events, switch = make_queue(agents=["1001"], max_wait=10, overflow="1999")
    call = join(logic, switch)
    clock.advance(10)
    assert call.transferred == []
    call.agents_miss()
    assert call.transferred == ["1999"]


def test_max_wait_without_overflow_hangs_up():
    """No overflow number: the caller is hung up with 408."""
    clock, logic, events, switch = make_queue(agents=[], max_wait=5)
    call = join(logic, switch)
    clock.advance(5)
    assert call.hung_up[0].status == 408


def test_max_callers_busy_or_overflow():
    """Beyond max_callers a caller gets 486 before any answer, or the overflow."""
    clock, logic, events, switch = make_queue(agents=[], max_callers=1)
    join(logic, switch)
    second = join(logic, switch, "2002")
    assert not second.answered and second.hung_up[0].status == 486
    refused = [e for e in events if isinstance(e, QueueCallerRefused)]
    assert [(e.reason, e.overflow) for e in refused] == [("full", "")]
    clock, logic, events, switch = make_queue(agents=[], max_callers=1, overflow="1999")
    join(logic, switch)
    assert join(logic, switch, "2002").transferred == ["1999"]


def test_join_empty_false_refuses_with_480():
    """join_empty false: no agent logged in and unpaused, no joining."""
    clock, logic, events, switch = make_queue(agents=[], join_empty=False)
    call = join(logic, switch)
    assert call.hung_up[0].status == 480 and logic.queue_stats()[0]["refused"] == 1


def test_leave_when_empty_sends_callers_to_overflow():
    """leave_when_empty: the last agent logging out sends waiting callers away."""
    clock, logic, events, switch = make_queue(agents=["1001"], leave_when_empty=True, overflow="1999")
    switch.call("1001", "9")
    call = join(logic, switch)
    logic.logout("1001")
    assert call.transferred == ["1999"] and logic.queue_stats()[0]["emptied"] == 1


def test_caller_hanging_up_while_waiting_is_abandoned():
    """A caller gone before any agent answered is counted abandoned, once."""
    clock, logic, events, switch = make_queue(agents=[])
    call = join(logic, switch)
    clock.advance(12)
    call.gone()
    switch.end(call.id)
    stats = logic.queue_stats()[0]
    assert (stats["abandoned"], stats["callers_waiting"], stats["answered"]) == (1, 0, 0)
    left = [e for e in events if isinstance(e, QueueCallerLeft)]
    assert [(e.outcome, e.waited) for e in left] == [("abandoned", 12)]


def test_caller_hanging_up_while_ringing_is_abandoned_not_a_miss():
    """Abandoned during an offer: counted abandoned; the ringing agent is not blamed."""
    clock, logic, events, switch = make_queue(agents=["1001"])
    call = join(logic, switch)
    call.gone()
    assert logic.queue_stats()[0]["abandoned"] == 1
    row = logic.agent_stats()[0]
    assert (row["missed"], row["state"]) == (0, "available")


def test_exit_digit_goes_to_exit_to():
    """The exit digit sends the caller to exit_to, counted as exited."""
    clock, logic, events, switch = make_queue(agents=[], exit_digit="0", exit_to="800")
    call = join(logic, switch)
    assert call.played[0] == ["queue-welcome", "queue-leave", "number-0"]
    call.press("5")
    assert call.transferred == []
    call.press("0")
    assert call.transferred == ["800"] and logic.queue_stats()[0]["exited"] == 1


def test_exit_digit_while_an_agent_rings_cancels_the_offer():
    """The exit digit acts at once, even while an agent rings: the ringing stops
    (the bridge is cancelled), the agent is not counted as missing the call and
    stays available, and the caller goes to exit_to."""
    clock, logic, events, switch = make_queue(agents=["1001"], exit_digit="0", exit_to="800")
    call = join(logic, switch)
    [(numbers, _, ringing)] = call.bridges
    assert numbers == "1001" and logic.agent_stats()[0]["state"] == "ringing"
    call.press("0")
    assert call.cancelled == ["1001"] and ringing.called
    assert call.transferred == ["800"] and logic.queue_stats()[0]["exited"] == 1
    row = logic.agent_stats()[0]
    assert (row["missed"], row["state"]) == (0, "available")
    # The next caller is offered to the same agent at once.
    second = join(logic, switch, "2002")
    assert [n for n, _, _ in second.bridges] == ["1001"]


def test_announcements_of_position_and_wait():
    """Every announce_frequency s each caller hears its position, and the estimated
    wait once callers have been answered."""
    clock, logic, events, switch = make_queue(agents=[], announce_frequency=20)
    first, second = join(logic, switch), join(logic, switch, "2002")
    clock.advance(20)
    assert second.played[-1] == ["queue-position", "number-2"]
    logic.login("1001")
    clock.advance(20)
    assert second.played[-1] == ["queue-position", "number-2"]  # no wait known yet
    first.agent_answers("1001")  # after 40 s: the estimate for position 1 is 40 s
    clock.advance(20)
    assert second.played[-1] == ["queue-position", "number-1", "queue-wait", "number-1", "minute"]
    logic.holdtime = 150.0
    clock.advance(20)
    assert second.played[-1] == ["queue-position", "number-1", "queue-wait", "number-3", "minutes"]
    assert first.played == [["queue-welcome"], ["queue-position", "number-1"]]  # not while ringing
    assert second.holds == len(second.played)


def test_service_level_and_agent_figures():
    """Service level: % answered within service_level s; per agent answered and talk time."""
    clock, logic, events, switch = make_queue(agents=["1001"], service_level=10)
    for wait in (5, 15):
        call = join(logic, switch)
        clock.advance(wait)
        call.agent_answers("1001")
        switch.transferred(call.id, "1001", "switch")
        clock.advance(60)
        switch.end(call.id)
    stats = logic.queue_stats()[0]
    assert (stats["answered"], stats["service_level"]) == (2, 50.0)
    row = logic.agent_stats()[0]
    assert (row["answered"], row["talk_time"], row["state"]) == (2, 120.0, "available")
    assert {"queue", "callers_waiting"} <= stats.keys() and {"queue", "state"} <= row.keys()


# -- feature codes ---------------------------------------------------------------------------


def feature(logic: QueueLogic, caller: str, number: str) -> FakeCall:
    call = FakeCall("f-" + number, caller, number)
    logic.handle(call)
    return call


def test_feature_codes_log_in_pause_and_log_out():
    """*45 logs a dynamic agent in, *47 toggles pause, *46 logs out; each is confirmed."""
    clock, logic, events, switch = make_queue(agents=[], dynamic_agents=["1005"])
    call = feature(logic, "1005", "*45")
    assert call.played == ["agent-logged-in"] and call.hung_up == [None]
    assert logic.agent_stats()[0]["state"] == "available"
    assert feature(logic, "1005", "*47").played == ["agent-paused"]
    assert logic.agent_stats()[0]["state"] == "paused"
    assert feature(logic, "1005", "*47").played == ["agent-unpaused"]
    assert feature(logic, "1005", "*46").played == ["agent-logged-out"]
    assert logic.agent_stats()[0]["state"] == "logged-out"
    stranger = feature(logic, "1006", "*45")
    assert not stranger.answered and stranger.hung_up[0].status == 403


def test_dynamic_agent_logging_in_during_a_call_is_busy():
    """An agent who logs in while on a call (known from the events) is busy."""
    clock, logic, events, switch = make_queue(agents=[], dynamic_agents=["any"])
    switch.call("1007", "4444")
    logic.login("1007")
    assert logic.agent_stats()[0]["state"] == "busy"


def test_feature_code_with_a_queue_number_acts_on_that_queue_only():
    """*45 logs in to every queue accepting the agent; *45701 to queue 701 only."""
    clock = task.Clock()
    queues: list[QueueLogic] = []
    for number in ("700", "701"):
        queues.append(QueueLogic(f"q{number}", settings(number=number, agents=[], dynamic_agents=["1005"]),
                                 clock, peers=lambda: queues))
    feature(queues[0], "1005", "*45701")
    assert [[r["state"] for r in q.agent_stats()] for q in queues] == [[], ["available"]]
    feature(queues[0], "1005", "*45")
    assert [[r["state"] for r in q.agent_stats()] for q in queues] == [["available"], ["available"]]
    feature(queues[1], "1005", "*46700")
    assert [[r["state"] for r in q.agent_stats()] for q in queues] == [["logged-out"], ["available"]]


def test_a_bridge_that_raises_leaves_no_agent_ringing():
    """An offer that fails at once (even by raising) settles: the agent is not left ringing."""
    clock, logic, events, switch = make_queue(agents=["1001"], retry_delay=1)
    call = FakeCall("c", "2001")

    def broken(numbers, ring_timeout=None):
        raise RuntimeError("no route")

    call.bridge = broken
    logic.handle(call)
    clock.advance(0)
    assert logic.agent_stats()[0]["state"] == "retry" and logic.queue_stats()[0]["callers_waiting"] == 1


def test_reload_keeps_agents_and_callers():
    """New settings in place: a dynamic agent stays logged in, a removed static agent
    is logged out, an added one logged in, new timers apply, the caller keeps waiting."""
    clock, logic, events, switch = make_queue(agents=["1001", "1002"], dynamic_agents=["1005"])
    logic.login("1005")
    busy = [switch.call(a, "9") for a in ("1001", "1002", "1005")]
    call = join(logic, switch)
    logic.apply(settings(agents=["1003", "1001"], dynamic_agents=["1005"], wrapup=4, strategy="linear"))
    rows = {r["agent"]: r for r in logic.agent_stats()}
    assert [r["agent"] for r in logic.agent_stats()] == ["1003", "1001", "1002", "1005"]
    assert {a: r["state"] for a, r in rows.items()} == {
        "1003": "ringing", "1001": "busy", "1002": "logged-out", "1005": "busy"}
    assert call.ringing == "1003" and logic.agents["1001"].settings.wrapup == 4
    assert logic.queue_stats()[0]["strategy"] == "linear" and len(busy) == 3


def test_penalties_offer_the_lowest_tier_first():
    """Agents with penalty 1 are offered a caller only while no penalty-0 agent is
    available (busy on a call, paused or logged out); ring-all rings one tier; a
    dynamic agent listed with its own penalty gets it when it logs in."""
    agents = [{"number": "1001"}, {"number": "1002", "penalty": 1}, {"number": "1003", "penalty": 1}]
    dynamic = [{"number": "1004", "penalty": 2}]
    clock, logic, events, switch = make_queue(agents=agents, dynamic_agents=dynamic)
    first = join(logic, switch)
    assert first.ringing == "1001"  # ring-all, but only the lowest tier: one agent
    first.agent_answers("1001")
    switch.transferred(first.id, "1001", "switch")
    second = join(logic, switch, "2002")
    assert second.ringing == ["1002", "1003"]  # 1001 is busy: the next tier
    logic.toggle_pause("1002")
    logic.toggle_pause("1003")
    second.gone()
    logic.login("1004")
    third = join(logic, switch, "2003")
    assert third.ringing == "1004" and logic.settings.agent("1004").penalty == 2
    third.gone()
    switch.end(first.id)
    fourth = join(logic, switch, "2004")
    assert fourth.ringing == "1001"


def test_penalty_config_and_its_mistakes():
    """penalty: a whole number from 0, on static agents and on dynamic ones listed
    as mappings; bad values name the key."""
    parsed = settings(agents=[{"number": "1001", "penalty": 3}], dynamic_agents=["1002", {"number": "1003"}])
    assert parsed.agent("1001").penalty == 3 and parsed.agent("1002").penalty == 0
    assert parsed.dynamic_agents == ("1002", "1003") and parsed.may_log_in("1003")
    for data, key in (({"agents": [{"number": "1001", "penalty": -1}]}, "modules[0].agents[0].penalty"),
                      ({"dynamic_agents": [{"number": "1003", "penalty": "low"}]},
                       "modules[0].dynamic_agents[0].penalty"),
                      ({"dynamic_agents": ["1003", "1003"]}, "modules[0].dynamic_agents[1]")):
        with pytest.raises(ConfigError) as caught:
            settings(**data)
        assert caught.value.key == key, caught.value
