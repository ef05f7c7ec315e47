"""SIP requests and responses: `parse(bytes)` and `bytes(message)` (RFC 3261 §7, §25).

Headers are kept in the order they arrived, under the name as written. The headers
that routing needs (Via, From, To, Call-ID, CSeq, Max-Forwards, Contact, Route,
Record-Route, Content-Length) are parsed into typed values while the message is
parsed, so a malformed one is refused at once; every other header stays raw text
until somebody asks for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from phpvoip.sip.errors import ParseError
from phpvoip.sip.headers import (
    STAR,
    CSeq,
    NameAddr,
    Via,
    canonical_key,
    display_name,
    parse_call_id,
    parse_contact_list,
    parse_cseq,
    parse_int,
    parse_name_addr,
    parse_name_addr_list,
    parse_via_list,
    split_commas,
)
from phpvoip.sip.uri import URI, parse_uri

__all__ = ["Message", "ParseError", "Request", "Response", "parse", "REASONS"]

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


def _int(name: str) -> Callable[[str], int]:
    def parse_value(value: str) -> int:
        return parse_int(value, name)

    return parse_value


def _max_forwards(value: str) -> int:
    return parse_int(value, "Max-Forwards", 255)


# Headers parsed while the message is parsed: key -> parser of one header line.
_TYPED: dict[str, Callable[[str], Any]] = {
    "via": parse_via_list,
    "from": parse_name_addr,
    "to": parse_name_addr,
    "call-id": parse_call_id,
    "cseq": parse_cseq,
    "max-forwards": _max_forwards,
    "contact": parse_contact_list,
    "route": parse_name_addr_list,
    "record-route": parse_name_addr_list,
    "content-length": _int("Content-Length"),
}
# Headers that hold a list: several lines of them are one list (§7.3.1).
_LISTS = frozenset(("via", "contact", "route", "record-route"))
# Headers that may occur once only.
_SINGLE = frozenset(("from", "to", "call-id", "cseq", "max-forwards", "content-length"))
_MANDATORY = ("via", "from", "to", "call-id", "cseq")

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_VERSION = re.compile(r"SIP/(\d+)\.(\d+)\Z", re.I)
_FOLD = re.compile(r"\r\n[ \t]+")


class _Field:
    """One header line: lookup key, name as written, and raw text or typed value."""

    __slots__ = ("key", "name", "value")

    def __init__(self, key: str, name: str, value: Any) -> None:
        self.key = key
        self.name = name
        self.value = value

    def text(self) -> str:
        value = self.value
        if value.__class__ is str:
            return value
        if value.__class__ is list:
            return ", ".join([str(v) for v in value])
        return str(value)


class Message:
    """What requests and responses share: ordered headers and a body."""

    __slots__ = ("fields", "body")

    def __init__(self, headers: Any = (), body: bytes = b"") -> None:
        self.fields: list[_Field] = []
        self.body = body
        for name, value in headers:
            self.add(name, value)

    # -- generic access ------------------------------------------------------

    def _typed(self, field: _Field) -> Any:
        value = field.value
        if value.__class__ is str:
            parser = _TYPED.get(field.key)
            if parser is not None:
                value = field.value = parser(value)
        return value

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first line of a header as text, or `default`."""
        key = canonical_key(name)
        for field in self.fields:
            if field.key == key:
                return field.text()
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of a header: all its lines, split at commas (§7.3.1).

        Only use this for headers whose grammar is a comma-separated list."""
        key = canonical_key(name)
        values: list[str] = []
        for field in self.fields:
            if field.key == key:
                values.extend(v.strip(" \t") for v in split_commas(field.text()))
        return values

    def has(self, name: str) -> bool:
        key = canonical_key(name)
        return any(field.key == key for field in self.fields)

    def add(self, name: str, value: Any, first: bool = False) -> None:
        """Add a header line; `first` puts it above the lines of the same name
        (how a Via or Record-Route is pushed), else it goes after them."""
        key = canonical_key(name)
        if key in _LISTS and not isinstance(value, (str, list)) and value is not STAR:
            value = [value]
        field = _Field(key, name, value)
        positions = [i for i, f in enumerate(self.fields) if f.key == key]
        if not positions:
            self.fields.append(field)
        elif first:
            self.fields.insert(positions[0], field)
        else:
            self.fields.insert(positions[-1] + 1, field)

    def set(self, name: str, value: Any) -> None:
        """Replace every line of a header with one line holding `value`."""
        key = canonical_key(name)
        if key in _LISTS and not isinstance(value, (str, list)) and value is not STAR:
            value = [value]
        for i, field in enumerate(self.fields):
            if field.key == key:
                self.fields[i] = _Field(key, field.name, value)
                self.fields[i + 1 :] = [f for f in self.fields[i + 1 :] if f.key != key]
                return
        self.fields.append(_Field(key, name, value))

    def remove(self, name: str) -> None:
        key = canonical_key(name)
        self.fields = [f for f in self.fields if f.key != key]

    def headers(self) -> Iterator[tuple[str, str]]:
        """``(name, text)`` of every header line, in order."""
        for field in self.fields:
            yield field.name, field.text()

    def _list(self, key: str) -> list[Any]:
        values: list[Any] = []
        for field in self.fields:
            if field.key == key:
                values.extend(self._typed(field))
        return values

    def _single(self, key: str) -> Any:
        for field in self.fields:
            if field.key == key:
                return self._typed(field)
        return None

    # -- typed routing headers ------------------------------------------------

    @property
    def via(self) -> list[Via]:
        """All Via values, topmost first."""
        return self._list("via")

    @property
    def top_via(self) -> Via | None:
        for field in self.fields:
            if field.key == "via":
                values = self._typed(field)
                if values:
                    return values[0]
        return None

    def pop_via(self) -> Via:
        """Remove and return the topmost Via value (what a response loses on its
        way back through a proxy or transaction)."""
        for i, field in enumerate(self.fields):
            if field.key == "via":
                values = self._typed(field)
                top = values[0]
                if len(values) == 1:
                    del self.fields[i]
                else:
                    field.value = values[1:]
                return top
        raise LookupError("no Via")

    @property
    def from_(self) -> NameAddr:
        return self._single("from")

    @from_.setter
    def from_(self, value: NameAddr) -> None:
        self.set("From", value)

    @property
    def to(self) -> NameAddr:
        return self._single("to")

    @to.setter
    def to(self, value: NameAddr) -> None:
        self.set("To", value)

    @property
    def call_id(self) -> str:
        return self._single("call-id")

    @call_id.setter
    def call_id(self, value: str) -> None:
        self.set("Call-ID", value)

    @property
    def cseq(self) -> CSeq:
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
            if field.key == "contact" and self._typed(field) is STAR:
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
        body = self.body
        wrote_length = False
        for field in self.fields:
            if field.key == "content-length":
                # Always the true length: the body may have changed since.
                if not wrote_length:
                    lines.append(f"{field.name}: {len(body)}")
                    wrote_length = True
                continue
            lines.append(f"{field.name}: {field.text()}")
        if not wrote_length:
            lines.append(f"Content-Length: {len(body)}")
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body

    def _compare_key(self) -> tuple[Any, ...]:
        # Content-Length is derived from the body, so it takes no part.
        return (
            self.start_line(),
            [(f.key, f.text()) for f in self.fields if f.key != "content-length"],
            bytes(self.body),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._compare_key() == other._compare_key()

    __hash__ = None  # type: ignore[assignment]

    def _copy_fields(self) -> list[_Field]:
        copied = []
        for f in self.fields:
            value = f.value
            if value.__class__ is list:
                value = [v.copy() for v in value]
            elif hasattr(value, "copy"):
                value = value.copy()
            copied.append(_Field(f.key, f.name, value))
        return copied


class Request(Message):
    """A SIP request. `uri` is the Request-URI."""

    __slots__ = ("method", "uri", "version")

    def __init__(
        self,
        method: str,
        uri: URI | str,
        headers: Any = (),
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
        for f in self.fields:
            key = f.key
            if key == "via" or key == "from" or key == "call-id" or key == "cseq":
                value = f.value
                fields.append(_Field(key, f.name, value if value.__class__ is str else f.text()))
            elif key == "to":
                to = self._typed(f)
                if to_tag is not None and to.tag is None:
                    to = to.copy()
                    to.tag = to_tag
                fields.append(_Field(key, f.name, to))
        return response


class Response(Message):
    """A SIP response."""

    __slots__ = ("status", "reason", "version")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Any = (),
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
    Octets after the body that Content-Length announces are ignored (§18.3).
    """
    try:
        return _parse(data)
    except ParseError:
        raise
    except Exception as e:  # a bug in a parser must still look like bad input
        raise ParseError(f"unparseable message ({e.__class__.__name__}: {e})") from e


