"""Call ladders: the transport's tap files every message under its call, bounded,
drawn as a ladder and written as pcap (real SipTransport and engine, fake sockets,
task.Clock)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface.verify import verifyObject

from phpvoip.bridge_rebridge import note_call_ids
from phpvoip.callrecord import CallRecord
from phpvoip.config import CallSettings
from phpvoip.engine import Engine
from phpvoip.events import LineStateChanged
from phpvoip.interfaces import ICallObserver
from phpvoip.ladder import Ladders, call_id_of, render_ladder
from phpvoip.opsconfig import LadderSettings
from phpvoip.pcap import LINKTYPE_RAW, Packet, PcapWriter
from phpvoip.router import Router
from phpvoip.sip.address import Address
from phpvoip.sip.message import Request, parse
from phpvoip.sip.timers import Timers
from phpvoip.transport import SipTransport
from tests.unit.test_engine import answer, invite, trunk

SWITCH = ("127.0.0.1", 5060)
PHONE = ("127.0.0.1", 5062)
BACKEND = ("127.0.0.1", 5080)
ON = LadderSettings(True, 200, 100)


class FakePort:
    """A bound UDP socket that keeps what is written to it."""

    maxPacketSize = 8192

    def __init__(self, wire: list[tuple[bool, bytes, tuple[str, int]]]) -> None:
        self.wire = wire

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", *SWITCH)

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.wire.append((True, data, addr))


class Switch:
    """A SipTransport on a fake UDP socket, an engine with one trunk (the backend
    at 127.0.0.1:5080) and, when `settings` is given, ladders attached."""

    def __init__(self, settings: LadderSettings | None = ON) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)  # a date the ladder prints
        self.wire: list[tuple[bool, bytes, tuple[str, int]]] = []
        self.transport = SipTransport(self.clock, clock=self.clock)
        self.udp = self.transport.udp_protocol()
        self.udp.makeConnection(FakePort(self.wire))
        self.engine = Engine(self.transport, self.clock, "127.0.0.1", [trunk()], Router(), Timers(),
                             CallSettings(keepalive_interval=0))
        self.transport.sink = self.engine.layer
        self.engine.start()
        self.ladders = None
        if settings is not None:
            self.ladders = Ladders(settings, self.clock)
            self.ladders.attach(self.transport, self.engine)

    def send(self, data: bytes, source: tuple[str, int] = PHONE) -> None:
        self.wire.append((False, data, source))
        self.udp.datagramReceived(data, source)

    def sent_to(self, address: tuple[str, int], start: str) -> list[Request]:
        return [parse(d) for out, d, a in self.wire if out and a == address and d.startswith(start.encode())]

    @property
    def record(self) -> CallRecord:
        if self.engine.records:
            return self.engine.records[-1]
        return next(iter(self.engine.calls.values())).record


def in_dialog(method: str, ok: Any, cseq: int, branch: str) -> bytes:
    request = Request(method, ok.contact[0].uri)
    for name in ("Via", "From", "To", "Call-ID"):
        request.add(name, ok.get(name))
    request.add("CSeq", f"{cseq} {method}")
    request.top_via.params["branch"] = branch
    return bytes(request)


def answered_call(switch: Switch, call_id: str = "ladder-call") -> tuple[Any, Any]:
    """Phone calls 2005 through the trunk; the backend rings, then answers; the
    phone ACKs. Returns (the INVITE the switch sent out, the 200 the phone got)."""
    switch.send(invite(call_id=call_id))
    [out] = switch.sent_to(BACKEND, "INVITE")
    switch.clock.advance(0.5)
    switch.send(answer(out, 180), BACKEND)
    switch.clock.advance(1.5)
    switch.send(answer(out, 200, body=b"v=0\r\n"), BACKEND)
    [ok] = [parse(d) for o, d, a in switch.wire if o and a == PHONE and d.startswith(b"SIP/2.0 200")]
    switch.send(in_dialog("ACK", ok, 1, "z9hG4bKack"))
    return out, ok


def full_call(switch: Switch) -> CallRecord:
    """`answered_call`, talk for 10 s, then the phone hangs up and the backend's
    200 to the switch's BYE comes back after the call has ended."""
    _, ok = answered_call(switch)
    switch.clock.advance(10)
    switch.send(in_dialog("BYE", ok, 2, "z9hG4bKbye"))
    [bye] = switch.sent_to(BACKEND, "BYE")
    switch.send(bytes(bye.response(200)), BACKEND)
    return switch.record


def test_ladders_observe_calls():
    """Ladders provide ICallObserver, and attaching taps the transport."""
    switch = Switch()
    assert verifyObject(ICallObserver, switch.ladders)
    assert switch.transport.tap is switch.ladders


