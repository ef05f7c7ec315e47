"""Parse and serialize rates of the SIP message parser, on one core.

Run: ``.venv/bin/python bench/parse.py [--runs N] [--seconds S] [--profile]``

The messages are a typical ~900-byte INVITE (SDP body, two Vias, Record-Route,
Contact, Allow, Supported, User-Agent, ...) and its 200 OK. So that nothing is
measured that real traffic would not see, every message differs in what differs
between calls (Call-ID, branch, tags, CSeq number): the parser's caches of header
names and host names warm up as they would on a live switch, but no value can be
recognised from a previous message. Each figure is the median of several timed
runs (time.perf_counter around a loop over the prepared messages).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phpvoip.sip.message import Message, parse

SDP = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 192.168.1.10\r\n"
    "s=call\r\n"
    "c=IN IP4 192.168.1.10\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)

INVITE = (
    "INVITE sip:1002@192.168.1.20:5060;transport=udp SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-524287-1---{branch};rport\r\n"
    "Via: SIP/2.0/UDP 10.0.0.5:5062;received=192.168.1.11;branch=z9hG4bK776a{branch}\r\n"
    "Max-Forwards: 69\r\n"
    "Record-Route: <sip:192.168.1.10;lr>\r\n"
    "Contact: <sip:1001@192.168.1.10:5060;transport=udp>\r\n"
    "To: <sip:1002@192.168.1.20>\r\n"
    'From: "Alice Example" <sip:1001@192.168.1.20>;tag={tag}\r\n'
    "Call-ID: {call_id}@192.168.1.10\r\n"
    "CSeq: {cseq} INVITE\r\n"
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n"
    "Supported: replaces, timer, norefersub\r\n"
    "User-Agent: Example Softphone 5.3.2 (Linux)\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {length}\r\n"
    "\r\n"
    "{body}"
)

OK_200 = (
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-524287-1---{branch}"
    ";rport=5060;received=192.168.1.10\r\n"
    "Via: SIP/2.0/UDP 10.0.0.5:5062;received=192.168.1.11;branch=z9hG4bK776a{branch}\r\n"
    "Record-Route: <sip:192.168.1.10;lr>\r\n"
    "Contact: <sip:1002@192.168.1.20:5060;transport=udp>\r\n"
    "To: <sip:1002@192.168.1.20>;tag={to_tag}\r\n"
    'From: "Alice Example" <sip:1001@192.168.1.20>;tag={tag}\r\n'
    "Call-ID: {call_id}@192.168.1.10\r\n"
    "CSeq: {cseq} INVITE\r\n"
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n"
    "Supported: replaces, timer\r\n"
    "Server: Example PBX 2.1\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {length}\r\n"
    "\r\n"
    "{body}"
)


def make_messages(template: str, count: int) -> list[bytes]:
    """`count` variants of a message, unique in what is unique per call."""
    messages = []
    for i in range(count):
        text = template.format(
            branch=f"{i:08x}{i * 7919:08x}",
            tag=f"9fxc{i:06d}sl",
            to_tag=f"8321{i:06d}ab",
            call_id=f"38482762{i:011d}",
            cseq=1 + i % 5000,
            length=len(SDP),
            body=SDP,
        )
        messages.append(text.encode())
    return messages


def read_routing(message: Message) -> None:
    """What a transaction layer and a router read of every message."""
    message.top_via.branch  # noqa: B018
    message.from_.tag  # noqa: B018
    message.to  # noqa: B018
    message.call_id  # noqa: B018
    message.cseq  # noqa: B018


def rate(work: Callable[[], int], seconds: float, runs: int) -> float:
    """Median operations per second over `runs` timed runs of about `seconds`."""
    work()  # warm up
    start = time.perf_counter()
    done = work()
    single = time.perf_counter() - start
    loops = max(1, int(seconds / max(single, 1e-9)))
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        total = 0
        for _ in range(loops):
            total += work()
        rates.append(total / (time.perf_counter() - start))
    del done
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed run")
    parser.add_argument("--count", type=int, default=2000, help="distinct messages of each kind")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of parse + read")
    args = parser.parse_args()

    invites = make_messages(INVITE, args.count)
    oks = make_messages(OK_200, args.count)
    parsed_invites = [parse(m) for m in invites]
    parsed_oks = [parse(m) for m in oks]

    if args.profile:
        import cProfile
        import pstats

        def profiled() -> None:
            for _ in range(20):
                for data in invites:
                    read_routing(parse(data))

        cProfile.runctx("profiled()", globals(), {"profiled": profiled}, "/tmp/parse.prof")
        pstats.Stats("/tmp/parse.prof").sort_stats("tottime").print_stats(20)
        return

    def parse_all(messages: list[bytes]) -> Callable[[], int]:
        def work() -> int:
            for data in messages:
                parse(data)
            return len(messages)

        return work

    def parse_and_read(messages: list[bytes]) -> Callable[[], int]:
        def work() -> int:
            for data in messages:
                read_routing(parse(data))
            return len(messages)

        return work

    def serialize(messages: list[Message]) -> Callable[[], int]:
        def work() -> int:
            for message in messages:
                bytes(message)
            return len(messages)

        return work

    def serialize_touched(messages: list[Message]) -> Callable[[], int]:
        # typed values read (and their parameters split) before writing them out
        for message in messages:
            read_routing(message)
            message.top_via.params  # noqa: B018
            message.from_.params  # noqa: B018
        return serialize(messages)

    print(f"CPython {platform.python_version()} on {platform.machine()}, one core")
    print(f"INVITE {len(invites[0])} bytes, 200 OK {len(oks[0])} bytes, {args.count} distinct of each")
    print(f"median of {args.runs} runs of ~{args.seconds:g} s\n")
    rows = [
        ("INVITE parse", parse_all(invites)),
        ("INVITE parse + read routing headers", parse_and_read(invites)),
        ("INVITE serialize (as parsed)", serialize(parsed_invites)),
        ("INVITE serialize (typed values read)", serialize_touched([parse(m) for m in invites])),
        ("200 OK parse", parse_all(oks)),
        ("200 OK parse + read routing headers", parse_and_read(oks)),
        ("200 OK serialize (as parsed)", serialize(parsed_oks)),
    ]
    for label, work in rows:
        print(f"{label:40} {rate(work, args.seconds, args.runs):>10,.0f} /s")


if __name__ == "__main__":
    main()
