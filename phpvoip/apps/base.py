"""Writing a terminal application: subclass `Application` and write ``run(call)``.

    class Hello(Application):
        async def run(self, call):
            await call.answer()
            await call.play("greeting")
            digits = await call.collect(max_digits=3, timeout=5)
            await call.transfer(digits or "100")

The base class is the module (`IApplication`): it takes calls to its `number`
(`handles`), builds an `AppCall` for each (the application's end of a local leg
pair and an RTP endpoint on the process's shared `Pacer`) and runs ``run(call)``,
a coroutine or a method returning a Deferred. When the caller hangs up, whatever
``run`` awaits fails with `CallGone`, which ends it quietly; any other exception
is logged and the call is hung up with 500, the switch goes on. When ``run``
returns while the call is still the application's, the call is hung up.

Calls the application places (`Engine.originate(from, to, app=name)`) come back
through `callin` and reach ``run`` once the called party answers.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from phpvoip.apps.appcall import AppCall
from phpvoip.apps.settings import AppSettings, app_settings, parse_settings, port_range
from phpvoip.interfaces import CallGone, CallRejected, Cause, IApplication, NotMine
from phpvoip.legs.local import local_pair
from phpvoip.media import prompts
from phpvoip.media.pacer import Pacer
from phpvoip.originate import OriginateFailed
from phpvoip.sip.message import Request

__all__ = [
    "AppCall", "AppSettings", "Application", "CallGone", "app_settings", "parse_settings", "port_range",
    "shared_pacer",
]

log = Logger()

APP_ERROR = Cause(500, "Application error", "local")
_pacers: weakref.WeakKeyDictionary[Any, Pacer] = weakref.WeakKeyDictionary()


def shared_pacer(clock: Any) -> Pacer:
    """The one 20 ms Pacer of `clock` (the reactor in a switch): every application's
    streams tick on one timer."""
    try:
        pacer = _pacers.get(clock)
    except TypeError:  # a clock that cannot be weakly referenced: its own pacer
        return Pacer(clock)
    if pacer is None:
        pacer = _pacers[clock] = Pacer(clock)
    return pacer


@implementer(IApplication)
class Application:
    """A terminal application's module: subclass it and define ``run(call)``.

    `settings` is an `AppSettings` (or a subclass's, with the application's own
    keys). `reactor` (IReactorUDP and IReactorTime) defaults to the engine's
    clock; `pacer` to the process's shared one."""

    kind = "application"

    def __init__(self, name: str, settings: AppSettings, reactor: Any = None,
                 pacer: Pacer | None = None) -> None:
        self.name = name
        self.settings = settings
        self.number = settings.number
        self.weight = settings.weight
        self.engine: Any = None
        self.reactor: Any = reactor
        self.pacer = pacer
        self.calls: set[AppCall] = set()
        self.total = 0  # calls run since start
        self.failed = 0  # runs that ended with an error other than CallGone
        self._placing: dict[str, tuple[Any, defer.Deferred]] = {}  # Call-ID -> (caller id, answered)
        self._connecting: dict[AppCall, defer.Deferred] = {}  # placed, not answered yet

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.number} calls={len(self.calls)}>"

    # -- what subclasses write -----------------------------------------------------------

    def run(self, call: AppCall) -> Any:
        """The application itself: a coroutine (or a Deferred) over `call`."""
        raise NotImplementedError(f"{type(self).__name__} must define run(call)")

    def handles(self, invite: Request) -> bool:
        """Whether a routed INVITE is for this application (its number by default;
        an application answering more numbers, e.g. feature codes, overrides it)."""
        return invite.to.uri.user == self.number

    def stats(self) -> dict[str, int]:
        """Calls in progress (answered or not), run since start, and failed runs."""
        return {"in_progress": len(self.calls), "total": self.total, "failed": self.failed}

    # -- IModule -------------------------------------------------------------------------------

    def start(self, engine: Any) -> Any:
        self.engine = engine
        if self.reactor is None:
            self.reactor = engine.clock
        if self.pacer is None:
            self.pacer = shared_pacer(self.reactor)
        # Made once per process, now rather than on the first caller's hold():
        # synthesizing it (~0.2 s) inside a call would stall every stream's media.
        prompts.music_on_hold()

    def stop(self) -> Any:
        """Calls in progress are the engine's to end (it hangs them all up at shutdown)."""

    def reconfigure(self, settings: AppSettings) -> bool:
        """New settings for new calls (a reload); calls in progress keep theirs."""
        if type(settings) is not type(self.settings):
            return False
        self.settings, self.number, self.weight = settings, settings.number, settings.weight
        return True

    def request(self, request: Any, transaction: Any, source: Any) -> bool:
        raise NotMine()

    def explain_callout(self, invite: Request) -> str | None:
        """For the manhole's route()."""
        if not self.handles(invite):
            return None
        return f"the {self.kind} {self.name} on {invite.to.uri.user}"

    def callout(self, invite: Request, call: Any) -> Any:
        if not self.handles(invite):
            raise NotMine()
        # The engine side is the switch's outbound leg: it presents the caller (From)
        # and talks to the application (To).
        engine_side, app_side = local_pair(invite.from_.copy(), invite.to.copy())
        app_call = AppCall(self, app_side, invite.call_id, getattr(call, "id", ""),
                           invite.to.uri.user or "", invite.from_.uri.user or "")
        self.calls.add(app_call)
        # Never answer or refuse from inside the dial that rang us: the bridge is mid-event.
        app_side.on_invite = lambda _leg: self.reactor.callLater(0, self._take, app_call)
        return engine_side

    def _take(self, call: AppCall) -> None:
        if call.done:
            return  # the caller gave up at once
        if call.open_media():
            self._launch(call)

    def callin(self, call: Any) -> Any:
        """The engine asks for the caller's leg of a call this application places."""
        placing = self._placing.pop(call.call_id, None) if call.source is None else None
        if placing is None:
            raise NotMine()
        caller, answered = placing
        invite = call.invite
        # The engine side is the caller's leg: it presents the callee (To) to the
        # application, the caller (From).
        engine_side, app_side = local_pair(invite.to.copy(), invite.from_.copy())
        app_call = AppCall(self, app_side, invite.call_id, call.id, invite.to.uri.user or "",
                           caller, outgoing=True)
        if not app_call.open_media(incoming=False):
            raise CallRejected(503, "No media port")
        self.calls.add(app_call)
        self._connecting[app_call] = answered
        app_call.ended.addCallback(self._placed_ended, app_call)
        app_call.dial()
        return engine_side

    def place(self, call_id: str, caller: str) -> defer.Deferred:
        """Expect the engine's callin for Call-ID `call_id` (`Engine.originate`):
        fires when the called party answers (``run`` is started then), fails with
        `OriginateFailed` when it does not."""
        answered: defer.Deferred = defer.Deferred()
        self._placing[call_id] = (caller, answered)
        return answered

    def forget(self, call_id: str) -> None:
        """The engine gave up placing `call_id` before asking callin."""
        self._placing.pop(call_id, None)

    def _placed_ended(self, cause: Cause, call: AppCall) -> Cause:
        answered = self._connecting.pop(call, None)
        if answered is not None:
            answered.errback(OriginateFailed(cause.status or 487, cause.text or "Ended"))
        return cause

    def call_connected(self, call: AppCall) -> None:
        """A call placed by this application was answered: run it, and tell whoever
        placed it."""
        answered = self._connecting.pop(call, None)
        self._launch(call)
        if answered is not None:
            answered.callback(call.id)

    def call_finished(self, call: AppCall, cause: Cause) -> None:
        self.calls.discard(call)

    # -- running the application -------------------------------------------------------------

    def _launch(self, call: AppCall) -> None:
        self.total += 1
        try:
            result = self.run(call)
        except Exception:
            d = defer.fail()
        else:
            d = defer.ensureDeferred(result) if inspect.isawaitable(result) else defer.succeed(result)
        d.addCallbacks(self._run_done, self._run_failed, (call,), None, (call,))

    def _run_done(self, _: Any, call: AppCall) -> None:
        if not call.done and not call._leaving:
            call.hangup()

    def _run_failed(self, failure: Failure, call: AppCall) -> None:
        if failure.check(CallGone):
            return
        self.failed += 1
        log.failure("{kind} {name}: call {call} failed in run()", failure, kind=self.kind, name=self.name,
                    call=call.id)
        if not call.done:
            call.hangup(APP_ERROR)
