"""The echo application: answers with its endpoint's SDP, plays back, logs digits, ends itself.

The engine runs on a FakeReactor (a Clock with fake UDP ports) so that SIP timers,
the pacer and the echo's hang-up all follow one simulated time.
"""

from __future__ import annotations

import pytest
from twisted.logger import LogLevel, globalLogPublisher
from zope.interface.verify import verifyObject

from phpvoip.apps.echo import Echo, EchoSettings, parse_settings
from phpvoip.config import CallSettings, ConfigError, Section
from phpvoip.engine import Engine
from phpvoip.interfaces import IApplication, IModule
from phpvoip.media.dtmf import dtmf_payloads
from phpvoip.media.g711 import ulaw_encode
from phpvoip.media.rtp import build_rtp
from phpvoip.media.tones import tone
from phpvoip.router import Router
from phpvoip.sip.message import Request, parse
from phpvoip.sip.sdp import parse_sdp
from phpvoip.sip.timers import Timers
from tests.unit.test_call_events import caller_request
from tests.unit.test_engine import PHONE, Declines, FakeTransport, deliver, invite, requests, responses, trunk
from tests.unit.test_media_endpoint import FakeReactor, offer_sdp

FAR = ("127.0.0.1", 40000)  # the caller's RTP address in offer_sdp()


def make_echo(busy: tuple[int, ...] = (), **settings):
    reactor, transport = FakeReactor(busy), FakeTransport()
    echo = Echo("echo", EchoSettings("9196", **settings))
    engine = Engine(transport, reactor, "127.0.0.1", (Declines(), trunk(), echo), Router(()),
                    Timers(), CallSettings(keepalive_interval=0))
    engine.start()
    return engine, transport, reactor, echo


def call(body: bytes = offer_sdp(), **settings):
    """A call to 9196 from PHONE; returns the pieces and every response the phone got."""
    engine, transport, reactor, echo = make_echo(**settings)
    deliver(engine, invite(to_user="9196", body=body))
    reactor.advance(0)
    return engine, transport, reactor, echo, responses(transport.take(), PHONE)


def answered_call(**settings):
    engine, transport, reactor, echo, got = call(**settings)
    ok = got[-1]
    assert ok.status == 200
    deliver(engine, caller_request("ACK", ok, 1, "z9hG4bKack"))
    [port] = reactor.ports.values()
    return engine, transport, reactor, echo, ok, port


def rtp(sequence: int, payload: bytes, pt: int = 0, marker: bool = False) -> bytes:
    return build_rtp(pt, sequence, 160 * sequence, 0x1234, payload, marker)


def in_dialog(method: str, ok, cseq: int, body: bytes, content_type: str) -> bytes:
    request = Request(method, ok.contact[0].uri)
    for name in ("Via", "From", "To", "Call-ID"):
        request.add(name, ok.get(name))
    request.add("CSeq", f"{cseq} {method}")
    request.top_via.params["branch"] = f"z9hG4bK{method.lower()}{cseq}"
    request.add("Content-Type", content_type)
    request.body = body
    return bytes(request)


def test_echo_provides_the_application_interfaces():
    """The echo is a module and an application like the robot."""
    echo = Echo("e", EchoSettings("9196"))
    assert verifyObject(IModule, echo) and verifyObject(IApplication, echo)


def test_settings_defaults_and_port_range():
    """number is required; max_duration 60, answer_after 0, ports 31000-31099, weight 80."""
    settings = parse_settings(Section("x.yaml", "modules[0]", {"number": 9196}))
    assert settings == EchoSettings("9196", 60.0, 0.0, (31000, 31099), "127.0.0.1", 80)
    custom = parse_settings(Section("x.yaml", "m", {"number": "1", "ports": "32000-32001",
                                                    "max_duration": 5, "answer_after": 1}))
    assert (custom.ports, custom.max_duration, custom.answer_after) == ((32000, 32001), 5.0, 1.0)
    for bad in ("32001", "abc", "5-4", "0-10", "70000-70002"):
        with pytest.raises(ConfigError, match="ports"):
            parse_settings(Section("x.yaml", "m", {"number": "1", "ports": bad}))
    with pytest.raises(ConfigError, match="number"):
        parse_settings(Section("x.yaml", "m", {}))


