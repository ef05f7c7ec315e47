"""The Via header: `Via` values and `parse_via_list` (RFC 3261 §18.2.1, §20.42,
§25.1; rport from RFC 3581).

Like the name-addr parsers, `parse_via_list` has a fast path for the shapes real
traffic uses and a general parser for the rest of the grammar (LWS around the
slashes and the colon, IPv6 hosts, quoted parameter values), whose parameters
get checked by name: branch, ttl, maddr, received, rport.
"""

from __future__ import annotations

import re

from phpvoip.sip.errors import ParseError
from phpvoip.sip.headers_grammar import GEN_VALUE, LTOKEN, TOKEN, TOKEN_CHARS, fast_list, params_dict
from phpvoip.sip.uri import F_HOST, F_IPV4, F_PORT, LazyParams, check_host, params_text

__all__ = ["Via", "parse_via_list"]

# Via parameters may also hold a bare IPv6 address (via-received, §25.1); which
# parameter holds what is checked on the dict
_VIA_VALUE = rf"(?:[0-9A-Fa-f]*+:[0-9A-Fa-f:.]*+|{GEN_VALUE})"
_VIA_PARAMS = rf"(?:[ \t]*+;[ \t]*+{TOKEN}(?:[ \t]*+=[ \t]*+{_VIA_VALUE})?+)*+"
_VIA_PARAM = re.compile(rf"[ \t]*;[ \t]*({TOKEN})(?:[ \t]*=[ \t]*({_VIA_VALUE}))?")

# via-parm = sent-protocol LWS sent-by *( SEMI via-params ), SLASH and COLON
# allowing whitespace around them. groups: protocol, version, transport, host,
# port, parameters.
_VIA = re.compile(
    rf"[ \t]*+({TOKEN})[ \t]*+/[ \t]*+({TOKEN})[ \t]*+/[ \t]*+({TOKEN})[ \t]++"
    r"(\[[0-9A-Fa-f:.]++\]|[A-Za-z0-9][A-Za-z0-9\-.]*+)(?:[ \t]*+:[ \t]*+([0-9]{1,5}+))?"
    rf"({_VIA_PARAMS})[ \t]*+"
)
_TOKEN_ONLY = re.compile(rf"{TOKEN}\Z")
_IPV4 = re.compile(r"[0-9]{1,3}+\.[0-9]{1,3}+\.[0-9]{1,3}+\.[0-9]{1,3}+\Z")

# -- fast path (see headers_grammar) ----------------------------------------------
# Via: branch = token, rport [= port], received = IPv4, ttl = 0..255; maddr and
# anything unusual go the general way
_F_TTL = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?![0-9])"
_F_VPARAMS = (
    rf"(?:;(?:branch={TOKEN}|rport(?:={F_PORT})?|received={F_IPV4}|ttl={_F_TTL}"
    rf"|(?!(?:branch|rport|received|ttl|maddr)(?![{TOKEN_CHARS}])){LTOKEN}(?:={TOKEN})?))*+"
)
# groups: transport, host, port, parameters
_VIA_FAST = re.compile(rf"SIP/2\.0/({TOKEN}) ({F_HOST})(?::({F_PORT}))?({_F_VPARAMS})(?=, ?|\Z)")


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
    via._params = None  # the dict is made when asked for (LazyParams)
    via._ptext = ptext or ""
    return via


def parse_via_list(value: str) -> list[Via]:
    """Parse a Via header line: one or more comma-separated via-parms (§20.42)."""
    m = _VIA_FAST.match(value)
    if m is not None:
        if m.end() == len(value):
            return [_via_fast(m)]
        items = fast_list(m, value, _via_fast)
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
            via._params = params_dict(ptext, _VIA_PARAM)
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
