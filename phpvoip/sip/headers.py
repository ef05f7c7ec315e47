"""Typed values of the headers that routing needs (RFC 3261 §20, §25.1).

Each value is a small slotted object whose ``str()`` is its wire form, so a message
can hold either the raw text of a header or its typed value and serialize both alike.
"""

from __future__ import annotations

import re

from phpvoip.sip.errors import ParseError
from phpvoip.sip.uri import URI, parse_uri

__all__ = [
    "CSeq",
    "NameAddr",
    "Via",
    "STAR",
    "canonical_key",
    "display_name",
    "parse_call_id",
    "parse_contact_list",
    "parse_cseq",
    "parse_int",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_params",
    "parse_via_list",
    "split_commas",
]

# Compact forms (RFC 3261 §7.3.3 and the RFCs that added letters since).
COMPACT = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "t": "to",
    "v": "via",
    "k": "supported",
    "s": "subject",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "x": "session-expires",
    "b": "referred-by",
    "y": "identity",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
}

# How we write the names of headers we create ourselves.
CANONICAL_NAMES = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
}


def canonical_key(name: str) -> str:
    """The lookup key of a header name: lower case, compact form expanded."""
    key = name.lower()
    return COMPACT.get(key, key)


def display_name(key: str) -> str:
    """The conventional spelling of a header key: ``call-id`` → ``Call-ID``."""
    return CANONICAL_NAMES.get(key) or "-".join(p.capitalize() for p in key.split("-"))


