"""DTMF: RFC 4733 events counted once through every loss RTP allows, and SIP INFO bodies."""

from __future__ import annotations

import struct

import pytest
from twisted.internet.task import Clock

from phpvoip.media.dtmf import DtmfReceiver, dtmf_payloads, event_code, parse_info_dtmf
from phpvoip.media.rtp import RtpPacket

PT = 101


class Stream:
    """A sender of telephone-events: numbers packets and stamps each event's start."""

    def __init__(self, start_ts: int = 1000) -> None:
        self.sequence = 0
        self.timestamp = start_ts

    def packets(self, digit: str, duration_ms: int = 100) -> list[RtpPacket]:
        out = []
        for payload, marker, _end in dtmf_payloads(digit, duration_ms):
            out.append(RtpPacket(PT, self.sequence, self.timestamp, 0x1234, payload, marker=marker))
            self.sequence += 1
        self.timestamp += duration_ms * 8 + 800  # 100 ms gap before the next press
        return out


def receiver(clock: Clock | None = None):
    clock = clock or Clock()
    got: list[tuple[str, int]] = []
    rx = DtmfReceiver(clock, lambda digit, ms: got.append((digit, ms)))
    return clock, rx, got


def test_every_digit_with_triple_end_packets_is_reported_once():
    """'0123456789*#' sent as RFC 4733 prescribes comes out as exactly those digits."""
    clock, rx, got = receiver()
    stream = Stream()
    for digit in "0123456789*#":
        for packet in stream.packets(digit):
            rx.feed(packet)
            clock.advance(0.02)
    assert got == [(d, 100) for d in "0123456789*#"]
    clock.advance(5)
    assert len(got) == 12 and clock.getDelayedCalls() == []


def test_one_end_packet_lost_changes_nothing():
    """Losing the first (or any one) end packet still gives each digit once, with its duration."""
    for lost in (-3, -2, -1):
        clock, rx, got = receiver()
        stream = Stream()
        for digit in "0123456789*#ABCD":
            packets = stream.packets(digit, 160)
            del packets[lost]
            for packet in packets:
                rx.feed(packet)
                clock.advance(0.02)
        assert got == [(d, 160) for d in "0123456789*#ABCD"], lost


def test_all_end_packets_lost_reports_at_the_next_event():
    """With every end packet of '1' lost, '1' is told when '2' starts, before '2'."""
    clock, rx, got = receiver()
    stream = Stream()
    for packet in stream.packets("1")[:-3]:
        rx.feed(packet)
    assert got == []
    for packet in stream.packets("2"):
        rx.feed(packet)
    assert got == [("1", 80), ("2", 100)]  # '1' lasted as long as its last update said


def test_all_end_packets_lost_reports_after_the_timeout():
    """With no end packet and nothing after, the digit comes end_timeout after its last packet."""
    clock, rx, got = receiver()
    for packet in Stream().packets("5", 200)[:-3]:
        rx.feed(packet)
        clock.advance(0.02)
    clock.advance(0.45)
    assert got == []
    clock.advance(0.05)
    assert got == [("5", 180)]
    assert clock.getDelayedCalls() == []


def test_the_end_packet_cancels_the_timeout():
    """A digit ended normally leaves no timer behind and is not told again later."""
    clock, rx, got = receiver()
    for packet in Stream().packets("7"):
        rx.feed(packet)
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert got == [("7", 100)]


def test_a_long_press_is_one_digit_with_its_duration():
    """Three seconds of updates are one '#' lasting 3000 ms."""
    clock, rx, got = receiver()
    for packet in Stream().packets("#", 3000):
        rx.feed(packet)
        clock.advance(0.02)
    assert got == [("#", 3000)]


