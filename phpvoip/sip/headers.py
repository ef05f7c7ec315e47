"""Typed values of the headers that routing needs (RFC 3261 §20, §25.1), and the
cheap syntax checks some other headers get while a message is parsed.

Each value is a small slotted object whose ``str()`` is its wire form, so a message
can hold either the raw text of a header or its typed value and serialize both alike.
Every parser takes the header value unfolded, with its surrounding whitespace
removed, and raises `ParseError` with a reason when the text is not what §25.1
allows. Each has two roads: a fast one, one regular expression for the shapes
real traffic uses, whose groups build the value (keeping URI and parameters as
checked text until they are read), and a general one for everything else in the
grammar (LWS anywhere it may be, escapes, IPv6, quoted parameter values). All
regular expressions use possessive quantifiers, so hostile input stays linear.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from phpvoip.sip.errors import ParseError
from phpvoip.sip.uri import (
    F_HOST,
    F_IPV4,
    F_PORT,
    SIP_URI_FAST_TEXT,
    URI,
    LazyParams,
    check_host,
    params_text,
    parse_uri,
)

__all__ = [
    "CSeq",
    "NameAddr",
    "Via",
    "STAR",
    "canonical_key",
    "check_content_type",
    "check_date",
    "check_delta_seconds",
    "check_option_tags",
    "display_name",
    "parse_call_id",
    "parse_contact_list",
    "parse_cseq",
    "parse_delta_seconds",
    "parse_int",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_params",
    "parse_route_list",
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


# -- grammar pieces (§25.1) -----------------------------------------------------

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]++"
# quoted-string: qdtext is LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII, and
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
_QSTR = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]++|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*+"'
# gen-value = token / host / quoted-string (hostnames and IPv4 are tokens already)
_GEN_VALUE = rf"(?:{_TOKEN}|\[[0-9A-Fa-f:.]++\]|{_QSTR})"
# *( SEMI generic-param ), SEMI and EQUAL allowing whitespace on both sides
_PARAMS = rf"(?:[ \t]*+;[ \t]*+{_TOKEN}(?:[ \t]*+=[ \t]*+{_GEN_VALUE})?+)*+"
_PARAM = re.compile(rf"[ \t]*;[ \t]*({_TOKEN})(?:[ \t]*=[ \t]*({_GEN_VALUE}))?")
_PARAMS_ONLY = re.compile(rf"{_PARAMS}[ \t]*\Z")
# Via parameters may also hold a bare IPv6 address (via-received, §25.1); which
# parameter holds what is checked on the dict
_VIA_VALUE = rf"(?:[0-9A-Fa-f]*+:[0-9A-Fa-f:.]*+|{_GEN_VALUE})"
_VIA_PARAMS = rf"(?:[ \t]*+;[ \t]*+{_TOKEN}(?:[ \t]*+=[ \t]*+{_VIA_VALUE})?+)*+"
_VIA_PARAM = re.compile(rf"[ \t]*;[ \t]*({_TOKEN})(?:[ \t]*=[ \t]*({_VIA_VALUE}))?")

# One name-addr or addr-spec with its parameters, as an element of a list:
#   name-addr = [ display-name ] LAQUOT addr-spec RAQUOT
#   display-name = *(token LWS) / quoted-string
# groups: 1 quoted display, 2 token display, 3 URI inside <>, 4 bare addr-spec,
# 5 parameters. A bare addr-spec stops at ';', ',' and '?' (§20.10: a URI holding
# any of them must be written as a name-addr).
_ADDR = re.compile(
    rf"[ \t]*+(?:(?:({_QSTR})[ \t]*+|({_TOKEN}(?:[ \t]++{_TOKEN})*+)[ \t]*+)?<([^<>\s\"]*+)>"
    r"|([^\s;,?<>\"]++))"
    rf"({_PARAMS})[ \t]*+"
)

# via-parm = sent-protocol LWS sent-by *( SEMI via-params ), SLASH and COLON
# allowing whitespace around them. groups: protocol, version, transport, host,
# port, parameters.
_VIA = re.compile(
    rf"[ \t]*+({_TOKEN})[ \t]*+/[ \t]*+({_TOKEN})[ \t]*+/[ \t]*+({_TOKEN})[ \t]++"
    r"(\[[0-9A-Fa-f:.]++\]|[A-Za-z0-9][A-Za-z0-9\-.]*+)(?:[ \t]*+:[ \t]*+([0-9]{1,5}+))?"
    rf"({_VIA_PARAMS})[ \t]*+"
)
_CSEQ = re.compile(rf"([0-9]{{1,10}}+)[ \t]++({_TOKEN})\Z")
# callid = word [ "@" word ]
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]++"
_CALL_ID = re.compile(rf"{_WORD}(?:@{_WORD})?\Z")
_TOKEN_ONLY = re.compile(rf"{_TOKEN}\Z")
_DISPLAY_TOKENS = re.compile(rf"{_TOKEN}(?:[ \t]++{_TOKEN})*+\Z")
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_IPV4 = re.compile(r"[0-9]{1,3}+\.[0-9]{1,3}+\.[0-9]{1,3}+\.[0-9]{1,3}+\Z")
# qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z")
# rfc1123-date = wkday "," SP date1 SP time SP "GMT" (§20.17, §25.1)
_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT\Z",
    re.I,
)
# media-type = m-type SLASH m-subtype *(SEMI m-parameter) (§20.15)
_MEDIA_TYPE = re.compile(
    rf"{_TOKEN}[ \t]*+/[ \t]*+{_TOKEN}(?:[ \t]*+;[ \t]*+{_TOKEN}[ \t]*+=[ \t]*+(?:{_TOKEN}|{_QSTR}))*+\Z"
)
_OPTION_TAGS = re.compile(rf"{_TOKEN}(?:[ \t]*+,[ \t]*+{_TOKEN})*+\Z")
_STAR_IN_LIST = re.compile(r"[ \t]*+\*[ \t]*+,")

# -- fast paths ------------------------------------------------------------------
# The shapes real traffic uses, each checked completely by one regular expression
# whose groups build the value directly: no whitespace beyond single spaces, no
# escapes in display names, parameter names in lower case (as str() writes them),
# values that are tokens. Each accepts a strict subset of what the general parser
# below it accepts (tests/unit/test_headers.py checks this); everything else takes
# the general road, which accepts it or says what is wrong.
_LTOKEN = r"[a-z0-9\-.!%*_+`'~]++"
_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_F_HPARAMS = rf"(?:;{_LTOKEN}(?:={_TOKEN})?)*+"
# Contact: q = qvalue, expires = delta-seconds; other names any lower-case token
_F_QVALUE = r"(?:0(?:\.[0-9]{0,3}+)?|1(?:\.0{0,3}+)?)(?![0-9])"
_F_CPARAMS = (
    rf"(?:;(?:q={_F_QVALUE}|expires=[0-9]{{1,10}}+(?![0-9])"
    rf"|(?!(?:q|expires)(?![{_TOKEN_CHARS}])){_LTOKEN}(?:={_TOKEN})?))*+"
)
# Via: branch = token, rport [= port], received = IPv4, ttl = 0..255; maddr and
# anything unusual go the general way
_F_TTL = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?![0-9])"
_F_VPARAMS = (
    rf"(?:;(?:branch={_TOKEN}|rport(?:={F_PORT})?|received={F_IPV4}|ttl={_F_TTL}"
    rf"|(?!(?:branch|rport|received|ttl|maddr)(?![{_TOKEN_CHARS}])){_LTOKEN}(?:={_TOKEN})?))*+"
)
# groups: quoted display, token display, URI, header parameters
_F_NAME_ADDR = rf'(?:("[^"\\\x00-\x1f\x7f]*+") ?|({_TOKEN}(?: {_TOKEN})*+) )?<({SIP_URI_FAST_TEXT})>'
_NAME_ADDR_FAST = re.compile(rf"{_F_NAME_ADDR}({_F_HPARAMS})\Z")
_ROUTE_FAST = re.compile(rf"{_F_NAME_ADDR}({_F_HPARAMS})(?=, ?|\Z)")
_CONTACT_FAST = re.compile(rf"{_F_NAME_ADDR}({_F_CPARAMS})(?=, ?|\Z)")
# groups: transport, host, port, parameters
_VIA_FAST = re.compile(rf"SIP/2\.0/({_TOKEN}) ({F_HOST})(?::({F_PORT}))?({_F_VPARAMS})(?=, ?|\Z)")


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


def _params_dict(text: str, pattern: re.Pattern[str] = _PARAM) -> dict[str, str | None]:
    # `text` has been validated as _PARAMS (or _VIA_PARAMS, with `pattern`
    # _VIA_PARAM). Quoted values keep their quotes (as written).
    params: dict[str, str | None] = {}
    for m in pattern.finditer(text):
        name = m.group(1).lower()
        if name not in params:
            params[name] = m.group(2)
    return params


def _set_params(value: LazyParams, text: str) -> None:
    """Give `value` its parameters, parsed now (the general road; the fast paths
    keep the text of parameters that are already in the form str() writes)."""
    value._params = _params_dict(text) if text else {}
    value._ptext = ""


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` (the text starts at the first ``;``), allowing
    the linear whitespace RFC 3261 permits around ``;`` and ``=``."""
    text = text.strip(" \t")
    if not text:
        return {}
    if not _PARAMS_ONLY.match(text):
        if not text.startswith(";"):
            raise ParseError(f"unexpected text {text[:40]!r} before parameters")
        raise ParseError(f"bad parameters {text[:60]!r}")
    return _params_dict(text)


