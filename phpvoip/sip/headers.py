"""Header names, and the typed values of the headers that routing needs (RFC 3261
§7.3, §20, §25.1), with the cheap syntax checks some other headers get while a
message is parsed.

Each value is a small slotted object whose ``str()`` is its wire form, so a message
can hold either the raw text of a header or its typed value and serialize both alike.
Every parser takes the header value unfolded, with its surrounding whitespace
removed, and raises `ParseError` with a reason when the text is not what §25.1
allows. Each has two roads: a fast one, one regular expression for the shapes
real traffic uses, whose groups build the value (keeping URI and parameters as
checked text until they are read), and a general one for everything else in the
grammar (LWS anywhere it may be, escapes, IPv6, quoted parameter values). All
regular expressions use possessive quantifiers, so hostile input stays linear.

This module holds the header names (compact forms, lookup keys, spellings) and
re-exports the values, which live by topic:

- `headers_grammar`: shared §25.1 pieces, comma splitting, generic parameters;
- `headers_nameaddr`: `NameAddr`, From/To, Route lists, Contact and `STAR`;
- `headers_via`: `Via`;
- `headers_values`: `CSeq`, Call-ID, integers, delta-seconds, and the checks of
  Date, Expires, Content-Type, Require and Proxy-Require.
"""

from __future__ import annotations

from phpvoip.sip.headers_grammar import parse_params, split_commas
from phpvoip.sip.headers_nameaddr import (
    STAR,
    NameAddr,
    parse_contact_list,
    parse_name_addr,
    parse_name_addr_list,
    parse_route_list,
)
from phpvoip.sip.headers_values import (
    CSeq,
    check_content_type,
    check_date,
    check_delta_seconds,
    check_option_tags,
    parse_call_id,
    parse_content_length,
    parse_cseq,
    parse_delta_seconds,
    parse_int,
    parse_max_forwards,
)
from phpvoip.sip.headers_via import Via, parse_via_list

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
    "parse_content_length",
    "parse_cseq",
    "parse_delta_seconds",
    "parse_int",
    "parse_max_forwards",
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
