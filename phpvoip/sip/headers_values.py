"""Header values that are a number, a word or a checked string: CSeq, Call-ID,
Max-Forwards, Content-Length and other integers, delta-seconds, and the syntax
checks Date, Expires, Content-Type, Require and Proxy-Require get while a message
is parsed (RFC 3261 §20, §25.1; RFC 4475 wants the malformed ones refused).
"""

from __future__ import annotations

import re

from phpvoip.sip.errors import ParseError
from phpvoip.sip.headers_grammar import QSTR, TOKEN

__all__ = [
    "CSeq",
    "check_content_type",
    "check_date",
    "check_delta_seconds",
    "check_option_tags",
    "parse_call_id",
    "parse_content_length",
    "parse_cseq",
    "parse_delta_seconds",
    "parse_int",
    "parse_max_forwards",
]

_CSEQ = re.compile(rf"([0-9]{{1,10}}+)[ \t]++({TOKEN})\Z")
# callid = word [ "@" word ]
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]++"
_CALL_ID = re.compile(rf"{_WORD}(?:@{_WORD})?\Z")
# rfc1123-date = wkday "," SP date1 SP time SP "GMT" (§20.17, §25.1)
_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT\Z",
    re.I,
)
# media-type = m-type SLASH m-subtype *(SEMI m-parameter) (§20.15)
_MEDIA_TYPE = re.compile(
    rf"{TOKEN}[ \t]*+/[ \t]*+{TOKEN}(?:[ \t]*+;[ \t]*+{TOKEN}[ \t]*+=[ \t]*+(?:{TOKEN}|{QSTR}))*+\Z"
)
_OPTION_TAGS = re.compile(rf"{TOKEN}(?:[ \t]*+,[ \t]*+{TOKEN})*+\Z")


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


def parse_max_forwards(value: str) -> int:
    """Max-Forwards is 0-255 (§20.22); up to three plain digits skip `parse_int`."""
    if len(value) < 4 and value.isdigit() and value.isascii() and int(value) < 256:
        return int(value)
    return parse_int(value, "Max-Forwards", 255)  # leading zeros, or the error


def parse_content_length(value: str) -> int:
    """Content-Length = 1*DIGIT (§20.14); the usual few digits skip `parse_int`."""
    if len(value) < 10 and value.isdigit() and value.isascii():
        return int(value)
    return parse_int(value, "Content-Length")


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
