"""Nothing of an application call outlives it: after many calls through the
attendant (bridged to a phone, or abandoned in the menu) and the engine back to
idle, no AppCall, endpoint, media leg, local leg or bridge is left in memory."""

from __future__ import annotations

import gc

from phpvoip.apps.answering import MediaLeg
from phpvoip.apps.appcall import AppCall
from phpvoip.apps.attendant import Attendant, parse_settings
from phpvoip.bridge import Bridge
from phpvoip.config import CallSettings
from phpvoip.engine import Engine
from phpvoip.interfaces import NORMAL_CLEARING
from phpvoip.legs.local import LocalLeg
from phpvoip.media.endpoint import RtpEndpoint
from phpvoip.router import Router
from phpvoip.settings import Section
from phpvoip.sip.timers import Timers
from tests.unit.test_appcall import Phones, press
from tests.unit.test_call_events import caller_request
from tests.unit.test_engine import PHONE, Declines, FakeTransport, deliver, invite, responses, trunk
from tests.unit.test_media_endpoint import FakeReactor, offer_sdp

KINDS = (AppCall, RtpEndpoint, MediaLeg, LocalLeg, Bridge)


def instances() -> dict[int, object]:
    """Every live object of the kinds above, by id, after a full collection."""
    gc.collect()
    return {id(obj): obj for obj in gc.get_objects() if isinstance(obj, KINDS)}


def alive(before: dict[int, object]) -> dict[str, int]:
    """How many objects of each kind exist that did not exist in `before` (other
    tests' leftovers in this process are not this test's leaks; `before` holds
    them, so their ids are not reused)."""
    counts = {kind.__name__: 0 for kind in KINDS}
    for key, obj in instances().items():
        if key not in before:
            for kind in KINDS:
                if isinstance(obj, kind):
                    counts[kind.__name__] += 1
    return counts


def test_no_application_object_survives_its_call() -> None:
    before = instances()
    reactor, transport, phones = FakeReactor(), FakeTransport(), Phones()
    data = {"number": "500", "menu": {"greeting": "beep", "options": {"1": "201"}},
            "prompts": {"transferring": []}, "ports": "31100-31199"}
    app = Attendant("attendant", parse_settings(Section("t.yaml", "modules[0]", data)))
    engine = Engine(transport, reactor, "127.0.0.1", (Declines(), trunk("9*"), app, phones), Router(()),
                    Timers(), CallSettings(keepalive_interval=0))
    engine.start()
    for n in range(40):
        deliver(engine, invite(to_user="500", body=offer_sdp()))
        reactor.advance(0)
        [ok] = [r for r in responses(transport.take(), PHONE) if r.status == 200]
        deliver(engine, caller_request("ACK", ok, 1, f"z9hG4bKack{n}"))
        [port] = [p for p in reactor.ports.values() if p.listening]
        reactor.advance(0.2)
        if n % 2:  # bridged to 201, then the phone hangs up
            press(port, "1")
            reactor.advance(0.1)
            phones.rung["201"].answer(offer_sdp(port=40200))
            reactor.advance(0.1)
            phones.rung["201"].hangup(NORMAL_CLEARING)
        else:  # the caller hangs up in the menu
            deliver(engine, caller_request("BYE", ok, 2, f"z9hG4bKbye{n}"))
        reactor.advance(40)  # transactions' timers run out
        transport.take()
        for number in [k for k, p in reactor.ports.items() if not p.listening]:
            del reactor.ports[number]  # the fake reactor would keep the protocol alive
    assert engine.calls == {} and not app.calls
    del port, ok  # the test's own references to the last call
    phones.rung.clear()
    assert engine.counts()["legs"] == 0
    assert alive(before) == {kind.__name__: 0 for kind in KINDS}


def test_no_queue_call_survives_answered_or_abandoned() -> None:
    """Queue callers answered by agent 201 (then hung up), abandoned while 201
    rings, or leaving by the exit digit while 201 rings (201 CANCELled, the caller
    taken to 202) leave nothing behind, and 201 is free again each time."""
    from phpvoip.apps.queue import Queue
    from phpvoip.apps.queue_config import parse_settings as queue_settings

    before = instances()
    reactor, transport, phones = FakeReactor(), FakeTransport(), Phones()
    data = {"number": "700", "agents": ["201"], "welcome": [], "announce_frequency": 0,
            "ports": "31200-31299", "retry_delay": 0, "exit_digit": "0", "exit_to": "202"}
    app = Queue("support", queue_settings(Section("t.yaml", "modules[0]", data)))
    engine = Engine(transport, reactor, "127.0.0.1", (Declines(), trunk("9*"), app, phones), Router(()),
                    Timers(), CallSettings(keepalive_interval=0))
    engine.start()
    for n in range(30):
        deliver(engine, invite(to_user="700", body=offer_sdp()))
        reactor.advance(0.1)
        [ok] = [r for r in responses(transport.take(), PHONE) if r.status == 200]
        deliver(engine, caller_request("ACK", ok, 1, f"z9hG4bKqack{n}"))
        reactor.advance(0.5)
        agent = phones.rung.pop("201")
        if n % 3 == 1:
            agent.answer(offer_sdp(port=40200))
            reactor.advance(1)
            agent.hangup(NORMAL_CLEARING)
        elif n % 3 == 2:
            [port] = [p for p in reactor.ports.values() if p.listening]
            press(port, "0")
            reactor.advance(0.1)
            assert agent.terminated
            target = phones.rung.pop("202")
            target.answer(offer_sdp(port=40300))
            reactor.advance(1)
            target.hangup(NORMAL_CLEARING)
            del port, target
        else:
            deliver(engine, caller_request("BYE", ok, 2, f"z9hG4bKqbye{n}"))
        del agent, ok
        reactor.advance(40)
        transport.take()
        for number in [k for k, p in reactor.ports.items() if not p.listening]:
            del reactor.ports[number]
        assert [row["state"] for row in app.agent_stats()] == ["available"], n
    assert engine.calls == {} and not app.calls
    [stats] = app.queue_stats()
    assert (stats["answered"], stats["abandoned"], stats["exited"]) == (10, 10, 10)
    assert stats["callers_waiting"] == 0
    assert [row["missed"] for row in app.agent_stats()] == [0]
    assert alive(before) == {kind.__name__: 0 for kind in KINDS}
