"""The arithmetic of bench/queue_wait.py: inter-arrival jitter, RFC 3550 J, and loss
counted from the RTP timestamps, on packets and arrival times made up here."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from queue_wait import Caller  # bench/ is not a package


def _packet(seq: int, ts: int, marker: bool = False, payload: bytes = b"\x10" * 160) -> bytes:
    header = struct.pack("!BBHI", 0x80, 0x80 if marker else 0, seq & 0xFFFF, ts & 0xFFFFFFFF)
    return header + bytes(4) + payload


def test_a_perfectly_paced_stream_has_no_jitter_nor_loss() -> None:
    """Packets 20 ms apart whose timestamps step 160: every deviation 0, J 0, none lost."""
    caller = Caller()
    for i in range(100):
        caller.arrived(10.0 + 0.020 * i, _packet(i, 1000 + 160 * i))
    assert caller.received == caller.expected() == 100
    assert max(caller.deviations) == pytest.approx(0.0, abs=1e-6)
    assert caller.jitter == pytest.approx(0.0, abs=1e-9)
    assert caller.audible == 100


def test_a_late_packet_counts_twice_and_j_smooths_it() -> None:
    """One packet 4 ms late: its deviation and the next one's are 4 ms; J rises by 1/16 of each."""
    caller = Caller()
    times = [0.000, 0.020, 0.044, 0.060, 0.080]
    for i, t in enumerate(times):
        caller.arrived(t, _packet(i, 160 * i))
    assert list(caller.deviations) == pytest.approx([0.0, 4.0, 4.0, 0.0], abs=1e-6)
    j = 0.0
    for d in (0.0, 0.004, 0.004, 0.0):
        j += (d - j) / 16
    assert caller.jitter == pytest.approx(j)


def test_a_skipped_frame_is_loss_even_without_a_sequence_gap() -> None:
    """The sender skipped a frame (timestamp +320, sequence +1): one packet lost, no jitter."""
    caller = Caller()
    stamps = [0, 160, 480, 640]  # 320 after the second: a frame never sent
    for seq, (t, ts) in enumerate(zip((0.0, 0.02, 0.06, 0.08), stamps, strict=True)):
        caller.arrived(t, _packet(seq, ts))
    assert (caller.received, caller.expected()) == (4, 5)
    assert max(caller.deviations) == pytest.approx(0.0, abs=1e-6)


def test_timestamp_wrap_marker_and_silence() -> None:
    """Timestamps wrapping at 2**32 still step 160; a marker packet starts a talk spurt
    (no deviation); digital silence is not audible."""
    caller = Caller()
    start = 0xFFFFFFFF - 200
    caller.arrived(0.0, _packet(1, start, payload=b"\xff" * 160))
    caller.arrived(0.020, _packet(2, start + 160))
    caller.arrived(0.100, _packet(3, start + 800, marker=True))
    assert caller.expected() == 6 and caller.received == 3
    assert len(caller.deviations) == 1 and caller.markers == 1
    assert caller.audible == 2
