"""The auto attendant's menu walk under task.Clock with a fake IAppCall: options, sub-menus,
retries, the operator, direct dialling, business hours and the stats it keeps."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from twisted.internet import defer, task
from zope.interface.verify import verifyObject

from phpvoip.apps.attendant import Attendant, parse_settings
from phpvoip.interfaces import IAppCall
from phpvoip.settings import Section
from tests.unit.attendant_fakes import FakeCall

# Monday 2026-11-30 12:00 in Berlin (11:00 UTC): open in the tests' hours.
MONDAY_NOON = dt.datetime(2026, 11, 30, 11, 0, tzinfo=dt.UTC).timestamp()
SUNDAY_NOON = dt.datetime(2026, 11, 29, 11, 0, tzinfo=dt.UTC).timestamp()


def attendant(now: float = MONDAY_NOON, **config: Any) -> Attendant:
    data = {"type": "attendant", "number": "800", "menu": {"1": "1001"}, **config}
    settings = parse_settings(Section("test.yaml", "modules[0]", data))
    app = Attendant("attendant", settings, wall_clock=lambda: now)
    app.reactor = task.Clock()
    return app


def start(app: Attendant, reachable: tuple[str, ...] = ("1001",)) -> tuple[FakeCall, defer.Deferred]:
    call = FakeCall(app.reactor, reachable)
    d = defer.ensureDeferred(app.run(call))
    return call, d


def plays(call: FakeCall) -> list[tuple[str, ...]]:
    return [e[1] for e in call.entries("play")]


def bridges(call: FakeCall) -> list[str]:
    return [e[1] for e in call.entries("bridge")]


def run(app: Attendant, seconds: float = 120.0) -> None:
    """Advance the clock `seconds`, stopping at every timer on the way (exact times)."""
    clock = app.reactor
    end = clock.seconds() + seconds
    while True:
        due = min((c.getTime() for c in clock.getDelayedCalls()), default=end + 1)
        if due > end:
            clock.advance(end - clock.seconds())
            return
        clock.advance(max(0.0, due - clock.seconds()))


def test_fake_call_is_an_app_call() -> None:
    """The fake the walk is tested with provides the whole IAppCall contract."""
    assert verifyObject(IAppCall, FakeCall(task.Clock()))


def test_minimal_config_digit_interrupts_greeting_and_bridges() -> None:
    """DESIGN.md's {menu: {"1": "1001"}}: a 1 during the greeting stops it and 1001 is bridged."""
    app = attendant()
    call, d = start(app)
    call.press_at(0.5, "1")
    run(app, 5)
    assert call.entries("answer")
    assert plays(call) == [("greeting", "menu"), ("transferring",)]
    assert call.entries("play")[1][2] == pytest.approx(0.5)  # at once: the greeting was cut by the digit
    assert bridges(call) == ["1001"]
    assert d.called and app.counters["bridged"] == 1
    assert app.stats()["in_menu"] == 0


def test_sub_menu_and_back() -> None:
    """{menu: sales} leads to the named menu, whose options then apply; {menu: main} comes back."""
    app = attendant(menu={"1": "1001", "2": {"menu": "sales"}},
                    menus={"sales": {"greeting": "operator", "options": {"1": 2001, "9": {"menu": "main"}}}})
    call, d = start(app, reachable=("2001",))
    call.press_at(0.2, "2")
    call.press_at(0.4, "9")
    call.press_at(0.6, "2")
    call.press_at(0.8, "1")
    run(app, 10)
    assert plays(call)[:4] == [("greeting", "menu"), ("operator",), ("greeting", "menu"), ("operator",)]
    assert bridges(call) == ["2001"]
    assert app.counters["menu:sales"] == 2 and app.counters["menu:main"] == 2