def test_events_without_a_call_are_let_pass():
    """Registration and line events share the stream but carry no call: the ladders
    take no notice of them (they used to raise)."""
    switch = Switch()
    switch.ladders.call_event(LineStateChanged(0.0, "carrier", "registering", "registered"))
    assert switch.ladders.kept_calls() == []


def test_every_message_of_both_legs_is_kept_in_order():
    """Each message in and out on both legs is kept once, in wire order, with its bytes,
    direction, addresses and clock time, after the call has ended too."""
    switch = Switch()
    record = full_call(switch)
    entries = switch.ladders.messages(record)
    assert [(e.outgoing, e.data, (e.remote.host, e.remote.port)) for e in entries] == switch.wire
    assert len(record.sip_call_ids) == 2 and record.sip_call_ids[0] == "ladder-call"
    assert {e.call_id for e in entries} == set(record.sip_call_ids)
    assert all(e.local == Address("udp", *SWITCH) and e.remote.transport == "udp" for e in entries)
    assert [e.label for e in entries if not e.outgoing and e.remote == Address("udp", *PHONE)] == [
        "INVITE", "ACK", "BYE"]
    assert [e.label for e in entries if e.outgoing and e.remote == Address("udp", *PHONE)] == [
        "100 Trying", "180 Ringing", "200 OK", "200 OK"]
    assert entries[-1].time - entries[0].time == 12
    assert entries[-1].as_dict()["label"] == "200 OK" and entries[-1].as_dict()["direction"] == "in"


def test_a_call_is_found_by_record_by_id_and_by_each_sip_call_id():
    """The record, its id ("call-N") and each of its legs' Call-IDs all name one ladder."""
    switch = Switch()
    record = full_call(switch)
    ladders = switch.ladders
    whole = ladders.messages(record)
    assert ladders.messages(record.id) == whole
    for call_id in record.sip_call_ids:
        assert ladders.messages(call_id) == whole
    with pytest.raises(KeyError):
        ladders.messages("call-0")


def test_ladder_diagram_draws_arrows_with_labels_and_times():
    """The diagram has caller, switch and callee columns, an arrow per message
    pointing the right way, the relative time in ms and the absolute start."""
    switch = Switch()
    record = full_call(switch)
    text = switch.ladders.ladder_text(record)
    lines = text.splitlines()
    assert lines[0].startswith(f"{record.id}: 1001 -> 2005, ANSWERED 200, hung up by caller")
    assert "started 2023-11-14 22:13:20.000 UTC, 14 messages" in text
    assert lines[4].split() == ["caller", "switch", "callee"]
    assert lines[5].split() == ["127.0.0.1:5062", "127.0.0.1:5060", "127.0.0.1:5080"]
    arrows = lines[6:]
    assert len(arrows) == 14
    first, trying, out = arrows[0], arrows[1], arrows[2]
    assert first.split()[:2] == ["0.0", "ms"] and "|------ INVITE ------>|" in first
    assert first.endswith("leg 1  1 INVITE")
    assert "|<--- 100 Trying -----|" in trying
    assert out.index("INVITE") > out.index("|", out.index("|") + 1)  # right of the switch
    assert "leg 2  1 INVITE" in out
    ringing = next(a for a in arrows if "180 Ringing" in a and "leg 2" in a)
    assert ringing.split()[0] == "500.0" and "|<--" in ringing
    assert arrows[-1].split()[0] == "12000.0" and "200 OK" in arrows[-1] and "2 BYE" in arrows[-1]


def test_calls_beyond_the_limit_push_out_the_oldest():
    """With `calls: 2`, a third call drops the first call's ladder and its Call-IDs."""
    switch = Switch(LadderSettings(True, 2, 100))
    ids = []
    for n in range(3):
        switch.send(invite(call_id=f"bounded-{n}"))
        ids.append(switch.engine.calls and list(switch.engine.calls)[-1])
    kept = [r.id for r in switch.ladders.kept_calls()]
    assert kept == ids[1:]
    with pytest.raises(KeyError):
        switch.ladders.messages("bounded-0")
    assert switch.ladders.messages("bounded-2")[0].label == "INVITE"


def test_messages_of_a_call_are_bounded():
    """With `messages: 4` a call keeps its last four messages."""
    switch = Switch(LadderSettings(True, 10, 4))
    record = full_call(switch)
    entries = switch.ladders.messages(record)
    assert [e.data for e in entries] == [d for _, d, _ in switch.wire[-4:]]


