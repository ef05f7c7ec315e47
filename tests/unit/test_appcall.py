"""AppCall and Application: what an application's run(call) can rely on, under a FakeReactor.

The caller is a SIP phone (INVITEs delivered to the engine); the numbers the
application hands the caller to are `Phones`, a module whose callout returns local
pairs the test answers or refuses by hand.
"""

from __future__ import annotations

import gc
import itertools

import pytest
from twisted.internet import defer
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from phpvoip.apps.base import AppCall, Application, AppSettings, CallGone
from phpvoip.bridge import RebridgeFailed
from phpvoip.config import CallSettings
from phpvoip.engine import Engine, OriginateFailed
from phpvoip.interfaces import IAppCall, IApplication, NotMine
from phpvoip.legs.local import local_pair
from phpvoip.media.dtmf import dtmf_payloads
from phpvoip.media.g711 import ulaw_encode
from phpvoip.media.rtp import build_rtp
from phpvoip.media.tones import silence, tone
from phpvoip.media.wav import read_wav
from phpvoip.router import Router
from phpvoip.sip.timers import Timers
from tests.unit.test_call_events import caller_request
from tests.unit.test_engine import PHONE, Declines, FakeTransport, deliver, invite, requests, responses, trunk
from tests.unit.test_media_endpoint import FAR, FakeReactor, offer_sdp

_sequence = itertools.count(1000)


class Phones:
    """Extensions 201-203 as local pairs; `rung[number]` is the phone's side."""

    name, weight = "phones", 200

    def __init__(self) -> None:
        self.rung: dict[str, object] = {}

    def start(self, engine):
        pass

    def stop(self):
        pass

    def callin(self, call):
        raise NotMine()

    def request(self, request, transaction, source):
        raise NotMine()

    def callout(self, invite, call):
        number = invite.to.uri.user
        if number not in ("201", "202", "203"):
            raise NotMine()
        engine_side, phone = local_pair(invite.from_.copy(), invite.to.copy())
        self.rung[number] = phone
        return engine_side


class Script(Application):
    """Runs the test's coroutine as the application."""

    def __init__(self, script, **settings) -> None:
        super().__init__("ivr", AppSettings(number="500", ports=(31100, 31199), **settings))
        self.script = script
        self.seen: list[AppCall] = []

    async def run(self, call):
        self.seen.append(call)
        return await self.script(call)


def setup(script, **settings):
    reactor, transport, phones = FakeReactor(), FakeTransport(), Phones()
    app = Script(script, **settings)
    engine = Engine(transport, reactor, "127.0.0.1", (Declines(), trunk("9*"), app, phones), Router(()),
                    Timers(), CallSettings(keepalive_interval=0))
    engine.start()
    return engine, transport, reactor, app, phones


def dial(script, **settings):
    """A phone calls the application; returns the pieces and the 200 (once answered)."""
    engine, transport, reactor, app, phones = setup(script, **settings)
    deliver(engine, invite(to_user="500", body=offer_sdp()))
    reactor.advance(0)
    ok = [r for r in responses(transport.take(), PHONE) if r.status == 200]
    if ok:
        deliver(engine, caller_request("ACK", ok[0], 1, "z9hG4bKack"))
    port = next(iter(reactor.ports.values()), None)
    return engine, transport, reactor, app, phones, (ok[0] if ok else None), port


def press(port, digits: str) -> None:
    """The caller types `digits` as RFC 4733 events (one event per digit)."""
    for digit in digits:
        stamp = next(_sequence) * 800
        for payload, marker, _end in dtmf_payloads(digit, 100):
            port.deliver(build_rtp(101, next(_sequence), stamp, 0x1234, payload, marker), FAR)


def idle(engine, reactor, app) -> None:
    """Nothing left once SIP timers have run out: no call, leg, dialog or transaction,
    no app call; every port closed; no pacer timer."""
    reactor.run(40)
    assert not any(engine.counts().values()), engine.counts()
    assert not app.calls and all(not p.listening for p in reactor.ports.values())
    assert len(app.pacer) == 0


def test_interfaces():
    """Application is an IApplication; the call run() gets is an IAppCall."""
    calls = []

    async def script(call):
        calls.append(call)
        await call.answer()

    engine, transport, reactor, app, phones, ok, port = dial(script)
    assert verifyObject(IApplication, app) and verifyObject(IAppCall, calls[0])
    assert (calls[0].caller, calls[0].number, calls[0].id) == ("1001", "500", engine.records[-1].id)


