"""SIP transport rules without sockets (RFC 3261 §18, RFC 3581, RFC 5626 §4.4.1).

Bytes, a source `Address` and the size limit come in; decisions come out, for the
I/O in `phpvoip.transport` to carry out. A `Receiver` says what to do with one
datagram or one stream frame:

- a `Request` or `Response`: deliver it (a request's top Via already carries
  ``received``/``rport``, §18.2.1, RFC 3581 §4);
- `Reply`: send this response back to the source, as any response goes (§18.2.2);
  bytes that do not parse are answered 400/505 (513 when too large) when their Via,
  From, To, Call-ID and CSeq can still be read (`phpvoip.sip.uas.error_response`);
- `SEND_PONG`: write `PONG` back the way the ping came (RFC 5626 §4.4.1);
- `IGNORE`: nothing to do and nothing worth a log line (a lone CRLF);
- `Drop`: discard it; its `reason` is for a debug log line.

`Reply` and `Drop` carry `close`: the stream's framing is lost and its connection
must be closed once the reply is sent. `StreamFramer` cuts a TCP byte stream into
those frames by Content-Length (§18.3), and `response_target` says where a response
goes when there is no connection to reuse (§18.2.2).
"""

from __future__ import annotations

import ipaddress
import re
import socket  # for inet_pton only: no socket is ever opened here
from collections.abc import Iterable

from phpvoip.sip.address import Address
from phpvoip.sip.errors import LocalProtocolError, ParseError
from phpvoip.sip.headers import Via
from phpvoip.sip.limits import DEFAULT_LIMITS, MessageLimits
from phpvoip.sip.message import Request, Response, parse
from phpvoip.sip.uas import error_response

__all__ = [
    "BAD_LENGTH",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "GARBAGE",
    "IGNORE",
    "MESSAGE",
    "NO_LENGTH",
    "PING",
    "PONG",
    "SEND_PONG",
    "TOO_LARGE",
    "Drop",
    "Receiver",
    "Reply",
    "StreamFramer",
    "maddr_allowed",
    "packed_ip",
    "response_target",
    "stamp_via",
]

DEFAULT_MAX_MESSAGE_SIZE = 65535
PONG = b"\r\n"  # RFC 5626 §4.4.1: the answer to a "\r\n\r\n" ping


# -- addresses and Via (§18.2.1, §18.2.2, RFC 3581) -----------------------------------


def packed_ip(host: str) -> bytes | None:
    """The packed form of an IP literal (brackets allowed), None for anything else."""
    if ":" in host:
        try:
            return socket.inet_pton(socket.AF_INET6, host.strip("[]"))
        except (OSError, ValueError):
            return None
    try:
        return socket.inet_pton(socket.AF_INET, host)
    except (OSError, ValueError):
        return None


def stamp_via(via: Via, host: str, port: int) -> None:
    """Add ``received``/``rport`` to the top Via of a request that came from
    `host`:`port`.

    §18.2.1: "If the host portion of the "sent-by" parameter contains a domain
    name, or if it contains an IP address that differs from the packet source
    address, the server MUST add a "received" parameter". RFC 3581 §4: an empty
    ``rport`` is filled with the source port, and then "received" is added "even if
    it is identical to the value of the "sent-by" component".
    """
    params = via.params
    if "rport" in params and not params["rport"]:
        params["rport"] = str(port)
        params["received"] = host
    elif via.host != host and packed_ip(via.host) != packed_ip(host):
        params["received"] = host


def maddr_allowed(maddr: str, own_hosts: Iterable[str] = ()) -> bool:
    """Whether a Via ``maddr`` may be followed: a loopback address or one of
    `own_hosts` (the switch's own). Anywhere else it would let one forged request
    aim our response at a third party (reflection), so it is ignored there."""
    packed = packed_ip(maddr)
    if packed is None:
        return False
    if ipaddress.ip_address(packed).is_loopback:
        return True
    return any(packed == packed_ip(own) for own in own_hosts)