# -- name-addr -----------------------------------------------------------------


class NameAddr(LazyParams):
    """``"Display" <uri>;params`` as in From, To, Contact, Route (§20.10, §25.1).

    `display` is kept as written (quotes and escapes included); `display_text`
    decodes it. `params` are the header's parameters, not the URI's; their names
    are kept in lower case. A parsed value keeps its URI as checked text until
    `uri` is first read: most messages are routed on tags and Call-ID alone.
    """

    __slots__ = ("display", "_uri", "_utext")

    def __init__(
        self,
        uri: URI,
        display: str | None = None,
        params: dict[str, str | None] | None = None,
    ) -> None:
        self._uri = uri
        self._utext = ""
        self.display = display
        self._params = params if params is not None else {}
        self._ptext = ""

    @property
    def uri(self) -> URI:
        uri = self._uri
        if uri is None:
            uri = self._uri = parse_uri(self._utext)
        return uri

    @uri.setter
    def uri(self, value: URI) -> None:
        self._uri = value

    @property
    def tag(self) -> str | None:
        if self._params is not None:
            return self._params.get("tag")
        # param("tag") for the usual text, written out: read for every message
        text = self._ptext
        i = text.find(";tag")
        if i < 0:
            return None
        if text[i + 4 : i + 5] == "=":
            j = text.find(";", i + 5)
            return text[i + 5 :] if j < 0 else text[i + 5 : j]
        return self.param("tag")

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
            return _QUOTED_PAIR.sub(r"\1", d[1:-1])
        return d

    def copy(self) -> NameAddr:
        clone = NameAddr.__new__(NameAddr)
        uri = self._uri
        clone._uri = None if uri is None else uri.copy()
        clone._utext = self._utext
        clone.display = self.display
        self._copy_params_to(clone)
        return clone

    def __str__(self) -> str:
        params = self._params
        ptext = self._ptext if params is None else params_text(params)
        uri = self._uri
        utext = self._utext if uri is None else str(uri)
        if self.display:
            return f"{self.display} <{utext}>{ptext}"
        return f"<{utext}>{ptext}"

    def __repr__(self) -> str:
        return f"<NameAddr {self}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return self.uri == other.uri and self.display == other.display and self.params == other.params

    __hash__ = None  # type: ignore[assignment]


