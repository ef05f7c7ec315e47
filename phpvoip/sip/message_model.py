"""SIP requests and responses as objects: `Message`, `Request`, `Response` and
`bytes(message)` (RFC 3261 §7, §20).

Headers are kept in the order they arrived, under the name as written. A header
line holds either its raw text or its typed value (Via, From, To, Call-ID, CSeq,
Max-Forwards, Contact, Route, Record-Route, Content-Length get one); text set by
hand is parsed the first time its property reads it, and both serialize alike.
`message_parser` builds these objects from bytes; `message` is the public face.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from phpvoip.sip.headers import (
    STAR,
    CSeq,
    NameAddr,
    Via,
    canonical_key,
    parse_call_id,
    parse_contact_list,
    parse_content_length,
    parse_cseq,
    parse_max_forwards,
    parse_name_addr,
    parse_route_list,
    parse_via_list,
    split_commas,
)
from phpvoip.sip.uri import URI, parse_uri

__all__ = ["REASONS", "Message", "Request", "Response"]

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


# Parsers of typed header values: key -> parser of one header line. Also used when
# a header set as text is first read through its property.
_TYPED: dict[str, Callable[[str], Any]] = {
    "via": parse_via_list,
    "from": parse_name_addr,
    "to": parse_name_addr,
    "call-id": parse_call_id,
    "cseq": parse_cseq,
    "max-forwards": parse_max_forwards,
    "contact": parse_contact_list,
    "route": parse_route_list,
    "record-route": parse_route_list,
    "content-length": parse_content_length,
}
# Headers that hold a list: several lines of them are one list (§7.3.1).
_LISTS = frozenset(("via", "contact", "route", "record-route"))


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
        # the list `_indexed` and still `_index_size` long (message_parser fills it;
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
        if not first and fields and fields[-1][0] == key:
            fields.append(field)  # lines of one name added in a row: no scan, no n² build
            return
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