def response_target(via: Via | None, source: Address, own_hosts: Iterable[str] = ()) -> Address:
    """Where a response goes when the request came from `source` and its top Via is
    `via` (§18.2.2, RFC 3581 §4), for when there is no connection to reuse.

    Host names are not resolved here: a request whose sent-by was a name got
    ``received`` stamped, and where nothing usable is left the source is used.
    A request that came over UDP with a top Via naming another transport (TCP,
    TLS: RFC 4475's novelsc and bext01) is answered to its source: its sent-by
    names a listener of that other transport, and the source is the one address
    known to take our UDP. ``maddr`` is honoured only for loopback and
    `own_hosts` (`maddr_allowed`).
    """
    if via is None:
        return source
    port = via.port or (5061 if via.transport == "TLS" else 5060)
    received = via.received
    if received is not None and packed_ip(received) is None:
        received = None
    if source.transport == "udp":
        if via.transport != "UDP":
            return source
        # "if the top Via has a "maddr" parameter, the response MUST be forwarded
        # to the address listed there, using the port indicated in "sent-by"".
        # Multicast TTL is not honoured: we never join a group; and only our own
        # or loopback addresses are followed (see maddr_allowed).
        maddr = via.maddr
        if maddr and maddr_allowed(maddr, own_hosts):
            return Address("udp", maddr.strip("[]"), port)
        rport = via.rport
        if received is not None:
            return Address("udp", received, rport or port)
        host = via.host.strip("[]")
        if packed_ip(host) is None:
            return source
        return Address("udp", host, rport or port)
    # Reliable transport whose connection is gone: "open a connection to the IP
    # address in the "received" parameter, if present, using the port in the
    # "sent-by" value" (rport named the closed connection's port: useless now).
    host = received if received is not None else via.host.strip("[]")
    if packed_ip(host) is None:
        host = source.host
    return Address(source.transport, host, port)


# -- stream framing (§18.3) ----------------------------------------------------

# What StreamFramer.feed yields: (kind, octets).
MESSAGE = "message"  # one whole message
PING = "ping"  # RFC 5626 §4.4.1 double-CRLF keepalive: answer with one CRLF
TOO_LARGE = "too-large"  # headers of a message over the limit; its body is skipped
NO_LENGTH = "no-length"  # headers without Content-Length: framing is lost
BAD_LENGTH = "bad-length"  # unreadable or conflicting Content-Length: framing is lost
GARBAGE = "garbage"  # no end of headers within the limit: framing is lost

_FOLDED = re.compile(rb"\r\n[ \t]+")


def _content_length(head: bytes) -> int | None:
    """The Content-Length of a header block, None when absent; ValueError when it
    cannot be trusted for framing."""
    if b"\r\n " in head or b"\r\n\t" in head:
        head = _FOLDED.sub(b" ", head)
    value = None
    for line in head.split(b"\r\n")[1:]:
        name, colon, text = line.partition(b":")
        if not colon:
            continue
        name = name.strip(b" \t").lower()
        if name == b"content-length" or name == b"l":
            text = text.strip(b" \t")
            if not text.isdigit() or len(text) > 10:
                raise ValueError(text)
            length = int(text)
            if value is not None and value != length:
                raise ValueError(text)
            value = length
    return value


class StreamFramer:
    """Cuts a TCP byte stream into SIP messages by their Content-Length (§18.3).

    States (`state`):

    - HEAD: looking for the empty line that ends a header block; CRLFs between
      messages are skipped (§7.5) and a double CRLF is a keepalive ping.
    - BODY: the headers are read, `need` octets make the whole message.
    - SKIP: discarding the body of a message refused as too large.
    - DEAD: framing is lost (no or bad Content-Length, endless headers); the
      connection has to be closed. Everything fed after is ignored.
    """

    HEAD, BODY, SKIP, DEAD = "HEAD", "BODY", "SKIP", "DEAD"

    __slots__ = ("max_size", "state", "_buf", "_scan", "_need", "_skip")

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_size = max_size
        self.state = self.HEAD
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for the end of the headers
        self._need = 0
        self._skip = 0

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        """Take more octets; return the frames they complete, in order."""
        if self.state == self.DEAD:
            return []
        buf = self._buf
        buf += data
        out: list[tuple[str, bytes]] = []
        while True:
            state = self.state
            if state == self.SKIP:
                n = min(self._skip, len(buf))
                del buf[:n]
                self._skip -= n
                if self._skip:
                    break
                self.state = self.HEAD
            elif state == self.HEAD:
                if buf[:2] == b"\r\n":
                    if buf[:4] == b"\r\n\r\n":
                        del buf[:4]
                        out.append((PING, b""))
                    elif len(buf) < 4 and b"\r\n\r\n".startswith(buf):
                        break  # perhaps a ping cut in two
                    else:
                        del buf[:2]
                    continue
                end = buf.find(b"\r\n\r\n", self._scan)
                if end < 0:
                    if len(buf) > self.max_size:
                        self._die()
                        out.append((GARBAGE, b""))
                    else:
                        self._scan = max(0, len(buf) - 3)
                    break
                self._scan = 0
                head = bytes(buf[: end + 4])
                try:
                    length = _content_length(head)
                except ValueError:
                    self._die()
                    out.append((BAD_LENGTH, head))
                    break
                if length is None:
                    self._die()
                    out.append((NO_LENGTH, head))
                    break
                if end + 4 + length > self.max_size:
                    out.append((TOO_LARGE, head))
                    del buf[: end + 4]
                    self._skip = length
                    self.state = self.SKIP
                    continue
                self._need = end + 4 + length
                self.state = self.BODY
            elif state == self.BODY:
                need = self._need
                if len(buf) < need:
                    break
                out.append((MESSAGE, bytes(buf[:need])))
                del buf[:need]
                self.state = self.HEAD
            else:
                break
        return out

    def _die(self) -> None:
        self.state = self.DEAD
        self._buf = bytearray()