def _name_addr_fast(m: re.Match[str]) -> NameAddr:
    quoted, tokens, utext, ptext = m.groups()
    value = NameAddr.__new__(NameAddr)
    value._uri = None
    value._utext = utext
    value.display = quoted if quoted is not None else tokens
    if ptext:
        value._params = None
        value._ptext = ptext
    else:
        value._params = {}
        value._ptext = ""
    return value


def _fast_list(m: re.Match[str], value: str, build: Callable[[re.Match[str]], Any]) -> list[Any] | None:
    """Elements of a comma list whose first element `m` matched a fast pattern, if
    all the others match it too; else None."""
    items = [build(m)]
    match = m.re.match
    end = len(value)
    while True:
        pos = m.end()
        if pos == end:
            return items
        pos += 2 if value.startswith(", ", pos) else 1
        m = match(value, pos)  # type: ignore[assignment]
        if m is None:
            return None
        items.append(build(m))


def _name_addr(m: re.Match[str], name_addr_only: bool) -> NameAddr:
    quoted, tokens, inner, spec, ptext = m.groups()
    value = NameAddr.__new__(NameAddr)
    value._utext = ""
    if inner is not None:
        value._uri = parse_uri(inner)
        value.display = quoted if quoted is not None else tokens
    elif name_addr_only:
        raise ParseError(f"{spec[:60]!r} must be written as <URI> (a name-addr)")
    else:
        value._uri = parse_uri(spec)
        value.display = None
    _set_params(value, ptext)
    return value


