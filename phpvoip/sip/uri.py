"""SIP and SIPS URIs (RFC 3261 §19.1, §25.1), and opaque URIs of other schemes.

A URI keeps its parts as written (user part still %-escaped) so that relaying it
changes nothing a peer might compare byte for byte; `unescape()` gives the decoded
form where a comparison needs it (§19.1.4).
"""

from __future__ import annotations

import re

from phpvoip.sip.errors import ParseError

__all__ = ["URI", "parse_uri", "unescape"]

# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )  (§25.1)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
# user = 1*( unreserved / escaped / user-unreserved ); password likewise plus & = + $ ,
_USER = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+\Z")
_PASSWORD = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*\Z")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?\.?\Z")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\]\Z")
# paramchar = param-unreserved / unreserved / escaped
_PARAM = re.compile(r"(?:[A-Za-z0-9\[\]/:&+$\-_.!~*'()]|%[0-9A-Fa-f]{2})+\Z")
_HEADERS = re.compile(r"(?:[A-Za-z0-9\[\]/?:+$\-_.!~*'()=&]|%[0-9A-Fa-f]{2})*\Z")
# absoluteURI for other schemes: no whitespace, no angle brackets or quotes
_OPAQUE = re.compile(r"[^\s<>\"]+\Z")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def unescape(text: str) -> str:
    """Decode %HH escapes (as UTF-8, keeping undecodable octets as escapes)."""
    if "%" not in text:
        return text
    raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text).encode("latin-1", "replace")
    return raw.decode("utf-8", "surrogateescape")


class URI:
    """A parsed URI. For ``sip``/``sips`` the parts are split out; other schemes
    keep everything after the colon in `opaque`."""

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "headers", "opaque")

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
        self.params = params if params is not None else {}
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
        return URI(
            self.scheme,
            self.user,
            self.host,
            self.port,
            dict(self.params),
            self.headers,
            self.password,
            self.opaque,
        )

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += (":", self.password)
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts += (":", str(self.port))
        for name, value in self.params.items():
            parts += (";", name) if value is None else (";", name, "=", value)
        if self.headers is not None:
            parts += ("?", self.headers)
        return "".join(parts)

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
        return hash(str(self))


def parse_uri(text: str) -> URI:
    """Parse a URI; raise `ParseError` saying what is wrong with it."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.match(scheme):
        raise ParseError(f"bad URI {text!r}: no scheme")
    lower = scheme.lower()
    if lower != "sip" and lower != "sips":
        if not rest or not _OPAQUE.match(rest):
            raise ParseError(f"bad URI {text!r}")
        return URI(lower, opaque=rest)

    user = password = headers = None
    # '@' may appear in neither params nor headers unescaped, so the first one ends
    # the userinfo (§25.1).
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if colon:
            if not _PASSWORD.match(pw):
                raise ParseError(f"bad URI {text!r}: bad password")
            password = pw
        if not _USER.match(user):
            raise ParseError(f"bad URI {text!r}: bad user part")
    rest, question, hdrs = rest.partition("?")
    if question:
        if not _HEADERS.match(hdrs):
            raise ParseError(f"bad URI {text!r}: bad headers")
        headers = hdrs
    hostport, *raw_params = rest.split(";")
    host, port = _split_hostport(hostport, text)
    params: dict[str, str | None] = {}
    for raw in raw_params:
        name, eq, value = raw.partition("=")
        if not _PARAM.match(name) or (eq and not _PARAM.match(value)):
            raise ParseError(f"bad URI {text!r}: bad parameter {raw!r}")
        params[name.lower()] = value if eq else None
    return URI(lower, user, host, port, params, headers, password)


def _split_hostport(hostport: str, text: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        host, tail = hostport[: end + 1], hostport[end + 1 :]
        if end < 0 or not _IPV6.match(host):
            raise ParseError(f"bad URI {text!r}: bad IPv6 reference")
    else:
        host, colon, port_text = hostport.partition(":")
        tail = colon + port_text
        if not _HOSTNAME.match(host):
            raise ParseError(f"bad URI {text!r}: bad host")
    if not tail:
        return host, None
    port_text = tail[1:]
    if tail[0] != ":" or not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
        raise ParseError(f"bad URI {text!r}: bad port")
    return host, int(port_text)
