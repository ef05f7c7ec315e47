"""The values of WWW-Authenticate, Proxy-Authenticate, Authorization and
Proxy-Authorization (RFC 3261 §25.1 `challenge` / `credentials`, RFC 7235 §2.1,
RFC 7616 §3.3-3.4): parsing and formatting, no hashing.

A value is a scheme and comma-separated ``name=value`` auth-params whose values are
tokens or quoted strings. Names are case-insensitive and kept lower case; values are
kept unquoted and unescaped. Unknown parameters are kept, and written back quoted if
they came quoted.

RFC 3261 puts one challenge in each header line; HTTP (RFC 7235 §4.1) allows several
in one line, so `parse_challenges` reads a line with several. A `token68` value (as in
``Negotiate YII...``) is not supported: SIP has no scheme that uses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from phpvoip.sip.errors import LocalProtocolError, ParseError

__all__ = [
    "AuthValue",
    "Challenge",
    "Credentials",
    "format_auth_value",
    "parse_challenge",
    "parse_challenges",
    "parse_credentials",
    "quote",
]

# tchar (RFC 7230 §3.2.6); the RFC 3261 token alphabet is a subset of it.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# LWS (RFC 3261 §25.1): folding is already undone by the message parser, but a
# value built by hand may still carry CRLF + WSP.
_LWS = frozenset(" \t\r\n")
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")
_LWS_RE = re.compile(r"[ \t\r\n]*")
# qdtext (any char but controls, '"' and '\\'; TAB allowed) or quoted-pair
_QUOTED_RE = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*)"')
_UNESCAPE_RE = re.compile(r"\\(.)", re.S)
# The common case in one regex per parameter; anything it refuses (errors, several
# challenges in a line, empty list elements) goes through `_Scanner`.
_FAST_SCHEME_RE = re.compile(r"[ \t\r\n]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t\r\n]+")
_FAST_PARAM_RE = re.compile(
    r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t\r\n]*=[ \t\r\n]*"
    r'(?:"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*)"|([!#$%&\'*+\-.^_`|~0-9A-Za-z]+))'
    r"[ \t\r\n]*(?:,[ \t\r\n]*|\Z)"
)

# RFC 7616 §3.3/§3.4: "a sender MUST only generate the quoted string syntax" for
# these, and "MUST NOT" for algorithm, qop (in credentials), nc, stale, userhash.
_QUOTED_IN_CHALLENGE = frozenset(("realm", "domain", "nonce", "opaque", "qop"))
_QUOTED_IN_CREDENTIALS = frozenset(("username", "realm", "nonce", "uri", "response", "cnonce", "opaque"))


class AuthValue:
    """One scheme with its auth-params; see `Challenge` and `Credentials`.

    `params` maps lower-case names to unquoted values, in the order read.
    `quoted` names the unknown parameters that arrived quoted, so they are written
    back the same way (for the known ones RFC 7616 fixes the form).
    """

    __slots__ = ("scheme", "params", "quoted")

    _always_quoted: frozenset[str] = frozenset()

    def __init__(
        self,
        scheme: str = "Digest",
        params: dict[str, str] | None = None,
        quoted: Iterable[str] = (),
    ) -> None:
        self.scheme = scheme
        self.params = params if params is not None else {}
        self.quoted = set(quoted)

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name.lower(), default)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def nonce(self) -> str | None:
        return self.params.get("nonce")

    @property
    def opaque(self) -> str | None:
        return self.params.get("opaque")

    @property
    def algorithm(self) -> str:
        """The algorithm as written; RFC 7616 §3.3: "If this is not present, it is
        assumed to be MD5"."""
        return self.params.get("algorithm") or "MD5"

    def __str__(self) -> str:
        return format_auth_value(self.scheme, self.params, self._always_quoted | self.quoted)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AuthValue) or type(self) is not type(other):
            return NotImplemented
        return self.scheme.lower() == other.scheme.lower() and self.params == other.params

    def __repr__(self) -> str:
        # Never show values: a credential's response is as good as a password for
        # an attacker who holds its nonce (and logs end up in tickets).
        return f"<{type(self).__name__} {self.scheme} {sorted(self.params)}>"


