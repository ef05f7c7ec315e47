"""The in-process RTP relay ("server relay"): media of a call passes through the switch.

Each side of a call (one per leg, named by the bridge) gets an RTP/RTCP port pair per
live m= line, and the SDP sent to a side's party is rewritten to point at that side's
ports. A packet arriving on side A's port came from A's party; it leaves through the
port of A's peer side B, towards B's party, so each party sends to and hears from one
address of ours (symmetric RTP).

Latching: the first packet arriving on a side's port says where that party really is
(behind NAT, not where its SDP says); later packets from anywhere else are dropped.
A new offer or answer from that side naming another address opens the latch again.
Weak spot, as in every latching relay: whoever sends first wins the latch, so a
stranger who guesses the port before the party speaks can take the stream.

Per packet the relay reads only the 12-byte header (for the counters of
`phpvoip.media.rtpstats`), sends on the socket directly, and logs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet import defer, task
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from phpvoip.interfaces import IMediaEngine, IMediaSession, MediaUnavailable
from phpvoip.media.ports import PortPair, PortPool, check_range
from phpvoip.media.rtpstats import RtpStats
from phpvoip.sip.sdp import Media, SessionDescription, parse_sdp, rewrite_media
from phpvoip.sip.transport import packed_ip

__all__ = ["RelayEngine", "RelaySession"]

log = Logger()

_UNSPECIFIED = ("0.0.0.0", "::")  # RFC 2543-style hold: "send nothing here"


class _End:
    """One side's end of one stream (m= line): its port pair, where its party is
    reached, and the end its packets are forwarded to."""

    __slots__ = ("side", "index", "pair", "port", "direction", "rtp_dest", "rtcp_dest",
                 "rtp_source", "rtcp_source", "peer", "stats")

    def __init__(self, side: str, index: int) -> None:
        self.side = side
        self.index = index
        self.pair: PortPair | None = None
        self.port = 0  # the m= port of this side's last SDP (0: rejected or not offered)
        self.direction = "sendrecv"
        self.rtp_dest: tuple[str, int] | None = None  # what the SDP says
        self.rtcp_dest: tuple[str, int] | None = None
        self.rtp_source: tuple[str, int] | None = None  # what the first packet said (latched)
        self.rtcp_source: tuple[str, int] | None = None
        self.peer: _End | None = None
        self.stats: RtpStats | None = None  # of this side's party -> the peer's, while paired


class _RtpPort(DatagramProtocol):
    """Receives on one end's RTP port and forwards to its peer's party."""

    noisy = False  # no log line per call as its port opens and closes

    def __init__(self, engine: RelayEngine, end: _End) -> None:
        self.engine = engine
        self.end = end
        self.seconds = engine.clock.seconds

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        end = self.end
        if len(data) < 8 or data[0] & 0xC0 != 0x80:  # not RTP/RTCP version 2: no latching on it
            self.engine.malformed += 1
            return
        source = end.rtp_source
        if addr != source:
            if source is not None:
                self.engine.unlatched += 1
                if end.stats is not None:
                    end.stats.dropped += 1
                return
            end.rtp_source = addr
        peer = end.peer
        if peer is None:
            self.engine.unpaired += 1
            return
        dest = peer.rtp_source or peer.rtp_dest
        if dest is None:
            self.engine.unpaired += 1
            return
        stats = end.stats
        if 192 <= data[1] <= 223:  # RTCP multiplexed on the RTP port (RFC 5761 §4)
            stats.rtcp_packets += 1
            stats.last = self.seconds()
        elif len(data) < 12:
            self.engine.malformed += 1
            return
        else:
            stats.rtp(data, self.seconds())
        try:
            peer.pair.rtp_send(data, dest)
        except OSError:
            self.engine.send_errors += 1
            return
        self.engine.forwarded += 1


class _RtcpPort(DatagramProtocol):
    """Receives on one end's RTCP port and forwards to its peer's party's RTCP."""

    noisy = False  # no log line per call as its port opens and closes

    def __init__(self, engine: RelayEngine, end: _End) -> None:
        self.engine = engine
        self.end = end
        self.seconds = engine.clock.seconds

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        end = self.end
        if len(data) < 8 or data[0] & 0xC0 != 0x80:
            self.engine.malformed += 1
            return
        source = end.rtcp_source
        if addr != source:
            if source is not None:
                self.engine.unlatched += 1
                if end.stats is not None:
                    end.stats.dropped += 1
                return
            end.rtcp_source = addr
        peer = end.peer
        if peer is None:
            self.engine.unpaired += 1
            return
        dest = peer.rtcp_source or peer.rtcp_dest
        if dest is None:
            self.engine.unpaired += 1
            return
        stats = end.stats
        stats.rtcp_packets += 1
        stats.last = self.seconds()
        try:
            peer.pair.rtcp_send(data, dest)
        except OSError:
            self.engine.send_errors += 1
            return
        self.engine.forwarded += 1


