"""The application media endpoint: negotiation, drift-free pacing, playback, recording, DTMF.

Most tests run under a Clock with a fake UDP port (what is written is kept with the
time it was written); the last ones use real sockets on 127.0.0.1.
"""

from __future__ import annotations

import random
import struct

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock, deferLater

from phpvoip.interfaces import MediaUnavailable
from phpvoip.media.dtmf import DtmfReceiver, dtmf_payloads
from phpvoip.media.endpoint import RtpEndpoint
from phpvoip.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from phpvoip.media.pacer import Pacer
from phpvoip.media.rtp import build_rtp, parse_rtp
from phpvoip.media.tones import silence, tone
from phpvoip.media.wav import read_wav
from phpvoip.sip.sdp import parse_sdp
from phpvoip.sip.sdp_offer import NotAcceptable

FAR = ("127.0.0.1", 40000)  # where the far end's SDP says it listens
NAT = ("127.0.0.1", 40999)  # where its packets really come from


class FakePort:
    """A bound UDP port that keeps what is written, stamped with the clock's time."""

    def __init__(self, reactor: FakeReactor, number: int, protocol: DatagramProtocol) -> None:
        self.reactor = reactor
        self.number = number
        self.protocol = protocol
        self.written: list[tuple[float, bytes, tuple]] = []
        self.listening = True

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", self.number)

    def write(self, data: bytes, addr: tuple) -> None:
        self.written.append((self.reactor.seconds(), data, addr))

    def stopListening(self) -> None:
        self.listening = False
        self.protocol.doStop()

    def deliver(self, data: bytes, source: tuple = FAR) -> None:
        """A datagram from the far end arrives."""
        self.protocol.datagramReceived(data, source)

    def packets(self):
        return [parse_rtp(data) for _t, data, _a in self.written]


