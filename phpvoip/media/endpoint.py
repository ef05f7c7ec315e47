"""An RTP session the switch terminates itself: what applications speak through.

It negotiates PCMU, PCMA and telephone-event (answering an offer, or offering),
sends one 20 ms packet per tick of a `Pacer` (prompts, tones, DTMF, echoed audio or
silence), and turns what arrives into decoded audio (for `on_audio` and a recording)
and digits (for `on_dtmf`). Only this module's `_EndpointSocket` touches the network, through
the reactor it is given.

What it sends, in order of priority each tick: a DTMF digit being sent, the
playback, audio queued by `send_audio`, then silence (or nothing, with
``send_silence=False``; the next packet after a pause then carries the marker bit).
Packets are always 20 ms, whatever a=ptime the far end asked for: every G.711
receiver we know accepts them.
"""

from __future__ import annotations

import os
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from phpvoip.interfaces import MediaUnavailable
from phpvoip.media.dtmf import DtmfReceiver, dtmf_payloads, event_code, parse_info_dtmf
from phpvoip.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from phpvoip.media.pacer import Pacer
from phpvoip.media.rtp import SEQUENCE_MOD, TIMESTAMP_MOD, build_rtp, parse_rtp
from phpvoip.media.tones import silence, tone
from phpvoip.media.wav import Audio, WavWriter, read_wav
from phpvoip.sip.sdp import Codec, SessionDescription, parse_sdp
from phpvoip.sip.sdp_offer import NotAcceptable, answer_offer, make_offer, negotiated

__all__ = ["RtpEndpoint", "PCMU", "PCMA", "TELEPHONE_EVENT"]

_log = Logger()

PCMU = Codec(0, "PCMU", 8000)
PCMA = Codec(8, "PCMA", 8000)
TELEPHONE_EVENT = Codec(101, "telephone-event", 8000, fmtp="0-16")

_FRAME_SAMPLES = 160  # 20 ms at 8 kHz
_FRAME = 2 * _FRAME_SAMPLES  # bytes of 16-bit PCM in one packet
_SILENCE = bytes(_FRAME)
_DIGIT_GAP = 3  # packets (60 ms) of audio between two digits sent
_MAX_BURST = 5  # after a stalled reactor, catch up at most 100 ms at once; skip the rest
_MAX_QUEUED = 50 * _FRAME  # send_audio keeps at most one second waiting
_PORT_TRIES = 64  # attempts with a port-choosing callable before giving up
_CODECS = {  # name -> (encode, decode)
    "PCMU": (ulaw_encode, ulaw_decode),
    "PCMA": (alaw_encode, alaw_decode),
}
_STATIC = {0: "PCMU", 8: "PCMA"}
# Keypad frequencies (ITU-T Q.23) for digits sent in-band when telephone-event was not agreed.
_ROWS = (697.0, 770.0, 852.0, 941.0)
_COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD = ("123A", "456B", "789C", "*0#D")

PlayItem = str | os.PathLike | bytes | Audio
PortChoice = tuple[int, int] | Callable[[], int]


def _pcm(item: PlayItem) -> bytes:
    """16-bit PCM for one play item: a WAV path, an Audio, or PCM bytes (tones)."""
    if isinstance(item, bytes | bytearray | memoryview):
        if len(item) % 2:
            raise ValueError("PCM to play must have an even number of bytes")
        return bytes(item)
    if isinstance(item, Audio):
        return item.pcm16()
    return read_wav(item).pcm16()


def _inband(digits: str, duration_ms: int) -> bytes:
    out = []
    for digit in digits:
        row = next((i for i, keys in enumerate(_KEYPAD) if digit.upper() in keys), None)
        if row is None:
            raise ValueError(f"{digit!r} cannot be sent as a keypad tone")
        column = _KEYPAD[row].index(digit.upper())
        out.append(tone((_ROWS[row], _COLUMNS[column]), duration_ms / 1000, level_dbfs=-10))
        out.append(silence(0.06))
    return b"".join(out)


def _sendable(host: str | None) -> bool:
    """Whether the SDP's connection address is one to send to: an IP address (a
    name would be looked up on every datagram), not the RFC 3264 hold 0.0.0.0."""
    return host is not None and host != "0.0.0.0" and (isIPAddress(host) or isIPv6Address(host))


