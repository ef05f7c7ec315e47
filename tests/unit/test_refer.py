"""Blind transfer through REFER (RFC 3515, RFC 5589), SIP legs over a fake transport."""

from __future__ import annotations

from phpvoip.modules.trunk import Trunk, parse_settings
from phpvoip.settings import Section
from phpvoip.sip.address import Address
from phpvoip.sip.message import Request, Response
from tests.unit.test_engine import (
    BACKEND,
    PHONE,
    answer,
    deliver,
    invite,
    make_engine,
    requests,
    responses,
    settle,
)

TARGET = Address("udp", "127.0.0.1", 5090)
SDP_A = (b"v=0\r\no=alice 10 1 IN IP4 127.0.0.1\r\ns=-\r\n"
         b"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
SDP_B = (b"v=0\r\no=bob 20 1 IN IP4 127.0.0.1\r\ns=-\r\n"
         b"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n")
SDP_C = (b"v=0\r\no=carol 30 1 IN IP4 127.0.0.1\r\ns=-\r\n"
         b"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n")


def trunk(name: str, address: Address, numbers: str, allow: str = "127.0.0.1") -> Trunk:
    data = {"address": f"{address.host}:{address.port}", "allow": [allow], "numbers": numbers}
    return Trunk(name, parse_settings(Section("t.yaml", "modules[0]", data)))


def answered_call():
    """1001 (PHONE) calls 2005 (BACKEND, trunk b); both answered and ACKed."""
    engine, transport, clock = make_engine(
        trunk("in", PHONE, "none", allow="127.0.0.1/32"),
        trunk("b", BACKEND, "2005", allow="10.9.9.9"),
        trunk("c", TARGET, "3000", allow="10.9.9.9"),
    )
    deliver(engine, invite(from_user="1001", to_user="2005", body=SDP_A))
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, 200, tag="btag", body=SDP_B), BACKEND)
    sent = transport.take()
    [ok] = [r for r in responses(sent, PHONE) if r.status == 200]
    deliver(engine, in_dialog_of(ok, "ACK", 1, "z9hG4bKacka"))
    [bridge] = engine.calls.values()
    return engine, transport, clock, bridge, out, ok


def in_dialog_of(ok: Response, method: str, cseq: int, branch: str, body: bytes = b"") -> bytes:
    """A request from the caller (PHONE) in the dialog our 200 `ok` made."""
    request = Request(method, ok.contact[0].uri)
    for name in ("Via", "From", "To", "Call-ID"):
        request.add(name, ok.get(name))
    request.add("CSeq", f"{cseq} {method}")
    request.top_via.params["branch"] = branch
    if body:
        request.add("Content-Type", "application/sdp")
        request.body = body
    return bytes(request)