class FakeReactor(Clock):
    """Clock plus listenUDP on fake ports; `busy` ports refuse to bind."""

    def __init__(self, busy: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.busy = set(busy)
        self.ports: dict[int, FakePort] = {}

    def listenUDP(self, port: int, protocol: DatagramProtocol, interface: str = "", maxPacketSize: int = 0):
        if port in self.busy or port in self.ports:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        bound = self.ports[port] = FakePort(self, port, protocol)
        protocol.makeConnection(bound)
        return bound

    def run(self, seconds: float) -> None:
        """Let `seconds` of simulated time pass, waking at each timer's time."""
        end = self.seconds() + seconds
        while self.getDelayedCalls():
            due = min(c.getTime() for c in self.getDelayedCalls())
            if due > end + 1e-9:
                break
            self.advance(max(0.0, due - self.seconds()))
        self.advance(max(0.0, end - self.seconds()))


def offer_sdp(port: int = FAR[1], formats: str = "0 8 101", direction: str = "sendrecv",
              event_pt: int = 101) -> bytes:
    lines = ["v=0", "o=far 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=audio {port} RTP/AVP {formats}", f"a=rtpmap:{event_pt} telephone-event/8000",
             f"a=fmtp:{event_pt} 0-16", "a=ptime:20", f"a={direction}"]
    return ("\r\n".join(lines) + "\r\n").encode()


def answered(formats: str = "0 8 101", **kw):
    reactor = FakeReactor()
    endpoint = RtpEndpoint(reactor, "127.0.0.1", (31000, 31001), **kw)
    answer = endpoint.answer(offer_sdp(formats=formats))
    port = reactor.ports[endpoint.port]
    return reactor, endpoint, port, answer


def audio_payloads(port: FakePort, pt: int = 0) -> list[bytes]:
    return [p.payload for p in port.packets() if p.payload_type == pt]


def test_answer_names_our_port_and_the_offered_codecs_in_order():
    """The answer keeps the offerer's order (PCMU, PCMA, its telephone-event) on our port."""
    reactor, endpoint, port, answer = answered()
    [media] = parse_sdp(answer).media
    assert media.port == endpoint.port == 31000
    assert [c.name for c in media.rtpmap.values()] == ["PCMU", "PCMA", "telephone-event"]
    assert media.connection == "127.0.0.1"
    assert endpoint.codec == "PCMU" and endpoint.remote == FAR


def test_pacing_for_ten_minutes_has_no_drift():
    """30,000 packets in 600 simulated seconds, each at start + n*20 ms even when the
    reactor wakes late; sequence +1 and timestamp +160 each, one SSRC, marker on the first only."""
    reactor, endpoint, port, _ = answered()
    start = reactor.seconds()
    late = random.Random(10)
    while reactor.seconds() < start + 600 - 1e-9:
        due = reactor.getDelayedCalls()[0].getTime()
        reactor.advance(due - reactor.seconds() + late.uniform(0, 0.004))  # up to 4 ms late
    assert len(port.written) == 30000
    packets = port.packets()
    first = packets[0]
    for n, p in enumerate(packets):
        assert p.sequence == (first.sequence + n) % 2**16
        assert p.timestamp == (first.timestamp + 160 * n) % 2**32
        assert p.ssrc == endpoint.ssrc and p.payload_type == 0 and len(p.payload) == 160
        assert p.marker == (n == 0)
    times = [t for t, _d, _a in port.written]
    for n, t in enumerate(times):
        assert start + 0.02 * (n + 1) <= t < start + 0.02 * (n + 1) + 0.0041
    assert endpoint.counters()["packets_out"] == 30000 and endpoint.bytes_out == 30000 * 160


def test_a_stalled_reactor_catches_up_with_a_short_burst():
    """After a 300 ms stall, timestamps keep wall time: 5 packets go at once, 10 are skipped."""
    reactor, endpoint, port, _ = answered()
    reactor.run(0.02)
    reactor.advance(0.3)
    packets = port.packets()
    assert len(packets) == 1 + 5
    assert packets[1].timestamp - packets[0].timestamp == 160 * 11
    assert [p.sequence - packets[0].sequence for p in packets] == [0, 1, 2, 3, 4, 5]


def test_silence_is_sent_when_nothing_plays_or_nothing_with_send_silence_off():
    """Idle, the endpoint sends μ-law silence (0xFF); with send_silence=False it sends
    nothing, and the first packet after a pause carries the marker."""
    reactor, endpoint, port, _ = answered()
    reactor.run(0.1)
    assert audio_payloads(port) == [b"\xff" * 160] * 5
    reactor, endpoint, port, _ = answered(send_silence=False)
    reactor.run(0.1)
    assert port.written == []
    endpoint.send_audio(bytes(640))
    reactor.run(0.1)
    assert [p.marker for p in port.packets()] == [True, False]
    endpoint.send_audio(bytes(320))
    reactor.run(0.1)
    assert [p.marker for p in port.packets()] == [True, False, True]


def test_latching_sends_to_where_packets_really_come_from():
    """First to the SDP's address; after a packet from elsewhere (NAT), there; a third source is ignored."""
    reactor, endpoint, port, _ = answered()
    reactor.run(0.02)
    port.deliver(build_rtp(0, 1, 160, 99, b"\xff" * 160), NAT)
    reactor.run(0.02)
    port.deliver(build_rtp(0, 1, 160, 99, b"\xff" * 160), ("127.0.0.1", 41111))
    assert [a for _t, _d, a in port.written] == [FAR, NAT]
    assert endpoint.counters()["packets_in"] == 1 and endpoint.ignored_in == 1


def test_offer_then_answer_agrees_on_what_the_answer_chose():
    """Our offer lists PCMU, PCMA and telephone-event; the answer's PCMA and event type 96 are used."""
    reactor = FakeReactor()
    endpoint = RtpEndpoint(reactor, "127.0.0.1", (31000, 31001))
    offer = parse_sdp(endpoint.offer())
    assert [c.name for c in offer.media[0].rtpmap.values()] == ["PCMU", "PCMA", "telephone-event"]
    answer = offer_sdp(formats="8 96", event_pt=96).replace(b"o=far 1 1", b"o=far 1 2")
    endpoint.accept_answer(answer)
    endpoint.send_dtmf("1")
    reactor.run(0.2)
    types = [p.payload_type for p in reactor.ports[31000].packets()]
    assert set(types) == {96, 8} and types[0] == 96
    assert endpoint.codec == "PCMA"


def test_answers_without_a_usable_codec_are_not_acceptable():
    """An offer of GSM only is 488; an answer without an audio codec we speak is too."""
    reactor = FakeReactor()
    endpoint = RtpEndpoint(reactor, "127.0.0.1", (31000, 31001))
    with pytest.raises(NotAcceptable):
        endpoint.answer(offer_sdp(formats="3"))
    endpoint.offer()
    with pytest.raises(NotAcceptable):
        endpoint.accept_answer(offer_sdp(formats="101"))
    with pytest.raises(ValueError, match="without an offer"):
        RtpEndpoint(reactor, "127.0.0.1", (31002, 31003)).accept_answer(offer_sdp())
    assert reactor.getDelayedCalls() == []


def test_hold_stops_sending_and_unhold_resumes():
    """A re-offer with sendonly (we are held) stops our packets; sendrecv starts them again."""
    reactor, endpoint, port, _ = answered()
    reactor.run(0.04)
    answer = endpoint.answer(offer_sdp(direction="sendonly"))
    assert b"a=recvonly" in answer
    reactor.run(1)
    assert len(port.written) == 2
    endpoint.answer(offer_sdp())
    reactor.run(0.04)
    assert len(port.written) == 4 and port.packets()[2].marker


def test_a_named_host_in_the_sdp_is_not_sent_to():
    """c=IN IP4 with a host name: not sent to (a socket's sendto would look the name
    up on every datagram); nothing is sent until an address is known."""
    reactor = FakeReactor()
    endpoint = RtpEndpoint(reactor, "127.0.0.1", (31000, 31001))
    endpoint.answer(offer_sdp().replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 phone.example.com"))
    port = reactor.ports[endpoint.port]
    reactor.run(0.1)
    assert endpoint.remote is None and port.written == []


class _RefusingSocket:
    """A socket whose kernel refuses every datagram (ECONNREFUSED from an ICMP error)."""

    def __init__(self) -> None:
        self.tries = 0

    def sendto(self, data: bytes, addr: tuple) -> int:
        self.tries += 1
        raise ConnectionRefusedError(111, "Connection refused")


def test_datagrams_go_straight_to_the_socket_and_its_errors_are_counted():
    """A port with a socket (Twisted's udp.Port) is sent on with sendto; a refused
    datagram is counted in send_errors and the stream goes on."""
    reactor = FakeReactor()
    refusing = _RefusingSocket()
    real_listen = reactor.listenUDP

    def listen(port, protocol, interface="", maxPacketSize=0):
        bound = real_listen(port, protocol, interface, maxPacketSize)
        bound.socket = refusing
        return bound

    reactor.listenUDP = listen
    endpoint = RtpEndpoint(reactor, "127.0.0.1", (31000, 31001))
    endpoint.answer(offer_sdp())
    reactor.run(0.1)
    assert refusing.tries == endpoint.send_errors == 5
    assert reactor.ports[endpoint.port].written == []  # not through udp.Port.write


def test_playing_a_wav_file_sends_its_samples_then_fires(tmp_path):
    """A μ-law WAV of 2.5 packets goes out as it is (the last packet padded with silence), then None."""
    samples = bytes(range(0x80, 0x80 + 100)) + bytes(range(0x80, 0x80 + 100)) + bytes(range(0x90, 0xE0))
    path = tmp_path / "prompt.wav"
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 280) + samples
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    reactor, endpoint, port, _ = answered()
    done = endpoint.play(str(path))
    assert endpoint.playing and not done.called
    reactor.run(0.06)
    assert done.called and done.result is None and not endpoint.playing
    sent = b"".join(audio_payloads(port))
    assert sent[:280] == samples and sent[280:] == b"\xff" * 200
    reactor.run(0.02)
    assert audio_payloads(port)[-1] == b"\xff" * 160


def test_playing_a_list_of_tones_and_silence():
    """Items play one after the other, then silence; the Deferred fires after the last."""
    reactor, endpoint, port, _ = answered()
    beep = tone((1000.0,), 0.1)
    done = endpoint.play([beep, silence(0.04), beep])
    reactor.run(0.22)
    assert not done.called
    reactor.run(0.02)
    assert done.result is None
    sent = b"".join(audio_payloads(port)[:12])
    expected = ulaw_encode(beep + silence(0.04) + beep)
    assert sent == expected


def test_a_loop_plays_until_stopped():
    """A looped 30 ms item wraps across packet boundaries and never ends by itself."""
    reactor, endpoint, port, _ = answered()
    item = tone((440.0,), 0.03)
    done = endpoint.play(item, loop=True)
    reactor.run(1.0)
    assert not done.called
    sent = b"".join(audio_payloads(port))
    assert sent == ulaw_encode(item * 34)[: len(sent)] and len(sent) == 8000
    endpoint.stop_playing()
    assert done.result is None
    reactor.run(0.02)
    assert audio_payloads(port)[-1] == b"\xff" * 160


def test_a_new_play_stops_the_old_one():
    """Starting a second playback fires the first with None."""
    reactor, endpoint, port, _ = answered()
    first = endpoint.play(tone((440.0,), 2))
    second = endpoint.play(silence(0.02))
    assert first.result is None and not second.called
    reactor.run(0.02)
    assert second.result is None


def test_play_errors_come_back_on_the_deferred(tmp_path):
    """A file that is missing or not WAV errbacks at once; the playing one carries on."""
    reactor, endpoint, port, _ = answered()
    current = endpoint.play(tone((440.0,), 1))
    failed = endpoint.play(str(tmp_path / "missing.wav"))
    assert not current.called
    with pytest.raises(FileNotFoundError):
        failed.result.raiseException()
    failed.addErrback(lambda _: None)


def feed_digits(port: FakePort, digits: str, source=FAR, pt: int = 101, start_seq: int = 0, ts: int = 48000):
    """The far end sends `digits` as RFC 4733 events (triple end packets)."""
    seq = start_seq
    for digit in digits:
        for payload, marker, _end in dtmf_payloads(digit):
            port.deliver(build_rtp(pt, seq, ts, 77, payload, marker), source)
            seq += 1
        ts += 1600
    return seq


def test_playback_stops_on_a_digit_which_is_reported_too():
    """stop_on_dtmf: the digit fires the playback's Deferred and still reaches on_dtmf."""
    reactor, endpoint, port, _ = answered()
    heard = []
    endpoint.on_dtmf = lambda digit, ms: heard.append((digit, ms))
    done = endpoint.play(tone((440.0,), 2), stop_on_dtmf=True)
    reactor.run(0.1)
    feed_digits(port, "5")
    assert done.result == "5"
    assert heard == [("5", 100)]
    reactor.run(0.02)
    assert audio_payloads(port)[-1] == b"\xff" * 160
    plain = endpoint.play(tone((440.0,), 2))
    feed_digits(port, "6", start_seq=100, ts=96000)
    assert not plain.called and heard[-1] == ("6", 100)


def test_digits_arrive_once_each_from_rtp_and_info():
    """'0123456789*#' as events (one end packet lost for '5') and an INFO give each digit once."""
    reactor, endpoint, port, _ = answered()
    heard = []
    endpoint.on_dtmf = lambda digit, ms: heard.append(digit)
    seq, ts = 0, 8000
    for digit in "0123456789*#":
        payloads = dtmf_payloads(digit)
        if digit == "5":
            del payloads[-3]
        for payload, marker, _end in payloads:
            port.deliver(build_rtp(101, seq, ts, 77, payload, marker))
            seq += 1
        ts += 1600
    assert "".join(heard) == "0123456789*#"
    assert endpoint.info("application/dtmf-relay", b"Signal=#\r\nDuration=160\r\n")
    assert not endpoint.info("application/sdp", b"v=0")
    assert heard[-1] == "#" and endpoint.counters()["digits_in"] == 13


def test_recording_writes_what_the_far_end_sends(tmp_path):
    """PCMA from the far end is decoded into the WAV; stop_recording closes it."""
    reactor, endpoint, port, _ = answered(formats="8 101")
    path = tmp_path / "rec.wav"
    endpoint.record(path)
    pcm = tone((600.0,), 0.06)
    for n in range(3):
        port.deliver(build_rtp(8, n, 160 * n, 5, alaw_encode(pcm[320 * n : 320 * (n + 1)])))
    endpoint.stop_recording()
    port.deliver(build_rtp(8, 3, 480, 5, b"\xd5" * 160))
    recorded = read_wav(path)
    assert recorded.encoding == "L16" and len(recorded.data) == 960
    assert recorded.data == alaw_decode(alaw_encode(pcm))


def test_echo_through_on_audio_and_send_audio():
    """What on_audio hears, send_audio sends back: same samples, our own sequence and SSRC."""
    reactor, endpoint, port, _ = answered()
    endpoint.on_audio = endpoint.send_audio
    heard = ulaw_encode(tone((300.0,), 0.02))
    reactor.run(0.02)
    port.deliver(build_rtp(0, 9, 999, 5, heard))
    reactor.run(0.02)
    last = port.packets()[-1]
    assert last.payload == ulaw_encode(ulaw_decode(heard)) and last.ssrc == endpoint.ssrc


def test_send_audio_keeps_at_most_a_second():
    """A far end sending faster than we send cannot make the queue grow without end."""
    reactor, endpoint, port, _ = answered()
    for _ in range(200):
        endpoint.send_audio(bytes(320))
    endpoint.send_audio(b"\x01\x00" * 160)
    reactor.run(1.02)
    payloads = audio_payloads(port)
    assert payloads[49] == ulaw_encode(b"\x01\x00" * 160) and payloads[50] == b"\xff" * 160


def test_sending_digits_as_events():
    """send_dtmf('1#') sends each as one event (marker, one timestamp, three ends) that a
    receiver reads as exactly those digits, then fires with them."""
    reactor, endpoint, port, _ = answered()
    done = endpoint.send_dtmf("1#")
    reactor.run(0.5)
    assert done.result == "1#"
    got = []
    receiver = DtmfReceiver(reactor, lambda d, ms: got.append((d, ms)))
    events = [p for p in port.packets() if p.payload_type == 101]
    assert len(events) == 14
    assert len({p.timestamp for p in events[:7]}) == 1 and events[0].marker and not events[1].marker
    for p in events:
        receiver.feed(p)
    assert got == [("1", 100), ("#", 100)]
    assert endpoint.counters()["digits_out"] == 2
    # audio goes on around the events, its timestamps past each event's duration
    audio = [p for p in port.packets() if p.payload_type == 0]
    assert audio and all(p.timestamp != events[0].timestamp for p in audio)


def test_digits_without_telephone_event_are_sent_as_keypad_tones():
    """When the far end did not agree to telephone-event, digits are DTMF tones in the audio."""
    reactor, endpoint, port, _ = answered(formats="0")
    done = endpoint.send_dtmf("5")
    assert done.result == "5"
    reactor.run(0.2)
    assert {p.payload_type for p in port.packets()} == {0}
    assert audio_payloads(port)[0] != b"\xff" * 160
    with pytest.raises(ValueError):
        endpoint.send_dtmf("!x")


def test_busy_ports_are_skipped_and_none_left_is_media_unavailable():
    """Busy even ports are passed over; when all are busy, MediaUnavailable."""
    reactor = FakeReactor(busy=(31000, 31002))
    endpoint = RtpEndpoint(reactor, "127.0.0.1", (31000, 31005))
    assert endpoint.port == 31004
    with pytest.raises(MediaUnavailable):
        RtpEndpoint(reactor, "127.0.0.1", (31000, 31005))
    choices = iter([31002, 31006])
    assert RtpEndpoint(reactor, "127.0.0.1", lambda: next(choices)).port == 31006


def test_close_stops_everything_and_is_idempotent(tmp_path):
    """close() stops packets, fires playback and pending digits, closes the recording and the port."""
    reactor, endpoint, port, _ = answered()
    playing = endpoint.play(tone((440.0,), 2))
    sending = endpoint.send_dtmf("123")
    endpoint.record(tmp_path / "r.wav")
    reactor.run(0.2)
    closed = endpoint.close()
    assert closed.called and not port.listening
    assert playing.result is None and sending.result == "1"
    count = len(port.written)
    reactor.run(1)
    assert len(port.written) == count and reactor.getDelayedCalls() == []
    assert endpoint.close().called
    assert read_wav(tmp_path / "r.wav").data == b""


def test_many_endpoints_share_one_timer():
    """With a shared pacer, ten endpoints send on one delayed call."""
    reactor = FakeReactor()
    pacer = Pacer(reactor)
    endpoints = [RtpEndpoint(reactor, "127.0.0.1", (31000, 31099), pacer=pacer) for _ in range(10)]
    for endpoint in endpoints:
        endpoint.answer(offer_sdp())
    assert len(reactor.getDelayedCalls()) == 1 and len(pacer) == 10
    reactor.run(0.1)
    assert all(len(reactor.ports[e.port].written) == 5 for e in endpoints)
    for endpoint in endpoints:
        endpoint.close()
    assert reactor.getDelayedCalls() == []


def test_unknown_codecs_are_refused_at_construction():
    """Only PCMU and PCMA can be offered."""
    with pytest.raises(ValueError, match="PCMU, PCMA"):
        RtpEndpoint(FakeReactor(), "127.0.0.1", (31000, 31001), codecs=("G729",))


# -- real sockets on 127.0.0.1 ---------------------------------------------------------------------

TIMEOUT = 5.0


class FarEnd(DatagramProtocol):
    """A phone's RTP socket: keeps what arrives."""

    def __init__(self) -> None:
        self.packets: list = []
        self.waiting: defer.Deferred | None = None
        self.want = 0

    def datagramReceived(self, data: bytes, addr) -> None:
        self.packets.append((parse_rtp(data), addr))
        if self.waiting is not None and len(self.packets) >= self.want:
            waiting, self.waiting = self.waiting, None
            waiting.callback(None)

    def wait_for(self, count: int, reactor) -> defer.Deferred:
        """Fire when `count` packets have arrived; time out after TIMEOUT."""
        if len(self.packets) >= count:
            return defer.succeed(None)
        self.want = count
        self.waiting = defer.Deferred()
        return self.waiting.addTimeout(TIMEOUT, reactor)


@pytest_twisted.inlineCallbacks
def test_over_real_udp_audio_and_digits_both_ways():
    """On 127.0.0.1: the endpoint's packets reach the far end's socket, and the far
    end's events and audio reach on_dtmf and on_audio."""
    from twisted.internet import reactor

    far = FarEnd()
    far_port = reactor.listenUDP(0, far, interface="127.0.0.1")
    endpoint = RtpEndpoint(reactor, "127.0.0.1", lambda: 0)
    try:
        endpoint.answer(offer_sdp(port=far_port.getHost().port))
        heard, digits = [], []
        endpoint.on_audio = heard.append
        endpoint.on_dtmf = lambda d, ms: digits.append(d)
        yield far.wait_for(3, reactor)
        packet, source = far.packets[0]
        assert source == ("127.0.0.1", endpoint.port) and packet.payload_type == 0
        target = ("127.0.0.1", endpoint.port)
        far_port.write(build_rtp(0, 1, 160, 42, b"\x80" * 160), target)
        seq, ts = 2, 1600
        for digit in "42#":
            for payload, marker, _end in dtmf_payloads(digit):
                far_port.write(build_rtp(101, seq, ts, 42, payload, marker), target)
                seq += 1
            ts += 1600
        sent = endpoint.send_dtmf("9")
        for _ in range(100):
            if len(digits) == 3 and sent.called:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        assert digits == list("42#") and heard == [ulaw_decode(b"\x80" * 160)]
        assert (yield sent) == "9"
        events = [p for p, _a in far.packets if p.payload_type == 101]
        assert len(events) == 7 and events[0].marker
    finally:
        yield endpoint.close()
        yield far_port.stopListening()

