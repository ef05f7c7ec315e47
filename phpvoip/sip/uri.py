"""SIP and SIPS URIs (RFC 3261 §19.1, §25.1), and opaque URIs of other schemes.

A URI keeps its parts as written (user part still %-escaped) so that relaying it
changes nothing a peer might compare byte for byte; `unescape()` gives the decoded
form where a comparison needs it (§19.1.4).

Parameters are the part of a URI that routing rarely reads, so a parsed URI keeps
them as the validated text and only builds the `params` dict when somebody asks.
Once built, the dict is the truth: mutate it and `str()` shows the change.
"""

from __future__ import annotations

import ipaddress
import re
from sys import intern

from phpvoip.sip.errors import ParseError

__all__ = ["URI", "check_host", "parse_uri", "unescape"]

# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )  (§25.1)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*+\Z")

# One pass over the whole SIP-URI after "sip:" (§25.1). '%' is let through the
# character classes and the escapes are checked once afterwards, which keeps every
# repetition a tight character-class loop. Possessive quantifiers are safe: no part
# can give characters back to a following part (user stops at ':' or '@', neither
# of which it may contain), and they keep hostile input linear.
#   user     = 1*( unreserved / escaped / "&" / "=" / "+" / "$" / "," / ";" / "?" / "/" )
#   password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
#   paramchar = "[" / "]" / "/" / ":" / "&" / "+" / "$" / unreserved / escaped
#   hname / hvalue = "[" / "]" / "/" / "?" / ":" / "+" / "$" / unreserved / escaped
_PCHAR = r"[A-Za-z0-9\[\]/:&+$\-_.!~*'()%]"
_HCHAR = r"[A-Za-z0-9\[\]/?:+$\-_.!~*'()%]"
_SIP_REST = re.compile(
    r"(?:([A-Za-z0-9\-_.!~*'()&=+$,;?/%]++)(?::([A-Za-z0-9\-_.!~*'()&=+$,%]*+))?@)?"
    r"(\[[0-9A-Fa-f:.]++\]|[A-Za-z0-9][A-Za-z0-9\-.]*+)"
    r"(?::([0-9]{1,5}+))?"
    rf"((?:;{_PCHAR}++(?:={_PCHAR}++)?)*+)"
    rf"(?:\?({_HCHAR}++={_HCHAR}*+(?:&{_HCHAR}++={_HCHAR}*+)*+))?\Z"
)
# absoluteURI of other schemes (RFC 2396 §3): uric = reserved / unreserved / escaped;
# brackets admitted for IPv6 literals (RFC 3986).
_OPAQUE = re.compile(r"[A-Za-z0-9;/?:@&=+$,\-_.!~*'()%\[\]]++\Z")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_IPV4 = re.compile(r"[0-9]{1,3}+\.[0-9]{1,3}+\.[0-9]{1,3}+\.[0-9]{1,3}+\Z")
# hostname = *( domainlabel "." ) toplabel [ "." ]; labels begin and end alphanumeric,
# the top label begins with a letter
_LABEL = r"[A-Za-z0-9][A-Za-z0-9\-]*+(?<!-)"
_TOPLABEL = r"[A-Za-z][A-Za-z0-9\-]*+(?<!-)"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*{_TOPLABEL}\.?\Z")

# -- the fast path --------------------------------------------------------------
# A SIP URI in the shapes that real traffic uses, checked completely by one regular
# expression (host labels and port range included) so that a match can be built
# into a URI with no further test. It accepts a strict subset of §25.1 (scheme in
# lower case, no escapes, no IPv6, no trailing dot, no leading zeros in ports,
# parameter names in lower case as str() writes them) made of plain character-class
# runs, the cheapest thing for the regular expression engine; anything else takes
# the general road in `parse_uri`, which accepts or refuses it with a reason.
# `SIP_URI_FAST` has seven groups (scheme, user, password, host, port, parameters,
# headers); header parsers embed the same grammar without groups,
# `SIP_URI_FAST_TEXT`, and keep the URI as text until read.
F_IPV4 = r"[0-9]{1,3}+\.[0-9]{1,3}+\.[0-9]{1,3}+\.[0-9]{1,3}+(?![A-Za-z0-9\-.])"
F_HOST = rf"(?:{F_IPV4}|(?:{_LABEL}\.)*{_TOPLABEL}(?![A-Za-z0-9\-.]))"
F_PORT = (
    r"(?:[1-9][0-9]{0,3}+|[1-5][0-9]{4}+|6[0-4][0-9]{3}+|65[0-4][0-9]{2}+|655[0-2][0-9]|6553[0-5])(?![0-9])"
)
_F_USER = r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]++"
_F_PASSWORD = r"[A-Za-z0-9\-_.!~*'()&=+$,]*+"
_F_PNAME = r"[a-z0-9\[\]/:&+$\-_.!~*'()]++"
_F_PVALUE = r"[A-Za-z0-9\[\]/:&+$\-_.!~*'()]++"
_F_HNAME = r"[A-Za-z0-9\[\]/?:+$\-_.!~*'()]++"
_F_HVALUE = r"[A-Za-z0-9\[\]/?:+$\-_.!~*'()]*+"


