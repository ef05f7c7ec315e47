"""What the call-ladder tap costs per SIP message, on and off, on one core.

Run: ``.venv/bin/python bench/ladder.py [--messages N] [--runs R]``

A real `SipTransport` on a fake UDP socket reads N datagrams (a ~900-byte INVITE,
each with the Call-ID of one of 200 calls, 10 messages a call) and sends N
messages, with a sink that does nothing, so what is timed is the transport's own
path: the parse of each datagram (receive) or its serialisation and socket write
(send), plus the tap. Three set-ups:

- off: ``transport.tap`` is None, as when ``ladders: {enabled: false}``;
- on, calls: `Ladders` attached and every Call-ID claimed by a call, as on a switch
  carrying calls (each message lands in its call's ring);
- on, loose: every message has a Call-ID no call claims (a REGISTER storm), so the
  loose rings churn and are trimmed.

Each figure is the best of R runs (time.perf_counter around the loop; the best,
because a neighbour's load only ever adds time), off and on alternating. Last, the
tap's own methods are timed alone on parsed messages. The
difference between "off" and the commit before the tap existed is one attribute
load and one comparison per message: too small to time here.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from phpvoip.callrecord import CallRecord
from phpvoip.ladder import Ladders
from phpvoip.opsconfig import LadderSettings
from phpvoip.sip.address import Address
from phpvoip.sip.message import parse
from phpvoip.transport import SipTransport

CALLS = 200
PER_CALL = 10
SDP = (
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.168.1.10\r\ns=call\r\nc=IN IP4 192.168.1.10\r\n"
    "t=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
INVITE = (
    "INVITE sip:1002@192.168.1.20:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-{n};rport\r\n"
    "Max-Forwards: 69\r\n"
    "Contact: <sip:1001@192.168.1.10:5060>\r\n"
    "To: <sip:1002@192.168.1.20>\r\n"
    'From: "Alice Example" <sip:1001@192.168.1.20>;tag={n}\r\n'
    "Call-ID: {call_id}\r\n"
    "CSeq: {n} INVITE\r\n"
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n"
    "User-Agent: Example Softphone 5.3.2 (Linux)\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n\r\n{SDP}"
)


class NullSink:
    def message_received(self, message: Any, source: Any) -> None:
        pass

    def transport_error(self, address: Any) -> None:
        pass


class NullPort:
    maxPacketSize = 65536

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "192.168.1.20", 5060)

    def write(self, data: bytes, addr: Any) -> None:
        pass


class Event:
    """The one thing `Ladders.call_event` reads: the record."""

    def __init__(self, call: CallRecord) -> None:
        self.call = call


def datagrams(count: int, loose: bool) -> list[bytes]:
    out = []
    for n in range(count):
        call_id = f"loose-{n}@bench" if loose else f"call-{(n // PER_CALL) % CALLS}@bench"
        out.append(INVITE.format(n=n, call_id=call_id).encode())
    return out


def build(mode: str) -> tuple[SipTransport, Any]:
    clock = Clock()
    transport = SipTransport(clock, NullSink(), clock=clock)
    protocol = transport.udp_protocol()
    protocol.makeConnection(NullPort())
    if mode != "off":
        ladders = Ladders(LadderSettings(True, CALLS, 100), clock)
        transport.tap = ladders
        if mode == "calls":
            for n in range(CALLS):
                record = CallRecord(f"call-{n}", f"call-{n}@bench", "a", "b", 0.0,
                                    sip_call_ids=[f"call-{n}@bench"])
                ladders.call_event(Event(record))
    return transport, protocol


def time_receive(mode: str, data: list[bytes]) -> float:
    transport, protocol = build(mode)
    source = ("192.168.1.10", 5060)
    receive = protocol.datagramReceived
    start = time.perf_counter()
    for datagram in data:
        receive(datagram, source)
    return time.perf_counter() - start


def time_send(mode: str, messages: list[Any]) -> float:
    transport, _ = build(mode)
    destination = Address("udp", "192.168.1.10", 5060)
    send = transport.send
    start = time.perf_counter()
    for message in messages:
        send(message, destination)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}, {args.messages} messages, "
          f"best of {args.runs} runs")
    for traffic in ("calls", "loose"):
        data = datagrams(args.messages, loose=traffic == "loose")
        messages = [parse(d) for d in data]
        for path, timer, inputs in (("receive", time_receive, data), ("send", time_send, messages)):
            # Off and on alternate, so that a neighbour's load hits both alike.
            off, on = [], []
            for _ in range(args.runs):
                off.append(timer("off", inputs))
                on.append(timer(traffic, inputs))
            base, tapped = min(off), min(on)
            n = args.messages
            print(f"{path:8} {traffic:6} traffic: tap off {base / n * 1e6:6.2f} µs/message, "
                  f"on {tapped / n * 1e6:6.2f} µs/message ({(tapped - base) / n * 1e6:+.2f} µs, "
                  f"{(tapped / base - 1) * 100:+.1f} %)")

    for traffic in ("calls", "loose"):
        data = datagrams(args.messages, loose=traffic == "loose")
        messages = [parse(d) for d in data]
        best = min(time_tap_alone(traffic, messages, data) for _ in range(args.runs))
        print(f"the tap alone, {traffic:6} traffic: {best / args.messages * 1e6:5.2f} µs/message")


def time_tap_alone(mode: str, messages: list[Any], data: list[bytes]) -> float:
    transport, _ = build(mode)
    tap = transport.tap
    local, remote = Address("udp", "192.168.1.20", 5060), Address("udp", "192.168.1.10", 5060)
    received = tap.received
    start = time.perf_counter()
    for message, datagram in zip(messages, data, strict=True):
        received(message, datagram, local, remote)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
