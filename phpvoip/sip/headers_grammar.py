"""Building blocks the header parsers share (RFC 3261 §25.1, §7.3.1).

The pieces of the grammar that several headers use, as regular-expression text
(token, quoted-string, generic parameters, and the lower-case forms the fast paths
match), plus the helpers around them: splitting a value at commas, reading and
checking ``;name=value`` parameters, and walking a comma list with a fast pattern.
The typed values themselves live in `headers_nameaddr`, `headers_via` and
`headers_values`; `headers` re-exports their public names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from phpvoip.sip.errors import ParseError

__all__ = ["fast_list", "params_dict", "parse_params", "split_commas"]

# -- grammar pieces (§25.1) -----------------------------------------------------

TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]++"
# quoted-string: qdtext is LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII, and
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
QSTR = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]++|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*+"'
# gen-value = token / host / quoted-string (hostnames and IPv4 are tokens already)
GEN_VALUE = rf"(?:{TOKEN}|\[[0-9A-Fa-f:.]++\]|{QSTR})"
# *( SEMI generic-param ), SEMI and EQUAL allowing whitespace on both sides
PARAMS = rf"(?:[ \t]*+;[ \t]*+{TOKEN}(?:[ \t]*+=[ \t]*+{GEN_VALUE})?+)*+"
_PARAM = re.compile(rf"[ \t]*;[ \t]*({TOKEN})(?:[ \t]*=[ \t]*({GEN_VALUE}))?")
_PARAMS_ONLY = re.compile(rf"{PARAMS}[ \t]*\Z")

# -- fast paths ------------------------------------------------------------------
# The shapes real traffic uses, each checked completely by one regular expression
# whose groups build the value directly: no whitespace beyond single spaces, no
# escapes in display names, parameter names in lower case (as str() writes them),
# values that are tokens. Each accepts a strict subset of what the general parser
# of its header accepts (tests/unit/test_headers.py checks this); everything else
# takes the general road, which accepts it or says what is wrong. These are the
# pieces the fast patterns of `headers_nameaddr` and `headers_via` share.
LTOKEN = r"[a-z0-9\-.!%*_+`'~]++"
TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"


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


def params_dict(text: str, pattern: re.Pattern[str] = _PARAM) -> dict[str, str | None]:
    # `text` has been validated as PARAMS (or as headers_via's _VIA_PARAMS, with
    # `pattern` its _VIA_PARAM). Quoted values keep their quotes (as written).
    params: dict[str, str | None] = {}
    for m in pattern.finditer(text):
        name = m.group(1).lower()
        if name not in params:
            params[name] = m.group(2)
    return params


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
    return params_dict(text)


def fast_list(m: re.Match[str], value: str, build: Callable[[re.Match[str]], Any]) -> list[Any] | None:
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