def test_answer_then_return_hangs_up_and_nothing_leaks():
    """answer() fires once answered (200 with the endpoint's SDP); when run() returns the call is hung up."""
    steps = []

    async def script(call):
        await call.answer()
        steps.append(call.answered)

    engine, transport, reactor, app, phones, ok, port = dial(script)
    assert ok is not None and b"m=audio" in ok.body and steps == [True]
    reactor.advance(1)
    assert [r.method for r in requests(transport.take(), PHONE)] == ["BYE"]
    idle(engine, reactor, app)
    assert app.stats() == {"in_progress": 0, "total": 1, "failed": 0}


def test_digit_interrupts_play_and_collect_returns_it_first():
    """A digit stops an interruptible play (which fires with it) and is the first digit collect returns."""
    got = []

    async def script(call):
        await call.answer()
        got.append(await call.play(tone((440.0,), 5.0), interruptible=True))
        got.append(await call.collect(max_digits=3, timeout=5))

    engine, transport, reactor, app, phones, ok, port = dial(script)
    reactor.advance(1)
    press(port, "4")
    assert got == ["4"]
    reactor.advance(0.5)
    press(port, "27")
    assert got == ["4", "427"]


def test_typed_ahead_digits_skip_an_interruptible_prompt():
    """Digits buffered before an interruptible play skip it: it fires at once with the first."""
    got = []

    async def script(call):
        await call.answer()
        await call.play(tone((440.0,), 1.0))  # not interruptible: digits wait in the buffer
        got.append(await call.play(tone((440.0,), 5.0), interruptible=True))
        got.append(await call.collect(max_digits=2))

    engine, transport, reactor, app, phones, ok, port = dial(script)
    reactor.advance(0.2)
    press(port, "91")
    reactor.advance(1.0)
    assert got == ["9", "91"]


@pytest.mark.parametrize(("presses", "expected", "at"), [
    ([], "", 10.0),  # nothing typed: timeout
    ([(1.0, "5")], "5", 3.0),  # one digit then the inter-digit gap
    ([(1.0, "1"), (2.5, "2"), (3.0, "#")], "12", 3.0),  # the terminator ends it, not included
    ([(0.5, "1"), (0.6, "2"), (0.7, "3"), (0.8, "4")], "123", 0.7),  # max_digits; the 4 stays buffered
])
def test_collect_ends_on_timeout_gap_terminator_or_count(presses, expected, at):
    """collect fires on the first of: timeout without a digit, inter-digit gap, terminator, max_digits."""
    got = []

    async def script(call):
        await call.answer()
        start = call.clock.seconds()
        got.append((await call.collect(max_digits=3, timeout=10, inter_digit_timeout=2), call.clock.seconds()
                    - start))

    engine, transport, reactor, app, phones, ok, port = dial(script)
    now = 0.0
    for when, digit in presses:
        reactor.advance(when - now)
        now = when
        press(port, digit)
    reactor.run(20)
    assert got == [(expected, pytest.approx(at))]


def test_record_stops_on_max_terminator_and_silence(tmp_path):
    """record() fires with the seconds recorded: at max_seconds, at the terminator, after silence."""
    got = []
    loud = ulaw_encode(tone((440.0,), 0.02))
    quiet = ulaw_encode(silence(0.02))

    async def script(call):
        await call.answer()
        got.append(await call.record(tmp_path / "a.wav", max_seconds=1.0))
        got.append(await call.record(tmp_path / "b.wav", max_seconds=10.0))
        got.append(await call.record(tmp_path / "c.wav", max_seconds=10.0, silence_seconds=0.5))

    engine, transport, reactor, app, phones, ok, port = dial(script)
    for n in range(200):
        port.deliver(build_rtp(0, n, n * 160, 0x1234, loud if n < 50 or 75 < n < 100 else quiet), FAR)
        if n == 75:
            press(port, "#")
        reactor.advance(0.02)
    assert got[0] == pytest.approx(1.0, abs=0.03)
    assert got[1] == pytest.approx(0.5, abs=0.03)  # from 1.0 s to the # at 1.5 s
    assert got[2] == pytest.approx(1.0, abs=0.06)  # 0.5 s of voice (1.5-2.0 s), then 0.5 s quiet
    assert len(read_wav(tmp_path / "a.wav").data) == pytest.approx(16000, abs=2 * 320)


def test_caller_hangup_fails_pending_with_call_gone_and_leaves_nothing():
    """A BYE while run() awaits collect: collect fails with CallGone, ended fires, all is released."""
    seen = []

    async def script(call):
        await call.answer()
        call.ended.addCallback(seen.append)
        try:
            await call.collect(timeout=30)
        except CallGone as e:
            seen.append(e)
            raise

    engine, transport, reactor, app, phones, ok, port = dial(script)
    reactor.advance(1)
    deliver(engine, caller_request("BYE", ok, 2, "z9hG4bKbye"))
    assert isinstance(seen[0], CallGone) and seen[1].status is None and seen[0].cause is seen[1]
    assert app.stats()["failed"] == 0
    idle(engine, reactor, app)
    assert not [c for c in reactor.getDelayedCalls() if c.active() and c.getTime() > reactor.seconds() + 1]