def _sip_uri_fast(group: str) -> str:
    # `group` is "(" for capturing groups, "(?:" for none
    return (
        rf"{group}sips?):(?:{group}{_F_USER})(?::{group}{_F_PASSWORD}))?@)?"
        rf"{group}{F_HOST})(?::{group}{F_PORT}))?"
        rf"{group}(?:;{_F_PNAME}(?:={_F_PVALUE})?)*+)"
        rf"(?:\?{group}{_F_HNAME}={_F_HVALUE}(?:&{_F_HNAME}={_F_HVALUE})*+))?"
    )


SIP_URI_FAST = _sip_uri_fast("(")
SIP_URI_FAST_TEXT = _sip_uri_fast("(?:")
_URI_FAST = re.compile(SIP_URI_FAST + r"\Z")

# Hosts already checked: the same few peers come back all the time. Bounded, so a
# flood of random names costs memory once and never grows it.
_GOOD_HOSTS: dict[str, bool] = {}


def check_host(host: str) -> bool:
    """Whether `host` is a hostname, IPv4 address or IPv6 reference (§25.1)."""
    if host in _GOOD_HOSTS:
        return True
    if host.startswith("["):
        if not host.endswith("]"):
            return False
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
    elif not (_IPV4.match(host) or _HOSTNAME.match(host)):
        return False
    if len(_GOOD_HOSTS) < 4096:
        _GOOD_HOSTS[host] = True
    return True


def unescape(text: str) -> str:
    """Decode %HH escapes as UTF-8 (octets that are not UTF-8 come out as
    surrogate escapes, as bytes.decode(..., "surrogateescape") gives them)."""
    if "%" not in text:
        return text
    raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text).encode("latin-1", "replace")
    return raw.decode("utf-8", "surrogateescape")


def split_param_text(text: str) -> dict[str, str | None]:
    """``;a=1;b`` (validated, no whitespace, no quotes) as a dict. Names are case
    insensitive (§19.1.4, §7.3.1) and kept lower case; the first of a repeated
    name wins."""
    params: dict[str, str | None] = {}
    for piece in text[1:].split(";"):
        name, eq, value = piece.partition("=")
        name = name.lower()
        if name not in params:
            params[name] = value if eq else None
    return params


def params_text(params: dict[str, str | None]) -> str:
    """The wire form of a parameter dict: ``;name=value;flag``."""
    if not params:
        return ""
    return "".join([f";{k}" if v is None else f";{k}={v}" for k, v in params.items()])


class LazyParams:
    """Base of values with ``;params``: they hold the validated text until the
    dict is asked for (most relayed values are never looked into)."""

    # `_params` is the dict, or None while the parameters are still the text
    # `_ptext` (validated, names in lower case, no whitespace or quotes)
    __slots__ = ("_params", "_ptext")

    @property
    def params(self) -> dict[str, str | None]:
        params = self._params
        if params is None:
            ptext = self._ptext
            params = self._params = split_param_text(ptext) if ptext else {}
        return params

    @params.setter
    def params(self, value: dict[str, str | None]) -> None:
        self._params = value

    def param(self, name: str) -> str | None:
        """One parameter's value (`name` in lower case), without building the
        dict if it is still text: the hot path reads just a tag or a branch."""
        params = self._params
        if params is not None:
            return params.get(name)
        text = self._ptext
        needle = ";" + name
        size = len(needle)
        i = text.find(needle)
        while i >= 0:
            j = i + size
            if j == len(text) or text[j] == ";":
                return None  # present without a value
            if text[j] == "=":
                k = text.find(";", j)
                return text[j + 1 :] if k < 0 else text[j + 1 : k]
            i = text.find(needle, j)  # a longer name that starts alike
        return None

    def _copy_params_to(self, other: LazyParams) -> None:
        params = self._params
        if params is None:
            other._params = None
            other._ptext = self._ptext
        elif params:
            other._params = dict(params)
        else:
            # No parameters: the empty text, not a fresh empty dict (64 bytes
            # each, and a held call copies some twenty URIs and names).
            other._params = None
            other._ptext = ""