class _Declared:
    """What one m= line of a party's SDP says about that party."""

    __slots__ = ("port", "direction", "rtp", "rtcp", "clock_rate")

    def __init__(self, port: int, direction: str, rtp: tuple[str, int] | None,
                 rtcp: tuple[str, int] | None, rate: int) -> None:
        self.port = port
        self.direction = direction
        self.rtp = rtp
        self.rtcp = rtcp
        self.clock_rate = rate


def _destination(host: str | None, port: int) -> tuple[str, int] | None:
    """A place to send to, when `host` is an IP literal the party can be reached at
    (a name would need a blocking lookup; latching will find the party instead)."""
    if host is None or host in _UNSPECIFIED or not 0 < port < 65536 or packed_ip(host) is None:
        return None
    return (host, port)


def _declare(sdp: SessionDescription) -> list[_Declared]:
    """Per m= line: port, direction, RTP and RTCP destinations, clock rate."""
    found = []
    for m in sdp.media:
        host = m.connection
        if m.port and host is None:
            raise ValueError(f"m={m.kind} has no c= address")
        rtcp_host = host
        value = m.attribute("rtcp")  # RFC 3605: a=rtcp:<port> [IN IP4 <address>]
        if value:
            fields = value.split()
            if len(fields) >= 4:
                rtcp_host = fields[3]
        codec = next((c for c in m.rtpmap.values() if not c.is_telephone_event), None)
        rate = codec.clock_rate if codec is not None else 8000
        rtp = _destination(host, m.port) if m.port else None
        rtcp = _destination(rtcp_host, m.rtcp_port) if m.port else None
        found.append(_Declared(m.port, m.direction, rtp, rtcp, rate))
    return found