class _Player:
    """One play() in progress: its PCM, where it is, and who waits for its end."""

    __slots__ = ("pcm", "offset", "loop", "stop_on_dtmf", "deferred")

    def __init__(self, pcm: bytes, loop: bool, stop_on_dtmf: bool) -> None:
        self.pcm = pcm
        self.offset = 0
        self.loop = loop
        self.stop_on_dtmf = stop_on_dtmf
        self.deferred: defer.Deferred[str | None] = defer.Deferred()

    def frame(self) -> bytes:
        """The next 20 ms (a short last frame padded with silence, or wrapped when looping)."""
        end = self.offset + _FRAME
        chunk = self.pcm[self.offset : end]
        if self.loop and len(chunk) < _FRAME:
            while len(chunk) < _FRAME:
                chunk += self.pcm[: _FRAME - len(chunk)]
            self.offset = (end - len(self.pcm)) % len(self.pcm)
            return chunk
        self.offset = end
        return chunk + _SILENCE[len(chunk) :]

    @property
    def done(self) -> bool:
        return not self.loop and self.offset >= len(self.pcm)


class _DtmfSend:
    """Digits being sent as telephone-events: the payloads of the digit under way."""

    __slots__ = ("digits", "sent", "payloads", "timestamp", "duration_ms", "gap", "deferred")

    def __init__(self, digits: str, duration_ms: int) -> None:
        self.digits = digits
        self.sent = 0  # digits whose end packets have all gone
        self.payloads: deque[tuple[bytes, bool, bool]] = deque()
        self.timestamp = 0
        self.duration_ms = duration_ms
        self.gap = 0  # packets of audio still to send before the next digit
        self.deferred: defer.Deferred[str] = defer.Deferred()


class _EndpointSocket(DatagramProtocol):
    noisy = False  # no log line per call as its port opens and closes

    def __init__(self, endpoint: RtpEndpoint) -> None:
        self.endpoint = endpoint

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.endpoint._received(datagram, (addr[0], addr[1]))


