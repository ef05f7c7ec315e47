"""SDP (RFC 4566) for a B2BUA and its media: read, check, rewrite.

A session description is kept as its lines, split into the session part and one
part per ``m=`` line, so that anything we do not touch goes back out exactly as it
came in (a body with CRLF line ends round-trips byte for byte; bare LF ends and
empty lines do not survive). What the lines mean (address, codecs, direction) is
read from them when asked, never stored a second time.

Offer/answer (RFC 3264: `make_offer`, `answer_offer`, `negotiated`,
`NotAcceptable`) lives in `phpvoip.sip.sdp_offer`; those names can be imported
from this module too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DIRECTIONS",
    "STATIC_PAYLOAD_TYPES",
    "Codec",
    "Media",
    "SdpError",
    "SessionDescription",
    "answer_direction",
    "bump_version",
    "continue_origin",
    "hold_offer",
    "origin_fields",
    "parse_sdp",
    "rejecting_answer",
    "rewrite_media",
    "same_media",
    "with_direction",
]


class SdpError(ValueError):
    """The body is not SDP we can read; answer ``400 Bad SDP: <reason>``.

    A ValueError, so that callers written when parse_sdp raised ValueError keep working."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Codec:
    """One RTP payload format: ``a=rtpmap:<payload_type> <name>/<clock_rate>[/<channels>]``
    and its ``a=fmtp`` parameters. `name` is kept as written; `same_format`
    compares names case-insensitively (RFC 4566 §6: encoding names are not case-sensitive)."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    def same_format(self, other: Codec) -> bool:
        """Whether `other` is the same encoding (name, clock rate, channels), whatever its payload type."""
        return (self.name.lower() == other.name.lower() and self.clock_rate == other.clock_rate
                and self.channels == other.channels)

    @property
    def is_telephone_event(self) -> bool:
        """RFC 4733 DTMF events, which travel beside a codec and are never chosen as one."""
        return self.name.lower() == "telephone-event"

    def rtpmap_line(self) -> str:
        suffix = f"/{self.channels}" if self.channels != 1 else ""
        return f"a=rtpmap:{self.payload_type} {self.name}/{self.clock_rate}{suffix}"


# RFC 3551 table 4: audio payload types that need no rtpmap line.
STATIC_PAYLOAD_TYPES: dict[int, Codec] = {
    c.payload_type: c for c in (
        Codec(0, "PCMU", 8000), Codec(3, "GSM", 8000), Codec(4, "G723", 8000),
        Codec(5, "DVI4", 8000), Codec(6, "DVI4", 16000), Codec(7, "LPC", 8000),
        Codec(8, "PCMA", 8000), Codec(9, "G722", 8000), Codec(10, "L16", 44100, 2),
        Codec(11, "L16", 44100), Codec(12, "QCELP", 8000), Codec(13, "CN", 8000),
        Codec(14, "MPA", 90000), Codec(15, "G728", 8000), Codec(16, "DVI4", 11025),
        Codec(17, "DVI4", 22050), Codec(18, "G729", 8000),
    )
}

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_DIRECTIONS = frozenset("a=" + d for d in DIRECTIONS)
_ICE = ("a=candidate:", "a=ice-", "a=end-of-candidates", "a=remote-candidates")


def _number(text: str, limit: int) -> int | None:
    """`text` as an int in 0..limit, or None. (str.isdigit() accepts '²', which int() refuses.)"""
    if not text or len(text) > 10 or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= limit else None


def _address(lines: list[str]) -> str | None:
    """The address of the first ``c=`` line (without a multicast /ttl)."""
    for line in lines:
        if line.startswith("c="):
            parts = line[2:].split()
            return parts[2].split("/")[0] if len(parts) >= 3 else None
    return None


def _attribute(lines: list[str], name: str) -> str | None:
    """The value of the first ``a=<name>:<value>`` ("" for a flag ``a=<name>``), or None."""
    prefix = "a=" + name
    for line in lines:
        if line.startswith(prefix):
            rest = line[len(prefix):]
            if not rest:
                return ""
            if rest[0] == ":":
                return rest[1:]
    return None


def _direction(lines: list[str]) -> str | None:
    for line in lines:
        if line in _DIRECTIONS:
            return line[2:]
    return None


def _rtpmap(line: str) -> Codec | None:
    """``a=rtpmap:<pt> <name>/<rate>[/<channels>]`` as a Codec, or None if malformed."""
    pt_text, _, rest = line[len("a=rtpmap:"):].partition(" ")
    parts = rest.strip().split("/")
    pt = _number(pt_text, 127)
    if pt is None or len(parts) not in (2, 3) or not parts[0] or " " in parts[0]:
        return None
    rate = _number(parts[1], 10_000_000)
    channels = _number(parts[2], 255) if len(parts) == 3 else 1
    if not rate or not channels:
        return None
    return Codec(pt, parts[0], rate, channels)


class Media:
    """One ``m=`` section: its media line and the lines under it.

    `session_lines` is the owning description's session-level lines (set by
    SessionDescription), so that `connection` and `direction` can fall back to the
    session level; a Media outside any description sees only its own lines."""

    __slots__ = ("kind", "port", "proto", "formats", "lines", "count", "session_lines")

    def __init__(self, kind: str, port: int, proto: str, formats: list[str], lines: list[str],
                 count: int | None = None, session_lines: list[str] | None = None) -> None:
        self.kind = kind
        self.port = port
        self.proto = proto
        self.formats = formats
        self.lines = lines  # the a=, c=, b= ... lines after the m= line
        self.count = count  # the /<number of ports> of the m= line, when written
        self.session_lines = session_lines

    def media_line(self) -> str:
        port = self.port if self.count is None else f"{self.port}/{self.count}"
        return f"m={self.kind} {port} {self.proto} {' '.join(self.formats)}"

    def copy(self, lines: list[str] | None = None) -> Media:
        """A copy (with `lines` instead of ours, if given), owned by no description yet."""
        return Media(self.kind, self.port, self.proto, list(self.formats),
                     list(self.lines) if lines is None else lines, self.count)

    @property
    def is_rtp(self) -> bool:
        """Whether the formats are RTP payload types (RTP/AVP, RTP/SAVP, UDP/TLS/RTP/SAVPF...)."""
        return "RTP/" in self.proto

    @property
    def port_count(self) -> int:
        return 1 if self.count is None else self.count

    @property
    def connection(self) -> str | None:
        """Where this stream's media goes: the media-level c= address, else the session's."""
        found = _address(self.lines)
        if found is None and self.session_lines is not None:
            found = _address(self.session_lines)
        return found

    @property
    def direction(self) -> str:
        """sendrecv, sendonly, recvonly or inactive: the media-level attribute, else the
        session-level one, else sendrecv (RFC 3264 §5.1)."""
        found = _direction(self.lines)
        if found is None and self.session_lines is not None:
            found = _direction(self.session_lines)
        return found or "sendrecv"

    def attribute(self, name: str) -> str | None:
        """The media-level ``a=<name>`` value ("" for a flag), or None."""
        return _attribute(self.lines, name)

    @property
    def fmtp(self) -> dict[int, str]:
        """Payload type -> its ``a=fmtp`` parameters."""
        found: dict[int, str] = {}
        for line in self.lines:
            if line.startswith("a=fmtp:"):
                pt_text, _, params = line[len("a=fmtp:"):].partition(" ")
                pt = _number(pt_text, 127)
                if pt is not None:
                    found.setdefault(pt, params.strip())
        return found

    @property
    def rtpmap(self) -> dict[int, Codec]:
        """Payload type -> Codec, in the m= line's order (the sender's preference);
        static payload types need no rtpmap line, dynamic ones without one are left out."""
        if not self.is_rtp:
            return {}
        mapped: dict[int, Codec] = {}
        for line in self.lines:
            if line.startswith("a=rtpmap:"):
                codec = _rtpmap(line)
                if codec is not None:
                    mapped.setdefault(codec.payload_type, codec)
        fmtps = self.fmtp
        found: dict[int, Codec] = {}
        for fmt in self.formats:
            pt = _number(fmt, 127)
            if pt is None or pt in found:
                continue
            codec = mapped.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
            if codec is not None:
                fmtp = fmtps.get(pt)
                found[pt] = codec if fmtp is None else Codec(pt, codec.name, codec.clock_rate,
                                                              codec.channels, fmtp)
        return found

    @property
    def ptime(self) -> int | None:
        """The ``a=ptime`` packet time in ms, or None."""
        value = _attribute(self.lines, "ptime")
        return None if value is None else _number(value.strip(), 10_000) or None

    @property
    def rtcp_port(self) -> int:
        """The ``a=rtcp`` port (RFC 3605), else the RTP port + 1 (RFC 3550 §11)."""
        value = _attribute(self.lines, "rtcp")
        port = _number(value.split(" ")[0], 65535) if value else None
        return self.port + 1 if port is None else port


class SessionDescription:
    """An SDP body: session-level lines and media sections."""

    __slots__ = ("session", "media")

    def __init__(self, session: list[str], media: list[Media]) -> None:
        self.session = session
        self.media = media
        for m in media:
            m.session_lines = session

    @property
    def connection(self) -> str | None:
        """The session-level connection address (``c=IN IP4 <addr>``)."""
        return _address(self.session)

    @property
    def origin(self) -> list[str] | None:
        """The six fields of the o= line, or None."""
        for line in self.session:
            if line.startswith("o="):
                fields = line[2:].split()
                return fields if len(fields) == 6 else None
        return None

    def copy(self) -> SessionDescription:
        return SessionDescription(list(self.session), [m.copy() for m in self.media])

    def __bytes__(self) -> bytes:
        lines = list(self.session)
        for m in self.media:
            lines.append(m.media_line())
            lines.extend(m.lines)
        return _join(lines)


def _lines(body: bytes) -> list[str]:
    return [line for line in body.decode("utf-8", "replace").replace("\r\n", "\n").split("\n") if line]


def _join(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _media(line: str, strict: bool) -> Media | None:
    """An ``m=<kind> <port>[/<count>] <proto> <fmt> ...`` line, or None if malformed.
    Lax (for rejecting_answer, as before): three fields and a numeric port."""
    parts = line[2:].split()
    if len(parts) < (4 if strict else 3):
        return None
    port_text, slash, count_text = parts[1].partition("/")
    port = _number(port_text, 65535 if strict else 10**10)
    count = _number(count_text, 65535) if slash else None
    if port is None or (strict and slash and not count):
        return None
    if strict and "RTP/" in parts[2] and any(_number(f, 127) is None for f in parts[3:]):
        return None  # RFC 4566 §5.14: for RTP/AVP and RTP/SAVP, <fmt> are payload type numbers
    return Media(parts[0], port, parts[2], parts[3:], [], count)


def _split(body: bytes, strict: bool) -> SessionDescription:
    lines = _lines(body)
    if not lines or not lines[0].startswith("v="):
        raise SdpError("SDP must start with v=")
    if strict and lines[0] != "v=0":
        raise SdpError(f"unsupported SDP version {lines[0][:20]!r}")
    session: list[str] = []
    media: list[Media] = []
    for line in lines:
        if len(line) < 2 or line[1] != "=" or (strict and not "a" <= line[0] <= "z"):
            raise SdpError(f"bad SDP line {line[:40]!r}")
        if line.startswith("m="):
            m = _media(line, strict)
            if m is None:
                raise SdpError(f"bad media line {line[:60]!r}")
            media.append(m)
            continue
        if strict:
            _check_line(line, bool(media))
        (media[-1].lines if media else session).append(line)
    sdp = SessionDescription(session, media)
    if strict:
        _check_structure(sdp)
    return sdp


def _check_line(line: str, in_media: bool) -> None:
    kind = line[0]
    if kind == "c" and len(line[2:].split()) != 3:
        raise SdpError(f"bad connection line {line[:60]!r}")
    if kind == "o" and len(line[2:].split()) != 6:
        raise SdpError(f"bad origin line {line[:60]!r}")
    if kind in "ostvz" and in_media:
        raise SdpError(f"{kind}= line inside a media section")
    # A malformed a=rtpmap (RFC 4475 esc01 has "a=rtpmap:31 LPC") is not refused:
    # it names no codec, so `Media.rtpmap` leaves it out, and the rest stands.


def _check_structure(sdp: SessionDescription) -> None:
    present = {line[0] for line in sdp.session}
    for kind in "ost":
        if kind not in present:
            raise SdpError(f"missing {kind}= line")
    if "c" not in present:
        # RFC 4566 §5.7: c= at session level or in every media description.
        for m in sdp.media:
            if m.port != 0 and _address(m.lines) is None:
                raise SdpError(f"missing c= line for m={m.kind}")


def parse_sdp(body: bytes) -> SessionDescription:
    """Split and check an SDP body; raise SdpError (a ValueError) with a reason if it is not
    SDP: v=0 first, o= (six fields), s=, t= and c= (session level or in every live stream)
    present, every line ``x=...``, m= and a=rtpmap lines well formed. The size limit is the
    message parser's (limits.max_sdp_size, answered 513)."""
    return _split(body, strict=True)