@implementer(IMediaSession)
class RelaySession:
    """The relayed media of one call: its sides, their ends, and who is paired."""

    def __init__(self, engine: RelayEngine, call_id: str, on_timeout: Callable[[], Any]) -> None:
        self.call_id = call_id
        self._engine = engine
        self._on_timeout = on_timeout
        self._sides: dict[str, list[_End]] = {}
        self._kinds: list[str] = []  # media kind by m= index, for the counters
        self._stats: dict[tuple[str, str], dict[int, RtpStats]] = {}
        self.paired: tuple[str, str] | None = None
        self.paired_at = 0.0
        self.timed_out = False
        self.closed = False

    def __repr__(self) -> str:
        return f"<RelaySession {self.call_id} sides={sorted(self._sides)} paired={self.paired}>"

    # -- IMediaSession

    def offer(self, from_side: str, to_side: str, sdp: bytes) -> defer.Deferred:
        """Note `from_side`'s destinations, give both sides ports, and fire with the
        offer pointing `to_side`'s party at `to_side`'s ports. Pairing is unchanged
        until the answer (a call being transferred keeps talking)."""
        return defer.maybeDeferred(self._offer_answer, from_side, to_side, sdp, False)

    def answer(self, from_side: str, to_side: str, sdp: bytes) -> defer.Deferred:
        """As `offer`, then pair the two sides: media flows between them on every
        stream the answer accepts; any other side is released."""
        return defer.maybeDeferred(self._offer_answer, from_side, to_side, sdp, True)

    def counters(self) -> dict[str, dict[str, Any]]:
        """By direction (``"a>b"``): packets, bytes, lost, jitter_ms (the worst
        stream's), rtcp_packets, dropped (from unlatched sources), and ``streams``,
        the same per m= line. Directions of released sides are kept."""
        found: dict[str, dict[str, Any]] = {}
        for (source, target), by_index in self._stats.items():
            streams = []
            for index in sorted(by_index):
                figures = by_index[index].as_dict()
                figures["index"] = index
                figures["kind"] = self._kinds[index] if index < len(self._kinds) else "audio"
                streams.append(figures)
            total: dict[str, Any] = {key: sum(s[key] for s in streams)
                                     for key in ("packets", "bytes", "lost", "rtcp_packets", "dropped")}
            total["jitter_ms"] = max((s["jitter_ms"] for s in streams), default=0.0)
            total["streams"] = streams
            found[f"{source}>{target}"] = total
        return found

    def close(self) -> defer.Deferred:
        """Release every port; fires once the sockets are closed. Idempotent."""
        if self.closed:
            return defer.succeed(None)
        self.closed = True
        self._engine._forget(self)
        closing = [self._drop(side) for side in list(self._sides)]
        return defer.DeferredList(closing, consumeErrors=True).addCallback(lambda _: None)

    # -- beyond the interface

    def drop(self, side: str) -> defer.Deferred:
        """Release `side` (e.g. the target of a transfer that failed): its ports go
        back to the pool and its peer stops forwarding. Fires once closed."""
        return self._drop(side)

    def sides(self) -> list[str]:
        """The names of the sides that hold ports."""
        return list(self._sides)

    def ports(self, side: str) -> list[int]:
        """`side`'s RTP ports by m= index (0 where it has none)."""
        return [end.pair.port if end.pair else 0 for end in self._sides.get(side, ())]

    # -- the work

    def _offer_answer(self, from_side: str, to_side: str, body: bytes, answer: bool) -> bytes:
        if self.closed:
            raise MediaUnavailable(f"media session of {self.call_id} is closed")
        if from_side == to_side:
            raise ValueError(f"a side cannot send SDP to itself ({from_side!r})")
        sdp = parse_sdp(body)
        declared = _declare(sdp)
        self._engine._check_loop(declared)
        self._ensure_pairs(from_side, to_side, declared)
        self._note(from_side, declared, sdp.media)
        if answer:
            self._pair(from_side, to_side, declared)
        ends = self._sides[to_side]
        ports = [ends[i].pair.port if d.port else 0 for i, d in enumerate(declared)]
        return bytes(rewrite_media(sdp, self._engine.address, ports))

    def _ends(self, side: str, count: int) -> list[_End]:
        ends = self._sides.setdefault(side, [])
        while len(ends) < count:
            ends.append(_End(side, len(ends)))
        return ends

    def _ensure_pairs(self, from_side: str, to_side: str, declared: list[_Declared]) -> None:
        """Both sides get a port pair for every live stream; all or nothing."""
        new_sides = [s for s in (from_side, to_side) if s not in self._sides]
        taken: list[_End] = []
        try:
            for side in (from_side, to_side):
                ends = self._ends(side, len(declared))
                for d, end in zip(declared, ends, strict=False):
                    if d.port and end.pair is None:
                        end.pair = self._engine._acquire(end)
                        taken.append(end)
        except MediaUnavailable:
            for end in taken:
                self._engine._release(end.pair)
                end.pair = None
            for side in new_sides:
                del self._sides[side]
            raise

    def _note(self, side: str, declared: list[_Declared], media: list[Media]) -> None:
        """Record what `side`'s party declared; a changed address opens its latch."""
        for i, (d, end) in enumerate(zip(declared, self._sides[side], strict=False)):
            if (d.rtp, d.rtcp) != (end.rtp_dest, end.rtcp_dest):
                end.rtp_source = end.rtcp_source = None  # a re-INVITE moved the party
            end.rtp_dest, end.rtcp_dest = d.rtp, d.rtcp
            end.port = d.port
            end.direction = d.direction
            if i >= len(self._kinds):
                self._kinds.append(media[i].kind)

    def _pair(self, a: str, b: str, declared: list[_Declared]) -> None:
        """Make `a` and `b` the forwarding pair on every stream the answer (from
        `a`) accepts; release any other side."""
        for side in [s for s in self._sides if s not in (a, b)]:
            self._drop(side)
        ends_a, ends_b = self._sides[a], self._sides[b]
        for end in ends_a + ends_b:
            end.peer = None
            end.stats = None
        for i, d in enumerate(declared):
            if i >= len(ends_b):
                break
            end_a, end_b = ends_a[i], ends_b[i]
            if not (d.port and end_b.port and end_a.pair and end_b.pair):
                continue  # rejected in the answer, or never offered
            end_a.peer, end_b.peer = end_b, end_a
            end_a.stats = self._stats_for(a, b, i, d.clock_rate)
            end_b.stats = self._stats_for(b, a, i, d.clock_rate)
        self.paired = (a, b)
        self.paired_at = self._engine.clock.seconds()

    def _stats_for(self, source: str, target: str, index: int, rate: int) -> RtpStats:
        by_index = self._stats.setdefault((source, target), {})
        stats = by_index.get(index)
        if stats is None:
            stats = by_index[index] = RtpStats(rate)
        else:
            stats.clock_rate = rate
        return stats

    def _drop(self, side: str) -> defer.Deferred:
        ends = self._sides.pop(side, None)
        if ends is None:
            return defer.succeed(None)
        if self.paired is not None and side in self.paired:
            self.paired = None
        closing = []
        for end in ends:
            if end.peer is not None:
                end.peer.peer = None
                end.peer.stats = None
                end.peer = None
            if end.pair is not None:
                closing.append(self._engine._release(end.pair))
                end.pair = None
        return defer.DeferredList(closing, consumeErrors=True).addCallback(lambda _: None)

    def _silent_for(self, now: float) -> float | None:
        """Seconds since the paired streams last carried a packet (either way, RTP
        or RTCP) or were paired; None when nothing is expected to flow."""
        if self.paired is None:
            return None
        last = self.paired_at
        live = False
        for end in self._sides[self.paired[0]]:
            peer = end.peer
            if peer is None or end.direction == "inactive" or peer.direction == "inactive":
                continue
            live = True
            last = max(last, end.stats.last, peer.stats.last)
        return now - last if live else None


