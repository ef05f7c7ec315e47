"""The auto attendant: answers a number, plays menus, reaches what the caller picks.

A caller is answered with the top menu (or the out-of-hours menu when business
hours say closed, asked once per call of the injected wall clock), hears its
greeting and presses a key. The greeting stops at the first digit; a digit that
is a menu option and cannot begin a number to dial directly acts at once, while
digits that may be an extension (``direct_dial: "1XXX"``) are taken until the
number is complete or `inter_digit_timeout` passes. Targets are reached through
the router with the call's supervised `bridge` (an extension, a queue, an outside
line, another application); when the target fails the caller hears
"unavailable" and is back in the menu. Silence and wrong keys are each counted
per menu visit: after `timeout_retries` silences or `invalid_retries` wrong
entries the caller goes to the operator, or hears goodbye when there is none.

Everything a caller does is a walk (`_Walk`) written against `IAppCall`, so the
logic runs the same under a test's fake call and a real one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from phpvoip.apps.attendant_config import (
    MAIN,
    Action,
    AttendantSettings,
    DirectDial,
    Menu,
    parse_settings,
)
from phpvoip.apps.base import Application
from phpvoip.bridge_rebridge import RebridgeFailed
from phpvoip.interfaces import CallGone
from phpvoip.media.pacer import Pacer

__all__ = ["Attendant", "AttendantSettings", "parse_settings", "walk"]

log = Logger()

# What a walk ended with (the keys of Attendant.outcomes).
OUTCOMES = ("bridged", "transferred", "operator", "goodbye", "abandoned", "failed")

_NO_INPUT = ("none", "")
_INVALID = ("invalid", "")


class _Walk:
    """One caller's way through the menus; `menu` is where the caller is now."""

    __slots__ = ("attendant", "call", "settings", "menu", "started", "outcome")

    def __init__(self, attendant: Any, call: Any, settings: AttendantSettings) -> None:
        self.attendant = attendant
        self.call = call
        self.settings = settings
        self.menu = MAIN
        self.started = attendant.reactor.seconds() if attendant.reactor is not None else 0.0
        self.outcome = "abandoned"

    async def run(self) -> None:
        settings = self.settings
        menu = settings.menus[MAIN]
        hours = settings.hours
        if hours is not None and not hours.is_open(self.attendant.wall_clock()):
            menu = settings.menus[settings.closed_menu]
            self.attendant.count("closed")
        await self.call.answer()
        await self.visit(menu)

    async def say(self, prompt: tuple[str, ...]) -> None:
        if prompt:
            await self.call.play(list(prompt))

    async def goodbye(self) -> None:
        self.outcome = "goodbye"
        await self.say(self.settings.prompts["goodbye"])
        self.call.hangup()

    async def visit(self, menu: Menu) -> None:
        """Run `menu` (and the menus it leads to) until the caller is handed on or
        hung up."""
        prompts = self.settings.prompts
        self.enter(menu)
        announce = menu.greeting
        silences = wrong = 0
        while True:
            if not menu.options and not self._direct_dial(menu).enabled:
                await self.say(menu.greeting)  # nothing to choose (the built-in closed menu)
                await self.goodbye()
                return
            choice = await self.read(menu, announce)
            if choice is _NO_INPUT:
                silences += 1
                self.attendant.count("no_input")
                if silences >= menu.timeout_retries:
                    await self.say(prompts["timeout"])
                    await self.give_up()
                    return
                announce = prompts["timeout"] + menu.greeting
                continue
            if choice is _INVALID:
                wrong += 1
                self.attendant.count("invalid")
                if wrong >= menu.invalid_retries:
                    await self.say(prompts["invalid"])
                    await self.give_up()
                    return
                announce = prompts["invalid"] + menu.greeting
                continue
            kind, choice = choice
            if kind == "option":
                action = menu.options[choice]
            else:
                action = Action("dial", choice)
                self.attendant.count("direct")
            log.debug("attendant {name}: call {callID} in {menu} chose {choice}: {action}",
                      name=self.attendant.name, callID=self.call.id, menu=menu.name, choice=choice,
                      action=str(action))
            if action.kind == "menu":
                menu = self.settings.menus[action.target]
                self.enter(menu)
                announce, silences, wrong = menu.greeting, 0, 0
            elif action.kind == "repeat":
                announce = menu.greeting
            elif action.kind == "hangup":
                await self.goodbye()
                return
            elif action.kind == "transfer":
                self.outcome = "transferred"
                await self.call.transfer(action.target)
                return
            else:  # dial, operator
                target = self.settings.operator if action.kind == "operator" else action.target
                assert target is not None  # the config refuses 'operator' without a number
                if await self.reach(target, "operator" if action.kind == "operator" else "bridged"):
                    return
                self.call.flush_digits()  # keys pressed while it rang choose nothing
                announce = prompts["unavailable"] + menu.greeting

    def _direct_dial(self, menu: Menu) -> DirectDial:
        return self.settings.direct_dial if menu.direct_dial is None else menu.direct_dial

    def enter(self, menu: Menu) -> None:
        self.menu = menu.name
        self.attendant.count("menu:" + menu.name)

    async def read(self, menu: Menu, announce: tuple[str, ...]) -> tuple[str, str]:
        """Play `announce` (a key stops it) and take the caller's choice:
        ``("option", digit)``, ``("number", digits)`` to dial directly, `_NO_INPUT`
        or `_INVALID`."""
        call, direct = self.call, self._direct_dial(menu)
        gap = self.settings.inter_digit_timeout
        if announce:
            await call.play(list(announce), interruptible=True)
        digits = await call.collect(1, timeout=menu.timeout, inter_digit_timeout=gap, terminator=None)
        if not digits:
            return _NO_INPUT
        while True:
            if direct.complete(digits):
                return ("number", digits)
            may_grow = direct.could_start(digits) and len(digits) < direct.max_digits
            if not may_grow:
                break
            more = await call.collect(1, timeout=gap, inter_digit_timeout=gap, terminator=None)
            if not more:
                break
            digits += more
        if direct.matches(digits):
            return ("number", digits)
        if len(digits) == 1 and digits in menu.options:
            return ("option", digits)
        return _INVALID

    async def reach(self, number: str, outcome: str) -> bool:
        """Ring `number` through the router while the caller listens; True when
        answered (the attendant is out of the call), False when it failed and the
        caller is still here."""
        await self.say(self.settings.prompts["transferring"])
        try:
            answered = await self.call.bridge(number, ring_timeout=self.settings.ring_timeout)
        except RebridgeFailed as e:
            log.info("attendant {name}: call {callID}: {number} not reached: {status} {reason}",
                     name=self.attendant.name, callID=self.call.id, number=number, status=e.status,
                     reason=e.reason)
            self.attendant.count("unavailable")
            return False
        log.debug("attendant {name}: call {callID} bridged to {number}", name=self.attendant.name,
                  callID=self.call.id, number=answered)
        self.outcome = outcome
        return True

    async def give_up(self) -> None:
        """Too many silences or wrong keys: the operator, else goodbye."""
        operator = self.settings.operator
        if operator is not None:
            if await self.reach(operator, "operator"):
                return
            await self.say(self.settings.prompts["unavailable"])
        await self.goodbye()


