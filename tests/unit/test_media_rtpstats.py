"""RtpStats: packets, bytes, loss (RFC 3550 A.1/A.3) and jitter (A.8) from known sequences."""

from __future__ import annotations

import struct

import pytest

from phpvoip.media.rtpstats import RtpStats

SSRC = 0x11223344


def packet(seq: int, ts: int = 0, ssrc: int = SSRC, payload: int = 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + b"\xff" * payload


def feed(stats: RtpStats, seqs: list[int], ssrc: int = SSRC) -> None:
    """Packets 20 ms apart, timestamps in step with their sequence numbers."""
    for n, seq in enumerate(seqs):
        stats.rtp(packet(seq, seq * 160, ssrc), 100.0 + n * 0.02)


def test_counts_packets_and_bytes():
    """Every packet counts once with its whole length (header included)."""
    stats = RtpStats()
    feed(stats, [1, 2, 3])
    assert (stats.packets, stats.bytes, stats.lost) == (3, 3 * 172, 0)
    assert stats.last == pytest.approx(100.04)


def test_no_packet_no_loss():
    """A stream that never carried a packet has lost nothing and has no jitter."""
    stats = RtpStats()
    assert (stats.lost, stats.jitter_ms) == (0, 0.0)
    assert stats.as_dict() == {"packets": 0, "bytes": 0, "lost": 0, "jitter_ms": 0.0,
                               "rtcp_packets": 0, "dropped": 0}


@pytest.mark.parametrize(("seqs", "lost"), [
    ([0, 1, 2, 4, 5, 6, 8, 9], 2),  # 3 and 7 missing
    ([0, 1, 3, 2, 4], 0),  # reordered, nothing missing
    ([0, 1, 3, 4, 2], 0),  # late by two
    ([0, 1, 1, 2, 2, 3], 0),  # duplicates never make the loss negative
    ([10, 12, 11], 0),
    ([65530, 65531, 65532, 65533, 65535, 0, 2, 3], 2),  # 65534 and 1 lost across the wrap
    ([65534, 65535, 0, 1, 2], 0),  # a clean wrap
    (list(range(65000, 65536)) + list(range(0, 600)), 0),  # wraps once, in order
    ([5, 6, 9], 2),
])
def test_loss_from_sequence_numbers(seqs, lost):
    """Lost = extended highest minus base plus one minus received (RFC 3550 A.3), never < 0."""
    stats = RtpStats()
    feed(stats, seqs)
    assert stats.lost == lost
    assert stats.packets == len(seqs)


def test_two_wraps_count_lost_packets_in_both_cycles():
    """The extended sequence number keeps counting past several wraps."""
    seqs = [s & 0xFFFF for s in range(0, 2 * 65536 + 10) if s not in (100, 70000, 131000)]
    stats = RtpStats()
    feed(stats, seqs)
    assert stats.lost == 3


def test_restarted_sequence_is_not_counted_as_lost():
    """A jump of thousands is believed on the second packet in a row (A.1): not 20,000 lost."""
    stats = RtpStats()
    feed(stats, [0, 1, 2, 3, 4, 20000, 20001, 20002, 20004])
    assert stats.lost == 1  # only 20003
    assert stats.packets == 9


def test_one_stray_jump_is_ignored():
    """A single far-off packet does not move the sequence; the stream goes on."""
    stats = RtpStats()
    feed(stats, [0, 1, 2, 40000, 3, 4, 5])
    assert stats.lost == 0


def test_new_ssrc_keeps_the_loss_of_the_old_one():
    """A new source (e.g. after a transfer) starts its own sequence; earlier loss stays."""
    stats = RtpStats()
    feed(stats, [0, 1, 3, 4], ssrc=1)  # 2 lost
    feed(stats, [5000, 5001, 5003], ssrc=2)  # 5002 lost
    assert stats.lost == 2
    assert stats.packets == 7


def test_jitter_against_a_hand_computed_rfc3550_example():
    """J += (|D| - J)/16 with D = (Rj - Ri) - (Sj - Si): arrivals 0, 20, 45, 60, 80 ms,
    timestamps 160 apart at 8 kHz give D = 0, 40, -40, 0 and J = 0, 2.5, 4.84375,
    4.541015625 timestamp units = 0.567626953125 ms."""
    stats = RtpStats(8000)
    for seq, arrival in enumerate([0.0, 0.020, 0.045, 0.060, 0.080]):
        stats.rtp(packet(seq, 1000 + seq * 160), 5000.0 + arrival)
        expected = {0: 0.0, 1: 0.0, 2: 2.5, 3: 4.84375, 4: 4.541015625}[seq]
        assert stats._jitter == pytest.approx(expected, abs=1e-6)
    assert stats.jitter_ms == pytest.approx(0.567626953125, abs=1e-6)


def test_steady_stream_has_no_jitter():
    """Packets arriving exactly as they were stamped: jitter stays zero."""
    stats = RtpStats()
    feed(stats, list(range(500)))
    assert stats.jitter_ms == pytest.approx(0.0, abs=1e-6)


def test_jitter_survives_a_timestamp_wrap():
    """The 32-bit timestamp wraps between two packets: the difference is still 160."""
    stats = RtpStats()
    stats.rtp(packet(1, 0xFFFFFFFF - 100), 10.0)
    stats.rtp(packet(2, 59), 10.02)
    assert stats.jitter_ms == pytest.approx(0.0, abs=1e-6)


def test_jitter_in_ms_uses_the_clock_rate():
    """The same 10 ms of irregularity reads the same in ms at 8 kHz and 48 kHz."""
    results = []
    for rate in (8000, 48000):
        stats = RtpStats(rate)
        step = rate // 50
        for seq, arrival in enumerate([0.0, 0.030, 0.040]):
            stats.rtp(packet(seq, seq * step), arrival)
        results.append(stats.jitter_ms)
    assert results[0] == pytest.approx(results[1], rel=1e-6)
    assert results[0] == pytest.approx((10 / 16) + (10 - 10 / 16) / 16, rel=1e-6)