@implementer(IMediaEngine)
class RelayEngine:
    """The relay: a port pool, the sessions, and one clock-driven check of
    `rtp_timeout` for all of them.

    Relay-wide totals, for metrics: `forwarded` packets, and packets dropped because
    they came from an `unlatched` source, reached an `unpaired` end (no peer yet or
    any more), were `malformed` (not RTP/RTCP version 2), or could not be sent
    (`send_errors`)."""

    name = "relay"

    def __init__(self, reactor: Any, address: str = "127.0.0.1",
                 ports: tuple[int, int] = (30000, 30999), rtp_timeout: float = 60.0) -> None:
        self.clock = reactor
        self.address = address
        self.port_range = ports
        self.rtp_timeout = rtp_timeout
        self.pool: PortPool | None = None
        self.sessions: dict[str, RelaySession] = {}
        self.forwarded = 0
        self.unlatched = 0
        self.unpaired = 0
        self.malformed = 0
        self.send_errors = 0
        self._checker: task.LoopingCall | None = None

    def start(self) -> defer.Deferred:
        """Check the port range and start the timeout check; fail with ValueError
        naming what is wrong with the range."""
        try:
            check_range(*self.port_range)
        except (TypeError, ValueError) as e:
            return defer.fail(ValueError(f"media relay: {e}"))
        if self.pool is None:
            self.pool = PortPool(self.clock, self.address, *self.port_range)
        if self.rtp_timeout > 0 and self._checker is None:
            self._checker = task.LoopingCall(self._check_timeouts)
            self._checker.clock = self.clock
            self._checker.start(min(5.0, self.rtp_timeout / 4), now=False)
        return defer.succeed(None)

    def session(self, call_id: str, on_timeout: Callable[[], Any]) -> RelaySession:
        """A new session for `call_id`; MediaUnavailable when the pool cannot give
        both sides a pair."""
        if self.pool is None:
            raise RuntimeError("the media relay is not started")
        if call_id in self.sessions:
            raise ValueError(f"a media session for {call_id!r} exists already")
        if self.pool.free < 2:
            raise self.pool.refuse()
        session = self.sessions[call_id] = RelaySession(self, call_id, on_timeout)
        return session

    def stop(self) -> defer.Deferred:
        """Close every session; fires once their sockets are closed."""
        if self._checker is not None and self._checker.running:
            self._checker.stop()
        self._checker = None
        closing = [s.close() for s in list(self.sessions.values())]
        return defer.DeferredList(closing, consumeErrors=True).addCallback(lambda _: None)

    def totals(self) -> dict[str, int]:
        """Relay-wide figures for metrics."""
        pool = self.pool
        return {
            "sessions": len(self.sessions),
            "forwarded": self.forwarded,
            "unlatched": self.unlatched,
            "unpaired": self.unpaired,
            "malformed": self.malformed,
            "send_errors": self.send_errors,
            "port_pairs": pool.size if pool else 0,
            "port_pairs_in_use": pool.in_use if pool else 0,
            "refused": pool.refused if pool else 0,
        }

    # -- for the sessions

    def _acquire(self, end: _End) -> PortPair:
        assert self.pool is not None
        return self.pool.acquire(partial(_RtpPort, self, end), partial(_RtcpPort, self, end))

    def _release(self, pair: PortPair) -> defer.Deferred:
        assert self.pool is not None
        return self.pool.release(pair)

    def _check_loop(self, declared: list[_Declared]) -> None:
        """Refuse SDP that names one of our own ports (SDP we rewrote, handed back
        to us): forwarding there would send the relay's packets to itself."""
        assert self.pool is not None
        for d in declared:
            if d.rtp is not None and d.rtp[0] == self.address and d.rtp[1] in self.pool.bound:
                raise ValueError(f"SDP names the relay's own port {d.rtp[1]}: rewritten SDP given back")

    def _forget(self, session: RelaySession) -> None:
        if self.sessions.get(session.call_id) is session:
            del self.sessions[session.call_id]

    def _check_timeouts(self) -> None:
        now = self.clock.seconds()
        for session in list(self.sessions.values()):
            if session.timed_out:
                continue
            silent = session._silent_for(now)
            if silent is None or silent < self.rtp_timeout:
                continue
            session.timed_out = True
            log.info("no media on call {callID} for {seconds:.0f} s: ending it",
                     callID=session.call_id, seconds=silent)
            try:
                session._on_timeout()
            except Exception:
                log.failure("rtp_timeout handler of call {callID}", callID=session.call_id)
