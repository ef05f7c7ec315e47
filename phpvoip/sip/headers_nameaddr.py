"""Name-addr values: From, To, Contact (with ``Contact: *``), Route and Record-Route
(RFC 3261 §20.10, §20.20, §20.30, §20.34, §20.39, §25.1).

`NameAddr` is the typed value; `parse_name_addr` reads From and To,
`parse_route_list` the lists that take name-addrs only, `parse_contact_list` the
contacts (or `STAR`), and `parse_name_addr_list` any comma list of name-addrs or
addr-specs. Each has a fast path for the usual shapes and a general parser for
the rest of the grammar; tests/unit/test_headers.py checks that they agree.
"""

from __future__ import annotations

import re
from sys import intern

from phpvoip.sip.errors import ParseError
from phpvoip.sip.headers_grammar import (
    LTOKEN,
    PARAMS,
    QSTR,
    TOKEN,
    TOKEN_CHARS,
    fast_list,
    params_dict,
)
from phpvoip.sip.uri import SIP_URI_FAST_TEXT, URI, LazyParams, params_text, parse_uri

__all__ = [
    "STAR",
    "NameAddr",
    "parse_contact_list",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_route_list",
]

# One name-addr or addr-spec with its parameters, as an element of a list:
#   name-addr = [ display-name ] LAQUOT addr-spec RAQUOT
#   display-name = *(token LWS) / quoted-string
# groups: 1 quoted display, 2 token display, 3 URI inside <>, 4 bare addr-spec,
# 5 parameters. A bare addr-spec stops at ';', ',' and '?' (§20.10: a URI holding
# any of them must be written as a name-addr).
_ADDR = re.compile(
    rf"[ \t]*+(?:(?:({QSTR})[ \t]*+|({TOKEN}(?:[ \t]++{TOKEN})*+)[ \t]*+)?<([^<>\s\"]*+)>"
    r"|([^\s;,?<>\"]++))"
    rf"({PARAMS})[ \t]*+"
)
_DISPLAY_TOKENS = re.compile(rf"{TOKEN}(?:[ \t]++{TOKEN})*+\Z")
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
# qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z")
_STAR_IN_LIST = re.compile(r"[ \t]*+\*[ \t]*+,")

# -- fast paths (see headers_grammar) ---------------------------------------------
_F_HPARAMS = rf"(?:;{LTOKEN}(?:={TOKEN})?)*+"
# Contact: q = qvalue, expires = delta-seconds; other names any lower-case token
_F_QVALUE = r"(?:0(?:\.[0-9]{0,3}+)?|1(?:\.0{0,3}+)?)(?![0-9])"
_F_CPARAMS = (
    rf"(?:;(?:q={_F_QVALUE}|expires=[0-9]{{1,10}}+(?![0-9])"
    rf"|(?!(?:q|expires)(?![{TOKEN_CHARS}])){LTOKEN}(?:={TOKEN})?))*+"
)
# groups: quoted display, token display, URI, header parameters
_F_NAME_ADDR = rf'(?:("[^"\\\x00-\x1f\x7f]*+") ?|({TOKEN}(?: {TOKEN})*+) )?<({SIP_URI_FAST_TEXT})>'
_NAME_ADDR_FAST = re.compile(rf"{_F_NAME_ADDR}({_F_HPARAMS})\Z")
_ROUTE_FAST = re.compile(rf"{_F_NAME_ADDR}({_F_HPARAMS})(?=, ?|\Z)")
_CONTACT_FAST = re.compile(rf"{_F_NAME_ADDR}({_F_CPARAMS})(?=, ?|\Z)")


# -- name-addr -----------------------------------------------------------------


def _set_params(value: LazyParams, text: str) -> None:
    """Give `value` its parameters, parsed now (the general road; the fast paths
    keep the text of parameters that are already in the form str() writes)."""
    value._params = params_dict(text) if text else {}
    value._ptext = ""


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
    value._utext = intern(utext)  # the same few addresses call after call, held for the call
    value.display = quoted if quoted is not None else tokens
    value._params = None  # the dict is made when asked for (LazyParams)
    value._ptext = ptext or ""
    return value


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
    return _name_addr_fast(m)


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
    return _parse_list(value, False)


def parse_route_list(value: str) -> list[NameAddr]:
    """Parse Route or Record-Route: name-addrs only (§20.30, §20.34)."""
    return _parse_list(value, True)


def _parse_list(value: str, name_addr_only: bool) -> list[NameAddr]:
    # The fast pattern takes only <name-addr> forms, which both lists allow.
    m = _ROUTE_FAST.match(value)
    if m is not None:
        if m.end() == len(value):
            return [_name_addr_fast(m)]
        items = fast_list(m, value, _name_addr_fast)
        if items is not None:
            return items
    return _addr_list(value, name_addr_only)


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
            return [_name_addr_fast(m)]
        items = fast_list(m, value, _name_addr_fast)
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
        if (not contact._ptext) if contact._params is None else (not contact._params):
            continue
        params = contact.params
        q = params.get("q", "0")
        if q is None or not _QVALUE.match(q):
            raise ParseError(f"bad q value {q!r} in Contact")
        expires = params.get("expires", "0")
        if expires is None or not expires.isdigit() or not expires.isascii():
            raise ParseError(f"bad expires {expires!r} in Contact")
    return contacts
