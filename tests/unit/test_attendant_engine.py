"""The attendant over the real engine and AppCall (FakeReactor): RFC 4733 digits in, the
caller bridged through the router, a refusal heard as "unavailable" and back to the menu."""

from __future__ import annotations

from phpvoip.apps.attendant import Attendant, parse_settings
from phpvoip.config import CallSettings
from phpvoip.engine import Engine
from phpvoip.router import Router
from phpvoip.settings import Section
from phpvoip.sip.timers import Timers
from tests.unit.test_appcall import Phones, press
from tests.unit.test_call_events import caller_request
from tests.unit.test_engine import PHONE, Declines, FakeTransport, deliver, invite, responses, trunk
from tests.unit.test_media_endpoint import FakeReactor, offer_sdp


def test_menu_digits_reach_phones_through_the_engine() -> None:
    """2 rings 202, which refuses: back in the menu; 1 rings 201, which answers and gets the caller."""
    reactor, transport, phones = FakeReactor(), FakeTransport(), Phones()
    data = {"number": "500", "menu": {"greeting": "beep", "options": {"1": "201", "2": "202"}},
            "prompts": {"transferring": [], "unavailable": "beep"}, "ports": "31100-31199"}
    app = Attendant("attendant", parse_settings(Section("t.yaml", "modules[0]", data)))
    engine = Engine(transport, reactor, "127.0.0.1", (Declines(), trunk("9*"), app, phones), Router(()),
                    Timers(), CallSettings(keepalive_interval=0))
    engine.start()
    deliver(engine, invite(to_user="500", body=offer_sdp()))
    reactor.advance(0)
    [ok] = [r for r in responses(transport.take(), PHONE) if r.status == 200]
    deliver(engine, caller_request("ACK", ok, 1, "z9hG4bKack"))
    [port] = reactor.ports.values()
    reactor.advance(0.2)
    assert app.stats()["by_menu"] == {"main": 1}
    press(port, "2")
    reactor.advance(0.1)
    phones.rung["202"].reject(486, "Busy Here")
    reactor.advance(0.1)
    assert app.counters["unavailable"] == 1 and app.stats()["in_menu"] == 1
    press(port, "1")
    reactor.advance(0.1)
    phones.rung["201"].answer(offer_sdp(port=40200))
    reactor.advance(0.1)
    assert app.counters["bridged"] == 1 and app.stats()["in_menu"] == 0 and not app.calls
    [bridge] = engine.calls.values()
    assert bridge.record.transfers == ["201"] and bridge.record.outbound_module == "phones"
