"""The engine's dispatch and call flow, with a fake transport and a test clock."""

from __future__ import annotations

import itertools

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from phpvoip.apps.robot import Robot, RobotSettings
from phpvoip.config import CallSettings, Section
from phpvoip.engine import Engine
from phpvoip.interfaces import ICallLeg, IEngine, IModule, NotMine
from phpvoip.modules.trunk import Trunk, parse_settings
from phpvoip.router import Route, Router
from phpvoip.sip.address import Address
from phpvoip.sip.message import Request, Response, parse
from phpvoip.sip.timers import Timers

SWITCH = Address("udp", "127.0.0.1", 5060)
PHONE = Address("udp", "127.0.0.1", 5062)
BACKEND = Address("udp", "127.0.0.1", 5080)
_numbers = itertools.count(1)


class FakeTransport:
    """Records what the switch sends; knows where it listens."""

    def __init__(self) -> None:
        self.sent: list[tuple[Request | Response, Address]] = []

    def send(self, message, address):
        self.sent.append((parse(bytes(message)), address))

    def send_response(self, response, source):
        self.send(response, source)

    def local_addresses(self):
        return [SWITCH]

    def take(self):
        sent, self.sent = self.sent, []
        return sent


# The smallest SDP body RFC 4566 allows (the engine refuses what is not SDP with 400).
OFFER = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
         b"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
ANSWER = (b"v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\n"
          b"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n")


def invite(from_user="1001", to_user="2005", body=OFFER, call_id=None, branch=None) -> bytes:
    call_id = call_id or f"call{next(_numbers)}"
    branch = branch or f"z9hG4bK{next(_numbers)}"
    return (
        f"INVITE sip:{to_user}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch={branch}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:{from_user}@127.0.0.1>;tag=caller\r\n"
        f"To: <sip:{to_user}@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 INVITE\r\n"
        f"Contact: <sip:{from_user}@127.0.0.1:5062>\r\n"
        f"Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def trunk(numbers="*", allow="127.0.0.1") -> Trunk:
    data = {"address": "127.0.0.1:5080", "allow": [allow], "numbers": numbers}
    section = Section("t.yaml", "modules[0]", data)
    return Trunk("backend", parse_settings(section))


def make_engine(*modules, routes=(), **settings) -> tuple[Engine, FakeTransport, Clock]:
    transport, clock = FakeTransport(), Clock()
    engine = Engine(
        transport,
        clock,
        "127.0.0.1",
        modules,
        Router(routes),
        Timers(),
        CallSettings(**{"keepalive_interval": 0, **settings}),
    )
    engine.start()
    return engine, transport, clock


def deliver(engine, data: bytes, source=PHONE):
    engine.layer.message_received(parse(data), source)


def responses(sent, address=None):
    return [m for m, a in sent if isinstance(m, Response) and (address is None or a == address)]


def requests(sent, address=None):
    return [m for m, a in sent if isinstance(m, Request) and (address is None or a == address)]


def answer(request: Request, status: int, tag="callee", body=b"") -> bytes:
    response = request.response(status, to_tag=tag)
    if 100 < status < 300:
        response.add("Contact", "<sip:2005@127.0.0.1:5080>")
    if body:
        response.add("Content-Type", "application/sdp")
        response.body = body
    return bytes(response)


def settle(clock: Clock, seconds: float = 40.0) -> None:
    """Let every RFC timer run out (64*T1 = 32 s with the default T1)."""
    for _ in range(int(seconds * 10)):
        clock.advance(0.1)


def test_provides_interfaces():
    """The engine, its legs and the built-in modules provide their contracts."""
    engine, _, _ = make_engine(trunk())
    assert verifyObject(IEngine, engine)
    assert verifyObject(IModule, trunk())
    assert verifyObject(IModule, Robot("r", RobotSettings("9000")))
    deliver(engine, invite())
    for bridge in engine.calls.values():
        assert verifyObject(ICallLeg, bridge.inbound) and verifyObject(ICallLeg, bridge.outbound)


def test_call_through_trunk_and_hangup():
    """INVITE in → 100 at once → INVITE out; 180/200 relayed; ACK; BYE ends both legs."""
    engine, transport, clock = make_engine(trunk())
    deliver(engine, invite(body=OFFER))
    sent = transport.take()
    assert [r.status for r in responses(sent, PHONE)] == [100]
    [out] = requests(sent, BACKEND)
    assert out.method == "INVITE" and out.body == OFFER
    assert out.call_id != "call1" and out.max_forwards == 69
    deliver(engine, answer(out, 180), BACKEND)
    deliver(engine, answer(out, 200, body=ANSWER), BACKEND)
    sent = transport.take()
    assert [r.status for r in responses(sent, PHONE)] == [180, 200]
    ok = responses(sent, PHONE)[1]
    assert ok.body == ANSWER and ok.contact[0].uri.host == "127.0.0.1"
    assert [r.method for r in requests(sent, BACKEND)] == ["ACK"]
    # The caller ACKs, then hangs up.
    ack = Request("ACK", ok.contact[0].uri)
    for name in ("Via", "From", "To", "Call-ID"):
        ack.add(name, ok.get(name))
    ack.add("CSeq", "1 ACK")
    ack.top_via.params["branch"] = "z9hG4bKack1"
    deliver(engine, bytes(ack))
    bye = ack.copy()
    bye.method = "BYE"
    bye.cseq = type(ok.cseq)(2, "BYE")
    bye.top_via.params["branch"] = "z9hG4bKbye1"
    deliver(engine, bytes(bye))
    sent = transport.take()
    assert [r.status for r in responses(sent, PHONE)] == [200]
    [bye_out] = requests(sent, BACKEND)
    assert bye_out.method == "BYE"
    deliver(engine, answer(bye_out, 200, tag=bye_out.to.tag), BACKEND)
    record = engine.records[-1]
    assert record.status == 200 and record.hangup_by == "caller" and record.routed_to == "2005"
    settle(clock)
    assert not any(engine.counts().values()), engine.counts()


def test_busy_callee_reaches_caller():
    """A 486 from the callee is ACKed by the switch and relayed to the caller."""
    engine, transport, clock = make_engine(trunk())
    deliver(engine, invite())
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, 486), BACKEND)
    sent = transport.take()
    assert [m.method for m in requests(sent, BACKEND)] == ["ACK"]
    assert [r.status for r in responses(sent, PHONE)] == [486]
    settle(clock)
    assert not any(engine.counts().values()), engine.counts()


