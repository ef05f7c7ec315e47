"""Time against size for pathological SIP messages: is any path superlinear?

Run: ``.venv/bin/python bench/pathological.py [--sizes 1,2,4,8,16,32,64] [--repeat N]``

Each case builds a message whose one pathological part grows with the size
(KiB of that part): thousands of header lines, one huge header, a display name
of escaped quotes, hundreds of URI and Via parameters, long comma lists, many
Vias, a long body. For each size it times two paths:

- ``parse``: `phpvoip.sip.message.parse` with the limits lifted (`UNLIMITED`), then
  the typed values read (every header value, URI and Via parameters, the Contact
  list): the parser's own cost, whatever the limits;
- ``receive``: the transport's `Receiver.receive` with the default limits, as the
  switch runs it (a refusal includes building the 400/513 answer);
- ``answer``: with the limits lifted, what the switch does next with a request it
  took: the stateless §8.2 checks and answer of the front door (`FrontDoor.answer`,
  the Via, From, To, Call-ID and CSeq copied) and the answer serialized.

Messages are limited to 64 KiB on the wire (``sip.max_message_size``), so sizes
past 64 only show how the parser would scale. Expect a step between 16 and 64 for
"10k headers" without limits: up to 1,024 distinct header names are remembered,
the rest are checked every time (a constant factor more per line); and with tens of
thousands of lines alive, CPython's cyclic GC adds a mild superlinear term. With
the default limits (200 header lines) neither is reachable: "receive" refuses such
a message after one split.

It prints microseconds per message and, between successive sizes, the growth
ratio and the exponent k of time ~ size^k (1 is linear, 2 quadratic). The exit
status is 1 when any case's exponent between the two largest sizes passes
``--max-exponent`` (default 1.5). The test suite runs a small version of it
(tests/unit/test_pathological.py).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phpvoip.sip.address import Address
from phpvoip.sip.errors import ParseError
from phpvoip.sip.limits import UNLIMITED
from phpvoip.sip.message import Message, Request, parse
from phpvoip.sip.transport import Receiver

SOURCE = Address("udp", "127.0.0.1", 40000)


def message(extra: str = "", uri: str = "sip:bob@switch.example", via: str | None = None,
            from_: str = "<sip:alice@example.com>;tag=1", body: bytes = b"",
            content_type: str = "application/sdp") -> bytes:
    """An INVITE whose parts the cases replace."""
    top = via if via is not None else "SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKpath;rport"
    type_line = f"Content-Type: {content_type}\r\n" if body else ""
    return (
        f"INVITE {uri} SIP/2.0\r\nVia: {top}\r\nMax-Forwards: 70\r\n"
        f"From: {from_}\r\nTo: <sip:bob@switch.example>\r\nCall-ID: path@example.com\r\n"
        f"CSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:40000>\r\n{extra}{type_line}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def many_headers(kib: int) -> bytes:
    n = kib * 1024 // 22
    return message("".join(f"X-Header-{i:05}: {i}\r\n" for i in range(n)))


def long_header(kib: int) -> bytes:
    return message(f"Subject: {'a' * (kib * 1024)}\r\n")


def deep_quoting(kib: int) -> bytes:
    # a display name of escaped quotes and backslashes (quoted-pair, §25.1)
    quoted = "\\\\" + '\\"'  # an escaped backslash and an escaped quote
    return message(from_='"' + quoted * (kib * 1024 // 4) + '" <sip:a@b.example>;tag=1')


def unterminated_quote(kib: int) -> bytes:
    return message(from_='"' + "a\\\"" * (kib * 1024 // 3) + " <sip:a@b.example>;tag=1")


def uri_params(kib: int) -> bytes:
    n = kib * 1024 // 9
    return message(uri="sip:bob@switch.example" + "".join(f";p{i:05}=1" for i in range(n)))


def via_params(kib: int) -> bytes:
    n = kib * 1024 // 9
    params = "".join(f";v{i:05}=1" for i in range(n))
    return message(via="SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKpath" + params)


def comma_list(kib: int) -> bytes:
    n = kib * 1024 // 9
    return message(f"Supported: {', '.join(f'tag{i:04}' for i in range(n))}\r\n")


def contact_list(kib: int) -> bytes:
    n = kib * 1024 // 29
    return message(f"Contact: {', '.join(f'<sip:u{i:05}@192.0.2.1:5060>' for i in range(n))}\r\n")


def many_vias(kib: int) -> bytes:
    n = kib * 1024 // 55
    return message("".join(f"Via: SIP/2.0/UDP 192.0.2.{i % 250}:5060;branch=z9hG4bK{i:06}\r\n"
                           for i in range(n)))


def long_body(kib: int) -> bytes:
    return message(body=b"v=0\r\n" + b"a=x\r\n" * (kib * 1024 // 5))


CASES: dict[str, Callable[[int], bytes]] = {
    "10k headers": many_headers,
    "one long header": long_header,
    "deep quoting": deep_quoting,
    "unterminated quote": unterminated_quote,
    "URI parameters": uri_params,
    "Via parameters": via_params,
    "comma list": comma_list,
    "Contact list": contact_list,
    "many Vias": many_vias,
    "long body": long_body,
}


def read_everything(msg: Message) -> None:
    """Touch every lazily parsed value, so a slow path there is measured too."""
    for _ in msg.headers():  # every value as text
        pass
    for name in ("Subject", "Supported", "X-Header-00001", "Route"):
        msg.get_all(name)
    uri = getattr(msg, "uri", None)
    if uri is not None:
        uri.params  # noqa: B018
    for via in msg.get_all("Via"):
        str(via)
    top = msg.top_via
    if top is not None:
        top.params  # noqa: B018
    msg.contact  # noqa: B018
    msg.from_.display_text  # noqa: B018
    bytes(msg)


def parse_path(data: bytes) -> None:
    try:
        msg = parse(data, UNLIMITED)
    except ParseError:
        return
    read_everything(msg)


def receive_path(receiver: Receiver) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        receiver.receive(data, SOURCE)

    return run


PATHS = ("parse", "receive", "answer")


def answer_path() -> Callable[[bytes], None]:
    from phpvoip.frontdoor import FrontDoor

    receiver = Receiver(1 << 30, UNLIMITED)
    door = FrontDoor(None, "switch.example", allowed_methods=("INVITE", "OPTIONS", "ACK", "CANCEL"))

    def run(data: bytes) -> None:
        message = receiver.receive(data, SOURCE)
        if isinstance(message, Request):
            response = door.answer(message)
            if response is not None:
                bytes(response)

    return run


def timed(run: Callable[[bytes], None], data: bytes, repeat: int, batch_seconds: float = 0.02) -> float:
    """Median seconds of one call, over `repeat` timed batches."""
    run(data)  # warm caches
    batch = 1
    while True:  # batches long enough that the clock's grain does not matter
        start = time.perf_counter()
        for _ in range(batch):
            run(data)
        if time.perf_counter() - start > batch_seconds or batch >= 1 << 16:
            break
        batch *= 2
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(batch):
            run(data)
        samples.append((time.perf_counter() - start) / batch)
    return statistics.median(samples)


def measure(
    sizes: list[int], repeat: int, cases: dict[str, Callable[[int], bytes]] = CASES,
    out: Callable[[str], None] = print, batch_seconds: float = 0.02, paths: tuple[str, ...] = PATHS,
) -> dict[tuple[str, str], list[float]]:
    """Times per (case, path), one per size; prints the table as it goes."""
    runs = {"parse": parse_path, "receive": receive_path(Receiver()), "answer": answer_path()}
    results: dict[tuple[str, str], list[float]] = {}
    out(f"{'case':20} {'path':8} " + " ".join(f"{s:>7}K" for s in sizes) + "   growth exponents")
    for name, build in cases.items():
        messages = [build(size) for size in sizes]
        for path in paths:
            run = runs[path]
            times = [timed(run, data, repeat, batch_seconds) for data in messages]
            results[(name, path)] = times
            exps = exponents(sizes, times)
            out(f"{name:20} {path:8} " + " ".join(f"{t * 1e6:8.0f}" for t in times) + "   "
                + " ".join(f"{k:4.2f}" for k in exps))
    return results


def exponents(sizes: list[int], times: list[float]) -> list[float]:
    """k between successive sizes, for time ~ size^k."""
    return [math.log(t2 / t1) / math.log(s2 / s1) if t1 > 0 else 0.0
            for s1, t1, s2, t2 in zip(sizes, times, sizes[1:], times[1:], strict=False)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="1,2,4,8,16,32,64", help="KiB of the pathological part")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--max-exponent", type=float, default=1.5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"microseconds per message; sizes in KiB of the pathological part; python {sys.version.split()[0]}")
    results = measure(sizes, args.repeat)
    worst = max(((exponents(sizes, t)[-1], key) for key, t in results.items()), default=(0.0, None))
    print(f"largest exponent between the two largest sizes: {worst[0]:.2f} ({worst[1]})")
    return 1 if worst[0] > args.max_exponent else 0


if __name__ == "__main__":
    sys.exit(main())