def parse_name_addr(text: str) -> NameAddr:
    """Parse one name-addr or addr-spec with its parameters (From, To, §20.20)."""
    m = _NAME_ADDR_FAST.match(text)
    if m is None:
        return _parse_name_addr_general(text)
    # _name_addr_fast(m), written out: this runs for every From and To
    quoted, tokens, utext, ptext = m.groups()
    value = NameAddr.__new__(NameAddr)
    value._uri = None
    value._utext = utext
    value.display = quoted if quoted is not None else tokens
    if ptext:
        value._params = None
        value._ptext = ptext
    else:
        value._params = {}
        value._ptext = ""
    return value


def _parse_name_addr_general(text: str) -> NameAddr:
    m = _ADDR.match(text)
    if m is None or m.end() != len(text):
        raise ParseError(_why_bad_address(text))
    return _name_addr(m, False)


def _addr_list(value: str, name_addr_only: bool) -> list[NameAddr]:
    values: list[NameAddr] = []
    pos = 0
    end = len(value)
    match = _ADDR.match
    while True:
        m = match(value, pos)
        if m is None:
            raise ParseError(_why_bad_address(value[pos:].lstrip(" \t")))
        values.append(_name_addr(m, name_addr_only))
        pos = m.end()
        if pos == end:
            return values
        if value[pos] != ",":
            raise ParseError(_why_bad_address(value[m.start() :].lstrip(" \t")))
        pos += 1


def parse_name_addr_list(value: str) -> list[NameAddr]:
    """Parse a comma-separated list of name-addrs or addr-specs (§7.3.1)."""
    m = _ROUTE_FAST.match(value)
    if m is not None:
        if m.end() == len(value):
            return [_name_addr_fast(m)]
        items = _fast_list(m, value, _name_addr_fast)
        if items is not None:
            return items
    return _addr_list(value, False)


def parse_route_list(value: str) -> list[NameAddr]:
    """Parse Route or Record-Route: name-addrs only (§20.30, §20.34)."""
    m = _ROUTE_FAST.match(value)
    if m is not None:
        if m.end() == len(value):
            # [_name_addr_fast(m)], written out: most lines hold one route
            quoted, tokens, utext, ptext = m.groups()
            route = NameAddr.__new__(NameAddr)
            route._uri = None
            route._utext = utext
            route.display = quoted if quoted is not None else tokens
            if ptext:
                route._params = None
                route._ptext = ptext
            else:
                route._params = {}
                route._ptext = ""
            return [route]
        items = _fast_list(m, value, _name_addr_fast)
        if items is not None:
            return items
    return _addr_list(value, True)


