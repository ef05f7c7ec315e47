"""SIP requests and responses: `parse(bytes)` and `bytes(message)` (RFC 3261 §7, §25).

Headers are kept in the order they arrived, under the name as written. The headers
that routing needs (Via, From, To, Call-ID, CSeq, Max-Forwards, Contact, Route,
Record-Route, Content-Length) are parsed into typed values while the message is
parsed, so a malformed one is refused at once. A few others get a syntax check
when present (Date, Expires, Content-Type, Require, Proxy-Require: RFC 4475 needs
them refused), and every other header stays raw text until somebody asks for it.

Parsing is on the path of every packet, so `parse` is written for speed: one
decode, one split, a cache from header names to what to do with them, one regular
expression per typed value, values (URIs in name-addrs, parameters) that stay
checked text until read, and an index of the single-valued headers for the
properties. bench/parse.py measures it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from phpvoip.sip.errors import ParseError
from phpvoip.sip.headers import (
    COMPACT,
    STAR,
    CSeq,
    NameAddr,
    Via,
    canonical_key,
    check_content_type,
    check_date,
    check_delta_seconds,
    check_option_tags,
    display_name,
    parse_call_id,
    parse_contact_list,
    parse_cseq,
    parse_int,
    parse_name_addr,
    parse_route_list,
    parse_via_list,
    split_commas,
)
from phpvoip.sip.uri import URI, parse_uri

__all__ = ["Message", "ParseError", "Request", "Response", "parse", "REASONS", "KNOWN_METHODS"]

REASONS = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


# Methods of RFC 3261 and the extensions a softswitch meets (RFC 3262, 3265, 3311,
# 3428, 3515, 3903, 6086). Only used to pick 501 over 400 (RFC 4475 §3.1.2.18).
KNOWN_METHODS = frozenset(
    (
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
        "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
    )
)  # fmt: skip


def _max_forwards(value: str) -> int:
    # Max-Forwards is 0-255 (§20.22)
    if len(value) < 4 and value.isdigit() and value.isascii() and int(value) < 256:
        return int(value)
    return parse_int(value, "Max-Forwards", 255)  # leading zeros, or the error


def _content_length(value: str) -> int:
    if len(value) < 10 and value.isdigit() and value.isascii():
        return int(value)
    return parse_int(value, "Content-Length")


# Parsers of typed header values: key -> parser of one header line. Also used when
# a header set as text is first read through its property.
_TYPED: dict[str, Callable[[str], Any]] = {
    "via": parse_via_list,
    "from": parse_name_addr,
    "to": parse_name_addr,
    "call-id": parse_call_id,
    "cseq": parse_cseq,
    "max-forwards": _max_forwards,
    "contact": parse_contact_list,
    "route": parse_route_list,
    "record-route": parse_route_list,
    "content-length": _content_length,
}
# What `_parse` runs on each header line it meets: key -> (parser, may occur once:
# True, False, or "*" for Contact, whose "*" must be its only value).
# The check_* ones only validate and give the text back.
_AT_PARSE: dict[str, tuple[Callable[[str], Any], bool | str]] = {
    "via": (parse_via_list, False),
    "from": (parse_name_addr, True),
    "to": (parse_name_addr, True),
    "call-id": (parse_call_id, True),
    "cseq": (parse_cseq, True),
    "max-forwards": (_max_forwards, True),
    "contact": (parse_contact_list, "*"),  # a list, but '*' must be alone
    "route": (parse_route_list, False),
    "record-route": (parse_route_list, False),
    "content-length": (_content_length, True),
    "date": (check_date, True),
    "expires": (check_delta_seconds, True),
    "content-type": (check_content_type, True),
    "require": (check_option_tags, False),
    "proxy-require": (check_option_tags, False),
}
# Headers that hold a list: several lines of them are one list (§7.3.1).
_LISTS = frozenset(("via", "contact", "route", "record-route"))
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


# A header line is a three-item list ``[key, name, value]``: the lookup key (lower
# case, compact form expanded), the name as written, and the raw text or typed
# value. A list rather than a small class because a message has a dozen of them
# and building a list costs a third of calling a class (measured: 1.9 µs a message).


def _text(value: Any) -> str:
    """The wire text of a header value: raw text, a typed value, or a list."""
    if value.__class__ is str:
        return value
    if value.__class__ is list:
        return ", ".join([str(v) for v in value])
    return str(value)


def _list_value(key: str, value: Any) -> Any:
    # A single typed value of a list header is stored as a one-item list.
    if key in _LISTS and not isinstance(value, (str, list)) and value is not STAR:
        return [value]
    return value


class Message:
    """What requests and responses share: ordered headers and a body.

    `fields` is the ordered list of header lines (``[key, name, value]`` lists);
    use the methods below rather than changing it in place (assigning a whole new
    list is fine): a parsed message keeps an index of its single-valued header
    lines that only those methods know to drop.
    """

    __slots__ = ("fields", "body", "_index", "_indexed", "_index_size")

    def __init__(self, headers: Iterable[tuple[str, Any]] = (), body: bytes = b"") -> None:
        self.fields: list[list[Any]] = []
        self.body = body
        # key -> first line of a single-valued header, valid while `fields` is
        # the list `_indexed` and still `_index_size` long (the parser fills it;
        # the methods that change headers drop it)
        self._index: dict[str, list[Any]] | None = None
        self._indexed: list[list[Any]] | None = None
        self._index_size = 0
        for name, value in headers:
            self.add(name, value)

    # -- generic access ------------------------------------------------------

    def _typed(self, field: list[Any]) -> Any:
        """The typed value of a header line, parsing text set through add()/set()."""
        value = field[2]
        if value.__class__ is str:
            parser = _TYPED.get(field[0])
            if parser is not None:
                value = field[2] = parser(value.strip(" \t"))
        return value

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first line of a header as text, or `default`."""
        key = canonical_key(name)
        for k, _, value in self.fields:
            if k == key:
                return _text(value)
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of a header: all its lines, split at commas (§7.3.1).

        Only use this for headers whose grammar is a comma-separated list."""
        key = canonical_key(name)
        values: list[str] = []
        for k, _, value in self.fields:
            if k == key:
                values.extend(v.strip(" \t") for v in split_commas(_text(value)))
        return values

    def has(self, name: str) -> bool:
        key = canonical_key(name)
        return any(field[0] == key for field in self.fields)

    def add(self, name: str, value: Any, first: bool = False) -> None:
        """Add a header line; `first` puts it above the lines of the same name
        (how a Via or Record-Route is pushed), else it goes after them."""
        key = canonical_key(name)
        field = [key, name, _list_value(key, value)]
        self._index = None
        fields = self.fields
        last = -1
        for i, f in enumerate(fields):
            if f[0] == key:
                if first:
                    fields.insert(i, field)
                    return
                last = i
        if last < 0:
            fields.append(field)
        else:
            fields.insert(last + 1, field)

    def set(self, name: str, value: Any) -> None:
        """Replace every line of a header with one line holding `value`."""
        key = canonical_key(name)
        value = _list_value(key, value)
        self._index = None
        fields = self.fields
        for i, field in enumerate(fields):
            if field[0] == key:
                fields[i] = [key, field[1], value]
                fields[i + 1 :] = [f for f in fields[i + 1 :] if f[0] != key]
                return
        fields.append([key, name, value])

    def remove(self, name: str) -> None:
        key = canonical_key(name)
        self._index = None
        self.fields = [f for f in self.fields if f[0] != key]

    def headers(self) -> Iterator[tuple[str, str]]:
        """``(name, text)`` of every header line, in order."""
        for _, name, value in self.fields:
            yield name, _text(value)

    def _list(self, key: str) -> list[Any]:
        values: list[Any] = []
        for field in self.fields:
            if field[0] == key:
                values.extend(self._typed(field))
        return values

    def _single(self, key: str) -> Any:
        index = self._index
        if index is not None and self._indexed is (fields := self.fields) and len(fields) == self._index_size:
            field = index.get(key)
            if field is None:
                return None
            value = field[2]
            return value if value.__class__ is not str else self._typed(field)
        for field in self.fields:
            if field[0] == key:
                value = field[2]
                if value.__class__ is str:
                    return self._typed(field)
                return value
        return None

    # -- typed routing headers ------------------------------------------------

    @property
    def via(self) -> list[Via]:
        """All Via values, topmost first."""
        return self._list("via")

    @property
    def top_via(self) -> Via | None:
        for field in self.fields:
            if field[0] == "via":
                values = field[2]
                if values.__class__ is str:
                    values = self._typed(field)
                if values:
                    return values[0]
        return None

    def pop_via(self) -> Via:
        """Remove and return the topmost Via value (what a response loses on its
        way back through a proxy or transaction)."""
        for i, field in enumerate(self.fields):
            if field[0] == "via":
                values = self._typed(field)
                top = values[0]
                self._index = None
                if len(values) == 1:
                    del self.fields[i]
                else:
                    field[2] = values[1:]
                return top
        raise LookupError("no Via")

    @property
    def from_(self) -> NameAddr:
        index = self._index  # _single("from"), written out: read for every message
        if index is not None and self._indexed is (fields := self.fields) and len(fields) == self._index_size:
            field = index.get("from")
            if field is not None:
                value = field[2]
                return value if value.__class__ is not str else self._typed(field)
        return self._single("from")

    @from_.setter
    def from_(self, value: NameAddr) -> None:
        self.set("From", value)

    @property
    def to(self) -> NameAddr:
        index = self._index  # _single("to"), written out: read for every message
        if index is not None and self._indexed is (fields := self.fields) and len(fields) == self._index_size:
            field = index.get("to")
            if field is not None:
                value = field[2]
                return value if value.__class__ is not str else self._typed(field)
        return self._single("to")

    @to.setter
    def to(self, value: NameAddr) -> None:
        self.set("To", value)

    @property
    def call_id(self) -> str:
        index = self._index  # a Call-ID is text, checked when parsed
        if index is not None and self._indexed is (fields := self.fields) and len(fields) == self._index_size:
            field = index.get("call-id")
            if field is not None:
                return field[2]  # type: ignore[no-any-return]
        for field in self.fields:
            if field[0] == "call-id":
                return field[2]  # type: ignore[no-any-return]
        return None  # type: ignore[return-value]

    @call_id.setter
    def call_id(self, value: str) -> None:
        self.set("Call-ID", value)

    @property
    def cseq(self) -> CSeq:
        index = self._index  # _single("cseq"), written out: read for every message
        if index is not None and self._indexed is (fields := self.fields) and len(fields) == self._index_size:
            field = index.get("cseq")
            if field is not None:
                value = field[2]
                return value if value.__class__ is not str else self._typed(field)
        return self._single("cseq")

    @cseq.setter
    def cseq(self, value: CSeq) -> None:
        self.set("CSeq", value)

    @property
    def max_forwards(self) -> int | None:
        return self._single("max-forwards")

    @max_forwards.setter
    def max_forwards(self, value: int) -> None:
        self.set("Max-Forwards", value)

    @property
    def contact(self) -> list[NameAddr] | Any:
        """The Contact values, or `STAR` for ``Contact: *``."""
        for field in self.fields:
            if field[0] == "contact" and self._typed(field) is STAR:
                return STAR
        return self._list("contact")

    @property
    def route(self) -> list[NameAddr]:
        return self._list("route")

    @property
    def record_route(self) -> list[NameAddr]:
        return self._list("record-route")

    @property
    def content_length(self) -> int | None:
        return self._single("content-length")

    # -- serialization --------------------------------------------------------

    def start_line(self) -> str:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        lines = [self.start_line()]
        append = lines.append
        body = self.body
        wrote_length = False
        for key, name, value in self.fields:
            if value.__class__ is str:
                if key == "content-length":
                    continue  # text set by hand: the true length is written below
                append(f"{name}: {value}")
            elif key == "content-length":
                # Always the true length: the body may have changed since.
                if not wrote_length:
                    append(f"{name}: {len(body)}")
                    wrote_length = True
            elif value.__class__ is list:
                append(f"{name}: {', '.join([str(v) for v in value])}")
            else:
                append(f"{name}: {value}")
        if not wrote_length:
            append(f"Content-Length: {len(body)}")
        append("")
        append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body

    def _compare_key(self) -> tuple[Any, ...]:
        # Content-Length is derived from the body, so it takes no part; typed
        # headers compare by their typed form, whatever text they came as.
        lines = []
        for field in self.fields:
            key = field[0]
            if key == "content-length":
                continue
            value = self._typed(field) if key in _TYPED else field[2]
            lines.append((key, _text(value)))
        return (self.start_line(), lines, bytes(self.body))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._compare_key() == other._compare_key()

    __hash__ = None  # type: ignore[assignment]

    def _copy_fields(self) -> list[list[Any]]:
        copied = []
        for key, name, value in self.fields:
            if value.__class__ is list:
                value = [v.copy() for v in value]
            elif hasattr(value, "copy"):
                value = value.copy()
            copied.append([key, name, value])
        return copied


class Request(Message):
    """A SIP request. `uri` is the Request-URI."""

    __slots__ = ("method", "uri", "version")

    def __init__(
        self,
        method: str,
        uri: URI | str,
        headers: Iterable[tuple[str, Any]] = (),
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = parse_uri(uri) if isinstance(uri, str) else uri
        self.version = version

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def copy(self) -> Request:
        clone = Request(self.method, self.uri.copy(), (), self.body, self.version)
        clone.fields = self._copy_fields()
        return clone

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"

    def response(self, status: int, reason: str | None = None, to_tag: str | None = None) -> Response:
        """A response to this request with the headers §8.2.6.2 says to copy:
        Via (all, in order), From, To (plus `to_tag` if it has none), Call-ID, CSeq."""
        response = Response(status, reason)
        fields = response.fields
        for field in self.fields:
            key = field[0]
            if key == "via" or key == "from" or key == "call-id" or key == "cseq":
                fields.append([key, field[1], _text(field[2])])
            elif key == "to":
                to = self._typed(field)
                if to_tag is not None and to.tag is None:
                    to = to.copy()
                    to.tag = to_tag
                fields.append([key, field[1], to])
        return response


class Response(Message):
    """A SIP response."""

    __slots__ = ("status", "reason", "version")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, Any]] = (),
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = REASONS.get(status, "") if reason is None else reason
        self.version = version

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def copy(self) -> Response:
        clone = Response(self.status, self.reason, (), self.body, self.version)
        clone.fields = self._copy_fields()
        return clone

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


# -- parsing ------------------------------------------------------------------


def parse(data: bytes) -> Request | Response:
    """Parse one SIP message from a datagram (or a stream frame).

    Raises `ParseError` (a `ValueError`) with a reason, and never anything else.
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
        message, length = _parse_head(data[start:end])
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
    _parse_head(raw)
    raise _fail("no empty line after the headers", raw.decode("utf-8", "surrogateescape"))


class _Folded(Exception):
    """A header line continues on the next (§7.3.1): parse again, unfolded."""


def _parse_head(raw: bytes) -> tuple[Request | Response, int | None]:
    """The message (without body) and its Content-Length."""
    head = raw.decode("utf-8", "surrogateescape")
    lines = head.split("\r\n")
    try:
        return _parse_lines(head, lines)
    except _Folded:
        # Rare: unfolding costs a regular expression pass, so it is done only
        # when a continuation line shows up.
        head = _FOLD.sub(" ", head)
        return _parse_lines(head, head.split("\r\n"))


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