def test_a_press_longer_than_one_segment_is_one_digit():
    """Past 65535 units the sender starts a new segment where the old one ends: still one digit."""
    clock, rx, got = receiver()
    code = event_code("9")

    def packet(seq: int, ts: int, duration: int, end: bool = False) -> RtpPacket:
        return RtpPacket(PT, seq, ts, 1, struct.pack("!BBH", code, 0x80 * end | 10, duration))

    rx.feed(packet(0, 0, 160))
    rx.feed(packet(1, 0, 0xFFFF))
    rx.feed(packet(2, 0xFFFF, 160))
    rx.feed(packet(3, 0xFFFF, 8000, end=True))
    rx.feed(packet(4, 0xFFFF, 8000, end=True))
    assert got == [("9", (0xFFFF + 8000) // 8)]


def test_out_of_order_and_duplicated_packets_do_not_repeat_a_digit():
    """Updates arriving after the end, duplicates and reordering are all one digit."""
    clock, rx, got = receiver()
    stream = Stream()
    first = stream.packets("3")
    second = stream.packets("4")
    order = [first[0], first[2], first[1], first[4], first[3], first[1], first[6], first[5],
             second[0], first[3], second[1], second[1], second[4], first[4], second[2], second[6]]
    for packet in order:
        rx.feed(packet)
    assert got == [("3", 100), ("4", 100)]
    clock.advance(5)
    assert got == [("3", 100), ("4", 100)]


def test_the_same_digit_twice_is_two_digits():
    """Pressing '1' twice gives two '1's: events differ by timestamp, not by digit."""
    clock, rx, got = receiver()
    stream = Stream()
    for packet in stream.packets("1") + stream.packets("1"):
        rx.feed(packet)
    assert got == [("1", 100), ("1", 100)]


def test_non_digit_events_and_short_payloads_are_ignored():
    """Events above 16 (RFC 4734 tones) and truncated payloads are not digits."""
    clock, rx, got = receiver()
    rx.feed(RtpPacket(PT, 0, 0, 1, struct.pack("!BBH", 32, 0x8A, 800)))
    rx.feed(RtpPacket(PT, 1, 160, 1, b"\x01\x8a"))
    clock.advance(1)
    assert got == []


def test_flash_is_reported_as_bang():
    """Event 16 (hook flash) is '!'."""
    clock, rx, got = receiver()
    for packet in Stream().packets("!"):
        rx.feed(packet)
    assert got == [("!", 100)]


def test_close_drops_a_pending_digit_and_its_timer():
    """After close nothing fires."""
    clock, rx, got = receiver()
    for packet in Stream().packets("8")[:-3]:
        rx.feed(packet)
    rx.close()
    clock.advance(2)
    assert got == [] and clock.getDelayedCalls() == []


def test_payloads_for_sending():
    """100 ms at 20 ms: marker first, updates 160..640, then three ends at 800, volume kept."""
    payloads = dtmf_payloads("5", 100, volume=10)
    fields = [struct.unpack("!BBH", p) for p, _m, _e in payloads]
    assert fields == [(5, 10, 160), (5, 10, 320), (5, 10, 480), (5, 10, 640)] + [(5, 0x8A, 800)] * 3
    assert [m for _p, m, _e in payloads] == [True] + [False] * 6
    assert [e for _p, _m, e in payloads] == [False] * 4 + [True] * 3


def test_a_digit_shorter_than_a_packet_is_only_its_ends():
    """A 10 ms digit is three end packets, the first carrying the marker."""
    payloads = dtmf_payloads("*", 10)
    assert [(struct.unpack("!BBH", p), m, e) for p, m, e in payloads] == [
        ((10, 0x8A, 80), True, True), ((10, 0x8A, 80), False, True), ((10, 0x8A, 80), False, True)]


@pytest.mark.parametrize(
    ("args", "message"),
    [(("x",), "not a DTMF digit"), (("12",), "not a DTMF digit"), (("1", 100, 64), "volume"),
     (("1", 0), "positive"), (("1", 9000), "longer than one event")],
)
def test_impossible_digits_are_refused(args, message):
    """Unknown digits, volumes past 63 and durations that do not fit are errors."""
    with pytest.raises(ValueError, match=message):
        dtmf_payloads(*args)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", ("5", 160)),
        ("Application/DTMF-Relay; charset=utf-8", b"Signal= #\nDuration= 100", ("#", 100)),
        ("application/dtmf-relay", b"Signal=*\r\n", ("*", 250)),
        ("application/dtmf-relay", b"Signal=10\r\nDuration=200", ("*", 200)),
        ("application/dtmf-relay", b"Signal=11\r\nDuration=200", ("#", 200)),
        ("application/dtmf-relay", b"signal=a\r\nduration=x", ("A", 250)),
        ("application/dtmf-relay", b"Duration=160", None),
        ("application/dtmf-relay", b"Signal=Z\r\nDuration=160", None),
        ("application/dtmf-relay", b"Signal=55", None),
        ("application/dtmf", b"5", ("5", 250)),
        ("application/dtmf", b"#\r\n", ("#", 250)),
        ("application/dtmf", b"", None),
        ("application/dtmf", b"55", None),
        ("application/sdp", b"v=0", None),
        ("text/plain", b"5", None),
    ],
)
def test_info_bodies(content_type, body, expected):
    """dtmf-relay and dtmf bodies give their digit and duration; anything else None."""
    assert parse_info_dtmf(content_type, body) == expected


def test_the_tail_of_a_digit_pressed_before_the_receiver_is_not_a_digit():
    """A call handed from one application to another on a key (the attendant's 7, a
    queue's exit 0) brings the new receiver that key's repeated end packets: the
    event began before this receiver listened, so it is the previous one's digit.
    The next press is reported as usual."""
    clock = Clock()
    clock.advance(10.0)
    stream = Stream()
    packets = stream.packets("0", 180)
    # the first receiver took the first end packet; this one is made just then
    _, rx, got = receiver(clock)
    for packet in packets[-2:]:
        clock.advance(0.02)
        rx.feed(packet)
    clock.advance(5)
    assert got == []
    for packet in stream.packets("1", 100):
        rx.feed(packet)
        clock.advance(0.02)
    assert got == [("1", 100)]


def test_an_end_only_digit_pressed_after_the_receiver_began_is_reported():
    """Every update of a press lost, only its end packets arrive: the press began
    after the receiver was made, so it is a digit."""
    clock = Clock()
    _, rx, got = receiver(clock)
    clock.advance(1.0)
    stream = Stream()
    packets = stream.packets("5", 200)
    clock.advance(0.2)  # the press lasted 200 ms, its updates were lost
    for packet in packets[-3:]:
        rx.feed(packet)
        clock.advance(0.02)
    assert got == [("5", 200)]