def _why_bad_address(text: str) -> str:
    # Only runs on the error path: the regular expression refused `text`; find the
    # most helpful thing to say about it.
    short = text[:80]
    if not text or text[0] == ",":
        return "empty address"
    quote = text.find('"')
    lt = text.find("<")
    if quote >= 0 and (lt < 0 or quote < lt):
        i = quote + 1
        while i < len(text) and text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        if i >= len(text):
            return f"unterminated quoted string in {short!r}"
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            return f"unterminated <URI> in {short!r}"
        inner = text[lt + 1 : gt]
        if inner != inner.strip() or " " in inner or "\t" in inner:
            return f"whitespace inside <URI> in {short!r}"
        name = text[:lt].strip(" \t")
        if name and not name.startswith('"') and not _DISPLAY_TOKENS.match(name):
            return f"display name {name[:40]!r} must be quoted"
        return f"bad address {short!r}"
    spec = text.split(";", 1)[0].strip(" \t")
    if " " in spec or "\t" in spec:
        if "," in spec or '"' in spec:
            return f"display name in {short!r} must be quoted"
        return f"spaces in addr-spec {short!r}"
    if "?" in spec or "," in spec:
        return f"a URI with ',', ';' or '?' must be written as <URI> (§20.10): {short!r}"
    return f"bad address {short!r}"


# -- Contact -------------------------------------------------------------------


class _Star:
    """``Contact: *`` (§10.2.2), a singleton."""

    __slots__ = ()

    def __str__(self) -> str:
        return "*"

    def __repr__(self) -> str:
        return "STAR"

    def copy(self) -> _Star:
        return self


STAR = _Star()


def parse_contact_list(value: str) -> list[NameAddr] | _Star:
    """Contact values, or `STAR` (§20.10). ``q`` and ``expires`` are checked when
    present: c-p-q = qvalue, c-p-expires = delta-seconds."""
    m = _CONTACT_FAST.match(value)
    if m is not None:
        if m.end() == len(value):
            # [_name_addr_fast(m)], written out: most requests carry one Contact
            quoted, tokens, utext, ptext = m.groups()
            contact = NameAddr.__new__(NameAddr)
            contact._uri = None
            contact._utext = utext
            contact.display = quoted if quoted is not None else tokens
            if ptext:
                contact._params = None
                contact._ptext = ptext
            else:
                contact._params = {}
                contact._ptext = ""
            return [contact]
        items = _fast_list(m, value, _name_addr_fast)
        if items is not None:
            return items
    if value == "*" or value.strip(" \t") == "*":
        return STAR
    return _contact_list_general(value)


def _contact_list_general(value: str) -> list[NameAddr]:
    if _STAR_IN_LIST.match(value):
        raise ParseError("Contact: * must be the only contact (§10.2.2)")
    contacts = _addr_list(value, False)
    for contact in contacts:
        if contact._params == {}:
            continue
        params = contact.params
        q = params.get("q", "0")
        if q is None or not _QVALUE.match(q):
            raise ParseError(f"bad q value {q!r} in Contact")
        expires = params.get("expires", "0")
        if expires is None or not expires.isdigit() or not expires.isascii():
            raise ParseError(f"bad expires {expires!r} in Contact")
    return contacts


# -- Via -----------------------------------------------------------------------


class Via(LazyParams):
    """One Via value: ``SIP/2.0/UDP host:port;branch=…`` (§20.42, §18.2.1)."""

    __slots__ = ("protocol", "transport", "host", "port")

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
        self._params = params if params is not None else {}
        self._ptext = ""

    @property
    def branch(self) -> str | None:
        if self._params is not None:
            return self._params.get("branch")
        # param("branch") for the usual text, written out: read for every message
        text = self._ptext
        i = text.find(";branch")
        if i < 0:
            return None
        if text[i + 7 : i + 8] == "=":
            j = text.find(";", i + 8)
            return text[i + 8 :] if j < 0 else text[i + 8 : j]
        return self.param("branch")

    @property
    def received(self) -> str | None:
        return self.param("received")

    @property
    def rport(self) -> int | None:
        value = self.param("rport")
        return int(value) if value and value.isdigit() else None

    @property
    def maddr(self) -> str | None:
        return self.param("maddr")

    @property
    def ttl(self) -> int | None:
        value = self.param("ttl")
        return int(value) if value and value.isdigit() else None

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def copy(self) -> Via:
        clone = Via.__new__(Via)
        clone.protocol = self.protocol
        clone.transport = self.transport
        clone.host = self.host
        clone.port = self.port
        self._copy_params_to(clone)
        return clone

    def __str__(self) -> str:
        params = self._params
        ptext = self._ptext if params is None else params_text(params)
        if self.port is None:
            return f"{self.protocol}/{self.transport} {self.host}{ptext}"
        return f"{self.protocol}/{self.transport} {self.host}:{self.port}{ptext}"

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

    __hash__ = None  # type: ignore[assignment]