def refer_from_b(out: Request, target: str = "<sip:3000@127.0.0.1>", cseq: int = 7,
                 extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """B's REFER in the dialog of our INVITE `out` (B's tag is btag)."""
    refer = Request("REFER", out.contact[0].uri)
    refer.add("Via", f"SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKrefer{cseq}")
    refer.add("Max-Forwards", "70")
    refer.add("From", f"<{out.to.uri}>;tag=btag")
    refer.add("To", str(out.from_))
    refer.add("Call-ID", out.call_id)
    refer.add("CSeq", f"{cseq} REFER")
    refer.add("Contact", "<sip:2005@127.0.0.1:5080>")
    if target:
        refer.add("Refer-To", target)
    for name, value in extra:
        refer.add(name, value)
    return bytes(refer)


def notifies(sent) -> list[bytes]:
    return [m.body for m in requests(sent, BACKEND) if m.method == "NOTIFY"]


def test_blind_transfer_by_the_callee():
    """REFER → 202 and NOTIFY 100; the target is dialled with the caller's SDP; on its
    answer NOTIFY 200, BYE to the transferor, re-INVITE to the caller with the new SDP."""
    engine, transport, clock, bridge, out, ok = answered_call()
    deliver(engine, refer_from_b(out, extra=(("Referred-By", "<sip:2005@127.0.0.1>"),)), BACKEND)
    sent = transport.take()
    [accepted] = [r for r in responses(sent, BACKEND) if r.cseq.method == "REFER"]
    assert accepted.status == 202 and accepted.contact
    [notify] = [m for m in requests(sent, BACKEND) if m.method == "NOTIFY"]
    assert notify.body == b"SIP/2.0 100 Trying\r\n"
    assert notify.get("Event") == "refer;id=7" and notify.get("Subscription-State").startswith("active")
    assert notify.get("Content-Type") == "message/sipfrag;version=2.0"
    [to_target] = requests(sent, TARGET)
    assert to_target.method == "INVITE" and to_target.body == SDP_A
    assert to_target.from_.uri.user == "1001" and to_target.to.uri.user == "3000"
    assert to_target.get("Referred-By") == "<sip:2005@127.0.0.1>"  # RFC 3892
    deliver(engine, answer(to_target, 180, tag="ctag"), TARGET)
    assert notifies(transport.take()) == [b"SIP/2.0 180 Ringing\r\n"]
    # A second REFER while the first is under way is told to wait.
    deliver(engine, refer_from_b(out, cseq=8), BACKEND)
    assert [r.status for r in responses(transport.take(), BACKEND) if r.cseq.method == "REFER"] == [491]
    deliver(engine, answer(to_target, 200, tag="ctag", body=SDP_C), TARGET)
    sent = transport.take()
    assert [m.method for m in requests(sent, TARGET)] == ["ACK"]
    to_b = requests(sent, BACKEND)
    assert [m.method for m in to_b] == ["NOTIFY", "BYE"]
    assert to_b[0].body == b"SIP/2.0 200 OK\r\n"
    assert to_b[0].get("Subscription-State") == "terminated;reason=noresource"
    assert 'text="Call transferred"' in to_b[1].get("Reason")
    [reinvite] = requests(sent, PHONE)
    assert reinvite.method == "INVITE" and b"m=audio 6000" in reinvite.body
    assert b"o=bob 20 2 " in reinvite.body  # the caller still sees B's session, next version
    # The caller answers the re-INVITE; later it hangs up and the target hears it.
    reply = reinvite.response(200)
    reply.add("Contact", "<sip:1001@127.0.0.1:5062>")
    reply.add("Content-Type", "application/sdp")
    reply.body = SDP_A
    deliver(engine, bytes(reply))
    assert [m.method for m in requests(transport.take(), PHONE)] == ["ACK"]
    deliver(engine, in_dialog_of(ok, "BYE", 2, "z9hG4bKbyea"))
    assert [m.method for m in requests(transport.take(), TARGET)] == ["BYE"]
    record = engine.records[-1]
    assert record.transfers == ["3000"] and record.outbound_module == "c" and record.hangup_by == "caller"
    settle(clock)
    assert not any(engine.counts().values()), engine.counts()


def test_failed_transfer_keeps_the_call():
    """A busy target: NOTIFY 486, and caller and callee still talk."""
    engine, transport, clock, bridge, out, ok = answered_call()
    deliver(engine, refer_from_b(out), BACKEND)
    [to_target] = requests(transport.take(), TARGET)
    deliver(engine, answer(to_target, 486, tag="ctag"), TARGET)
    sent = transport.take()
    assert notifies(sent) == [b"SIP/2.0 486 Busy Here\r\n"]
    assert not [m for m in requests(sent, BACKEND) if m.method == "BYE"]
    deliver(engine, in_dialog_of(ok, "BYE", 2, "z9hG4bKbyea"))
    assert [m.method for m in requests(transport.take(), BACKEND)] == ["BYE"]
    assert engine.records[-1].transfers == []


def test_refer_refusals():
    """Unknown target → 404; no or two Refer-To → 400; a stranger's REFER → 403;
    Replaces → 501; the call stays up after each."""
    engine, transport, clock, bridge, out, ok = answered_call()

    def status_of(data: bytes, source: Address = BACKEND) -> int:
        deliver(engine, data, source)
        [reply] = [r for r in responses(transport.take()) if r.cseq.method == "REFER"]
        return reply.status

    assert status_of(refer_from_b(out, "<sip:9999@127.0.0.1>", 7)) == 404
    assert status_of(refer_from_b(out, "", 8)) == 400
    assert status_of(refer_from_b(out, "<sip:3000@127.0.0.1>", 9, (("Refer-To", "<sip:3001@h>"),))) == 400
    assert status_of(refer_from_b(out, "<sip:3000@127.0.0.1>", 10), Address("udp", "10.1.2.3", 5080)) == 403
    assert status_of(refer_from_b(out, "<sip:3000@127.0.0.1?Replaces=x%3Bto-tag%3D1>", 11)) == 501
    assert status_of(refer_from_b(out, "<mailto:bob@example.com>", 12)) == 416
    assert engine.calls and bridge.state.value == "answered"


def test_refer_outside_a_dialog_is_refused():
    """A REFER with no dialog (no To tag) is answered 403."""
    engine, transport, clock = make_engine(trunk("b", BACKEND, "*"))
    deliver(engine, (
        b"REFER sip:2005@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKlone\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:2005@127.0.0.1>;tag=x\r\n"
        b"To: <sip:1001@127.0.0.1>\r\n"
        b"Call-ID: lone\r\n"
        b"CSeq: 1 REFER\r\n"
        b"Contact: <sip:2005@127.0.0.1:5080>\r\n"
        b"Refer-To: <sip:3000@127.0.0.1>\r\n"
        b"Content-Length: 0\r\n\r\n"
    ), BACKEND)
    [reply] = responses(transport.take(), BACKEND)
    assert reply.status == 403


def test_application_transfers_a_call():
    """`engine.transfer` re-bridges the kept leg to a routed number and fires when joined."""
    engine, transport, clock, bridge, out, ok = answered_call()
    joined: list = []
    engine.transfer(bridge.record.id, bridge.inbound, "3000").addCallback(joined.append)
    [to_target] = requests(transport.take(), TARGET)
    deliver(engine, answer(to_target, 200, tag="ctag", body=SDP_C), TARGET)
    assert joined and joined[0] in bridge.parties
    assert [m.method for m in requests(transport.take(), BACKEND)] == ["BYE"]
    failures: list = []
    for call_id, target in (("call-none", "3000"), (bridge.record.id, "9999")):
        engine.transfer(call_id, bridge.inbound, target).addErrback(lambda f: failures.append(f.value.status))
    assert failures == [481, 404]
