"""The relay's RTP/RTCP port pairs, taken from a configured range.

RTP gets an even port and RTCP the odd one above it (RFC 3550 §11). Pairs are
handed out oldest-released first, so that a port is reused as late as possible
and stray packets of an ended call do not reach the next one. A port some other
program holds is skipped and tried again later; when no pair can be bound the
caller gets `MediaUnavailable` and one warning is logged for the episode.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from phpvoip.interfaces import MediaUnavailable

__all__ = ["PortPair", "PortPool", "check_range"]

log = Logger()


def check_range(low: int, high: int) -> None:
    """Raise ValueError unless ``low..high`` (inclusive) holds at least one
    RTP/RTCP pair and starts on an even port."""
    if not (isinstance(low, int) and isinstance(high, int)):
        raise ValueError(f"media ports must be numbers, not {low!r}-{high!r}")
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise ValueError(f"media ports {low}-{high} are outside 1-65535")
    if low % 2:
        raise ValueError(f"media ports must start on an even port (RTP even, RTCP odd), not {low}")
    if high - low + 1 < 2:
        raise ValueError(f"media ports {low}-{high} hold no RTP/RTCP pair")


class PortPair:
    """One bound pair: the listening ports and their sockets' ``sendto``."""

    __slots__ = ("port", "rtp", "rtcp", "rtp_send", "rtcp_send")

    def __init__(self, port: int, rtp: Any, rtcp: Any) -> None:
        self.port = port  # the RTP port; RTCP is port + 1
        self.rtp = rtp  # IListeningPort
        self.rtcp = rtcp
        # Sending straight on the socket skips udp.Port.write's three parses of the
        # address per datagram; the relay sends only to addresses the kernel gave
        # it or that it checked once when the SDP named them.
        self.rtp_send = rtp.socket.sendto
        self.rtcp_send = rtcp.socket.sendto

    @property
    def rtcp_port(self) -> int:
        return self.port + 1


class PortPool:
    """The free and busy pairs of ``low..high`` on `address`."""

    def __init__(self, reactor: Any, address: str, low: int, high: int) -> None:
        check_range(low, high)
        self._reactor = reactor
        self.address = address
        self.low = low
        self.high = high
        self._free: deque[int] = deque(range(low, high, 2))  # RTP ports; high may be odd or even
        self.size = len(self._free)
        self.in_use = 0  # pairs handed out and not yet closed
        self.bound: set[int] = set()  # RTP ports of the pairs handed out
        self.refused = 0  # acquire() calls that found no pair
        self._warned = False

    @property
    def free(self) -> int:
        """Pairs not handed out (some may turn out to be held by another program)."""
        return len(self._free)

    def acquire(self, make_rtp: Callable[[], DatagramProtocol],
                make_rtcp: Callable[[], DatagramProtocol]) -> PortPair:
        """Bind the next free pair to new protocols from `make_rtp` and
        `make_rtcp`; raise `MediaUnavailable` when none can be bound."""
        for _ in range(len(self._free)):
            port = self._free.popleft()
            try:
                rtp = self._reactor.listenUDP(port, make_rtp(), interface=self.address)
            except CannotListenError:
                self._free.append(port)  # someone else's for now: try it again later
                continue
            try:
                rtcp = self._reactor.listenUDP(port + 1, make_rtcp(), interface=self.address)
            except CannotListenError:
                self._after_close([rtp], port)
                continue
            self.in_use += 1
            self.bound.add(port)
            self._warned = False
            return PortPair(port, rtp, rtcp)
        raise self.refuse()

    def refuse(self) -> MediaUnavailable:
        """Count a refusal for want of ports, log it once for the episode (until a
        pair is bound again), and return the exception to raise."""
        self.refused += 1
        if not self._warned:
            self._warned = True
            log.warn("media ports {low}-{high} on {address} exhausted ({in_use} pairs in use): "
                     "new calls are refused until some end",
                     low=self.low, high=self.high, address=self.address, in_use=self.in_use)
        return MediaUnavailable(f"no free media port pair in {self.low}-{self.high}")

    def release(self, pair: PortPair) -> defer.Deferred:
        """Close `pair`; it goes back to the pool once both sockets are closed
        (the returned Deferred fires then)."""
        self.in_use -= 1
        self.bound.discard(pair.port)
        return self._after_close([pair.rtp, pair.rtcp], pair.port)

    def _after_close(self, listening: list[Any], port: int) -> defer.Deferred:
        closing = [defer.maybeDeferred(p.stopListening) for p in listening]
        done = defer.DeferredList(closing, consumeErrors=True)

        def closed(results: list[tuple[bool, Any]]) -> None:
            for ok, failure in results:
                if not ok:
                    log.failure("closing media port {port}", failure, port=port)
            self._free.append(port)

        done.addCallback(closed)
        return done