def _parse(data: bytes) -> Request | Response:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ParseError("not bytes")
    data = bytes(data)
    # §7.5: CRLFs before the start line are ignored (keepalives on streams).
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise ParseError("no empty line after the headers")
    head = data[start:end].decode("utf-8", "surrogateescape")
    body = data[end + 4 :]
    if "\r\n " in head or "\r\n\t" in head:
        head = _FOLD.sub(" ", head)  # folded header lines (§7.3.1)
    lines = head.split("\r\n")
    start_line = lines[0]
    message = _parse_start_line(start_line)
    fields = message.fields
    raw: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ParseError(f"header line without a colon: {line[:40]!r}", start_line=start_line, headers=raw)
        name = name.rstrip(" \t")
        value = value.strip(" \t")
        raw.append((name, value))
        if not _TOKEN.match(name):
            raise ParseError(f"bad header name {name[:40]!r}", start_line=start_line, headers=raw)
        key = name.lower()
        if len(key) == 1:
            key = canonical_key(key)
        fields.append(_Field(key, name, value))
    seen: set[str] = set()
    for field in fields:
        key = field.key
        parser = _TYPED.get(key)
        if parser is None:
            continue
        if key in _SINGLE:
            if key in seen:
                raise ParseError(f"more than one {display_name(key)} header", start_line=start_line, headers=raw)
            seen.add(key)
        else:
            seen.add(key)
        try:
            field.value = parser(field.value)
        except ParseError as e:
            raise ParseError(
                f"bad {display_name(key)} header: {e.reason}", e.status, start_line=start_line, headers=raw
            ) from None
    for key in _MANDATORY:
        if key not in seen:
            raise ParseError(f"missing {display_name(key)} header", start_line=start_line, headers=raw)
    if message.__class__ is Request:
        if message.cseq.method != message.method:
            raise ParseError("CSeq method does not match the request method", start_line=start_line, headers=raw)
    length = message.content_length
    if length is not None:
        if length > len(body):
            raise ParseError("body shorter than Content-Length", start_line=start_line, headers=raw)
        body = body[:length]
    message.body = body
    return message


def _parse_start_line(line: str) -> Request | Response:
    parts = line.split(" ", 2)
    if len(parts) != 3:
        raise ParseError(f"bad start line {line[:60]!r}", start_line=line)
    first, second, third = parts
    if _VERSION.match(first):
        _check_version(first, line)
        if len(second) != 3 or not second.isdigit() or not second.isascii() or second[0] == "0":
            raise ParseError(f"bad status code {second[:20]!r}", start_line=line)
        return Response(int(second), third, version=first)
    if not _TOKEN.match(first):
        raise ParseError(f"bad method {first[:20]!r}", start_line=line)
    if " " in third or not _VERSION.match(third):
        raise ParseError(f"bad request line {line[:60]!r}", start_line=line)
    _check_version(third, line)
    try:
        uri = parse_uri(second)
    except ParseError as e:
        raise ParseError(f"bad Request-URI: {e.reason}", start_line=line) from None
    return Request(first, uri, version=third)


def _check_version(version: str, line: str) -> None:
    if version.upper() != "SIP/2.0":
        raise ParseError(f"SIP version {version[4:]!r} is not supported", 505, start_line=line)