# -- what to do with what arrived ---------------------------------------------------


class _Decision:
    """A decision that needs no data (h11's sentinels, as instances)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


SEND_PONG = _Decision("SEND_PONG")
IGNORE = _Decision("IGNORE")


class Reply:
    """Send `response` to the source as the answer to its unreadable message
    (routed like any response, §18.2.2); then close the stream if `close`."""

    __slots__ = ("response", "reason", "close")

    def __init__(self, response: Response, reason: str, close: bool = False) -> None:
        self.response = response
        self.reason = reason
        self.close = close

    def __repr__(self) -> str:
        return f"Reply({self.response.status}, {self.reason!r}, close={self.close})"


class Drop:
    """Discard what arrived, for `reason`; then close the stream if `close`."""

    __slots__ = ("reason", "close")

    def __init__(self, reason: str, close: bool = False) -> None:
        self.reason = reason
        self.close = close

    def __repr__(self) -> str:
        return f"Drop({self.reason!r}, close={self.close})"


Decision = Request | Response | Reply | Drop | _Decision

# §18.3: over a stream "the Content-Length header field MUST be used"; without a
# usable one the stream cannot be framed: answer, then close.
_UNFRAMED = {
    NO_LENGTH: "missing Content-Length header (required over TCP)",
    BAD_LENGTH: "bad Content-Length header",
}


class Receiver:
    """The receiving rules of one transport: what to do with each datagram
    (`receive`) or stream frame (`frame`) that came from a source address.

    Keeps no state between calls but the size limit, so one serves every socket
    and connection of a transport.
    """

    __slots__ = ("max_message_size", "limits")

    def __init__(
        self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, limits: MessageLimits = DEFAULT_LIMITS
    ) -> None:
        self.max_message_size = max_message_size
        self.limits = limits  # header count, line length, Vias, SDP size (phpvoip.sip.limits)

    def receive(self, data: bytes, source: Address) -> Decision:
        """Decide about one datagram (or one framed message) from `source`."""
        # The UDP hot path: a few checks, the parse, the stamp; a new object only
        # for what is not a message.
        if len(data) > self.max_message_size:
            if data.find(b"\r\n\r\n") >= 0:
                return self._too_large(data, source)
            return Drop(f"over {self.max_message_size} octets, no end of headers")
        if data[:2] == b"\r\n" and not data.strip(b"\r\n"):
            # CRLF keepalives (RFC 5626 §4.4.1 defines them for streams; phones send
            # them over UDP too): a double CRLF gets its pong, nothing is an error.
            return SEND_PONG if data == b"\r\n\r\n" else IGNORE
        try:
            message = parse(data, self.limits)
        except ParseError as e:
            return _answer_unparseable(e, data, source)
        if message.__class__ is Request:
            via = message.top_via
            if via is not None:
                stamp_via(via, source.host, source.port)
        return message

    def frame(self, kind: str, data: bytes, source: Address) -> Decision:
        """Decide about one `StreamFramer` frame from the connection to `source`."""
        if kind == MESSAGE:
            return self.receive(data, source)
        if kind == PING:
            return SEND_PONG  # RFC 5626 §4.4.1: "\r\n\r\n" ping, "\r\n" pong
        if kind == TOO_LARGE:
            return self._too_large(data, source)
        reason = _UNFRAMED.get(kind)
        if reason is not None:
            return _answer_unparseable(ParseError(reason), data, source, close=True)
        if kind == GARBAGE:
            return Drop(f"no end of headers within {self.max_message_size} octets", close=True)
        raise LocalProtocolError(f"no rule for a stream frame of kind {kind!r}")

    def _too_large(self, data: bytes, source: Address) -> Reply | Drop:
        """The 513 answer to a message over the limit, whose headers are `data`."""
        error = ParseError(f"message too large (limit {self.max_message_size} octets)", 513)
        return _answer_unparseable(error, data, source)


def _answer_unparseable(error: ParseError, data: bytes, source: Address, close: bool = False) -> Reply | Drop:
    """Reply to bytes from `source` that failed to parse with `error`, when their
    Via, From, To, Call-ID and CSeq can be read (§8.2.6.2); else drop them."""
    answer = error_response(error, data)
    if answer is None:
        return Drop(f"unreadable: {error.reason}", close)
    try:
        via = answer.top_via
    except ParseError:
        via = None
    if via is not None:
        # Route it like the answer to a well-formed request would go.
        stamp_via(via, source.host, source.port)
    return Reply(answer, error.reason, close)