def rejecting_answer(offer: bytes | None, address: str, session_id: int = 1) -> bytes | None:
    """An RFC 3264 answer that declines every offered stream (port 0, §6).

    For endpoints inside the switch that have no media yet: the call connects,
    and both sides know that no RTP will flow. Reads the offer laxly (only its m=
    lines matter here)."""
    if not offer:
        return None
    try:
        parsed = _split(offer, strict=False)
    except ValueError:
        return None
    family = _family(address)
    lines = [
        "v=0",
        f"o=phpvoip {session_id} {session_id} IN {family} {address}",
        "s=phpvoip",
        f"c=IN {family} {address}",
        "t=0 0",
    ]
    for m in parsed.media:
        lines.append(f"m={m.kind} 0 {m.proto} {m.formats[0] if m.formats else '0'}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _family(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _inet(address: str) -> str:
    """``IN IP4 <address>`` or ``IN IP6 <address>`` for c=, o= and a=rtcp (a URI host's
    brackets removed: SDP writes IPv6 addresses bare)."""
    bare = address.strip("[]")
    return f"IN {_family(bare)} {bare}"


# -- rewriting a description ------------------------------------------------------------


def rewrite_media(sdp: SessionDescription, address: str, ports: Sequence[int | None]) -> SessionDescription:
    """A copy of `sdp` whose media go to `address` (what a relay sends on): every c= line
    set to it, the i-th m= port set to ``ports[i]`` (None, a missing entry or a rejected
    stream's port 0 is kept), a=rtcp set to that port + 1 at `address` (dropped for a
    rejected stream), ICE lines removed (the relay is the only candidate). Every other
    line is kept as it was."""
    connection = "c=" + _inet(address)
    session = [connection if line.startswith("c=") else line
               for line in sdp.session if not line.startswith(_ICE)]
    media = []
    for i, m in enumerate(sdp.media):
        wanted = ports[i] if i < len(ports) else None
        port = m.port if m.port == 0 or wanted is None else wanted
        lines = []
        for line in m.lines:
            if line.startswith(_ICE):
                continue
            if line.startswith("c="):
                line = connection
            elif line.startswith("a=rtcp:"):
                if port == 0:
                    continue
                line = f"a=rtcp:{port + 1} {_inet(address)}"
            lines.append(line)
        copied = m.copy(lines)
        copied.port = port
        media.append(copied)
    return SessionDescription(session, media)


def answer_direction(offered: str, local: str = "sendrecv") -> str:
    """The direction to answer an `offered` stream with, when we would like `local`
    (RFC 3264 §6.1): we send only if the offerer receives, and receive only if it sends.
    So sendonly -> recvonly, recvonly -> sendonly, inactive -> inactive, sendrecv -> `local`."""
    _check_direction(offered)
    _check_direction(local)
    send = offered in ("sendrecv", "recvonly") and local in ("sendrecv", "sendonly")
    receive = offered in ("sendrecv", "sendonly") and local in ("sendrecv", "recvonly")
    return ("inactive", "recvonly", "sendonly", "sendrecv")[send * 2 + receive]


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")


def _set_direction(lines: list[str], wanted: str) -> list[str]:
    return [wanted if line in _DIRECTIONS else line for line in lines]


def hold_offer(sdp: SessionDescription, direction: str = "sendonly") -> SessionDescription:
    """A copy of `sdp` with `direction` in every live stream (RFC 3264 §8.4: hold is a
    new offer with sendonly, or inactive; unhold is ``hold_offer(sdp, "sendrecv")``).
    Rejected streams and the session-level lines are kept; bump_version it before sending."""
    _check_direction(direction)
    wanted = "a=" + direction
    media = []
    for m in sdp.media:
        lines = list(m.lines)
        if m.port != 0:
            if _direction(lines) is None:
                lines.append(wanted)
            else:
                lines = _set_direction(lines, wanted)
        media.append(m.copy(lines))
    return SessionDescription(list(sdp.session), media)


def _next_version(fields: list[str]) -> list[str] | None:
    """The o= fields with the version incremented, or None if it is not a number."""
    version = fields[2]
    if not (version.isascii() and version.isdigit()) or len(version) > 40:  # int() refuses '²'
        return None
    return [*fields[:2], str(int(version) + 1), *fields[3:]]


def bump_version(sdp: SessionDescription) -> SessionDescription:
    """A copy of `sdp` with its o= version incremented: RFC 3264 §8 asks it of every new
    offer in a session. An o= version that is not a number is kept."""
    copied = sdp.copy()
    for i, line in enumerate(copied.session):
        if line.startswith("o="):
            fields = _next_version(line[2:].split()) if len(line[2:].split()) == 6 else None
            if fields is not None:
                copied.session[i] = "o=" + " ".join(fields)
            break
    return copied


# -- what a B2BUA needs when one side of a call is replaced (on bytes) --------------------


def same_media(a: bytes | None, b: bytes | None) -> bool:
    """Whether two descriptions ask for the same media: equal but for the origin
    (o=) and session name (s=) lines, which say who wrote them, not what flows."""
    if a is None or b is None:
        return a is b
    return _media_lines(a) == _media_lines(b)


def _media_lines(body: bytes) -> list[str]:
    return [line for line in _lines(body) if not line.startswith(("o=", "s="))]


def origin_fields(body: bytes | None) -> list[str] | None:
    """The six fields of the o= line (username, session id, version, network
    type, address type, address), or None."""
    if not body:
        return None
    for line in _lines(body):
        if line.startswith("o="):
            fields = line[2:].split()
            return fields if len(fields) == 6 else None
    return None


def continue_origin(body: bytes, previous: bytes | None) -> bytes:
    """`body` re-written as the next version of the session `previous` described.

    RFC 3264 §8: a new offer in a session "MUST" keep the o= line's username and
    session id and increment its version. When a B2BUA joins a party to someone new,
    that party must still see one session: keep `previous`'s origin, version + 1."""
    old = origin_fields(previous)
    fields = _next_version(old) if old is not None else None
    if fields is None:
        return body
    lines = _lines(body)
    for i, line in enumerate(lines):
        if line.startswith("o="):
            lines[i] = "o=" + " ".join(fields)
            return _join(lines)
    return body


def with_direction(body: bytes, direction: str = "sendrecv") -> bytes:
    """`body` with every direction attribute (RFC 3264 §5.1: sendrecv, sendonly,
    recvonly, inactive) set to `direction`; media without one are left alone
    (they are sendrecv by default). See hold_offer for a parsed description."""
    lines = _lines(body)
    changed = _set_direction(lines, "a=" + direction)
    return body if changed == lines else _join(changed)


_OFFER_ANSWER = frozenset(("NotAcceptable", "Negotiated", "make_offer", "answer_offer", "negotiated"))


def __getattr__(name: str) -> Any:
    """The offer/answer names of phpvoip.sip.sdp_offer, importable from here as well
    (imported late: sdp_offer builds on this module)."""
    if name in _OFFER_ANSWER:
        from phpvoip.sip import sdp_offer

        return getattr(sdp_offer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