def test_answer_is_the_endpoints_sdp_and_audio_comes_back():
    """The 200 carries PCMU on a port of the range; each packet heard is sent back as is."""
    engine, transport, reactor, echo, ok, port = answered_call()
    [media] = parse_sdp(ok.body).media
    assert 31000 <= media.port <= 31099 and media.port == port.number
    assert media.connection == "127.0.0.1" and next(iter(media.rtpmap.values())).name == "PCMU"
    sent = [ulaw_encode(tone((440.0 + 10 * i,), 0.02)) for i in range(20)]
    for i, payload in enumerate(sent):
        port.deliver(rtp(i, payload, marker=i == 0), FAR)
        reactor.advance(0.02)
    reactor.advance(0.1)
    echoed = [p.payload for p in port.packets() if p.payload != b"\xff" * 160]
    assert echoed == sent
    assert all(addr == FAR for _t, _d, addr in port.written)


def test_nothing_is_sent_before_the_answer():
    """With answer_after the caller hears 180 first and no RTP until the 200."""
    engine, transport, reactor, echo, got = call(answer_after=2)
    assert [r.status for r in got] == [100, 180]
    [port] = reactor.ports.values()
    reactor.advance(1)
    assert port.written == []
    reactor.advance(1)
    assert [r.status for r in responses(transport.take(), PHONE)] == [200]
    reactor.advance(0.1)
    assert len(port.written) == 5  # silence keeps the path open once answered


def test_digits_are_logged_at_debug():
    """An RFC 4733 digit and an INFO digit each give one debug line naming the digit."""
    logged: list[dict] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        engine, transport, reactor, echo, ok, port = answered_call()
        for i, (payload, marker, _end) in enumerate(dtmf_payloads("5", 100)):
            port.deliver(build_rtp(101, 100 + i, 8000, 0x1234, payload, marker), FAR)
        deliver(engine, in_dialog("INFO", ok, 2, b"Signal=#\r\nDuration=160\r\n",
                                  "application/dtmf-relay"))
        [info_ok] = responses(transport.take(), PHONE)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert info_ok.status == 200
    digits = [(e["digit"], e["log_level"]) for e in logged if "digit" in e]
    assert digits == [("5", LogLevel.debug), ("#", LogLevel.debug)]


def test_max_duration_hangs_up_and_closes_the_endpoint():
    """After max_duration the switch BYEs the caller and the port is released."""
    engine, transport, reactor, echo, ok, port = answered_call(max_duration=5)
    transport.take()
    reactor.advance(4.9)
    assert requests(transport.take(), PHONE) == [] and port.listening
    reactor.advance(0.1)
    [bye] = requests(transport.take(), PHONE)
    assert bye.method == "BYE" and not port.listening and not echo.calls
    assert engine.records[-1].hangup_by == "callee" and engine.records[-1].duration == 5


def test_caller_bye_closes_the_endpoint():
    """A BYE from the caller ends the echo's call: port released, no timer left."""
    engine, transport, reactor, echo, ok, port = answered_call(max_duration=5)
    reactor.advance(1)
    deliver(engine, caller_request("BYE", ok, 2, "z9hG4bKbye"))
    assert not port.listening and not echo.calls and len(echo.pacer) == 0
    transport.take()
    reactor.advance(10)
    assert requests(transport.take(), PHONE) == []


def test_offer_without_g711_is_488_with_the_reason():
    """An offer of G.729 only is refused 488 naming the codec; no port stays bound."""
    engine, transport, reactor, echo, got = call(body=offer_sdp(formats="18"))
    assert got[-1].status == 488 and "no common codec" in got[-1].reason
    assert all(not p.listening for p in reactor.ports.values()) and not echo.calls


def sdp_ack(ok, body: bytes | None) -> bytes:
    """The caller's ACK of `ok`, carrying `body` as the answer to the 200's offer."""
    ack = parse(caller_request("ACK", ok, 1, "z9hG4bKack"))
    if body is not None:
        ack.add("Content-Type", "application/sdp")
        ack.body = body
    return bytes(ack)


def test_delayed_offer_is_answered_from_the_ack():
    """An INVITE without SDP gets the endpoint's offer in the 200; the answer in the ACK
    says where to send, and what the caller sends there comes back to it."""
    engine, transport, reactor, echo, got = call(body=b"")
    ok = got[-1]
    assert ok.status == 200
    [media] = parse_sdp(ok.body).media
    [port] = reactor.ports.values()
    assert media.port == port.number and media.connection == "127.0.0.1"
    assert {c.name for c in media.rtpmap.values()} >= {"PCMU", "PCMA", "telephone-event"}
    deliver(engine, sdp_ack(ok, offer_sdp(formats="0 101")))
    sent = [ulaw_encode(tone((440.0 + 10 * i,), 0.02)) for i in range(20)]
    for i, payload in enumerate(sent):
        port.deliver(rtp(i, payload, marker=i == 0), FAR)
        reactor.advance(0.02)
    reactor.advance(0.1)
    echoed = [p.payload for p in port.packets() if p.payload != b"\xff" * 160]
    assert echoed == sent
    assert {addr for _t, _d, addr in port.written} == {FAR}
    assert requests(transport.take(), PHONE) == []  # no BYE: the call goes on


