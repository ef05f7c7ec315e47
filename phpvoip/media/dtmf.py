"""DTMF digits: RFC 4733 telephone-events in RTP, and SIP INFO bodies.

A digit pressed on a phone arrives as a run of RTP packets sharing one timestamp
(the event's start): updates with a growing duration, then an end packet (E bit)
that the sender repeats three times because RTP may lose any of them. The receiver
reports each event once, at its first end packet, and copes with the losses RTP
allows: when every end packet is lost, the next event or a quiet `end_timeout`
closes it.

A receiver hears only what arrives after it was made. When a call moves from one
application to another on a digit (an attendant's menu key, a queue's exit key),
the first application acted on the first end packet and the second one's receiver
gets the repeats: an event that it first meets at its end, and that by its
duration began before the receiver listened, is someone else's digit and is not
reported.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from phpvoip.media.rtp import TIMESTAMP_MOD, RtpPacket

__all__ = ["DtmfReceiver", "EVENTS", "dtmf_payloads", "event_code", "parse_info_dtmf"]

# RFC 4733 §3.2, Table 7: events 0-9 are the digits, 10 '*', 11 '#', 12-15 A-D,
# 16 is flash (hook flash), written '!' as SIP INFO bodies and Asterisk do.
EVENTS = "0123456789*#ABCD!"
_CODES = {digit: code for code, digit in enumerate(EVENTS)}
_EVENT = struct.Struct("!BBH")  # event, E|R|volume, duration
_END = 0x80
_MAX_DURATION = 0xFFFF
_REMEMBERED = 16  # timestamps of events already reported, to drop their late packets
# How much earlier than the receiver's birth an end-only event must have begun to be
# taken as a previous listener's (packets arrive late by jitter, never early).
_BEFORE_US = 0.05

DigitCallback = Callable[[str, int], object]


def event_code(digit: str) -> int:
    """The RFC 4733 event number of `digit` (one of 0-9 * # A-D !)."""
    code = _CODES.get(digit.upper()) if len(digit) == 1 else None
    if code is None:
        raise ValueError(f"{digit!r} is not a DTMF digit (0-9 * # A-D !)")
    return code


class _Event:
    __slots__ = ("timestamp", "code", "duration", "base")

    def __init__(self, timestamp: int, code: int, duration: int) -> None:
        self.timestamp = timestamp
        self.code = code
        self.duration = duration
        self.base = 0  # units carried over from earlier segments of a very long press


class DtmfReceiver:
    """Turns telephone-event packets of one RTP stream into digits, each once.

    `on_digit(digit, duration_ms)` is called for every event; `clock` arms the
    end timeout (one delayed call at most, reset by each packet of the event)."""

    __slots__ = ("_clock", "_on_digit", "_end_timeout", "_rate", "_current", "_reported", "_timer", "_born")

    def __init__(
        self, clock: IReactorTime, on_digit: DigitCallback, end_timeout: float = 0.5, rate: int = 8000
    ) -> None:
        self._clock = clock
        self._on_digit = on_digit
        self._end_timeout = end_timeout
        self._rate = rate
        self._current: _Event | None = None
        self._reported: deque[int] = deque(maxlen=_REMEMBERED)
        self._timer: IDelayedCall | None = None
        self._born = clock.seconds()

    def feed(self, packet: RtpPacket) -> None:
        """Take one RTP packet whose payload type is telephone-event."""
        if len(packet.payload) < _EVENT.size:
            return
        code, flags, duration = _EVENT.unpack_from(packet.payload)
        if code >= len(EVENTS):
            return  # tones and line events (RFC 4734) are not digits
        timestamp = packet.timestamp
        if timestamp in self._reported:
            return  # a redundant end packet, or a late update of an event already told
        current = self._current
        if current is not None and current.timestamp != timestamp:
            if (
                current.code == code
                and current.duration > _MAX_DURATION // 2
                and (timestamp - current.timestamp) % TIMESTAMP_MOD == current.duration
            ):
                # RFC 4733 §2.5.1.3: an event longer than the 16-bit duration goes on
                # in a new segment, timestamped where the previous one ends. (Only a
                # long segment is taken as continued: two presses never touch.)
                self._reported.append(current.timestamp)
                base = current.base + current.duration
                current = self._current = _Event(timestamp, code, duration)
                current.base = base
            else:
                self._finish()  # its end packets were all lost
                current = None
        if current is None:
            if flags & _END and self._clock.seconds() - duration / self._rate < self._born - _BEFORE_US:
                # The tail of a digit pressed before we listened (another receiver told it).
                self._reported.append(timestamp)
                return
            current = self._current = _Event(timestamp, code, duration)
        elif duration > current.duration:
            current.duration = duration  # out-of-order updates never shrink it
        if flags & _END:
            self._finish()
        elif self._timer is None:
            self._timer = self._clock.callLater(self._end_timeout, self._timed_out)
        else:
            self._timer.reset(self._end_timeout)

    def _timed_out(self) -> None:
        self._timer = None
        self._finish()

    def _finish(self) -> None:
        """Report the current event and forget it."""
        current, self._current = self._current, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if current is None:
            return
        self._reported.append(current.timestamp)
        duration_ms = (current.base + current.duration) * 1000 // self._rate
        self._on_digit(EVENTS[current.code], duration_ms)

    def close(self) -> None:
        """Stop the end timeout; a digit still waiting for its end is dropped."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._current = None


def dtmf_payloads(
    digit: str, duration_ms: int = 100, volume: int = 10, packet_ms: int = 20, rate: int = 8000
) -> list[tuple[bytes, bool, bool]]:
    """The telephone-event payloads that send `digit`: ``(payload, marker, is_end)``.

    They are sent `packet_ms` apart with one RTP timestamp (the event's start):
    the first with the marker bit, updates with the duration so far, then the
    end packet three times with the final duration (RFC 4733 §2.5.1.4)."""
    code = event_code(digit)
    if not 0 <= volume <= 63:
        raise ValueError(f"DTMF volume {volume} is outside 0-63 (-dBm0)")
    if packet_ms <= 0 or duration_ms <= 0:
        raise ValueError("DTMF duration and packet interval must be positive")
    total = duration_ms * rate // 1000
    step = packet_ms * rate // 1000
    if total > _MAX_DURATION:
        raise ValueError(f"DTMF duration {duration_ms} ms is longer than one event can say")
    out = [(_EVENT.pack(code, volume, elapsed), False, False) for elapsed in range(step, total, step)]
    end = _EVENT.pack(code, _END | volume, total)
    out.extend((end, False, True) for _ in range(3))
    first = out[0]
    out[0] = (first[0], True, first[2])
    return out


_DEFAULT_INFO_MS = 250  # what Cisco and Asterisk assume when a body gives no Duration


def parse_info_dtmf(content_type: str, body: bytes) -> tuple[str, int] | None:
    """The digit and duration (ms) in a SIP INFO body, or None if it holds none.

    ``application/dtmf-relay`` bodies are lines like ``Signal=5`` and
    ``Duration=160``; ``application/dtmf`` bodies are the digit alone. Some phones
    write the event number (``Signal=10`` for '*'), which is accepted too."""
    kind = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", "replace").strip()
    duration = _DEFAULT_INFO_MS
    if kind == "application/dtmf-relay":
        signal = None
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if not sep:
                continue
            name, value = name.strip().lower(), value.strip()
            if name == "signal":
                signal = value
            elif name == "duration" and value.isascii() and value.isdigit():
                duration = int(value)
        if signal is None:
            return None
    elif kind == "application/dtmf":
        signal = text
    else:
        return None
    if signal.isascii() and signal.isdigit() and 10 <= int(signal) < len(EVENTS):
        return EVENTS[int(signal)], duration
    if len(signal) == 1 and signal.upper() in _CODES:
        return signal.upper(), duration
    return None