class Challenge(AuthValue):
    """A WWW-Authenticate or Proxy-Authenticate value (RFC 7616 §3.3)."""

    __slots__ = ()

    _always_quoted = _QUOTED_IN_CHALLENGE

    @property
    def qop_options(self) -> list[str]:
        """The offered qop values (``qop="auth,auth-int"``), lower case; empty when
        the server sent no qop (RFC 2069 style)."""
        value = self.params.get("qop")
        if not value:
            return []
        return [q.strip(" \t").lower() for q in value.split(",") if q.strip(" \t")]

    @property
    def stale(self) -> bool:
        # RFC 7616 §3.3: "the server SHOULD accept ... case-insensitive" true.
        return (self.params.get("stale") or "").lower() == "true"


class Credentials(AuthValue):
    """An Authorization or Proxy-Authorization value (RFC 7616 §3.4)."""

    __slots__ = ()

    _always_quoted = _QUOTED_IN_CREDENTIALS

    @property
    def username(self) -> str | None:
        return self.params.get("username")

    @property
    def uri(self) -> str | None:
        return self.params.get("uri")

    @property
    def response(self) -> str | None:
        return self.params.get("response")

    @property
    def cnonce(self) -> str | None:
        return self.params.get("cnonce")

    @property
    def nc(self) -> str | None:
        return self.params.get("nc")

    @property
    def qop(self) -> str | None:
        value = self.params.get("qop")
        return value.lower() if value is not None else None


def quote(value: str) -> str:
    """`value` as a quoted-string, escaping ``"`` and ``\\`` (RFC 3261 §25.1).

    CR and LF cannot be escaped (quoted-pair excludes them); a value holding them
    would split the header, so it is refused as a bug on our side."""
    if "\r" in value or "\n" in value:
        raise LocalProtocolError("CR or LF in an auth-param value")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_token(value: str) -> bool:
    return bool(value) and all(ch in _TCHAR for ch in value)


def format_auth_value(scheme: str, params: dict[str, str], quoted: Iterable[str] = ()) -> str:
    """``Scheme name=value, name="value"``: names in `quoted` (and any value that is
    not a token) are written as quoted strings."""
    if not _is_token(scheme):
        raise LocalProtocolError(f"bad auth scheme {scheme!r}")
    quoted = frozenset(quoted)
    parts = []
    for name, value in params.items():
        if not _is_token(name):
            raise LocalProtocolError(f"bad auth-param name {name!r}")
        if name in quoted or not _is_token(value):
            parts.append(f"{name}={quote(value)}")
        else:
            parts.append(f"{name}={value}")
    return f"{scheme} {', '.join(parts)}" if parts else scheme


# -- parsing -------------------------------------------------------------------


class _Scanner:
    """A cursor over one header value; every method returns what it read."""

    __slots__ = ("text", "pos", "n")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.n = len(text)

    def lws(self) -> bool:
        """Skip linear whitespace; true if there was any."""
        start = self.pos
        self.pos = _LWS_RE.match(self.text, start).end()  # type: ignore[union-attr]
        return self.pos > start

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < self.n else ""

    def token(self) -> str:
        m = _TOKEN_RE.match(self.text, self.pos)
        self.pos = m.end()  # type: ignore[union-attr]
        return m.group()  # type: ignore[union-attr]

    def quoted_string(self) -> str:
        """Read ``"..."`` with quoted-pairs (§25.1) and return it unescaped."""
        m = _QUOTED_RE.match(self.text, self.pos)
        if m is not None:
            self.pos = m.end()
            value = m.group(1)
            return _UNESCAPE_RE.sub(r"\1", value) if "\\" in value else value
        return self._bad_quoted_string()

    def _bad_quoted_string(self) -> str:
        """Walk a quoted string the regex refused, to say what is wrong with it."""
        text = self.text
        i = self.pos + 1
        out = []
        while i < self.n:
            ch = text[i]
            if ch == '"':
                self.pos = i + 1
                return "".join(out)
            if ch == "\\":
                # quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                if i + 1 >= self.n or text[i + 1] in "\r\n" or ord(text[i + 1]) > 0x7F:
                    raise ParseError(f"bad escape in quoted string at {i} in auth header")
                out.append(text[i + 1])
                i += 2
                continue
            if ch in "\r\n" or (ord(ch) < 0x20 and ch != "\t") or ch == "\x7f":
                raise ParseError(f"control character in quoted string at {i} in auth header")
            out.append(ch)
            i += 1
        raise ParseError("unterminated quoted string in auth header")