async def walk(attendant: Any, call: Any) -> str:
    """Take one call through the attendant's menus; return how it ended (one of
    OUTCOMES). A caller hanging up is an outcome, not an error."""
    one = _Walk(attendant, call, attendant.settings)
    attendant.walks.add(one)
    try:
        await one.run()
    except CallGone:
        if one.outcome not in ("bridged", "operator", "transferred"):
            one.outcome = "abandoned"
    except Exception:
        one.outcome = "failed"
        attendant.walks.discard(one)
        attendant.count(one.outcome)
        raise
    attendant.walks.discard(one)
    attendant.count(one.outcome)
    return one.outcome


class Attendant(Application):
    """The ``type: attendant`` module: menus on `number`.

    `wall_clock` (seconds since the epoch) decides business hours; tests pass a
    fixed one. `reactor` and `pacer` are the `Application`'s."""

    kind = "attendant"
    settings: AttendantSettings

    def __init__(self, name: str, settings: AttendantSettings, reactor: Any = None,
                 pacer: Pacer | None = None, wall_clock: Callable[[], float] | None = None) -> None:
        super().__init__(name, settings, reactor, pacer)
        self.wall_clock = wall_clock or time.time
        self.walks: set[_Walk] = set()
        self.counters: Counter[str] = Counter()

    def count(self, what: str) -> None:
        self.counters[what] += 1

    async def run(self, call: Any) -> None:
        """The application's part of one call (`IAppCall`)."""
        await walk(self, call)

    def stats(self) -> dict[str, Any]:
        """Callers in the menus now (by menu) and what calls ended with; a reload
        keeps them (callers in a menu finish with the menus they started with)."""
        by_menu = Counter(w.menu for w in self.walks)
        now = self.reactor.seconds() if self.reactor is not None else 0.0
        return {
            "longest_seconds": round(max((now - w.started for w in self.walks), default=0.0), 1),
            **super().stats(),
            "in_menu": len(self.walks),
            "by_menu": dict(by_menu),
            "outcomes": {k: self.counters[k] for k in OUTCOMES},
            "closed": self.counters["closed"],
            "direct": self.counters["direct"],
            "no_input": self.counters["no_input"],
            "invalid": self.counters["invalid"],
            "unavailable": self.counters["unavailable"],
        }

    def attendant_stats(self) -> list[dict[str, Any]]:
        """One row for the manhole's attendants() table (phpvoip.inspect)."""
        stats = self.stats()
        by_menu = ", ".join(f"{name} {n}" for name, n in sorted(stats["by_menu"].items()))
        return [{"number": self.number, "in_menu": stats["in_menu"], "by_menu": by_menu,
                 "longest_seconds": stats["longest_seconds"],
                 "calls": stats["total"], **stats["outcomes"], "closed": stats["closed"],
                 "direct": stats["direct"], "invalid": stats["invalid"], "no_input": stats["no_input"],
                 "unavailable": stats["unavailable"]}]

    def explain_callout(self, invite: Any) -> str | None:
        """For the manhole's route(): what a call to the number meets."""
        if invite.to.uri.user != self.number:
            return None
        settings = self.settings
        main = settings.menus[MAIN]
        options = ", ".join(f"{d} -> {a}" for d, a in main.options.items()) or "none"
        text = f"the attendant's number {self.number}: menu {options}"
        if settings.direct_dial.enabled:
            text += f"; direct dial {settings.direct_dial.describe()}"
        if settings.operator:
            text += f"; operator {settings.operator}"
        if settings.hours is not None:
            is_open = settings.hours.is_open(self.wall_clock())
            state = "open" if is_open else f"closed ({settings.closed_menu} menu)"
            text += f"; hours {settings.hours.describe()}, now {state}"
        return text + f"; {len(self.walks)} caller(s) in the menus"

