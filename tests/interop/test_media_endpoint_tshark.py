"""The application endpoint's RTP on the wire, read back by tshark (another decoder than ours).

An endpoint and a far-end socket talk over 127.0.0.1 while tshark captures the far
end's port. tshark's RTP stream analysis must see one stream with no loss and no
sequence errors, paced at 20 ms, and its telephone-event dissector must read the
digits we sent (one timestamp per event, marker first, three end packets). The far
end's audio and digits, sent the other way, must be recorded and reported.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import task, utils
from twisted.internet.protocol import DatagramProtocol

from phpvoip.media.dtmf import dtmf_payloads
from phpvoip.media.endpoint import RtpEndpoint
from phpvoip.media.g711 import ulaw_decode, ulaw_encode
from phpvoip.media.rtp import build_rtp
from phpvoip.media.tones import tone
from phpvoip.media.wav import read_wav
from tests.support import LOOPBACK, free_port, require_program

TIMEOUT = 10.0


class FarEnd(DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.count += 1


def offer(port: int) -> bytes:
    lines = ["v=0", f"o=far 1 1 IN IP4 {LOOPBACK}", "s=-", f"c=IN IP4 {LOOPBACK}", "t=0 0",
             f"m=audio {port} RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16",
             "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()


async def wait_until(reactor: Any, check, what: str) -> None:
    for _ in range(int(TIMEOUT / 0.02)):
        if check():
            return
        await task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


async def tshark_fields(tshark: str, pcap: Path, port: int, display: str, *fields: str) -> list[list[str]]:
    args = ["-r", str(pcap), "-d", f"udp.port=={port},rtp", "-Y", display, "-T", "fields"]
    for field in fields:
        args += ["-e", field]
    out, err, code = await utils.getProcessOutputAndValue(tshark, args)
    assert code == 0, err.decode(errors="replace")
    return [line.split("\t") for line in out.decode().splitlines()]


@pytest_twisted.ensureDeferred
async def test_tshark_reads_our_stream_and_digits(reactor, peers, tmp_path):
    """One lossless 20 ms PCMU stream with events '1' and '#' as RFC 4733 says; the far
    end's audio is recorded and its digits reported."""
    tshark = require_program("tshark")
    port = free_port()
    pcap = tmp_path / "rtp.pcapng"
    capture = peers.start([tshark, "-i", "lo", "-f", f"udp port {port}", "-w", str(pcap)], deadline=30)
    await wait_until(reactor, lambda: "Capturing on" in capture.output, "tshark to start capturing")

    far = FarEnd()
    far_port = reactor.listenUDP(port, far, interface=LOOPBACK)
    endpoint = RtpEndpoint(reactor, LOOPBACK, lambda: 0)
    digits: list[str] = []
    endpoint.on_dtmf = lambda digit, ms: digits.append(digit)
    try:
        endpoint.answer(offer(port))
        endpoint.record(tmp_path / "heard.wav")
        await wait_until(reactor, lambda: far.count >= 5, "the endpoint's first packets")
        sent = endpoint.send_dtmf("1#")
        target = (LOOPBACK, endpoint.port)
        spoken = tone((500.0,), 0.1)
        for n in range(5):
            frame = ulaw_encode(spoken[320 * n : 320 * (n + 1)])
            far_port.write(build_rtp(0, n, 160 * n, 7, frame, marker=n == 0), target)
        seq = 5
        for i, digit in enumerate("42"):
            for payload, marker, _end in dtmf_payloads(digit):
                far_port.write(build_rtp(101, seq, 1600 + 1600 * i, 7, payload, marker), target)
                seq += 1
        assert (await sent) == "1#"
        await wait_until(reactor, lambda: len(digits) == 2, "the far end's digits")
        await task.deferLater(reactor, 0.2, lambda: None)
    finally:
        await endpoint.close()
        await far_port.stopListening()
    await task.deferLater(reactor, 0.3, lambda: None)  # let the capture see the last packets
    capture.process.signalProcess("INT")
    assert await capture.wait() == 0, capture.output

    assert digits == ["4", "2"]
    assert read_wav(tmp_path / "heard.wav").data == ulaw_decode(ulaw_encode(spoken))
    assert endpoint.counters()["packets_in"] == 5 + 14

    ours = f"udp.srcport=={endpoint.port}"
    rows = await tshark_fields(tshark, pcap, port, ours, "rtp.seq", "rtp.timestamp", "rtp.p_type",
                               "rtp.marker", "frame.time_relative")
    sent_out = endpoint.counters()["packets_out"]
    assert sent_out > 30
    # On a loaded machine dumpcap may say "Capturing on" a moment before its filter
    # sees packets: the endpoint's very first packet can be missed, nothing else.
    missed_first = len(rows) == sent_out - 1
    assert len(rows) == sent_out or missed_first, (len(rows), sent_out)
    seqs = [int(r[0]) for r in rows]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
    audio = [r for r in rows if r[2] == "0"]
    times = [float(r[4]) for r in rows]
    span = times[-1] - times[0]
    assert abs(span / (len(rows) - 1) - 0.020) < 0.002  # paced at 20 ms on a real reactor
    assert missed_first or audio[0][3] in ("1", "True")  # the talk spurt's first packet is marked
    assert all(r[3] in ("0", "False") for r in audio[1:])

    out, err, code = await utils.getProcessOutputAndValue(
        tshark, ["-r", str(pcap), "-d", f"udp.port=={port},rtp", "-q", "-z", "rtp,streams"])
    assert code == 0, err.decode(errors="replace")
    ssrc = f"{endpoint.ssrc:08X}"
    [stream] = [line for line in out.decode().splitlines() if ssrc in line.upper()]
    assert f" {endpoint.port} " in stream and " 0 (0.0%)" in stream, stream

    events = await tshark_fields(tshark, pcap, port, f"{ours} && rtpevent", "rtp.timestamp", "rtp.marker",
                                 "rtpevent.event_id", "rtpevent.end_of_event", "rtpevent.duration")
    assert [r[2] for r in events] == ["1"] * 7 + ["11"] * 7
    for first in (0, 7):
        one = events[first : first + 7]
        assert len({r[0] for r in one}) == 1
        assert [r[1] in ("1", "True") for r in one] == [True] + [False] * 6
        assert [r[3] in ("1", "True") for r in one] == [False] * 4 + [True] * 3
        assert [int(r[4]) for r in one] == [160, 320, 480, 640, 800, 800, 800]