def test_cancel_then_late_200_is_acked_and_byed():
    """CANCEL from the caller → CANCEL to the callee; a 200 that crosses it is ACKed
    and BYEd at once, and the caller still gets 487."""
    engine, transport, clock = make_engine(trunk())
    data = invite()
    deliver(engine, data)
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, 180), BACKEND)
    transport.take()
    original = parse(data)
    cancel = Request("CANCEL", original.uri)
    for name in ("Via", "From", "To", "Call-ID", "Max-Forwards"):
        cancel.add(name, original.get(name))
    cancel.add("CSeq", "1 CANCEL")
    deliver(engine, bytes(cancel))
    sent = transport.take()
    assert sorted(r.status for r in responses(sent, PHONE)) == [200, 487]
    assert [m.method for m in requests(sent, BACKEND)] == ["CANCEL"]
    deliver(engine, answer(out, 200, body=b"v=0\r\n"), BACKEND)
    sent = transport.take()
    assert [m.method for m in requests(sent, BACKEND)] == ["ACK", "BYE"]
    assert not responses(sent, PHONE)
    assert engine.records[-1].status == 487
    settle(clock)
    assert not any(engine.counts().values()), engine.counts()


def test_ring_timeout_cancels_callee_and_tells_caller():
    """No answer within ring_timeout: CANCEL towards the callee, 480 to the caller."""
    engine, transport, clock = make_engine(trunk(), ring_timeout=10)
    deliver(engine, invite())
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, 180), BACKEND)
    transport.take()
    clock.advance(10)
    sent = transport.take()
    assert [m.method for m in requests(sent, BACKEND)] == ["CANCEL"]
    assert [r.status for r in responses(sent, PHONE)] == [480]


@pytest.mark.parametrize(
    "modules, data, status",
    [
        ((), invite(), 403),  # nobody takes the caller
        ((trunk(numbers="9*"),), invite(to_user="2005"), 404),  # nobody takes the callee
        ((trunk(),), invite(from_user="2005", to_user="2005"), 400),  # From == To
    ],
)
def test_refusals(modules, data, status):
    """No callin → 403; no callout → 404; From == To → 400."""
    engine, transport, clock = make_engine(*modules)
    deliver(engine, data)
    assert [r.status for r in responses(transport.take(), PHONE)] == [100, status]


def test_unknown_dialog_gets_481():
    """An in-dialog request for no dialog is answered 481."""
    engine, transport, clock = make_engine(trunk())
    bye = parse(invite()).copy()
    bye.method = "BYE"
    bye.cseq = type(bye.cseq)(2, "BYE")
    bye.to.tag = "nosuch"
    bye.body = b""
    bye.remove("Content-Type")
    deliver(engine, bytes(bye))
    assert [r.status for r in responses(transport.take(), PHONE)] == [481]


def test_router_rewrites_before_callout():
    """The routed To decides the destination module and the outgoing INVITE."""
    engine, transport, clock = make_engine(
        trunk(numbers="1001"), routes=[Route.from_fields(in_to="2005", out_from="2005", out_to="1001")]
    )
    deliver(engine, invite(from_user="555", to_user="2005"))
    [out] = requests(transport.take(), BACKEND)
    assert out.uri.user == "1001" and out.to.uri.user == "1001" and out.from_.uri.user == "2005"