class RtpEndpoint:
    """An RTP session terminated by the switch, for one call of an application.

    `reactor` provides IReactorUDP and IReactorTime. `ports` is an inclusive
    ``(low, high)`` range, tried from a random even port on and skipping busy ones,
    or a callable returning the port to try (0 lets the OS choose); MediaUnavailable
    when no port can be bound. `pacer` is shared by all endpoints of a process (one
    timer for all streams); by default each endpoint has its own.

    Callbacks: `on_dtmf(digit, duration_ms)` for every digit received (RFC 4733 or
    SIP INFO passed to `info`); `on_audio(pcm16)` for every audio packet received,
    decoded to 16-bit PCM. Both may be set at any time."""

    def __init__(
        self,
        reactor: Any,
        address: str = "127.0.0.1",
        ports: PortChoice = (30000, 30999),
        *,
        pacer: Pacer | None = None,
        codecs: Sequence[str] = ("PCMU", "PCMA"),
        send_silence: bool = True,
        dtmf_timeout: float = 0.5,
    ) -> None:
        unknown = [name for name in codecs if name.upper() not in _CODECS]
        if unknown or not codecs:
            raise ValueError(f"codecs must be among PCMU, PCMA (got {list(codecs)})")
        self.reactor = reactor
        self.address = address
        self.on_dtmf: Callable[[str, int], object] | None = None
        self.on_audio: Callable[[bytes], object] | None = None
        self.send_silence = send_silence
        self._codecs = [PCMU if name.upper() == "PCMU" else PCMA for name in codecs]
        self._pacer = pacer if pacer is not None else Pacer(reactor)
        self._socket = _EndpointSocket(self)
        self._port = self._listen(ports)
        self.port: int = self._port.getHost().port
        # Straight on the socket: udp.Port.write parses the address three times per
        # datagram. Remote addresses are checked once, where they are set.
        socket = getattr(self._port, "socket", None)
        self._sendto: Callable[[bytes, tuple[str, int]], object] = (
            socket.sendto if socket is not None else self._port.write)
        self._dtmf_in = DtmfReceiver(reactor, self._digit, end_timeout=dtmf_timeout)
        # what was agreed
        self.codec: str | None = None  # "PCMU" or "PCMA"
        self._payload_type = 0
        self._encode: Callable[[bytes], bytes] = ulaw_encode
        self._event_type: int | None = None  # telephone-event payload type we send
        self._event_types_in: set[int] = set()
        self._audio_types_in: dict[int, str] = dict(_STATIC)
        self.remote: tuple[str, int] | None = None  # where packets go
        self._latched = False
        self._sending = False
        self._receiving = False
        self._offer: SessionDescription | None = None
        self._session_id = secrets.randbelow(2**31)
        self._version = 0
        # what is sent
        self.ssrc = secrets.randbits(32)
        self._sequence = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._marker = True
        self._player: _Player | None = None
        self._dtmf_out: deque[_DtmfSend] = deque()
        self._inband = b""
        self._queued = bytearray()
        self._recorder: WavWriter | None = None
        self._closed = False
        self.packets_in = self.bytes_in = self.packets_out = self.bytes_out = 0
        self.ignored_in = self.digits_in = self.digits_out = 0
        self.send_errors = 0  # datagrams the kernel refused (a full buffer, an ICMP error)

    # -- the socket ---------------------------------------------------------------------

    def _listen(self, ports: PortChoice) -> Any:
        if callable(ports):
            candidates: Iterable[int] = (ports() for _ in range(_PORT_TRIES))
        else:
            low, high = ports
            low += low % 2  # RTP on even ports, RTCP above (RFC 3550 §11)
            evens = list(range(low, high + 1, 2))
            if not evens:
                raise MediaUnavailable(f"no even port in {low}-{high}")
            first = secrets.randbelow(len(evens))
            candidates = evens[first:] + evens[:first]
        for port in candidates:
            try:
                return self.reactor.listenUDP(port, self._socket, interface=self.address)
            except CannotListenError:
                continue
        raise MediaUnavailable(f"no free RTP port on {self.address} in {ports!r}")

    # -- offer/answer ---------------------------------------------------------------------

    def _supported(self) -> list[Codec]:
        return [*self._codecs, TELEPHONE_EVENT]

    def answer(self, offer_sdp: bytes) -> bytes:
        """The SDP answer to `offer_sdp`; media starts flowing at once. Raises
        SdpError (400) for unreadable SDP and NotAcceptable (488) when nothing
        offered can be used."""
        offer = parse_sdp(offer_sdp)
        self._version += 1
        answer = answer_offer(offer, self._supported(), self.address, [self.port],
                              session_id=self._session_id, version=self._version)
        self._apply(offer, answer, remote=offer)
        return bytes(answer)

    def offer(self) -> bytes:
        """An SDP offer of our codecs and telephone-event; `accept_answer` completes it."""
        self._version += 1
        self._offer = make_offer(self.address, [self.port], self._supported(),
                                 session_id=self._session_id, version=self._version)
        return bytes(self._offer)

    def accept_answer(self, sdp: bytes) -> None:
        """Take the answer to our `offer`; raises NotAcceptable when it agreed on
        nothing we can send, SdpError for unreadable SDP."""
        if self._offer is None:
            raise ValueError("accept_answer() without an offer()")
        answer = parse_sdp(sdp)
        self._apply(self._offer, answer, remote=answer)

    def _apply(
        self, offer: SessionDescription, answer: SessionDescription, remote: SessionDescription
    ) -> None:
        agreed = next(((i, n) for i, n in enumerate(negotiated(offer, answer)) if n is not None), None)
        if agreed is None or agreed[1].codec.name.upper() not in _CODECS:
            raise NotAcceptable("no audio stream with PCMU or PCMA was agreed")
        index, result = agreed
        media = remote.media[index]
        ours = answer if remote is offer else offer
        self.codec = result.codec.name.upper()
        self._payload_type = result.codec.payload_type
        self._encode = _CODECS[self.codec][0]
        self._event_type = result.telephone_event
        # What may arrive: any payload type either side mapped to a format we read.
        mapped = [*media.rtpmap.values(), *ours.media[index].rtpmap.values()]
        self._event_types_in = {c.payload_type for c in mapped if c.is_telephone_event}
        self._audio_types_in = dict(_STATIC)
        self._audio_types_in.update(
            (c.payload_type, c.name.upper()) for c in mapped if c.name.upper() in _CODECS
        )
        host = media.connection
        self.remote = None if not _sendable(host) or media.port == 0 else (host, media.port)
        self._latched = False
        mine, theirs = ours.media[index].direction, media.direction
        self._receiving = mine in ("sendrecv", "recvonly") and theirs in ("sendrecv", "sendonly")
        sending = (mine in ("sendrecv", "sendonly") and theirs in ("sendrecv", "recvonly")
                   and self.remote is not None and not self._closed)
        if sending and not self._sending:
            self._marker = True
            self._pacer.add(self)
        elif not sending and self._sending:
            self._pacer.remove(self)
        self._sending = sending

    # -- what applications call ---------------------------------------------------------------

    def play(self, items: PlayItem | Iterable[PlayItem], loop: bool = False,
             stop_on_dtmf: bool = False) -> defer.Deferred[str | None]:
        """Play WAV files (paths or Audio) and PCM (tones) one after the other.

        Fires with None when all has been sent, or when stopped (`stop_playing`,
        a new `play`, `close`), or with the digit that stopped it (`stop_on_dtmf`).
        Errbacks at once with ValueError/OSError for a file that cannot be played."""
        if isinstance(items, str | os.PathLike | bytes | bytearray | Audio):
            items = [items]
        try:
            pcm = b"".join(_pcm(item) for item in items)
        except (OSError, ValueError) as e:
            return defer.fail(e)
        self.stop_playing()
        if not pcm or self._closed:
            return defer.succeed(None)
        self._player = _Player(pcm, loop, stop_on_dtmf)
        return self._player.deferred

    def stop_playing(self) -> None:
        """Stop the playback (its Deferred fires with None); nothing if none."""
        self._end_playback(None)

    def _end_playback(self, result: str | None) -> None:
        player, self._player = self._player, None
        if player is not None:
            player.deferred.callback(result)

    @property
    def playing(self) -> bool:
        """Whether a play() is under way (a loop plays until stopped)."""
        return self._player is not None

    def record(self, path: str | os.PathLike[str]) -> None:
        """Write what the far end sends, decoded, to a 16-bit 8 kHz WAV at `path`
        (a recording already running is closed first). OSError if it cannot be created."""
        self.stop_recording()
        self._recorder = WavWriter(path)

    def stop_recording(self) -> None:
        """Close the recording, fixing its header; nothing if none."""
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.close()

    def send_audio(self, pcm16: bytes) -> None:
        """Queue 16-bit PCM to be sent in 20 ms packets after anything playing. At
        most a second waits: older audio is dropped (the far end sends too fast)."""
        self._queued += pcm16
        if len(self._queued) > _MAX_QUEUED:
            del self._queued[: len(self._queued) - _MAX_QUEUED]

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> defer.Deferred[str]:
        """Send `digits` as RFC 4733 events (as keypad tones when the far end did
        not agree to telephone-event). Fires with the digits sent when the last is
        (fewer if the endpoint closes first)."""
        for digit in digits:
            event_code(digit)
        if self._closed or not digits:
            return defer.succeed("")
        if self._event_type is None:
            self._inband += _inband(digits, duration_ms)
            self.digits_out += len(digits)
            return defer.succeed(digits)
        job = _DtmfSend(digits, duration_ms)
        self._dtmf_out.append(job)
        return job.deferred

    def info(self, content_type: str, body: bytes) -> bool:
        """Take the body of a SIP INFO request; True if it carried a digit (reported
        through on_dtmf like RFC 4733 ones)."""
        found = parse_info_dtmf(content_type, body)
        if found is None:
            return False
        self._digit(*found)
        return True

    def counters(self) -> dict[str, int]:
        """Packets and payload bytes each way, digits each way, packets ignored."""
        return {
            "packets_in": self.packets_in, "bytes_in": self.bytes_in,
            "packets_out": self.packets_out, "bytes_out": self.bytes_out,
            "ignored_in": self.ignored_in, "digits_in": self.digits_in, "digits_out": self.digits_out,
        }

    def close(self) -> defer.Deferred[None]:
        """Stop sending, playing and recording, and release the port. Idempotent."""
        if self._closed:
            return defer.succeed(None)
        self._closed = True
        if self._sending:
            self._pacer.remove(self)
            self._sending = False
        self._dtmf_in.close()
        self.stop_playing()
        self.stop_recording()
        while self._dtmf_out:
            job = self._dtmf_out.popleft()
            job.deferred.callback(job.digits[: job.sent])
        return defer.maybeDeferred(self._port.stopListening).addCallback(lambda _: None)

    # -- receiving ------------------------------------------------------------------------------

    def _received(self, datagram: bytes, source: tuple[str, int]) -> None:
        if not self._receiving or self._closed:
            self.ignored_in += 1
            return
        if self._latched and source != self.remote:
            self.ignored_in += 1  # symmetric RTP: once latched, only the latched source
            return
        try:
            packet = parse_rtp(datagram)
        except ValueError:
            self.ignored_in += 1
            return
        if 72 <= packet.payload_type <= 76 and packet.marker:
            self.ignored_in += 1  # RTCP multiplexed on the RTP port (RFC 5761 §4)
            return
        if not self._latched:
            # Symmetric RTP (RFC 4961): send back to where the far end really sends
            # from, which a NAT may have changed from what its SDP says.
            self._latched = True
            self.remote = source
        self.packets_in += 1
        self.bytes_in += len(packet.payload)
        pt = packet.payload_type
        if pt in self._event_types_in:
            self._dtmf_in.feed(packet)
            return
        name = self._audio_types_in.get(pt)
        if name is None:
            return  # comfort noise and anything else: not audio we play or record
        pcm = _CODECS[name][1](packet.payload)
        if self._recorder is not None:
            self._recorder.write(pcm)
        if self.on_audio is not None:
            self.on_audio(pcm)

    def _digit(self, digit: str, duration_ms: int) -> None:
        self.digits_in += 1
        player = self._player
        if player is not None and player.stop_on_dtmf:
            self._end_playback(digit)
        if self.on_dtmf is not None:
            self.on_dtmf(digit, duration_ms)

    # -- sending ---------------------------------------------------------------------------------

    def tick(self, count: int) -> None:
        """The pacer's call: `count` 20 ms intervals have passed (1 unless late)."""
        for i in range(count):
            self._send_one(skip=i < count - _MAX_BURST)
            if not self._sending:
                return

    def _send_one(self, skip: bool) -> None:
        """Send (or, catching up after a stall, only account for) one 20 ms packet."""
        timestamp = self._timestamp
        self._timestamp = (timestamp + _FRAME_SAMPLES) % TIMESTAMP_MOD
        job = self._dtmf_out[0] if self._dtmf_out else None
        if job is not None and job.gap:
            job.gap -= 1
        elif job is not None and not skip:
            self._send_event(job, timestamp)
            return
        if self._inband:
            pcm, self._inband = self._inband[:_FRAME], self._inband[_FRAME:]
            pcm += _SILENCE[len(pcm) :]
        elif self._player is not None:
            pcm = self._player.frame()
            if self._player.done:
                self.stop_playing()
        elif self._queued:
            pcm = bytes(self._queued[:_FRAME])
            del self._queued[:_FRAME]
            pcm += _SILENCE[len(pcm) :]
        elif self.send_silence:
            pcm = _SILENCE
        else:
            self._marker = True  # the next packet begins a talk spurt (RFC 3551 §4.1)
            return
        if skip:
            return
        marker, self._marker = self._marker, False
        self._write(self._payload_type, timestamp, self._encode(pcm), marker)

    def _send_event(self, job: _DtmfSend, timestamp: int) -> None:
        if not job.payloads:
            # RFC 4733 §2.3.1: every packet of an event carries the event's start time.
            job.payloads.extend(dtmf_payloads(job.digits[job.sent], job.duration_ms))
            job.timestamp = timestamp
        payload, marker, end = job.payloads.popleft()
        assert self._event_type is not None
        self._write(self._event_type, job.timestamp, payload, marker)
        if end and not job.payloads:
            job.sent += 1
            self.digits_out += 1
            if job.sent == len(job.digits):
                self._dtmf_out.popleft()
                job.deferred.callback(job.digits)
            else:
                job.gap = _DIGIT_GAP

    def _write(self, payload_type: int, timestamp: int, payload: bytes, marker: bool) -> None:
        sequence = self._sequence
        self._sequence = (sequence + 1) % SEQUENCE_MOD
        self.packets_out += 1
        self.bytes_out += len(payload)
        assert self.remote is not None
        packet = build_rtp(payload_type, sequence, timestamp, self.ssrc, payload, marker)
        try:
            self._sendto(packet, self.remote)
        except OSError:
            self.send_errors += 1