def test_silence_three_times_goes_to_the_operator() -> None:
    """No input for the timeout (default 10 s), three times (default), then the operator is bridged."""
    app = attendant(operator="1001")
    call, d = start(app)
    run(app, 60)
    collects = call.entries("collect")
    assert [c[2] for c in collects] == [10.0, 10.0, 10.0]
    assert plays(call) == [("greeting", "menu"), ("no-input", "greeting", "menu"),
                           ("no-input", "greeting", "menu"), ("no-input",), ("transferring",)]
    assert bridges(call) == ["1001"]
    assert app.counters["operator"] == 1 and app.counters["no_input"] == 3


def test_invalid_then_silence_reach_the_operator() -> None:
    """With invalid_retries 2 and timeout_retries 1: a wrong key replays the menu, silence then gives up."""
    app = attendant(operator="1001", invalid_retries=2, timeout_retries=1, timeout=3)
    call, d = start(app)
    call.press_at(0.5, "7")
    run(app, 20)
    assert plays(call) == [("greeting", "menu"), ("invalid", "greeting", "menu"), ("no-input",),
                           ("transferring",)]
    assert bridges(call) == ["1001"]
    assert app.counters["invalid"] == 1 and app.counters["no_input"] == 1


def test_without_operator_the_caller_hears_goodbye() -> None:
    """Too many wrong keys and no operator: goodbye, then the attendant hangs up."""
    app = attendant(retries=2)
    call, d = start(app)
    call.press_at(0.5, "5")
    call.press_at(4.0, "6")
    run(app, 20)
    assert plays(call)[-2:] == [("invalid",), ("goodbye",)]
    assert call.entries("hangup") and not bridges(call)
    assert app.counters["goodbye"] == 1


def test_keys_pressed_while_a_target_rings_choose_nothing() -> None:
    """Keys typed during "transferring" and ringing are dropped when the target fails."""
    app = attendant(menu={"1": "1001", "2": "1002"})
    call, d = start(app, reachable=())
    call.press_at(0.5, "1")
    call.press_at(1.8, "2")  # during "transferring"
    run(app, 2.6)
    assert bridges(call) == ["1001"]
    run(app, 4)
    assert bridges(call) == ["1001"] and plays(call)[-1] == ("unavailable", "greeting", "menu")


def test_unreachable_target_returns_to_the_menu() -> None:
    """A bridge that fails: "unavailable", the menu again, and the caller can choose anew."""
    app = attendant(menu={"1": "1001", "2": "1002", "0": "hangup"})
    call, d = start(app, reachable=("1002",))
    call.press_at(0.5, "1")
    call.press_at(3.0, "2")
    run(app, 20)
    assert bridges(call) == ["1001", "1002"]
    assert ("unavailable", "greeting", "menu") in plays(call)
    assert app.counters["unavailable"] == 1 and app.counters["bridged"] == 1


def test_operator_that_fails_ends_with_goodbye() -> None:
    """When even the operator does not answer, the caller hears unavailable and goodbye."""
    app = attendant(operator="1009", retries=1, timeout=2)
    call, d = start(app)
    run(app, 20)
    assert bridges(call) == ["1009"]
    assert plays(call)[-2:] == [("unavailable",), ("goodbye",)]
    assert call.entries("hangup")


def test_repeat_hangup_transfer_and_operator_options() -> None:
    """repeat replays the greeting, operator reaches the operator, transfer is blind, hangup says goodbye."""
    app = attendant(operator="1001", menu={"1": "repeat", "0": "operator", "3": {"transfer": "700"},
                                           "9": "hangup"})
    call, d = start(app)
    call.press_at(0.5, "1")
    call.press_at(1.0, "0")
    run(app, 5)
    assert plays(call)[:2] == [("greeting", "menu"), ("greeting", "menu")]
    assert bridges(call) == ["1001"] and app.counters["operator"] == 1
    call, d = start(app)
    call.press("3")
    run(app, 5)
    assert [e[1] for e in call.entries("transfer")] == ["700"] and app.counters["transferred"] == 1
    call, d = start(app)
    call.press("9")
    run(app, 5)
    assert plays(call)[-1] == ("goodbye",) and call.entries("hangup")