def test_delayed_offer_without_an_answer_in_the_ack_ends_the_call():
    """An ACK that brings no answer to the 200's offer leaves no usable media: BYE, port released."""
    engine, transport, reactor, echo, got = call(body=b"")
    transport.take()
    deliver(engine, sdp_ack(got[-1], None))
    [bye] = requests(transport.take(), PHONE)
    assert bye.method == "BYE" and "488" in (bye.get("Reason") or "")
    assert not echo.calls and all(not p.listening for p in reactor.ports.values())


def test_no_free_port_is_503():
    """When every port of the range is taken the echo refuses 503 (with a warning); the
    bridge tells the caller 500, as for any callee's 503 (RFC 3261 §16.7)."""
    logged: list[dict] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        engine, transport, reactor, echo = make_echo(busy=(31000, 31002), ports=(31000, 31003))
        deliver(engine, invite(to_user="9196", body=offer_sdp()))
        reactor.advance(0)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    got = responses(transport.take(), PHONE)
    assert got[-1].status == 500 and not echo.calls
    assert [e["status"] for e in logged if "status" in e and "callID" in e] == [503]
    assert any(e["log_level"] is LogLevel.warn and "no free RTP port" in e.get("reason", "")
               for e in logged)


def test_reinvite_hold_and_new_address_go_to_the_endpoint():
    """A hold re-INVITE is answered recvonly and stops our packets; unhold to a new port resumes there."""
    engine, transport, reactor, echo, ok, port = answered_call()
    transport.take()
    deliver(engine, in_dialog("INVITE", ok, 2, offer_sdp(direction="sendonly"), "application/sdp"))
    [held] = [r for r in responses(transport.take(), PHONE) if r.status == 200]
    assert parse_sdp(held.body).media[0].direction == "recvonly"
    deliver(engine, caller_request("ACK", held, 2, "z9hG4bKack2"))
    before = len(port.written)
    reactor.advance(0.2)
    assert len(port.written) == before
    deliver(engine, in_dialog("INVITE", ok, 3, offer_sdp(port=40100), "application/sdp"))
    [back] = [r for r in responses(transport.take(), PHONE) if r.status == 200]
    assert parse_sdp(back.body).media[0].direction == "sendrecv"
    reactor.advance(0.2)
    assert port.written[-1][2] == ("127.0.0.1", 40100)


def test_reinvite_with_unusable_sdp_is_488_and_the_call_goes_on():
    """A re-offer without G.711 is refused 488; the call and its media stay up."""
    engine, transport, reactor, echo, ok, port = answered_call()
    transport.take()
    deliver(engine, in_dialog("INVITE", ok, 2, offer_sdp(formats="18"), "application/sdp"))
    finals = [r.status for r in responses(transport.take(), PHONE) if r.status >= 200]
    assert finals == [488] and echo.calls and port.listening


def test_calls_share_one_pacer():
    """Two calls send on the echo's one Pacer (one timer for every stream), not one each."""
    engine, transport, reactor, echo = make_echo()
    for _ in range(2):
        deliver(engine, invite(to_user="9196", body=offer_sdp()))
    reactor.advance(0)
    assert [r.status for r in responses(transport.take(), PHONE) if r.status == 200] == [200, 200]
    assert len(echo.pacer) == 2 and len(reactor.ports) == 2
    pacer_timers = [c for c in reactor.getDelayedCalls() if c.func == echo.pacer._fire]
    assert len(pacer_timers) == 1


def test_unreadable_offer_is_400():
    """An offer that is not SDP is refused 400 with the parser's reason; no port stays bound."""
    engine, transport, reactor, echo, got = call(body=b"v=0\r\nthis is not sdp\r\n")
    assert got[-1].status == 400 and got[-1].reason
    assert all(not p.listening for p in reactor.ports.values()) and not echo.calls


def test_the_engine_side_presents_the_caller_and_reaches_the_echo():
    """Like a SIP leg to a phone, the switch's leg to the echo presents the caller
    and has the echo as its far end: a transfer to 9196 is recorded as to 9196."""
    engine, transport, reactor, echo = make_echo()
    request = parse(invite(to_user="9196"))
    engine_side = echo.callout(request, None)
    assert engine_side.remote_party.uri.user == "9196"
    assert engine_side.local_party.uri.user == request.from_.uri.user != "9196"