def _check_via_params(params: dict[str, str | None]) -> None:
    # via-branch = "branch" EQUAL token; via-ttl = 0..255; via-maddr = host;
    # via-received = IPv4address / IPv6address; response-port = "rport" [EQUAL 1*DIGIT]
    # (§20.42, §25.1, RFC 3581 §7)
    if "branch" in params and params["branch"] is None:
        raise ParseError("Via branch without a value")
    if len(params) == 1 and "branch" in params:
        return
    ttl = params.get("ttl", "0")
    if ttl is None or not ttl.isdigit() or not ttl.isascii() or len(ttl) > 3 or int(ttl) > 255:
        raise ParseError(f"bad Via ttl {ttl!r}")
    maddr = params.get("maddr", "x")
    if maddr is None or not check_host(maddr):
        raise ParseError(f"bad Via maddr {maddr!r}")
    received = params.get("received")
    if "received" in params and not _is_ip(received):
        raise ParseError(f"bad Via received {received!r}")
    rport = params.get("rport")
    if rport is not None and (not rport.isdigit() or not rport.isascii() or int(rport) > 65535):
        raise ParseError(f"bad Via rport {rport!r}")


def _is_ip(text: str | None) -> bool:
    if not text:
        return False
    if _IPV4.match(text):
        return True
    # IPv6address, also accepted in brackets as many stacks write it
    return check_host(text if text.startswith("[") else f"[{text}]") and ":" in text


def _snippet(text: str) -> str:
    return text.strip(" \t")[:80]


def _via_fast(m: re.Match[str]) -> Via:
    transport, host, port, ptext = m.groups()
    via = Via.__new__(Via)
    via.protocol = "SIP/2.0"
    via.transport = transport if transport.isupper() else transport.upper()
    via.host = host
    via.port = None if port is None else int(port)
    if ptext:
        via._params = None
        via._ptext = ptext
    else:
        via._params = {}
        via._ptext = ""
    return via


def parse_via_list(value: str) -> list[Via]:
    """Parse a Via header line: one or more comma-separated via-parms (§20.42)."""
    m = _VIA_FAST.match(value)
    if m is not None:
        if m.end() == len(value):
            # [_via_fast(m)], written out: this runs for every Via line
            transport, host, port, ptext = m.groups()
            via = Via.__new__(Via)
            via.protocol = "SIP/2.0"
            via.transport = transport if transport.isupper() else transport.upper()
            via.host = host
            via.port = None if port is None else int(port)
            if ptext:
                via._params = None
                via._ptext = ptext
            else:
                via._params = {}
                via._ptext = ""
            return [via]
        items = _fast_list(m, value, _via_fast)
        if items is not None:
            return items
    return _via_list_general(value)


def _via_list_general(value: str) -> list[Via]:
    vias: list[Via] = []
    pos = 0
    end = len(value)
    match = _VIA.match
    while True:
        m = match(value, pos)
        if m is None:
            raise ParseError(f"bad Via {_snippet(value[pos:])!r}")
        name, version, transport, host, port, ptext = m.groups()
        if version != "2.0":
            if _TOKEN_ONLY.match(version) and name.upper() == "SIP":
                raise ParseError(f"SIP version {version[:10]!r} in Via is not supported", 505)
        if name.upper() != "SIP" or version != "2.0":
            raise ParseError(f"bad Via protocol {name[:10]!r}/{version[:10]!r}")
        if not check_host(host):
            raise ParseError(f"bad Via host {host[:60]!r}")
        via = Via.__new__(Via)
        via.protocol = "SIP/2.0"
        via.transport = transport if transport.isupper() else transport.upper()
        via.host = host
        if port is None:
            via.port = None
        else:
            via.port = int(port)
            if via.port > 65535:
                raise ParseError(f"bad port in Via {port!r}")
        if ptext:
            via._params = _params_dict(ptext, _VIA_PARAM)
            via._ptext = ""
            _check_via_params(via._params)
        else:
            via._params = {}
            via._ptext = ""
        vias.append(via)
        pos = m.end()
        if pos == end:
            return vias
        if value[pos] != ",":
            raise ParseError(f"bad Via {_snippet(value[m.start() :])!r}")
        pos += 1