def test_options_answered_by_front_door():
    """An out-of-dialog OPTIONS no module takes gets the front door's 200."""
    engine, transport, clock = make_engine(trunk())
    data = invite().replace(b"INVITE", b"OPTIONS").replace(b"Content-Type: application/sdp\r\n", b"")
    data = data.replace(b"Content-Length: 5\r\n\r\nv=0\r\n", b"Content-Length: 0\r\n\r\n")
    deliver(engine, data)
    [ok] = responses(transport.take(), PHONE)
    assert ok.status == 200 and "INVITE" in ok.get("Allow")


class Declines:
    """A module that never takes anything (it must not stop the others)."""

    name, weight = "declines", 100

    def start(self, engine):
        pass

    def stop(self):
        pass

    def callin(self, call):
        raise NotMine()

    def callout(self, invite, call):
        raise NotMine()

    def request(self, request, transaction, source):
        raise NotMine()


def test_robot_answers_and_hangs_up():
    """A call routed to the robot rings, is answered after N s and hung up after M s."""
    robot = Robot("robot", RobotSettings("9000", answer_after=2, hangup_after=5))
    engine, transport, clock = make_engine(Declines(), trunk(), robot)
    deliver(engine, invite(to_user="9000"))
    sent = transport.take()
    assert [r.status for r in responses(sent, PHONE)] == [100, 180]
    clock.advance(2)
    [ok] = responses(transport.take(), PHONE)
    # The robot has no media: its answer declines the offered streams (port 0).
    assert ok.status == 200 and (b"m=" not in ok.body or b" 0 RTP" in ok.body)
    clock.advance(5)
    [bye] = requests(transport.take(), PHONE)
    assert bye.method == "BYE"
    assert engine.records[-1].hangup_by == "callee" and engine.records[-1].duration == 5


def test_robot_places_a_call_through_the_engine():
    """An application's INVITE runs callin → route → callout like one from the network."""
    robot = Robot("robot", RobotSettings("9000", hangup_after=3))
    engine, transport, clock = make_engine(robot, trunk())
    placed = []
    robot.dial("2005").addCallback(placed.append)
    [out] = requests(transport.take(), BACKEND)
    assert out.from_.uri.user == "9000" and out.to.uri.user == "2005"
    assert placed and placed[0].startswith("call-")
    deliver(engine, answer(out, 200, body=b"v=0\r\n"), BACKEND)
    assert [m.method for m in requests(transport.take(), BACKEND)] == ["ACK"]
    clock.advance(3)
    assert [m.method for m in requests(transport.take(), BACKEND)] == ["BYE"]
    assert engine.records[-1].inbound_module == "robot"


def test_invite_refusing_sdp_gets_406():
    """An INVITE whose Accept excludes SDP gets 406 (RFC 4475 §3.3.15, sdp01)."""
    engine, transport, clock = make_engine(trunk())
    data = invite().replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nAccept: text/nobodyKnowsThis\r\n")
    deliver(engine, data)
    sent = responses(transport.take(), PHONE)
    assert [r.status for r in sent] == [100, 406]
    assert sent[1].get("Accept") == "application/sdp"
    ranged = invite().replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nAccept: application/*\r\n")
    deliver(engine, ranged)
    assert [r.status for r in responses(transport.take(), PHONE)] == [100]


class Challenges(Declines):
    """A module that challenges every caller, softly (like the registrar's 407)."""

    name, weight = "challenges", 100

    def callin(self, call):
        from phpvoip.interfaces import CallRejected

        raise CallRejected(407, None, (("Proxy-Authenticate", 'Digest realm="x", nonce="n"'),), final=False)


def test_challenge_yields_to_a_module_that_knows_the_source():
    """A non-final 407 lets a later module (a trunk) take the call; alone it is the answer."""
    engine, transport, clock = make_engine(Challenges(), trunk())
    deliver(engine, invite())
    sent = transport.take()
    assert [r.status for r in responses(sent, PHONE)] == [100]
    assert [m.method for m in requests(sent, BACKEND)] == ["INVITE"]
    engine, transport, clock = make_engine(Challenges(), trunk(allow="10.0.0.1"))
    deliver(engine, invite())
    sent = responses(transport.take(), PHONE)
    assert [r.status for r in sent] == [100, 407]
    assert sent[1].get("Proxy-Authenticate").startswith("Digest")


def test_invite_with_a_body_that_is_not_sdp_gets_400_with_the_reason():
    """RFC 4566 checked before routing, in every media mode: the caller learns why
    and nobody is dialled."""
    engine, transport, clock = make_engine(trunk())
    deliver(engine, invite(body=b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\n"))
    sent = transport.take()
    [refusal] = [r for r in responses(sent, PHONE) if r.status >= 200]
    assert refusal.status == 400 and refusal.reason.startswith("Bad SDP: ")
    assert requests(sent, BACKEND) == []