def test_loose_call_ids_are_bounded_but_a_ringing_leg_is_not_lost():
    """OPTIONS of many Call-IDs churn the loose rings (bounded), yet the outbound
    INVITE of a call that has had no event since it was sent stays with its call."""
    switch = Switch(LadderSettings(True, 8, 100))
    switch.send(invite(call_id="slow-answer"))
    [out] = switch.sent_to(BACKEND, "INVITE")
    for n in range(40):
        options = invite(call_id=f"probe-{n}").replace(b"INVITE", b"OPTIONS")
        switch.send(options, ("127.0.0.1", 6000 + n))
        assert switch.ladders.counts()["loose_call_ids"] <= 8
    with pytest.raises(KeyError):
        switch.ladders.messages("probe-0")
    assert [e.label for e in switch.ladders.messages("probe-39")] == ["OPTIONS", "200 OK"]
    entries = switch.ladders.messages("slow-answer")
    assert [e.label for e in entries] == ["INVITE", "100 Trying", "INVITE"]
    assert entries[2].call_id == out.call_id


def test_a_transfer_target_leg_joins_the_ladder():
    """A leg dialled by a re-bridge adds its Call-ID to the record and its
    messages to the call's ladder."""
    switch = Switch()
    answered_call(switch)
    record = switch.record
    bridge = switch.engine.calls[record.id]
    switch.engine.transfer(record.id, bridge.inbound, "3000")
    invites = list({i.call_id: i for i in switch.sent_to(BACKEND, "INVITE")}.values())  # no retransmissions
    assert len(invites) == 2
    assert record.sip_call_ids == ["ladder-call", invites[0].call_id, invites[1].call_id]
    switch.send(answer(invites[1], 180), BACKEND)
    labels = [(e.call_id, e.label) for e in switch.ladders.messages(record.id)]
    assert labels[-2:] == [(invites[1].call_id, "INVITE"), (invites[1].call_id, "180 Ringing")]
    text = switch.ladders.ladder_text(record)
    assert f"leg 3: Call-ID {invites[1].call_id}" in text


def test_fork_branches_call_ids_are_noted():
    """A fork's branches each name their Call-ID; a local leg names none."""

    class Dialled:
        def __init__(self, call_id: str) -> None:
            self.invite = parse(invite(call_id=call_id))

    class Fork:
        branches = [Dialled("branch-1"), Dialled("branch-2")]

    record = CallRecord("call-x", "in", "a", "b", 0.0, sip_call_ids=["in"])
    note_call_ids(record, Fork())
    note_call_ids(record, object())
    note_call_ids(record, Dialled("branch-1"))
    assert record.sip_call_ids == ["in", "branch-1", "branch-2"]


def test_unparsable_message_and_its_400_are_kept_by_call_id():
    """Bytes that do not parse are filed by a header scan, with the switch's 400."""
    switch = Switch()
    broken = invite(call_id="broken-1", body=b"v=0\r\n").replace(b"Content-Length: 5", b"Content-Length: 50")
    switch.send(broken)
    entries = switch.ladders.messages("broken-1")
    assert [(e.outgoing, e.label[:3]) for e in entries] == [(False, "INV"), (True, "400")]
    assert entries[0].data == broken


def test_call_id_scan_reads_the_compact_form():
    """`call_id_of` finds Call-ID or i:, and None in what has neither."""
    assert call_id_of(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\ni:  abc@h \r\n\r\n") == "abc@h"
    assert call_id_of(b"OPTIONS sip:a SIP/2.0\ncall-id: lf-only\n\n") == "lf-only"
    assert call_id_of(b"garbage") is None


def test_detached_or_switched_off_nothing_is_kept():
    """Without ladders the transport's tap is None; detached ladders stop recording."""
    plain = Switch(settings=None)
    assert plain.transport.tap is None
    full_call(plain)
    switch = Switch()
    switch.ladders.detach()
    assert switch.transport.tap is None
    full_call(switch)
    assert switch.ladders.counts() == {"calls": 0, "loose_call_ids": 0, "messages": 0}


def test_tcp_messages_carry_the_connections_addresses():
    """A request read from a TCP connection and its answer are kept with the
    connection's local and remote address."""
    switch = Switch()
    factory = switch.transport.tcp_factory(Address("tcp", *SWITCH))
    connection = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40100))
    wire = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 5060),
                           peerAddress=IPv4Address("TCP", "127.0.0.1", 40100))
    connection.makeConnection(wire)
    options = invite(call_id="over-tcp").replace(b"INVITE", b"OPTIONS").replace(b"UDP", b"TCP")
    connection.dataReceived(options)
    entries = switch.ladders.messages("over-tcp")
    assert [(e.outgoing, e.label) for e in entries] == [(False, "OPTIONS"), (True, "200 OK")]
    assert {(e.local, e.remote) for e in entries} == {
        (Address("tcp", "127.0.0.1", 5060), Address("tcp", "127.0.0.1", 40100))}
    assert entries[1].data == wire.value()