# -- CSeq, Call-ID, numbers ----------------------------------------------------


class CSeq:
    """``CSeq: 4711 INVITE`` (§20.16): a 32-bit sequence number and a method."""

    __slots__ = ("seq", "method")

    def __init__(self, seq: int, method: str) -> None:
        self.seq = seq
        self.method = method

    def copy(self) -> CSeq:
        return CSeq(self.seq, self.method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __repr__(self) -> str:
        return f"<CSeq {self}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CSeq):
            return NotImplemented
        return self.seq == other.seq and self.method == other.method

    __hash__ = None  # type: ignore[assignment]


def parse_cseq(value: str) -> CSeq:
    """CSeq = 1*DIGIT LWS Method. The number must fit 32 bits unsigned (§8.1.1.5,
    RFC 4475 §3.1.2.4); a sender picks it below 2**31, receivers take any."""
    number, _, method = value.partition(" ")
    if not (number.isdigit() and number.isascii() and len(number) <= 10 and method in _CSEQ_METHODS):
        m = _CSEQ.match(value)
        if m is None:
            raise ParseError(f"bad CSeq {value[:60]!r}")
        number, method = m.groups()
    seq = int(number)
    if seq > 0xFFFFFFFF:
        raise ParseError(f"CSeq number {seq} does not fit 32 bits")
    cseq = CSeq.__new__(CSeq)
    cseq.seq = seq
    cseq.method = method
    return cseq


# the methods of the CSeq fast path (any other token takes the regular expression)
_CSEQ_METHODS = frozenset(
    ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH",
     "INFO", "REFER", "MESSAGE", "UPDATE")
)  # fmt: skip


def parse_call_id(value: str) -> str:
    """Call-ID = word [ "@" word ] (§20.8, §25.1)."""
    if not _CALL_ID.match(value):
        value = value.strip(" \t")
        if not _CALL_ID.match(value):
            raise ParseError(f"bad Call-ID {value[:60]!r}")
    return value


def parse_int(value: str, name: str = "value", maximum: int = 2**32 - 1) -> int:
    """A decimal header value such as Max-Forwards, Content-Length or Expires."""
    if not value.isdigit() or not value.isascii():
        value = value.strip(" \t")
        if not value.isdigit() or not value.isascii():
            raise ParseError(f"bad {name} {value[:20]!r}")
    if len(value) > 10 or int(value) > maximum:
        raise ParseError(f"bad {name} {value[:20]!r}")
    return int(value)


def parse_delta_seconds(value: str) -> int:
    """delta-seconds (Expires, Min-Expires; §20.19). RFC 4475 §3.1.2.4 lets an
    element read an overlarge one as its default; we clamp it to 2**32 - 1."""
    text = value.strip(" \t")
    if not text.isdigit() or not text.isascii():
        raise ParseError(f"bad delta-seconds {value[:20]!r}")
    return min(int(text) if len(text) <= 10 else 2**32, 2**32 - 1)


def check_date(value: str) -> str:
    """Date = rfc1123-date, whose only time zone is "GMT" (§20.17, RFC 4475
    §3.1.2.12). Returns the value unchanged."""
    if not _DATE.match(value):
        raise ParseError(f"bad Date {value[:60]!r} (RFC 1123 form in GMT)")
    return value


def check_delta_seconds(value: str) -> str:
    """Expires = delta-seconds (§20.19). Returns the value unchanged."""
    if not value.isdigit() or not value.isascii():
        raise ParseError(f"bad delta-seconds {value[:20]!r}")
    return value


def check_content_type(value: str) -> str:
    """Content-Type = media-type (§20.15). Returns the value unchanged."""
    if not _MEDIA_TYPE.match(value):
        raise ParseError(f"bad media type {value[:60]!r}")
    return value


def check_option_tags(value: str) -> str:
    """Require / Proxy-Require = option-tag *(COMMA option-tag) (§20.32, §20.29).
    Returns the value unchanged."""
    if not _OPTION_TAGS.match(value):
        raise ParseError(f"bad option tags {value[:60]!r}")
    return value