class URI(LazyParams):
    """A parsed URI. For ``sip``/``sips`` the parts are split out; other schemes
    keep everything after the colon in `opaque`."""

    __slots__ = ("scheme", "user", "password", "host", "port", "headers", "opaque")

    def __init__(
        self,
        scheme: str = "sip",
        user: str | None = None,
        host: str = "",
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: str | None = None,
        password: str | None = None,
        opaque: str | None = None,
    ) -> None:
        self.scheme = scheme.lower()
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self._params = params if params is not None else {}
        self._ptext = ""
        self.headers = headers
        self.opaque = opaque

    @property
    def is_sip(self) -> bool:
        return self.opaque is None

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    def copy(self) -> URI:
        clone = _new_uri(
            self.scheme, self.user, self.password, self.host, self.port, self.headers, self.opaque
        )
        self._copy_params_to(clone)
        return clone

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        user = self.user
        if user is None:
            text = f"{self.scheme}:{self.host}"
        elif self.password is None:
            text = f"{self.scheme}:{user}@{self.host}"
        else:
            text = f"{self.scheme}:{user}:{self.password}@{self.host}"
        if self.port is not None:
            text = f"{text}:{self.port}"
        params = self._params
        if params is None:
            text += self._ptext
        elif params:
            text += params_text(params)
        if self.headers is not None:
            text = f"{text}?{self.headers}"
        return text

    def __repr__(self) -> str:
        return f"<URI {self}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, URI):
            return NotImplemented
        return (
            self.scheme == other.scheme
            and self.opaque == other.opaque
            and self.user == other.user
            and self.password == other.password
            and self.host.lower() == other.host.lower()
            and self.port == other.port
            and self.params == other.params
            and self.headers == other.headers
        )

    def __hash__(self) -> int:
        return hash((self.scheme, self.opaque, self.user, self.host.lower(), self.port))


def _new_uri(
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port: int | None,
    headers: str | None,
    opaque: str | None,
) -> URI:
    # The parser's constructor: skips __init__'s defaults and lower-casing.
    uri = URI.__new__(URI)
    uri.scheme = scheme
    uri.user = user
    uri.password = password
    uri.host = host
    uri.port = port
    uri.headers = headers
    uri.opaque = opaque
    return uri


def parse_uri(text: str) -> URI:
    """Parse a URI; raise `ParseError` saying what is wrong with it."""
    m = _URI_FAST.match(text)
    if m is None:
        return _parse_uri_general(text)
    # built in place from the groups: this runs for every Request-URI
    uri = URI.__new__(URI)
    scheme, user, uri.password, host, port, ptext, uri.headers = m.groups()
    # Interned: a held call keeps some ten parsed URIs whose scheme, host and
    # user are the same few strings call after call (about 1 KB a call).
    # Interned strings still die with their last reference.
    uri.scheme = intern(scheme)
    uri.user = None if user is None else intern(user)
    uri.host = intern(host)
    uri.port = None if port is None else int(port)
    uri._params = None  # the dict is made when asked for (LazyParams)
    uri._ptext = ptext or ""
    uri.opaque = None
    return uri


def _parse_uri_general(text: str) -> URI:
    raw_scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.match(raw_scheme):
        raise ParseError(f"bad URI {text[:80]!r}: no scheme")
    scheme = raw_scheme.lower()
    if scheme != "sip" and scheme != "sips":
        if not _OPAQUE.match(rest) or ("%" in rest and _BAD_ESCAPE.search(rest)):
            raise ParseError(f"bad URI {text[:80]!r}")
        uri = _new_uri(scheme, None, None, "", None, None, rest)
        uri._params = {}
        uri._ptext = ""
        return uri
    m = _SIP_REST.match(rest)
    if m is None:
        raise ParseError(f"bad URI {text[:80]!r}: {_why_bad_sip(rest)}")
    user, password, host, port, ptext, headers = m.groups()
    if "%" in rest and _BAD_ESCAPE.search(rest):
        raise ParseError(f"bad URI {text[:80]!r}: '%' that is not an escape")
    if not check_host(host):
        raise ParseError(f"bad URI {text[:80]!r}: bad host {host[:60]!r}")
    if port is not None:
        port_number = int(port)
        if port_number > 65535:
            raise ParseError(f"bad URI {text[:80]!r}: bad port")
    else:
        port_number = None
    uri = _new_uri(scheme, user, password, host, port_number, headers, None)
    # the general road builds the dict at once: names in lower case (they are
    # case-insensitive, §19.1.4), the first of a repeated name wins
    uri._ptext = ""
    uri._params = split_param_text(ptext) if ptext else {}
    return uri


def _why_bad_sip(rest: str) -> str:
    # Only for the error message: the regular expression said no, say roughly why.
    at = rest.find("@")
    if at >= 0:
        user, _, password = rest[:at].partition(":")
        if not re.fullmatch(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+", user):
            return "bad user part"
        if not re.fullmatch(r"[A-Za-z0-9\-_.!~*'()&=+$,%]*", password):
            return "bad password"
        rest = rest[at + 1 :]
    rest, _, headers = rest.partition("?")
    hostport, _, params = rest.partition(";")
    if params and not re.fullmatch(rf"{_PCHAR}+(?:={_PCHAR}+)?(?:;{_PCHAR}+(?:={_PCHAR}+)?)*", params):
        return "bad parameter"
    if headers and not re.fullmatch(rf"{_HCHAR}+={_HCHAR}*(?:&{_HCHAR}+={_HCHAR}*)*", headers):
        return "bad headers"
    if hostport.startswith("[") or ":" not in hostport:
        return "bad host"
    return "bad host or port"
