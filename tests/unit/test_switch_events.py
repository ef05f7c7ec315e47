"""Registration and line events: the registrar and the outside lines publish on the
call events' stream, and a failing observer hurts neither."""

from __future__ import annotations

from twisted.logger import globalLogPublisher
from zope.interface import implementer

from phpvoip.events import (
    CallEvents,
    Event,
    LineStateChanged,
    Registered,
    RegistrationRefused,
    Unregistered,
)
from phpvoip.interfaces import ICallObserver
from phpvoip.modules.channel import ChannelSettings, SipChannel
from phpvoip.modules.line_state import LineState
from tests.unit.channel_fakes import SERVER, Upstream
from tests.unit.channel_fakes import FakeEngine as LineEngine
from tests.unit.registrar_fakes import NAT, PHONE, Phone, registrar

C1 = "<sip:1001@192.0.2.10:5060>"


@implementer(ICallObserver)
class Heard:
    """Keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def call_event(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if type(e) is kind]


def heard_registrar():
    module, engine = registrar()
    heard = Heard()
    engine.events.add(heard)
    return module, engine, heard


def test_a_binding_made_then_refreshed_is_published():
    """A REGISTER accepted publishes Registered with its contact, expiry and source;
    the challenge before it is no refusal; a refresh says so."""
    module, engine, heard = heard_registrar()
    phone = Phone("1001", "secret1")
    engine.clock.advance(5)
    assert phone.register(module, [C1], expires=600).status == 200
    assert phone.register(module, [C1], expires=600).status == 200
    assert heard.of(RegistrationRefused) == []
    first, refresh = heard.of(Registered)
    assert first == Registered(5.0, "registrar", "1001", "sip:1001@192.0.2.10:5060", 600, PHONE, False)
    assert refresh.refresh is True


def test_unregistering_and_expiry_are_published():
    """Expires 0 publishes Unregistered "unregistered"; a binding left to lapse,
    "expired"."""
    module, engine, heard = heard_registrar()
    Phone("1001", "secret1").register(module, [C1], expires=600)
    Phone("1001", "secret1").register(module, [C1], expires=0)
    Phone("1002", "secret2").register(module, ["<sip:1002@192.0.2.12>"], expires=60)
    engine.clock.advance(61)
    gone = heard.of(Unregistered)
    assert [(e.aor, e.reason) for e in gone] == [("1001", "unregistered"), ("1002", "expired")]
    assert gone[1].contact == "sip:1002@192.0.2.12" and gone[1].time == 61.0


def test_refusals_are_published_but_not_challenges():
    """A wrong password (a second 401) and a third-party registration (403) are
    refusals with their status; the plain first challenge is not."""
    module, engine, heard = heard_registrar()
    assert Phone("1001", "wrong").register(module, [C1]).status == 401
    assert Phone("1001", "secret1").register(module, [C1], to_user="1002").status == 403
    refused = heard.of(RegistrationRefused)
    assert [(e.status, e.aor) for e in refused] == [(401, "1001"), (403, "1002")]
    assert refused[1].reason == "Not Allowed To Register This Address" and refused[1].source == PHONE
    assert heard.of(Registered) == []


def test_a_refused_register_from_elsewhere_names_its_source():
    """The source of a refusal is where the REGISTER came from (here, behind NAT)."""
    module, engine, heard = heard_registrar()
    Phone("1001", "secret1", source=NAT).register(module, [C1], to_user="1002")
    [refused] = heard.of(RegistrationRefused)
    assert refused.source == NAT


def test_line_state_changes_are_published():
    """An outside line publishes each change of its registration's state: up to
    registered, then down through unregistering on stop."""
    channel = SipChannel("carrier", ChannelSettings("2005", "carol.example", SERVER, password="secret"),
                         random=lambda: 0.5)
    engine = LineEngine()
    heard = Heard()
    engine.events.add(heard)
    upstream = Upstream(engine.clock)
    channel.start(engine)
    upstream.serve(engine)
    channel.stop()
    upstream.serve(engine)
    S = LineState
    assert [(e.line, e.old, e.new) for e in heard.of(LineStateChanged)] == [
        ("carrier", S.UNREGISTERED, S.REGISTERING),
        ("carrier", S.REGISTERING, S.REGISTERED),
        ("carrier", S.REGISTERED, S.UNREGISTERING),
        ("carrier", S.UNREGISTERING, S.UNREGISTERED),
    ]


def test_a_failing_observer_of_a_registration_is_logged_and_skipped():
    """An observer that raises on a non-call event is logged without a call id and
    the next observer still hears the event."""

    @implementer(ICallObserver)
    class Broken:
        def call_event(self, event: Event) -> None:
            raise RuntimeError("observer bug")

    events = CallEvents()
    heard = Heard()
    events.add(Broken())
    events.add(heard)
    logged: list[dict] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        events.publish(LineStateChanged(1.0, "carrier", "registered", "retrying"))
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert len(heard.events) == 1
    [failure] = [e for e in logged if e.get("log_failure") is not None]
    assert failure["event"] == "LineStateChanged" and failure["callID"] is None
    failure["log_failure"].trap(RuntimeError)
