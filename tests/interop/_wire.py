"""Helpers for black-box tests against a real `twistd -n phpvoip` process.

A `Probe` is one UDP socket on 127.0.0.1 that sends hand-written requests to the
switch and collects every datagram that comes back with its arrival time, so a test
can look at what the switch sent and when. The request builders put the probe's own
address in the Via sent-by, so every answer comes back to the probe (RFC 3261
§18.2.2) and nothing is ever sent off loopback.

Time here is wall-clock time on purpose: the switch is another process with real
timers, and the test waits on socket timeouts (bounded), never on sleep.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import LOOPBACK, Switch, free_port

# T1/T2 short enough that Timer H (64*T1 = 12.8 s) ends within one test, long enough
# that loopback jitter (a few ms) is small beside the gaps being measured.
T1 = 0.2
T2 = 0.8
T4 = 1.0
TIMERS = f"  timers: {{t1: {T1}, t2: {T2}, t4: {T4}}}\n"


@contextlib.contextmanager
def running_switch(workdir: Path, extra: str = "", timers: str = TIMERS) -> Iterator[Switch]:
    """A real switch on a free port with no modules; always stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    text = Switch.config_for(port).replace("storage:", timers + "storage:", 1) + extra
    # The probe sends faster than any phone (49 torture messages in a row): flood
    # protection (tested in test_flood.py) would ban it.
    if "limits:" not in extra:
        text += f"limits: {{exempt: [{LOOPBACK}]}}\n"
    switch = Switch(workdir, text, port)
    switch.start()
    try:
        yield switch
    finally:
        switch.stop()


@dataclass(frozen=True, slots=True)
class Arrival:
    """One datagram the probe received and when (monotonic seconds)."""

    at: float
    data: bytes

    @property
    def start_line(self) -> bytes:
        return self.data.split(b"\r\n", 1)[0]

    @property
    def status(self) -> int | None:
        parts = self.start_line.split(b" ", 2)
        if len(parts) >= 2 and parts[0] == b"SIP/2.0" and parts[1].isdigit():
            return int(parts[1])
        return None

    def header(self, name: str) -> str | None:
        """The first value of header `name` (full name, case-insensitive)."""
        wanted = name.lower().encode()
        head = self.data.split(b"\r\n\r\n", 1)[0]
        for line in head.split(b"\r\n")[1:]:
            key, colon, value = line.partition(b":")
            if colon and key.strip().lower() == wanted:
                return value.strip().decode("utf-8", "replace")
        return None


class Probe:
    """A UDP socket on loopback that talks to the switch at `port`."""

    def __init__(self, port: int) -> None:
        self.target = (LOOPBACK, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port: int = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> float:
        """Send one datagram to the switch; returns when (monotonic)."""
        self.sock.sendto(data, self.target)
        return time.monotonic()

    def collect(self, duration: float, until_status: int | None = None) -> list[Arrival]:
        """Every datagram from the switch for `duration` seconds (or until one with
        status `until_status` arrives)."""
        arrivals: list[Arrival] = []
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return arrivals
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                return arrivals
            except ConnectionRefusedError:
                continue  # an ICMP error for an earlier datagram: not an answer
            arrival = Arrival(time.monotonic(), data)
            arrivals.append(arrival)
            if until_status is not None and arrival.status == until_status:
                return arrivals

    def final(self, timeout: float = 2.0, call_id: str | None = None) -> Arrival | None:
        """The first final (>= 200) response within `timeout` (to the request with
        `call_id`, when given), skipping provisionals and anything else."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                return None
            except ConnectionRefusedError:
                continue
            arrival = Arrival(time.monotonic(), data)
            if arrival.status is None or arrival.status < 200:
                continue
            if call_id is None or arrival.header("Call-ID") == call_id:
                return arrival

    # -- requests ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        *,
        uri: str | None = None,
        call_id: str | None = None,
        branch: str | None = None,
        from_tag: str | None = None,
        to: str | None = None,
        to_tag: str | None = None,
        cseq: int = 1,
        cseq_method: str | None = None,
        extra: str = "",
        body: str = "",
    ) -> bytes:
        """A well-formed request whose Via sent-by is this probe."""
        switch = f"{LOOPBACK}:{self.target[1]}"
        uri = uri or f"sip:1002@{switch}"
        to = to or f"<sip:1002@{switch}>"
        if to_tag is not None:
            to += f";tag={to_tag}"
        return (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch={branch or new_branch()}\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:1001@{LOOPBACK}>;tag={from_tag or uuid.uuid4().hex[:10]}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {call_id or uuid.uuid4().hex + '@' + LOOPBACK}\r\n"
            f"CSeq: {cseq} {cseq_method or method}\r\n"
            f"Contact: <sip:1001@{LOOPBACK}:{self.port}>\r\n"
            f"{extra}"
            f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
        ).encode()

    def options_alive(self, timeout: float = 1.0) -> bool:
        """Whether the switch answers an OPTIONS for itself with 200 now."""
        call_id = f"{uuid.uuid4().hex}@{LOOPBACK}"
        switch = f"{LOOPBACK}:{self.target[1]}"
        self.send(self.request("OPTIONS", uri=f"sip:{switch}", to=f"<sip:{switch}>", call_id=call_id))
        arrival = self.final(timeout, call_id)
        return arrival is not None and arrival.status == 200


def timer_g_schedule(t1: float = T1, t2: float = T2) -> list[float]:
    """When a final non-2xx to INVITE that is never ACKed goes out again, in seconds
    after the first copy: RFC 3261 §17.2.1, timer G fires at T1, then doubles "to
    MIN(2*T1, T2)" each time, until timer H (64*T1) ends the transaction."""
    times: list[float] = []
    interval, at = t1, t1
    while at < 64 * t1:
        times.append(at)
        interval = min(2 * interval, t2)
        at += interval
    return times


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def new_branch() -> str:
    return "z9hG4bK" + uuid.uuid4().hex[:16]


def port_is_free(port: int) -> bool:
    """Whether both UDP and TCP `port` on loopback can be bound right now."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


__all__ = ["T1", "T2", "T4", "TIMERS", "Arrival", "Probe", "free_port", "gaps", "new_branch", "port_is_free",
           "running_switch", "timer_g_schedule"]
