"""What the relay measures of one stream in one direction: packets, bytes, packets
lost and interarrival jitter, after RFC 3550 appendices A.1, A.3 and A.8.

One `RtpStats` per direction and stream; `rtp()` runs for every forwarded packet,
so it reads the 12-byte header with one ``unpack_from`` and updates plain numbers
in place (no object is made per packet beyond what ``unpack_from`` returns).
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["RtpStats"]

# RFC 3550 A.1: a jump forward of fewer than MAX_DROPOUT is packets lost, a step
# back of fewer than MAX_MISORDER a late packet; anything else is the sender
# restarting its sequence, believed on the second packet in a row.
MAX_DROPOUT = 3000
MAX_MISORDER = 100
SEQ_MOD = 1 << 16

_SEQ_TS_SSRC = struct.Struct("!HII")  # after the first two octets of the header

class RtpStats:
    """Counters of one direction of one stream, updated as packets pass."""

    __slots__ = (
        "packets", "bytes", "rtcp_packets", "dropped", "clock_rate", "last",
        "_ssrc", "_base_seq", "_max_seq", "_cycles", "_received", "_bad_seq", "_lost_before",
        "_last_arrival", "_last_ts", "_jitter",
    )

    def __init__(self, clock_rate: int = 8000) -> None:
        self.packets = 0  # RTP packets forwarded
        self.bytes = 0  # their UDP payload octets
        self.rtcp_packets = 0
        self.dropped = 0  # packets from a source other than the latched one
        self.clock_rate = clock_rate
        self.last = 0.0  # reactor time of the last RTP or RTCP packet
        self._ssrc = -1  # no packet yet
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0  # sequence wraps seen, times 65536
        self._received = 0  # packets counted for loss since the sequence (re)started
        self._bad_seq = -1
        self._lost_before = 0  # losses of earlier sequences (SSRC changes, restarts)
        self._last_arrival = 0.0
        self._last_ts = -1  # -1: no packet yet to take a transit difference against
        self._jitter = 0.0  # in timestamp units, RFC 3550 A.8

    def rtp(self, data: bytes, now: float) -> None:
        """Count one RTP packet (at least 12 octets) that arrived at `now` seconds."""
        self.packets += 1
        self.bytes += len(data)
        self.last = now
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        if ssrc != self._ssrc:
            self._restart(seq)
            self._ssrc = ssrc
        else:
            # RFC 3550 A.1 update_seq(), without the probation of a new source:
            # the relay counts from the first packet it forwards.
            udelta = (seq - self._max_seq) & 0xFFFF
            if udelta < MAX_DROPOUT:
                if seq < self._max_seq:
                    self._cycles += SEQ_MOD
                self._max_seq = seq
            elif udelta <= SEQ_MOD - MAX_MISORDER:
                if seq != self._bad_seq:
                    # "the sequence number made a very large jump": wait for the next
                    # packet before believing it; this one counts for neither loss nor jitter
                    self._bad_seq = (seq + 1) & 0xFFFF
                    return
                self._restart(seq)  # two in a row: the sender restarted its sequence
            # else: a duplicate or a late packet; it is received, the highest stays
        self._received += 1
        # RFC 3550 A.8: D(i-1,i) = (Rj - Ri) - (Sj - Si), J += (|D| - J) / 16, in
        # timestamp units. Taken as differences so that the 32-bit timestamp may wrap
        # and the arrival time keeps its precision.
        last_ts = self._last_ts
        if last_ts >= 0:
            sent = (ts - last_ts) & 0xFFFFFFFF
            if sent >= 0x80000000:
                sent -= 0x100000000
            d = (now - self._last_arrival) * self.clock_rate - sent
            if d < 0:
                d = -d
            self._jitter += (d - self._jitter) / 16.0
        self._last_ts = ts
        self._last_arrival = now

    def _restart(self, seq: int) -> None:
        """RFC 3550 A.1 init_seq(), keeping what the sequence before had lost."""
        if self._ssrc != -1:
            self._lost_before += self._lost_now()
        self._base_seq = seq
        self._max_seq = seq
        self._cycles = 0
        self._received = 0
        self._bad_seq = -1
        self._last_ts = -1  # a new sequence has new timestamps: no transit difference across

    def _lost_now(self) -> int:
        if self._ssrc == -1:
            return 0
        expected = self._cycles + self._max_seq - self._base_seq + 1
        lost = expected - self._received  # RFC 3550 A.3; duplicates can make it negative
        return lost if lost > 0 else 0

    @property
    def lost(self) -> int:
        """Packets the sender sent that never came (RFC 3550 A.3), never negative."""
        return self._lost_before + self._lost_now()

    @property
    def jitter_ms(self) -> float:
        """The interarrival jitter estimate (RFC 3550 A.8) in milliseconds."""
        return self._jitter * 1000.0 / self.clock_rate

    def as_dict(self) -> dict[str, Any]:
        """The figures, as `IMediaSession.counters` reports them."""
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "lost": self.lost,
            "jitter_ms": round(self.jitter_ms, 3),
            "rtcp_packets": self.rtcp_packets,
            "dropped": self.dropped,
        }