def test_direct_dial_during_the_greeting() -> None:
    """1002 typed during the greeting is bridged as soon as it is complete (pattern 1XXX)."""
    app = attendant(direct_dial="1XXX", menu={"1": "1001", "2": "1003"})
    call, d = start(app, reachable=("1002",))
    for i, digit in enumerate("1002"):
        call.press_at(0.3 + 0.3 * i, digit)
    run(app, 5)
    assert bridges(call) == ["1002"]
    # At once after the last digit, then "transferring" (1 s).
    assert call.entries("bridge")[0][2] == pytest.approx(1.2 + 1.0)
    assert app.counters["direct"] == 1


def test_menu_digit_that_may_start_an_extension_waits_for_the_gap() -> None:
    """A lone 1 (an option, and the start of 1XXX) acts after the inter-digit timeout; 2 acts at once."""
    app = attendant(direct_dial="1XXX", inter_digit_timeout=1.5, menu={"1": "1001", "2": "1003"})
    call, d = start(app)
    call.press_at(0.5, "1")
    run(app, 5)
    assert call.entries("bridge")[0][1:] == ("1001", pytest.approx(0.5 + 1.5 + 1.0))
    call, d = start(app, reachable=("1003",))
    started = app.reactor.seconds()
    call.press_at(started + 0.5, "2")
    run(app, 5)
    assert call.entries("bridge")[0][1:] == ("1003", pytest.approx(started + 0.5 + 1.0))


def test_direct_dial_of_an_unknown_shape_is_invalid() -> None:
    """Digits that fit no pattern and are no option count as a wrong entry."""
    app = attendant(direct_dial="1XXX", retries=1)
    call, d = start(app)
    call.press_at(0.5, "1")
    call.press_at(0.7, "0")
    run(app, 10)
    assert not bridges(call) and app.counters["invalid"] == 1
    assert plays(call)[-2:] == [("invalid",), ("goodbye",)]


def test_direct_dial_by_regex_waits_for_the_last_digit() -> None:
    """A regular expression: digits are taken until the gap, then matched whole."""
    app = attendant(direct_dial=r"2\d{2,3}", inter_digit_timeout=1.0)
    call, d = start(app, reachable=("2345",))
    call.press_at(0.2, "2345")
    run(app, 5)
    assert call.entries("bridge")[0][1:] == ("2345", pytest.approx(0.2 + 1.0 + 1.0))


def test_a_menu_may_turn_direct_dial_off_or_have_its_own() -> None:
    """Direct dial is the attendant's in every menu unless a menu sets its own:
    `direct_dial: false` makes 1 act at once as an option; "2XX" dials 201."""
    menus = {"plain": {"greeting": "menu", "options": {"1": "1001"}, "direct_dial": False},
             "sales": {"greeting": "menu", "options": {"1": "1001"}, "direct_dial": "2XX"}}
    app = attendant(direct_dial="1XXX", inter_digit_timeout=1.5, menus=menus,
                    menu={"greeting": "greeting",
                          "options": {"5": {"menu": "plain"}, "6": {"menu": "sales"}}})
    call, d = start(app)
    call.press_at(0.5, "5")
    call.press_at(1.0, "1")  # in "plain": an option at once, no wait for more digits
    run(app, 5)
    assert call.entries("bridge")[0][1:] == ("1001", pytest.approx(1.0 + 1.0))
    call, d = start(app, reachable=("201",))
    started = app.reactor.seconds()
    call.press_at(started + 0.5, "6")
    call.press_at(started + 1.0, "201")
    run(app, 5)
    assert call.entries("bridge")[0][1:] == ("201", pytest.approx(started + 1.0 + 1.0))
    # The built-in out-of-hours menu never dials directly, even when the attendant does.
    app = attendant(now=SUNDAY_NOON, direct_dial="1XXX", operator="1001",
                    hours={"open": {"mon-fri": "09:00-17:00"}})
    call, d = start(app)
    call.press_at(0.3, "1002")
    run(app, 10)
    assert not bridges(call) and plays(call) == [("closed",), ("goodbye",)]