def test_a_play_nobody_awaits_ends_quietly_with_the_call():
    """play() not awaited while the app collects: on the caller's BYE the awaited
    collect fails with CallGone, and the forgotten play settles without an
    "Unhandled error in Deferred" in the log."""
    seen = []
    logged = []
    plays = []

    async def script(call):
        await call.answer()
        plays.append(call.play(tone((425.0,), 5.0), interruptible=False))
        try:
            await call.collect(timeout=30)
        except CallGone as e:
            seen.append(e)
            raise

    def observe(event):
        if event.get("isError") or "Unhandled" in str(event.get("log_format", "")):
            logged.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        engine, transport, reactor, app, phones, ok, port = dial(script)
        reactor.advance(0.1)
        assert not plays[0].called
        deliver(engine, caller_request("BYE", ok, 2, "z9hG4bKbye"))
        assert isinstance(seen[0], CallGone) and plays[0].called
        del plays[:]
        gc.collect()
    finally:
        globalLogPublisher.removeObserver(observe)
    assert logged == []


def test_exception_in_run_hangs_up_with_500():
    """A bug in run() is logged and the caller is hung up with Reason 500; the switch goes on."""
    async def script(call):
        await call.answer()
        raise RuntimeError("oops")

    engine, transport, reactor, app, phones, ok, port = dial(script)
    reactor.advance(1)
    [bye] = requests(transport.take(), PHONE)
    assert bye.method == "BYE" and "cause=500" in bye.get("Reason")
    assert app.stats()["failed"] == 1
    idle(engine, reactor, app)


def test_max_duration_hangs_up():
    """The application's max_duration ends a call that run() keeps forever."""
    async def script(call):
        await call.answer()
        call.hold()
        await call.ended

    engine, transport, reactor, app, phones, ok, port = dial(script, max_duration=30)
    transport.take()
    reactor.advance(29.9)
    assert requests(transport.take(), PHONE) == []
    reactor.advance(0.2)
    assert [r.method for r in requests(transport.take(), PHONE)] == ["BYE"]
    idle(engine, reactor, app)


def test_transfer_hands_the_caller_over():
    """transfer(number): the caller is re-bridged to the number when it answers; the app's call ends."""
    got = []

    async def script(call):
        await call.answer()
        got.append(await call.transfer("201"))
        await call.ended
        got.append(call.transferred)

    engine, transport, reactor, app, phones, ok, port = dial(script)
    phone = phones.rung["201"]
    assert got == []
    phone.answer(offer_sdp(port=40200))
    assert got == [None, True]
    assert app.calls == set() and not port.listening
    [bridge] = engine.calls.values()  # the caller now talks to 201
    assert bridge.record.transfers == ["201"] and bridge.record.outbound_module == "phones"


def test_failed_transfer_hangs_the_caller_up_with_its_status():
    """When the transfer target refuses, the caller is hung up with that status."""
    async def script(call):
        await call.answer()
        await call.transfer("202")

    engine, transport, reactor, app, phones, ok, port = dial(script)
    transport.take()
    phones.rung["202"].reject(486, "Busy Here")
    [bye] = requests(transport.take(), PHONE)
    assert bye.method == "BYE" and "cause=486" in bye.get("Reason")
    idle(engine, reactor, app)


def test_bridge_one_number_with_ring_timeout_fails_and_the_call_stays():
    """bridge('201', ring_timeout=5) unanswered: RebridgeFailed naming 201's failure; the app goes on."""
    got = []

    async def script(call):
        await call.answer()
        try:
            await call.bridge("201", ring_timeout=5)
        except RebridgeFailed as e:
            got.append((e.status, e.failures, call.clock.seconds()))
        got.append(await call.collect(timeout=3))

    engine, transport, reactor, app, phones, ok, port = dial(script)
    start = reactor.seconds()
    reactor.advance(5)
    assert got == [(480, {"201": (480, "No Answer")}, start + 5)]
    assert phones.rung["201"].terminated
    press(port, "7")
    assert got[-1] == "7"


def test_bridge_a_list_rings_all_and_reports_who_answered():
    """bridge([...]) rings the numbers at once: fires with the one that answered, the others are cancelled."""
    got = []

    async def script(call):
        await call.answer()
        got.append(await call.bridge(["201", "202", "203"], ring_timeout=20))

    engine, transport, reactor, app, phones, ok, port = dial(script)
    assert set(phones.rung) == {"201", "202", "203"}
    phones.rung["201"].reject(486, "Busy Here")
    phones.rung["203"].answer(offer_sdp(port=40300))
    assert got == ["203"]
    assert phones.rung["202"].terminated and app.calls == set()


