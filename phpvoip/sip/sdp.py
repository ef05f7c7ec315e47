"""Just enough SDP (RFC 4566, RFC 3264) for a B2BUA: read, rewrite, answer.

A session description is kept as its lines, split into the session part and one
part per ``m=`` line, so that anything we do not touch goes back out exactly as it
came in.
"""

from __future__ import annotations

__all__ = [
    "Media",
    "SessionDescription",
    "continue_origin",
    "origin_fields",
    "parse_sdp",
    "rejecting_answer",
    "same_media",
    "with_direction",
]


class Media:
    """One ``m=`` section: its media line and the lines under it."""

    __slots__ = ("kind", "port", "proto", "formats", "lines")

    def __init__(self, kind: str, port: int, proto: str, formats: list[str], lines: list[str]) -> None:
        self.kind = kind
        self.port = port
        self.proto = proto
        self.formats = formats
        self.lines = lines  # the a=, c=, b= ... lines after the m= line

    def media_line(self) -> str:
        return f"m={self.kind} {self.port} {self.proto} {' '.join(self.formats)}"


class SessionDescription:
    """An SDP body: session-level lines and media sections."""

    __slots__ = ("session", "media")

    def __init__(self, session: list[str], media: list[Media]) -> None:
        self.session = session
        self.media = media

    @property
    def connection(self) -> str | None:
        """The session-level connection address (``c=IN IP4 <addr>``)."""
        for line in self.session:
            if line.startswith("c="):
                parts = line[2:].split()
                return parts[2] if len(parts) >= 3 else None
        return None

    def __bytes__(self) -> bytes:
        lines = list(self.session)
        for m in self.media:
            lines.append(m.media_line())
            lines.extend(m.lines)
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def parse_sdp(body: bytes) -> SessionDescription:
    """Split an SDP body into its parts; raise ValueError if it is not SDP."""
    text = body.decode("utf-8", "replace")
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
    if not lines or not lines[0].startswith("v="):
        raise ValueError("SDP must start with v=")
    session: list[str] = []
    media: list[Media] = []
    for line in lines:
        if len(line) < 2 or line[1] != "=":
            raise ValueError(f"bad SDP line {line[:40]!r}")
        if line.startswith("m="):
            parts = line[2:].split()
            port = parts[1].split("/")[0] if len(parts) >= 3 else ""
            if not (port.isascii() and port.isdigit()):
                raise ValueError(f"bad media line {line[:60]!r}")
            media.append(Media(parts[0], int(port), parts[2], parts[3:], []))
        elif media:
            media[-1].lines.append(line)
        else:
            session.append(line)
    return SessionDescription(session, media)


def rejecting_answer(offer: bytes | None, address: str, session_id: int = 1) -> bytes | None:
    """An RFC 3264 answer that declines every offered stream (port 0, §6).

    For endpoints inside the switch that have no media yet: the call connects,
    and both sides know that no RTP will flow."""
    if not offer:
        return None
    try:
        parsed = parse_sdp(offer)
    except ValueError:
        return None
    family = "IP6" if ":" in address else "IP4"
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


# -- what a B2BUA needs when one side of a call is replaced -------------------------------

_DIRECTIONS = frozenset(("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"))


def _lines(body: bytes) -> list[str]:
    return [line for line in body.decode("utf-8", "replace").replace("\r\n", "\n").split("\n") if line]


def _join(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


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
    if old is None or not (old[2].isascii() and old[2].isdigit()):  # int() refuses '²', isdigit() not
        return body
    old[2] = str(int(old[2]) + 1)
    lines = _lines(body)
    for i, line in enumerate(lines):
        if line.startswith("o="):
            lines[i] = "o=" + " ".join(old)
            return _join(lines)
    return body


def with_direction(body: bytes, direction: str = "sendrecv") -> bytes:
    """`body` with every direction attribute (RFC 3264 §5.1: sendrecv, sendonly,
    recvonly, inactive) set to `direction`; media without one are left alone
    (they are sendrecv by default)."""
    lines = _lines(body)
    wanted = "a=" + direction
    changed = [wanted if line in _DIRECTIONS else line for line in lines]
    return body if changed == lines else _join(changed)