def test_caller_hanging_up_in_the_menu_is_abandoned() -> None:
    """The caller leaves during the greeting: the walk ends quietly, counted as abandoned."""
    app = attendant()
    call, d = start(app)
    app.reactor.advance(0.5)
    assert app.stats()["in_menu"] == 1 and app.stats()["by_menu"] == {"main": 1}
    assert app.stats()["longest_seconds"] == 0.5
    call.caller_hangs_up()
    assert d.called and d.result is None
    assert app.stats()["in_menu"] == 0 and app.counters["abandoned"] == 1


def test_out_of_hours_menu_is_chosen_by_the_wall_clock() -> None:
    """On a Sunday (closed) the out-of-hours menu plays; on Monday noon the main menu does."""
    hours = {"timezone": "Europe/Berlin", "open": {"mon-fri": "09:00-17:00"}, "closed_menu": "night"}
    menus = {"night": {"greeting": "closed", "options": {"1": "1099"}}}
    app = attendant(now=SUNDAY_NOON, hours=hours, menus=menus)
    call, d = start(app, reachable=("1099",))
    call.press_at(0.2, "1")
    run(app, 5)
    assert plays(call)[0] == ("closed",) and bridges(call) == ["1099"]
    assert app.counters["closed"] == 1
    app = attendant(now=MONDAY_NOON, hours=hours, menus=menus)
    call, d = start(app)
    call.press_at(0.2, "1")
    run(app, 5)
    assert plays(call)[0] == ("greeting", "menu") and bridges(call) == ["1001"]


def test_built_in_closed_menu_says_closed_and_goodbye() -> None:
    """Hours without a menu of their own: "closed", goodbye, hang-up."""
    app = attendant(now=SUNDAY_NOON, hours={"open": {"mon-fri": "09:00-17:00"}})
    call, d = start(app)
    run(app, 5)
    assert plays(call) == [("closed",), ("goodbye",)] and call.entries("hangup")


def test_explain_callout_and_stats() -> None:
    """route() in the manhole says what the number does; stats() counts outcomes."""
    app = attendant(operator="1001", direct_dial="1XXX",
                    hours={"timezone": "Europe/Berlin", "open": {"mon-fri": "09:00-17:00"}})

    class To:
        class uri:
            user = "800"

    class Invite:
        to = To

    text = app.explain_callout(Invite)
    assert "1 -> dial 1001" in text and "operator 1001" in text and "direct dial 1XXX" in text
    assert "now open" in text and "mon 09:00-17:00" in text
    To.uri.user = "801"
    assert app.explain_callout(Invite) is None
    assert set(app.stats()["outcomes"]) == {"bridged", "transferred", "operator", "goodbye", "abandoned",
                                            "failed"}


def test_attendant_is_an_application_with_a_stats_table() -> None:
    """The module provides IApplication; the manhole's attendants() table shows its counts."""
    from phpvoip import inspect
    from phpvoip.interfaces import IApplication

    app = attendant()
    assert verifyObject(IApplication, app)
    call, d = start(app)
    app.reactor.advance(0.5)

    class Engine:
        modules = (app,)

    table = str(inspect.attendants(Engine))
    assert "IN MENU" in table and "main 1" in table and "800" in table
    call.press("1")
    run(app, 5)
    [row] = app.attendant_stats()
    assert (row["in_menu"], row["bridged"], row["abandoned"]) == (0, 1, 0)
    assert "no attendants configured" in str(inspect.attendants(type("E", (), {"modules": ()})))


def test_ring_timeout_is_passed_to_bridge() -> None:
    """Targets ring at most ring_timeout seconds (default 30) before the caller is back in the menu."""
    seen = []
    for config in ({}, {"ring_timeout": 12}):
        app = attendant(**config)
        call, d = start(app)
        call.press("1")
        run(app, 5)
        seen += call.ring_timeouts
    assert seen == [30.0, 12.0]