def _fast_scan(text: str) -> tuple[str, dict[str, str], set[str]] | None:
    """One scheme with well-formed params, or None to let `_scan` decide."""
    m = _FAST_SCHEME_RE.match(text)
    if m is None:
        return None
    scheme = m.group(1)
    pos, n = m.end(), len(text)
    params: dict[str, str] = {}
    quoted: set[str] = set()
    match = _FAST_PARAM_RE.match
    while pos < n:
        m = match(text, pos)
        if m is None:
            return None
        name, qvalue, tvalue = m.groups()
        key = name.lower()
        if key in params:
            return None
        if qvalue is not None:
            params[key] = _UNESCAPE_RE.sub(r"\1", qvalue) if "\\" in qvalue else qvalue
            quoted.add(key)
        else:
            params[key] = tvalue
        pos = m.end()
    return scheme, params, quoted


def _scan(text: str) -> Iterator[tuple[str, dict[str, str], set[str]]]:
    """Yield ``(scheme, params, quoted)`` for each challenge/credentials in `text`.

    Grammar (RFC 7235 §2.1 with RFC 3261 §25.1 LWS): ``scheme 1*LWS auth-param
    *(COMMA auth-param)``, where a new ``scheme`` may follow a comma. Empty list
    elements (``a=1, , b=2``) are skipped as RFC 7230 §7 asks of recipients.
    """
    s = _Scanner(text)
    s.lws()
    if s.pos >= s.n:
        raise ParseError("empty auth header")
    while True:
        scheme = s.token()
        if not scheme:
            raise ParseError(f"expected an auth scheme at {s.pos} in auth header")
        params: dict[str, str] = {}
        quoted: set[str] = set()
        spaced = s.lws()
        if s.pos < s.n and not spaced:
            raise ParseError(f"expected whitespace after auth scheme {scheme!r}")
        after_comma = False
        next_scheme = False
        while s.pos < s.n:
            if s.peek() == ",":
                s.pos += 1
                s.lws()
                after_comma = True
                continue
            start = s.pos
            name = s.token()
            if not name:
                raise ParseError(f"expected an auth-param at {s.pos} in auth header")
            s.lws()
            if s.peek() != "=":
                if after_comma:
                    # "..., Basic realm=x": the next challenge starts here.
                    s.pos = start
                    next_scheme = True
                    break
                raise ParseError(f"auth-param {name!r} without a value (token68 is not supported)")
            s.pos += 1
            s.lws()
            if s.peek() == '"':
                value = s.quoted_string()
                was_quoted = True
            else:
                value = s.token()
                was_quoted = False
                if not value:
                    raise ParseError(f"auth-param {name!r} has no value")
            key = name.lower()
            if key in params:
                # RFC 7235 §2.1: "Each parameter name MUST only occur once".
                raise ParseError(f"auth-param {key!r} given twice")
            params[key] = value
            if was_quoted:
                quoted.add(key)
            s.lws()
            if s.pos < s.n and s.peek() != ",":
                raise ParseError(f"expected a comma after auth-param {key!r}")
            after_comma = False
        yield scheme, params, quoted
        if not next_scheme:
            return


def parse_challenges(value: str) -> list[Challenge]:
    """All challenges in one WWW-/Proxy-Authenticate line (usually one in SIP)."""
    fast = _fast_scan(value)
    if fast is not None:
        return [Challenge(*fast)]
    return [Challenge(scheme, params, quoted) for scheme, params, quoted in _scan(value)]


def parse_challenge(value: str) -> Challenge:
    """Exactly one challenge (RFC 3261 §25.1: ``WWW-Authenticate = ... HCOLON
    challenge``)."""
    challenges = parse_challenges(value)
    if len(challenges) != 1:
        raise ParseError(f"{len(challenges)} challenges in one header value")
    return challenges[0]


def parse_credentials(value: str) -> Credentials:
    """One Authorization/Proxy-Authorization value (RFC 3261 §25.1 `credentials`)."""
    fast = _fast_scan(value)
    if fast is not None:
        return Credentials(*fast)
    found = list(_scan(value))
    if len(found) != 1:
        raise ParseError(f"{len(found)} credentials in one header value")
    scheme, params, quoted = found[0]
    return Credentials(scheme, params, quoted)
