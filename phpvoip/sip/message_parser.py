"""`parse(bytes)`: one SIP message from a datagram or a stream frame (RFC 3261 §7,
§25; RFC 4475 for what must be refused).

The headers that routing needs (Via, From, To, Call-ID, CSeq, Max-Forwards,
Contact, Route, Record-Route, Content-Length) are parsed into typed values while
the message is parsed, so a malformed one is refused at once. A few others get a
syntax check when present (Date, Expires, Content-Type, Require, Proxy-Require:
RFC 4475 needs them refused), and every other header stays raw text until
somebody asks for it.

Parsing is on the path of every packet, so `parse` is written for speed: one
decode, one split, a cache from header names to what to do with them, one regular
expression per typed value, values (URIs in name-addrs, parameters) that stay
checked text until read, and an index of the single-valued headers for the
properties. bench/parse.py measures it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from phpvoip.sip.errors import ParseError
from phpvoip.sip.headers import (
    COMPACT,
    STAR,
    check_content_type,
    check_date,
    check_delta_seconds,
    check_option_tags,
    display_name,
    parse_call_id,
    parse_contact_list,
    parse_content_length,
    parse_cseq,
    parse_max_forwards,
    parse_name_addr,
    parse_route_list,
    parse_via_list,
)
from phpvoip.sip.limits import DEFAULT_LIMITS, MessageLimits
from phpvoip.sip.message_model import Request, Response
from phpvoip.sip.uri import parse_uri

__all__ = ["KNOWN_METHODS", "parse"]

# Methods of RFC 3261 and the extensions a softswitch meets (RFC 3262, 3265, 3311,
# 3428, 3515, 3903, 6086). Only used to pick 501 over 400 (RFC 4475 §3.1.2.18).
KNOWN_METHODS = frozenset(
    (
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
        "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
    )
)  # fmt: skip


# What `_parse_lines` runs on each header line it meets: key -> (parser, may occur once:
# True, False, or "*" for Contact, whose "*" must be its only value).
# The check_* ones only validate and give the text back.
_AT_PARSE: dict[str, tuple[Callable[[str], Any], bool | str]] = {
    "via": (parse_via_list, False),
    "from": (parse_name_addr, True),
    "to": (parse_name_addr, True),
    "call-id": (parse_call_id, True),
    "cseq": (parse_cseq, True),
    "max-forwards": (parse_max_forwards, True),
    "contact": (parse_contact_list, "*"),  # a list, but '*' must be alone
    "route": (parse_route_list, False),
    "record-route": (parse_route_list, False),
    "content-length": (parse_content_length, True),
    "date": (check_date, True),
    "expires": (check_delta_seconds, True),
    "content-type": (check_content_type, True),
    "require": (check_option_tags, False),
    "proxy-require": (check_option_tags, False),
}
# §8.1.1: a request must have these (and a response carries them back).
_MANDATORY = frozenset(("via", "from", "to", "call-id", "cseq"))

# header names and methods are tokens (§25.1)
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]++\Z")
_VERSION = re.compile(r"SIP/[0-9]++\.[0-9]++\Z", re.I)
# LWS = [*WSP CRLF] 1*WSP: a folded line continues the one above (§7.3.1)
_FOLD = re.compile(r"[ \t]*+\r\n[ \t]++")
# Outside a body only CRLF ends a line, and control characters may appear only
# escaped inside quoted strings (quoted-pair, §25.1). Typed values and the request
# line are checked by their own grammar; the text of other headers and the reason
# phrase get str.isprintable() (C, cheap), and this only when that says no.
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n")


def parse(data: bytes, limits: MessageLimits | None = DEFAULT_LIMITS) -> Request | Response:
    """Parse one SIP message from a datagram (or a stream frame).

    Raises `ParseError` (a `ValueError`) with a reason, and never anything else.
    A message beyond `limits` (header lines, line length, Vias, SDP size; None
    checks none) is refused with 400, or 513 for the SDP size (`phpvoip.sip.limits`).
    Octets after the body that Content-Length announces are ignored (§18.3, RFC
    4475 §3.1.1.8); without Content-Length the body runs to the end of `data`.
    On error, `ParseError.headers` holds every header line of the message that
    could be split into a name and a value, so a server can still answer.
    """
    try:
        if data.__class__ is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise ParseError("not bytes")
            data = bytes(data)
        # §7.5: CRLFs before the start line are ignored (keepalives on streams).
        start = 0
        while data.startswith(b"\r\n", start):
            start += 2
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            _unterminated(data, start)
        message, length = _parse_head(data[start:end], limits)
        if length is None:
            message.body = data[end + 4 :]
        else:
            body_end = end + 4 + length
            if body_end > len(data):
                raise _fail(
                    f"body shorter than Content-Length ({len(data) - end - 4} < {length})",
                    data[start:end].decode("utf-8", "surrogateescape"),
                )
            message.body = data[end + 4 : body_end]
        if limits is not None and len(message.body) > limits.max_sdp_size:
            _check_sdp_size(message, limits, data[start:end])
        return message
    except ParseError:
        raise
    except Exception as e:  # a bug in a parser must still look like bad input
        raise ParseError(f"unparseable message ({e.__class__.__name__})") from e


def _unterminated(data: bytes, start: int) -> None:
    """Raise for a message whose headers never end."""
    if start == len(data):
        raise ParseError("empty message")
    # Still read the headers, so that the reason names the first real fault (RFC
    # 4475's baddn.dat is cut short this way).
    raw = data[start:]
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    _parse_head(raw, DEFAULT_LIMITS)
    raise _fail("no empty line after the headers", raw.decode("utf-8", "surrogateescape"))


class _Folded(Exception):
    """A header line continues on the next (§7.3.1): parse again, unfolded."""


def _parse_head(raw: bytes, limits: MessageLimits | None) -> tuple[Request | Response, int | None]:
    """The message (without body) and its Content-Length."""
    head = raw.decode("utf-8", "surrogateescape")
    lines = head.split("\r\n")
    if limits is not None:
        # Two length comparisons for a normal message: the line lengths are
        # looked at only when the whole head is longer than one line may be.
        if len(lines) > limits.max_headers + 1:
            raise _fail(f"too many header lines ({len(lines) - 1}, limit {limits.max_headers})", head)
        if len(head) > limits.max_header_length and max(map(len, lines)) > limits.max_header_length:
            raise _fail(f"header line longer than {limits.max_header_length} octets", head)
    try:
        result = _parse_lines(head, lines)
    except _Folded:
        # Rare: unfolding costs a regular expression pass, so it is done only
        # when a continuation line shows up.
        head = _FOLD.sub(" ", head)
        result = _parse_lines(head, head.split("\r\n"))
    # Vias are at most one a line plus one a comma: counted only beyond that bound.
    if limits is not None and len(lines) + head.count(",") > limits.max_vias:
        vias = sum(len(f[2]) for f in result[0].fields if f[0] == "via")
        if vias > limits.max_vias:
            raise _fail(f"too many Via values ({vias}, limit {limits.max_vias})", head)
    return result


def _check_sdp_size(message: Request | Response, limits: MessageLimits, raw: bytes) -> None:
    """Refuse an SDP body over `limits.max_sdp_size` with 513 (§21.5.14)."""
    content_type = message.get("Content-Type") or ""
    if content_type.split(";", 1)[0].strip(" \t").lower() == "application/sdp":
        raise _fail(
            f"SDP body too large ({len(message.body)} octets, limit {limits.max_sdp_size})",
            raw.decode("utf-8", "surrogateescape"), 513,
        )


def _parse_lines(head: str, lines: list[str]) -> tuple[Request | Response, int | None]:
    message = _parse_start_line(lines[0])
    fields = message.fields
    append = fields.append
    # key -> the line of each typed header (the last one for lists): finds the
    # repeated ones, and becomes the message's index of its single-valued lines
    seen: dict[str, list[Any]] = {}
    keys = _KEYS  # name -> key, or (key, parser, single); new names: __missing__
    key = ""
    try:
        for line in lines[1:]:
            name, value = line.split(":", 1)  # ValueError: no colon
            info = keys[name]
            if info.__class__ is str:
                value = value.strip(" \t")
                if not value.isprintable():
                    _check_text(value, head)
                append([info, name, value])
            else:
                key, parser, single = info
                if single and key in seen:
                    _repeated(key, single, seen[key][2], value, head)
                field = seen[key] = [key, name, parser(value.strip(" \t"))]
                append(field)
    except _BadName as e:
        raise _fail(e.reason, head) from None
    except ParseError as e:
        if "\r\n " in head or "\r\n\t" in head:
            raise _Folded from None  # the value may go on in the next line
        if e.start_line is not None:
            raise
        raise ParseError(
            f"bad {display_name(key)} header: {e.reason}", e.status, lines[0], _raw_headers(head)
        ) from None
    except ValueError:
        for line in lines[1:]:
            if ":" not in line:
                if line[:1] == " " or line[:1] == "\t":
                    raise _Folded from None
                raise _fail(f"header line without a colon: {line[:40]!r}", head) from None
        raise
    if len(seen) < 5 or not seen.keys() >= _MANDATORY:
        missing = [display_name(k) for k in ("via", "from", "to", "call-id", "cseq") if k not in seen]
        raise _fail(f"missing {', '.join(missing)} header", head)
    if message.__class__ is Request:
        method = message.method  # type: ignore[union-attr]
        if seen["cseq"][2].method != method:
            # RFC 4475 §3.1.2.18: for a method we do not know, 501 is the better answer
            raise _fail(
                "CSeq method does not match the request method", head, 400 if method in KNOWN_METHODS else 501
            )
    message._index = seen
    message._indexed = fields
    message._index_size = len(fields)
    length = seen.get("content-length")
    return message, None if length is None else length[2]


def _repeated(key: str, single: bool | str, before: Any, value: str, head: str) -> None:
    """A header met a second time: fine for a list, an error for a single one
    (RFC 4475 §3.3.8, §3.3.9), and ``Contact: *`` must stand alone (§10.2.2)."""
    if single is True:
        raise _fail(f"more than one {display_name(key)} header", head)
    if before is STAR or value.strip(" \t") == "*":
        raise _fail("Contact: * together with other contacts (§10.2.2)", head)


class _BadName(ParseError):
    """A header line whose name is not a token (raised with no message context)."""


class _Names(dict):  # type: ignore[type-arg]
    """Header names as written -> key, or (key, parser, single) for the headers
    `_AT_PARSE` checks. A name not met before is checked here (a token, maybe
    with whitespace before the colon; compact forms expanded) and remembered, up
    to a bound so that garbage cannot bloat the cache; a bad one is never kept."""

    __slots__ = ()

    def __missing__(self, name: str) -> str | tuple[str, Callable[[str], Any], bool | str]:
        if name[:1] == " " or name[:1] == "\t":
            raise _Folded  # a continuation line, and the head is not unfolded yet
        clean = name.rstrip(" \t")  # HCOLON = *( SP / HTAB ) ":" SWS
        if not _TOKEN.match(clean):
            raise _BadName(f"bad header name {clean[:40]!r}")
        key = clean.lower()
        if len(key) == 1:
            key = COMPACT.get(key, key)
        entry = _AT_PARSE.get(key)
        info = key if entry is None else (key, entry[0], entry[1])
        if len(self) < _KEYS_MAX:
            self[name] = info
        return info


_KEYS_MAX = 1024
_KEYS = _Names()
# The names of RFC 3261 §20 and common extensions, in their usual spellings, are
# known from the start: a flood of invented names may fill the cache, not evict them.
for _name in (
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Id", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Identity",
    "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization",
    "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority", "Privacy",
    "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-To", "Referred-By", "Replaces", "Reply-To", "Require",
    "Retry-After", "Route", "RSeq", "Server", "Service-Route", "Session-Expires",
    "Subject", "Subscription-State", "Supported", "Timestamp", "To", "Unsupported",
    "User-Agent", "Via", "Warning", "WWW-Authenticate",
    "b", "c", "e", "f", "i", "k", "l", "m", "o", "r", "s", "t", "u", "v", "x", "y",
):  # fmt: skip
    _KEYS[_name]  # a miss: __missing__ checks the name and keeps it
del _name


def _fail(reason: str, head: str, status: int | None = None) -> ParseError:
    return ParseError(reason, status, head.partition("\r\n")[0], _raw_headers(head))


def _raw_headers(head: str) -> list[tuple[str, str]]:
    """Every header line that splits into a name and a value (error path only)."""
    head = _FOLD.sub(" ", head)
    pairs = []
    for line in head.split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        if colon:
            pairs.append((name.rstrip(" \t"), value.strip(" \t")))
    return pairs


def _check_text(text: str, head: str) -> None:
    """Refuse control characters in header text: HTAB is whitespace, and anything
    else only comes escaped (quoted-pair). Non-ASCII text is UTF8-NONASCII, fine
    even where isprintable() says no."""
    for m in _BAD_CHARS.finditer(text):
        ch = m.group()
        if ch == "\r" or ch == "\n":
            raise _fail("bare CR or LF in the headers (lines end with CRLF, §7)", head)
        if text[m.start() - 1 : m.start()] != "\\":
            raise _fail(f"control character {ch!r} in the headers", head)


def _parse_start_line(line: str) -> Request | Response:
    """Request-Line = Method SP Request-URI SP SIP-Version; Status-Line =
    SIP-Version SP Status-Code SP Reason-Phrase (§7.1, §7.2, §25.1)."""
    if line[3:4] == "/":  # "SIP/" (a method, being a token, has no '/')
        return _parse_status_line(line)
    parts = line.split(" ")
    if len(parts) != 3:
        raise ParseError(_why_bad_request_line(line), start_line=line)
    method, uri_text, version = parts
    if method not in KNOWN_METHODS and not _TOKEN.match(method):
        raise ParseError(f"bad method {method[:20]!r}", start_line=line)
    if version != "SIP/2.0":
        _check_version(version, line)
    try:
        uri = parse_uri(uri_text)
    except ParseError as e:
        raise ParseError(f"bad Request-URI: {e.reason}", start_line=line) from None
    if uri.headers is not None:
        # §19.1.1, Table 1: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11)
        raise ParseError("headers in the Request-URI", start_line=line)
    request = Request.__new__(Request)
    request.fields = []
    request.body = b""
    request.method = method
    request.uri = uri
    request.version = version
    return request


def _parse_status_line(line: str) -> Response:
    version, sp1, rest = line.partition(" ")
    code, sp2, reason = rest.partition(" ")
    if version != "SIP/2.0":
        _check_version(version, line)
    if not sp2:
        raise ParseError(f"bad status line {line[:60]!r}", start_line=line)
    # Status-Code = 3DIGIT, classes 1xx to 6xx (§7.2, §21)
    if len(code) != 3 or not code.isdigit() or not code.isascii() or not "1" <= code[0] <= "6":
        raise ParseError(f"bad status code {code[:20]!r}", start_line=line)
    if not reason.isprintable():
        _check_text(reason, line)
    response = Response.__new__(Response)
    response.fields = []
    response.body = b""
    response.status = int(code)
    response.reason = reason
    response.version = version
    return response


def _check_version(version: str, line: str) -> None:
    # SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT, "SIP" in any case (§7.1, §25.1)
    if not _VERSION.match(version):
        raise ParseError(f"bad SIP version {version[:20]!r}", start_line=line)
    if version.upper() != "SIP/2.0":
        raise ParseError(f"SIP version {version[4:20]!r} is not supported", 505, start_line=line)


def _why_bad_request_line(line: str) -> str:
    if line.endswith(" "):
        return "whitespace at the end of the request line"
    if "  " in line:
        return "more than one space between request line elements"
    if line.count(" ") > 2:
        return "whitespace inside the Request-URI"
    return f"bad start line {line[:60]!r}"
