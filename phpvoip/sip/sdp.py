"""Just enough SDP (RFC 4566, RFC 3264) for a B2BUA: read, rewrite, answer.

A session description is kept as its lines, split into the session part and one
part per ``m=`` line, so that anything we do not touch goes back out exactly as it
came in.
"""

from __future__ import annotations

__all__ = ["Media", "SessionDescription", "parse_sdp", "rejecting_answer"]


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

    def attribute(self, name: str) -> str | None:
        prefix = f"a={name}"
        for line in self.lines:
            if line == prefix or line.startswith(prefix + ":"):
                return line[len(prefix) + 1 :] if len(line) > len(prefix) else ""
        return None


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
            if len(parts) < 3 or not parts[1].split("/")[0].isdigit():
                raise ValueError(f"bad media line {line[:60]!r}")
            media.append(Media(parts[0], int(parts[1].split("/")[0]), parts[2], parts[3:], []))
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