# -- pcap -------------------------------------------------------------------------------------------


def read_pcap(data: bytes) -> tuple[int, list[tuple[float, bytes]]]:
    """(link type, [(time, packet)]) of a classic pcap file."""
    magic, major, minor, _, _, _, link = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor) == (0xA1B2C3D4, 2, 4)
    at, packets = 24, []
    while at < len(data):
        seconds, micros, length, original = struct.unpack_from("<IIII", data, at)
        assert length == original
        packets.append((seconds + micros / 1e6, data[at + 16:at + 16 + length]))
        at += 16 + length
    return link, packets


def ones_complement_ok(data: bytes) -> bool:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def test_pcap_holds_every_message_as_an_ipv4_udp_packet(tmp_path):
    """write_pcap writes one raw IPv4/UDP packet per message, addresses, times
    and checksums right, payload unchanged."""
    switch = Switch()
    record = full_call(switch)
    path = tmp_path / "call.pcap"
    assert switch.ladders.write_pcap(record, str(path)) == 14
    link, packets = read_pcap(path.read_bytes())
    assert link == LINKTYPE_RAW
    entries = switch.ladders.messages(record)
    for (when, raw), entry in zip(packets, entries, strict=True):
        assert abs(when - entry.time) < 1e-6
        assert raw[0] == 0x45 and raw[9] == 17 and ones_complement_ok(raw[:20])
        src, dst = f"{raw[12]}.{raw[13]}.{raw[14]}.{raw[15]}", f"{raw[16]}.{raw[17]}.{raw[18]}.{raw[19]}"
        sport, dport, length, _ = struct.unpack_from("!HHHH", raw, 20)
        ends = {(src, sport), (dst, dport)}
        assert ends == {SWITCH, (entry.remote.host, entry.remote.port)}
        assert ((src, sport) == SWITCH) == entry.outgoing
        assert raw[28:] == entry.data and length == 8 + len(entry.data)
        pseudo = raw[12:20] + struct.pack("!xBH", 17, length)
        assert ones_complement_ok(pseudo + raw[20:])


def test_pcap_tcp_segments_number_each_direction():
    """TCP messages become PSH/ACK segments whose sequence numbers run on per
    direction and acknowledge the other's; IPv6 gets its own header."""
    import io

    out = io.BytesIO()
    writer = PcapWriter(out)
    a, b = ("::1", 5060), ("::1", 40000)
    writer.write_all([Packet("tcp", b, a, b"x" * 10, 1.0), Packet("tcp", a, b, b"y" * 7, 1.5),
                      Packet("tcp", b, a, b"z" * 3, 2.0)])
    _, packets = read_pcap(out.getvalue())
    numbers = []
    for _, raw in packets:
        assert raw[0] >> 4 == 6 and raw[6] == 6  # IPv6, next header TCP
        seq, ack, _, flags = struct.unpack_from("!IIBB", raw, 40 + 4)
        numbers.append((seq, ack, flags))
        pseudo = raw[8:40] + struct.pack("!I3xB", len(raw) - 40, 6)
        assert ones_complement_ok(pseudo + raw[40:])
    assert numbers == [(1, 1, 0x18), (1, 11, 0x18), (11, 8, 0x18)]


def test_render_of_a_bare_call_id_and_of_nothing():
    """A Call-ID no call claimed (a REGISTER's) is drawn too; no messages says so."""
    switch = Switch()
    switch.send(invite(call_id="just-options").replace(b"INVITE", b"OPTIONS"))
    text = switch.ladders.ladder_text("just-options")
    assert text.startswith("just-options:") and "OPTIONS" in text and "200 OK" in text
    assert render_ladder([], None, "x") == "x:\n(no messages kept)\n"


def test_the_switch_keeps_ladders_unless_told_not_to():
    """Ladders are on by default (the service taps its transport and observes its
    engine); ``ladders: {enabled: false}`` leaves the tap None."""
    from phpvoip.config import load_text
    from phpvoip.service import build_service

    base = "sip:\n  listen: [udp:127.0.0.1:5060]\n  domain: 127.0.0.1\nstorage: memory\n"
    service = build_service(load_text(base + "ladders: {calls: 5}\n", "t.yaml"), Clock())
    assert service.transport.tap is service.ladders and service.ladders.settings.calls == 5
    assert service.ladders in service.engine.events.observers
    off = build_service(load_text(base + "ladders: {enabled: false}\n", "t.yaml"), Clock())
    assert off.ladders is None and off.transport.tap is None
