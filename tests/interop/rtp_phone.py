"""What the interop tests' callers use for media: a UDP socket that plays a phone's
RTP side (keeps what it hears, presses RFC 4733 digits), and a bounded poll.

SIPp places the calls; its SDP names this socket's port, so the switch's RTP comes
here and digits go from here, one packet every 20 ms as a phone sends them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.internet.protocol import DatagramProtocol

from phpvoip.media.dtmf import dtmf_payloads
from phpvoip.media.rtp import build_rtp, parse_rtp
from tests.support import LOOPBACK

__all__ = ["SILENCE", "RtpPhone", "poll"]

SILENCE = b"\xff" * 160  # a 20 ms PCMU packet of silence, what endpoints send with nothing to play


class RtpPhone(DatagramProtocol):
    """The caller's RTP socket: `received` keeps the payloads of the PCMU packets
    that are not silence (`heard` counts them), `sources` where packets came from."""

    def __init__(self, ssrc: int = 0xD1A1) -> None:
        self.received: list[bytes] = []
        self.sources: set[tuple[str, int]] = set()
        self.ssrc = ssrc
        self.sequence = 0
        self.timestamp = 0

    @property
    def heard(self) -> int:
        return len(self.received)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        packet = parse_rtp(datagram)
        self.sources.add((addr[0], addr[1]))
        if packet.payload_type == 0 and packet.payload != SILENCE:
            self.received.append(packet.payload)

    async def press(self, reactor: Any, port: int, digits: str, gap: float = 0.1) -> None:
        """Send each digit as a 100 ms telephone-event (PT 101) to `port` on loopback,
        packets 20 ms apart, `gap` seconds between digits."""
        for digit in digits:
            for payload, marker, _end in dtmf_payloads(digit):
                packet = build_rtp(101, self.sequence, self.timestamp, self.ssrc, payload, marker)
                self.transport.write(packet, (LOOPBACK, port))
                self.sequence += 1
                await task.deferLater(reactor, 0.02, lambda: None)
            self.timestamp += 160 * 10
            await task.deferLater(reactor, gap, lambda: None)


async def poll(reactor: Any, check: Any, timeout: float) -> Any:
    """`check()`'s first true value within `timeout` seconds (looked at every 20 ms),
    else its value at the end."""
    deadline = reactor.seconds() + timeout
    while reactor.seconds() < deadline:
        value = check()
        if value:
            return value
        await task.deferLater(reactor, 0.02, lambda: None)
    return check()