def test_bridge_a_list_all_failing_names_each_numbers_failure():
    """A list where one number is unknown, one busy, one unanswered: failures says which was which."""
    got = []

    async def script(call):
        await call.answer()
        try:
            await call.bridge(["201", "444", "202"], ring_timeout=10)
        except RebridgeFailed as e:
            got.append(e.failures)
        await call.collect(timeout=30)

    engine, transport, reactor, app, phones, ok, port = dial(script)
    phones.rung["202"].reject(486, "Busy Here")
    reactor.advance(10)
    assert got == [{"444": (404, "Not Found"), "202": (486, "Busy Here"), "201": (480, "No Answer")}]
    assert app.calls  # the caller is still the application's


@pytest.mark.parametrize("numbers", ["201", ["201", "202"]])
def test_cancelling_a_bridge_stops_the_ringing_and_the_call_stays(numbers):
    """An app (a queue whose caller pressed the exit digit) cancels its bridge():
    every number ringing is CANCELled, the bridge fails 487 and the app goes on."""
    got = []
    attempts = []

    async def script(call):
        await call.answer()
        attempts.append(call.bridge(numbers, ring_timeout=30))
        try:
            await attempts[0]
        except RebridgeFailed as e:
            got.append((e.status, e.failures))
        got.append(await call.collect(timeout=3))

    engine, transport, reactor, app, phones, ok, port = dial(script)
    rung = [numbers] if isinstance(numbers, str) else numbers
    assert set(phones.rung) == set(rung)
    reactor.advance(2)
    attempts[0].cancel()
    assert got == [(487, {n: (487, "Request Terminated") for n in rung})]
    assert all(phones.rung[n].terminated for n in rung)
    press(port, "7")
    assert got[-1] == "7"


def test_caller_hanging_up_while_a_bridge_rings_is_call_gone_not_a_failed_number():
    """The caller's BYE while 201 rings: 201 is CANCELled and bridge() fails with
    CallGone (the caller left), not RebridgeFailed (201 did not fail): a queue
    must not count it as a missed offer."""
    got = []

    async def script(call):
        await call.answer()
        try:
            await call.bridge("201", ring_timeout=30)
        except Exception as e:
            got.append(type(e))
            raise

    engine, transport, reactor, app, phones, ok, port = dial(script)
    reactor.advance(1)
    deliver(engine, caller_request("BYE", ok, 2, "z9hG4bKbye"))
    assert got == [CallGone] and phones.rung["201"].terminated


def test_originate_with_an_app_runs_it_when_the_callee_answers():
    """originate(from, to, app): the app calls `to` showing `from`; run() gets the call once `to` answers."""
    got = []

    async def script(call):
        got.append((call.outgoing, call.caller, call.number, call.answered))
        await call.play(tone((440.0,), 0.1))

    engine, transport, reactor, app, phones = setup(script)
    done = engine.originate("100", "201", app="ivr")
    phone = phones.rung["201"]
    assert phone.remote_sdp and b"m=audio" in phone.remote_sdp and not done.called
    phone.answer(offer_sdp(port=40200))
    assert got == [(True, "100", "201", True)]
    assert done.result in engine.calls and engine.calls[done.result].record.caller == "100"
    reactor.advance(1)
    assert phone.terminated and not app.calls


def test_originate_with_an_app_fails_when_refused_or_unknown():
    """A refused originate fails with OriginateFailed(status); an unknown app with 404."""
    engine, transport, reactor, app, phones = setup(lambda call: defer.succeed(None))
    done = engine.originate("100", "202", app="ivr")
    phones.rung["202"].reject(486, "Busy Here")
    failures = []
    done.addErrback(lambda f: failures.append(f.value))
    engine.originate("100", "202", app="nope").addErrback(lambda f: failures.append(f.value))
    assert [(type(f), f.status) for f in failures] == [(OriginateFailed, 486), (OriginateFailed, 404)]
    idle(engine, reactor, app)


def test_transfer_before_answer_answers_first():
    """transfer() on an unanswered call answers it first (only answered calls re-bridge), then hands over."""
    got = []

    async def script(call):
        got.append(await call.transfer("201"))

    engine, transport, reactor, app, phones, ok, port = dial(script)
    assert ok is not None and "201" in phones.rung
    phones.rung["201"].answer(offer_sdp(port=40200))
    assert got == [None] and not app.calls


def test_bridge_keeps_music_on_hold_instead_of_ringback():
    """bridge() while music on hold plays leaves the music on: the caller hears no ringback."""
    seen = []

    async def script(call):
        await call.answer()
        call.hold(tone((523.0,), 0.5))
        seen.append(call._play)
        await call.bridge("201", ring_timeout=5)

    engine, transport, reactor, app, phones, ok, port = dial(script)
    [call] = app.calls
    assert call._play is seen[0] and call.endpoint.playing