_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN = re.compile(rf"[{_TOKEN_CHARS}]+\Z")
_DISPLAY_TOKENS = re.compile(rf"[{_TOKEN_CHARS}]+(?:[ \t]+[{_TOKEN_CHARS}]+)*\Z")
_QUOTED = re.compile(r'"(?:[^"\\]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"\Z')
_PARAM_VALUE = re.compile(rf"[{_TOKEN_CHARS}]+\Z|\[[0-9A-Fa-f:.]+\]\Z|\"(?:[^\"\\\\]|\\\\.)*\"\Z")
_WORD = re.compile(r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+\Z")
_VIA = re.compile(
    rf"([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)"
    r"[ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*(;.*)?\Z",
    re.S,
)
_CSEQ = re.compile(rf"[ \t]*([0-9]{{1,10}})[ \t]+([{_TOKEN_CHARS}]+)[ \t]*\Z")


def split_commas(value: str) -> list[str]:
    """Split a header value at commas outside quotes and angle brackets (§7.3.1)."""
    if "," not in value:
        return [value]
    parts: list[str] = []
    start = 0
    quoted = angled = escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angled = True
        elif ch == ">":
            angled = False
        elif ch == "," and not angled:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return parts


def _split_semicolons(text: str) -> list[str]:
    if '"' not in text:
        return text.split(";")
    parts: list[str] = []
    start = 0
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == ";":
            parts.append(text[start:i])
            start = i + 1
    if quoted:
        raise ParseError("unterminated quoted string in parameters")
    parts.append(text[start:])
    return parts


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` (the text starts at the first ``;``), allowing
    the linear whitespace RFC 3261 permits around ``;`` and ``=``."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    pieces = _split_semicolons(text)
    if pieces[0].strip():
        raise ParseError(f"unexpected text {pieces[0].strip()!r} before parameters")
    for piece in pieces[1:]:
        name, eq, value = piece.partition("=")
        name = name.strip(" \t")
        if not _TOKEN.match(name):
            raise ParseError(f"bad parameter {piece.strip()!r}")
        if eq:
            value = value.strip(" \t")
            if not _PARAM_VALUE.match(value):
                raise ParseError(f"bad value in parameter {piece.strip()!r}")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def _params_str(params: dict[str, str | None]) -> str:
    if not params:
        return ""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


class NameAddr:
    """``"Display" <uri>;params`` as in From, To, Contact, Route (§20.10, §25.1).

    `display` is kept as written (quotes and escapes included); `display_text`
    decodes it. `params` are the header's parameters, not the URI's.
    """

    __slots__ = ("display", "uri", "params")

    def __init__(
        self,
        uri: URI,
        display: str | None = None,
        params: dict[str, str | None] | None = None,
    ) -> None:
        self.uri = uri
        self.display = display
        self.params = params if params is not None else {}

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @tag.setter
    def tag(self, value: str | None) -> None:
        if value is None:
            self.params.pop("tag", None)
        else:
            self.params["tag"] = value

    @property
    def display_text(self) -> str | None:
        d = self.display
        if d and d[0] == '"':
            return re.sub(r"\\(.)", r"\1", d[1:-1])
        return d

    def copy(self) -> NameAddr:
        return NameAddr(self.uri.copy(), self.display, dict(self.params))

    def __str__(self) -> str:
        if self.display:
            return f"{self.display} <{self.uri}>{_params_str(self.params)}"
        return f"<{self.uri}>{_params_str(self.params)}"

    def __repr__(self) -> str:
        return f"<NameAddr {self}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return self.uri == other.uri and self.display == other.display and self.params == other.params


def parse_name_addr(text: str) -> NameAddr:
    """Parse one name-addr or addr-spec with its parameters."""
    text = text.strip(" \t")
    display: str | None = None
    if text.startswith('"'):
        end = _end_of_quoted(text)
        display = text[: end + 1]
        if not _QUOTED.match(display):
            raise ParseError(f"bad display name in {text!r}")
        rest = text[end + 1 :].lstrip(" \t")
        if not rest.startswith("<"):
            raise ParseError(f"missing <URI> after display name in {text!r}")
    else:
        lt = text.find("<")
        if lt < 0:
            # addr-spec: parameters after the first ';' belong to the header (§20.10)
            uri_text, semi, params_text = text.partition(";")
            if not uri_text or " " in uri_text or "\t" in uri_text:
                raise ParseError(f"bad address {text!r}")
            return NameAddr(parse_uri(uri_text), None, parse_params(semi + params_text))
        name = text[:lt].rstrip(" \t")
        if name:
            if not _DISPLAY_TOKENS.match(name):
                raise ParseError(f"display name {name!r} must be quoted")
            display = name
        rest = text[lt:]
    gt = rest.find(">")
    if gt < 0:
        raise ParseError(f"unterminated <URI> in {text!r}")
    uri_text = rest[1:gt]
    if not uri_text or " " in uri_text or "\t" in uri_text or "<" in uri_text:
        raise ParseError(f"bad URI <{uri_text}>")
    return NameAddr(parse_uri(uri_text), display, parse_params(rest[gt + 1 :].lstrip(" \t")))


def _end_of_quoted(text: str) -> int:
    i = 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i
        i += 1
    raise ParseError(f"unterminated quoted string in {text!r}")


def parse_name_addr_list(value: str) -> list[NameAddr]:
    """Parse a comma-separated list of name-addrs (Route, Record-Route, ...)."""
    return [parse_name_addr(part) for part in split_commas(value) if part.strip(" \t")]


class _Star:
    """``Contact: *`` (§10.2.2), a singleton."""

    __slots__ = ()

    def __str__(self) -> str:
        return "*"

    def __repr__(self) -> str:
        return "STAR"


STAR = _Star()


def parse_contact_list(value: str) -> list[NameAddr] | _Star:
    if value.strip(" \t") == "*":
        return STAR
    contacts = parse_name_addr_list(value)
    if not contacts:
        raise ParseError("empty Contact")
    return contacts


class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=…`` (§20.42, §18.2.1)."""

    __slots__ = ("protocol", "transport", "host", "port", "params")

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        protocol: str = "SIP/2.0",
    ) -> None:
        self.protocol = protocol
        self.transport = transport.upper()
        self.host = host
        self.port = port
        self.params = params if params is not None else {}

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        value = self.params.get("rport")
        return int(value) if value and value.isdigit() else None

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        value = self.params.get("ttl")
        return int(value) if value and value.isdigit() else None

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def copy(self) -> Via:
        return Via(self.transport, self.host, self.port, dict(self.params), self.protocol)

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{_params_str(self.params)}"

    def __repr__(self) -> str:
        return f"<Via {self}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return (
            self.protocol == other.protocol
            and self.transport == other.transport
            and self.host.lower() == other.host.lower()
            and self.port == other.port
            and self.params == other.params
        )


def parse_via_list(value: str) -> list[Via]:
    vias = []
    for part in split_commas(value):
        part = part.strip(" \t")
        if not part:
            raise ParseError("empty Via value")
        m = _VIA.match(part)
        if m is None:
            raise ParseError(f"bad Via {part!r}")
        name, version, transport, host, port, params = m.groups()
        if name.upper() != "SIP":
            raise ParseError(f"bad Via protocol {name!r}")
        if version != "2.0":
            raise ParseError(f"SIP version {version} in Via is not supported", 505)
        if port is not None and int(port) > 65535:
            raise ParseError(f"bad port in Via {part!r}")
        parsed = parse_params(params) if params else {}
        if "branch" in parsed and not parsed["branch"]:
            raise ParseError("Via branch without a value")
        vias.append(Via(transport, host, int(port) if port else None, parsed))
    return vias


class CSeq:
    """``CSeq: 4711 INVITE`` (§20.16). The number is below 2**31 (§8.1.1.5)."""

    __slots__ = ("seq", "method")

    def __init__(self, seq: int, method: str) -> None:
        self.seq = seq
        self.method = method

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __repr__(self) -> str:
        return f"<CSeq {self}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CSeq):
            return NotImplemented
        return self.seq == other.seq and self.method == other.method


def parse_cseq(value: str) -> CSeq:
    m = _CSEQ.match(value)
    if m is None:
        raise ParseError(f"bad CSeq {value!r}")
    seq = int(m.group(1))
    if seq >= 2**31:
        raise ParseError(f"CSeq number {seq} is not below 2**31")
    return CSeq(seq, m.group(2))


def parse_call_id(value: str) -> str:
    value = value.strip(" \t")
    if not _WORD.match(value.replace("@", "", 1)):
        raise ParseError(f"bad Call-ID {value!r}")
    return value


def parse_int(value: str, name: str = "value", maximum: int = 2**32 - 1) -> int:
    """A decimal header value such as Max-Forwards, Content-Length or Expires."""
    text = value.strip(" \t")
    if not text.isdigit() or not text.isascii() or len(text) > 10 or int(text) > maximum:
        raise ParseError(f"bad {name} {value!r}")
    return int(text)
