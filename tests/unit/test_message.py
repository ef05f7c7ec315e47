"""Parsing SIP messages (RFC 3261 §7, §20, §25; the cases RFC 4475 describes), as
tables of our own bytes and what must come out of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from phpvoip.sip.errors import ParseError
from phpvoip.sip.headers import STAR
from phpvoip.sip.message import Request, Response, parse

START = "INVITE sip:bob@biloxi.example.com SIP/2.0"
BASE = [
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.example.com>",
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
]


def build(
    start: str = START,
    replace: dict[str, str | None] | None = None,
    extra: tuple[str, ...] = (),
    body: bytes = b"",
    length: bool = True,
) -> bytes:
    """A request from BASE: `replace` swaps (or with None drops) the line of a name."""
    replace = replace or {}
    lines = []
    for line in BASE:
        name = line.split(":", 1)[0]
        if name not in replace:
            lines.append(line)
        elif replace[name] is not None:
            lines.append(replace[name])
    lines.extend(extra)
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join([start, *lines]) + "\r\n\r\n").encode() + body


def response(status_line: str = "SIP/2.0 200 OK", extra: tuple[str, ...] = ()) -> bytes:
    lines = [status_line, *BASE[:1], *BASE[2:], *extra, "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- what must parse, and what comes out ------------------------------------------

Row = tuple[bytes, Callable[[Any], Any], Any]
VALID: dict[str, Row] = {
    "minimal request": (
        build(),
        lambda m: (m.method, str(m.uri), m.max_forwards, m.call_id, m.content_length),
        ("INVITE", "sip:bob@biloxi.example.com", 70, "a84b4c76e66710@pc33.atlanta.example.com", 0),
    ),
    "typed routing headers": (
        build(),
        lambda m: (m.top_via.branch, m.top_via.host, m.from_.tag, m.to.tag, m.cseq.seq, m.cseq.method),
        ("z9hG4bK776asdhds", "pc33.atlanta.example.com", "1928301774", None, 314159, "INVITE"),
    ),
    "compact forms i m l f t v k s c": (
        build(
            replace={
                "Via": "v: SIP/2.0/UDP h.example.com;branch=z9hG4bK1",
                "To": "t: <sip:bob@b.example.com>",
                "From": "f: <sip:a@a.example.com>;tag=x",
                "Call-ID": "i: abc",
            },
            extra=("m: <sip:a@10.0.0.1>", "k: timer", "s: hi", "c: text/plain"),
            length=False,
        )[:-4]
        + b"\r\nl: 0\r\n\r\n",
        lambda m: (
            m.call_id,
            m.top_via.branch,
            str(m.contact[0].uri),
            m.get("Supported"),
            m.get("Subject"),
            m.get("Content-Type"),
            m.content_length,
        ),
        ("abc", "z9hG4bK1", "sip:a@10.0.0.1", "timer", "hi", "text/plain", 0),
    ),
    "compact forms e o u r x b y": (
        build(
            extra=(
                "e: gzip",
                "o: dialog",
                "u: presence",
                "r: <sip:c@c.example.com>",
                "x: 1800",
                "b: <sip:d@d.example.com>",
                "y: abc",
            )
        ),
        lambda m: [
            m.get(n)
            for n in (
                "Content-Encoding",
                "Event",
                "Allow-Events",
                "Refer-To",
                "Session-Expires",
                "Referred-By",
                "Identity",
            )
        ],
        ["gzip", "dialog", "presence", "<sip:c@c.example.com>", "1800", "<sip:d@d.example.com>", "abc"],
    ),
    "header names in any case": (
        build(replace={"Call-ID": "cALL-iD: xyz", "CSeq": "cseq: 314159 INVITE"}),
        lambda m: (m.call_id, m.get("CALL-ID"), m.cseq.seq),
        ("xyz", "xyz", 314159),
    ),
    "whitespace around the colon": (
        build(replace={"To": "To \t:   <sip:bob@biloxi.example.com>  ", "Call-ID": "Call-ID:abc"}),
        lambda m: (str(m.to.uri), m.call_id),
        ("sip:bob@biloxi.example.com", "abc"),
    ),
    "folded lines (SP and HTAB)": (
        build(
            replace={"To": "To:\r\n <sip:bob@biloxi.example.com>\r\n\t;tag=abc"},
            extra=("Subject: I know you're there,\r\n   pick up the phone",),
        ),
        lambda m: (m.to.tag, m.get("Subject")),
        ("abc", "I know you're there, pick up the phone"),
    ),
    "several Vias on one line and several lines": (
        build(
            replace={
                "Via": "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1 ,SIP/2.0/TCP b.example.com:5070"
                ";branch=z9hG4bK2\r\nVia: SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bK3"
            }
        ),
        lambda m: [(v.transport, v.host, v.port, v.branch) for v in m.via],
        [
            ("UDP", "a.example.com", None, "z9hG4bK1"),
            ("TCP", "b.example.com", 5070, "z9hG4bK2"),
            ("TLS", "[2001:db8::1]", 5061, "z9hG4bK3"),
        ],
    ),
    "Via with LWS inside sent-protocol and around the port colon": (
        build(replace={"Via": "Via: SIP / 2.0 / udp  host.example.com : 5060 ; branch = z9hG4bK9 ; rport"}),
        lambda m: (m.top_via.transport, m.top_via.port, m.top_via.branch, "rport" in m.top_via.params),
        ("UDP", 5060, "z9hG4bK9", True),
    ),
    "Via received, rport, maddr, ttl": (
        build(
            replace={
                "Via": "Via: SIP/2.0/UDP a.example.com;rport=5062;received=192.0.2.7;maddr=239.1.1.1"
                ";ttl=16;branch=z9hG4bK4"
            }
        ),
        lambda m: (m.top_via.rport, m.top_via.received, m.top_via.maddr, m.top_via.ttl),
        (5062, "192.0.2.7", "239.1.1.1", 16),
    ),
    "Via received IPv6": (
        build(replace={"Via": "Via: SIP/2.0/UDP [2001:db8::9];received=2001:db8::9;branch=z9hG4bK4"}),
        lambda m: m.top_via.received,
        "2001:db8::9",
    ),
    "quoted display name with escapes and a comma": (
        build(replace={"To": 'To: "Smith, \\"Bob\\"" <sip:bob@biloxi.example.com>'}),
        lambda m: (m.to.display, m.to.display_text),
        ('"Smith, \\"Bob\\""', 'Smith, "Bob"'),
    ),
    "token display name, several words": (
        build(replace={"To": "To: Bob  The Builder <sip:bob@biloxi.example.com>"}),
        lambda m: m.to.display,
        "Bob  The Builder",
    ),
    "no LWS between display name and < (RFC 4475 lwsdisp)": (
        build(replace={"From": "From: caller<sip:caller@example.com>;tag=323"}),
        lambda m: (m.from_.display, m.from_.tag),
        ("caller", "323"),
    ),
    "addr-spec: parameters belong to the header (§20.10)": (
        build(replace={"From": "From: sip:alice@atlanta.example.com;tag=88;transport=tcp"}),
        lambda m: (m.from_.tag, m.from_.params, m.from_.uri.params),
        ("88", {"tag": "88", "transport": "tcp"}, {}),
    ),
    "addr-spec with LWS before ';' (RFC 4475 wsinv)": (
        build(replace={"To": "To: sip:bob@biloxi.example.com ;   tag    = 1918181833n"}),
        lambda m: m.to.tag,
        "1918181833n",
    ),
    "name-addr: URI parameters stay in the URI": (
        build(replace={"To": "To: <sip:bob@biloxi.example.com;transport=tcp>;tag=5"}),
        lambda m: (m.to.uri.params, m.to.params),
        ({"transport": "tcp"}, {"tag": "5"}),
    ),
    "parameter without value and with a quoted value": (
        build(
            extra=(
                'Contact: <sip:a@192.0.2.4>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
                ";reg-id=1;expires=600;q=0.7",
            )
        ),
        lambda m: m.contact[0].params,
        {
            "+sip.instance": '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"',
            "reg-id": "1",
            "expires": "600",
            "q": "0.7",
        },
    ),
    "Contact list with commas in quotes": (
        build(
            extra=(
                'Contact: "Smith, B" <sip:b@192.0.2.4>, <sip:c@192.0.2.5>;q=0.5',
                "Contact: sip:d@192.0.2.6",
            )
        ),
        lambda m: [(c.display, c.uri.user) for c in m.contact],
        [('"Smith, B"', "b"), (None, "c"), (None, "d")],
    ),
    "Contact: * (unregister all)": (
        build(
            start="REGISTER sip:example.com SIP/2.0",
            replace={"CSeq": "CSeq: 2 REGISTER"},
            extra=("Contact:  * ", "Expires: 0"),
        ),
        lambda m: m.contact,
        STAR,
    ),
    "Record-Route and Route lists": (
        build(
            extra=(
                "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
                "Route: <sip:p3.example.com;lr>",
            )
        ),
        lambda m: ([str(r.uri) for r in m.record_route], [str(r.uri) for r in m.route]),
        (["sip:p1.example.com;lr", "sip:p2.example.com;lr"], ["sip:p3.example.com;lr"]),
    ),
    "CSeq and Max-Forwards with extra whitespace and leading zeros": (
        build(replace={"CSeq": "CSeq:   0009 \t INVITE", "Max-Forwards": "Max-Forwards: 0068"}),
        lambda m: (m.cseq.seq, m.max_forwards),
        (9, 68),
    ),
    "CSeq up to 2**32-1": (
        build(replace={"CSeq": "CSeq: 4294967295 INVITE"}),
        lambda m: m.cseq.seq,
        2**32 - 1,
    ),
    "body cut at Content-Length, octets after it ignored (dblreq)": (
        build(body=b"v=0\r\n")[: -0 or None] + b"garbage after the body",
        lambda m: m.body,
        b"v=0\r\n",
    ),
    "no Content-Length: body to the end of the datagram (inv2543)": (
        build(length=False, body=b"hello"),
        lambda m: (m.body, m.content_length),
        (b"hello", None),
    ),
    "CRLFs before the start line are ignored (§7.5)": (
        b"\r\n\r\n" + build(),
        lambda m: m.method,
        "INVITE",
    ),
    "unknown headers kept in order": (
        build(extra=("X-First: 1", "NewFangledHeader:   newfangled value", "X-Empty:", "x-first: 2")),
        lambda m: (m.get_all("X-First"), m.get("newfangledheader"), m.get("X-Empty")),
        (["1", "2"], "newfangled value", ""),
    ),
    "get_all respects quotes and angle brackets": (
        build(extra=('X-List: "a,b", <sip:c@d.example.com;x=1,2>, e',)),
        lambda m: m.get_all("X-List"),
        ['"a,b"', "<sip:c@d.example.com;x=1,2>", "e"],
    ),
    "unknown method of token characters": (
        build(
            start="!interesting-Method0123456789_*+`.%indeed'~ sip:bob@biloxi.example.com SIP/2.0",
            replace={"CSeq": "CSeq: 1 !interesting-Method0123456789_*+`.%indeed'~"},
        ),
        lambda m: m.method,
        "!interesting-Method0123456789_*+`.%indeed'~",
    ),
    "version in lower case": (
        build(start="INVITE sip:bob@biloxi.example.com sip/2.0"),
        lambda m: m.version,
        "sip/2.0",
    ),
    "Request-URI of another scheme": (
        build(start="INVITE tel:+1-201-555-0123 SIP/2.0"),
        lambda m: (m.uri.scheme, m.uri.opaque, m.uri.is_sip),
        ("tel", "+1-201-555-0123", False),
    ),
    "sips Request-URI with password, port and parameters": (
        build(start="INVITE SIPS:bob:secret@biloxi.example.com:5061;transport=tcp;lr SIP/2.0"),
        lambda m: (m.uri.scheme, m.uri.user, m.uri.password, m.uri.port, m.uri.params),
        ("sips", "bob", "secret", 5061, {"transport": "tcp", "lr": None}),
    ),
    "control character escaped in a quoted display name": (
        build(replace={"To": 'To: "BEL:\\\x07 NUL:\\\x00" <sip:bob@biloxi.example.com>'}),
        lambda m: m.to.display_text,
        "BEL:\x07 NUL:\x00",
    ),
    "UTF-8 in a display name and an unknown header": (
        build(replace={"From": 'From: "Zoë" <sip:zoe@example.com>;tag=1'}, extra=("X-Note: ñandú",)),
        lambda m: (m.from_.display_text, m.get("X-Note")),
        ("Zoë", "ñandú"),
    ),
    "Date in RFC 1123 form": (
        build(extra=("Date: Sat, 13 Nov 2010 23:29:00 GMT",)),
        lambda m: m.get("Date"),
        "Sat, 13 Nov 2010 23:29:00 GMT",
    ),
    "response with an empty reason phrase (noreason)": (
        response("SIP/2.0 100 "),
        lambda m: (m.status, m.reason),
        (100, ""),
    ),
    "response with a UTF-8 reason phrase (unreason)": (
        response("SIP/2.0 200 = 2**3 * 5**2 но сто"),
        lambda m: (m.status, m.reason),
        (200, "= 2**3 * 5**2 но сто"),
    ),
    "response status 699": (
        response("SIP/2.0 699 Whatever"),
        lambda m: m.status,
        699,
    ),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message(name: str) -> None:
    """Each well-formed message parses to the values its row expects."""
    data, read, expected = VALID[name]
    message = parse(data)
    assert isinstance(message, (Request, Response))
    assert read(message) == expected


# -- what must be refused, and why ------------------------------------------------

INVALID: dict[str, tuple[bytes, str, int]] = {
    "no empty line after the headers": (build()[:-2], "no empty line", 400),
    "nothing but CRLFs": (b"\r\n\r\n\r\n\r\n", "empty message", 400),
    "empty datagram": (b"", "empty message", 400),
    "start line of one word": (build(start="INVITE"), "bad start line", 400),
    "two spaces in the request line (lwsstart)": (
        build(start="INVITE  sip:bob@biloxi.example.com SIP/2.0"),
        "more than one space",
        400,
    ),
    "space at the end of the request line (trws)": (build(start=START + " "), "whitespace at the end", 400),
    "tab instead of space in the request line": (
        build(start="INVITE\tsip:bob@biloxi.example.com SIP/2.0"),
        "bad start line",
        400,
    ),
    "Request-URI in <> (ltgtruri)": (
        build(start="INVITE <sip:bob@biloxi.example.com> SIP/2.0"),
        "Request-URI",
        400,
    ),
    "Request-URI with LWS (lwsruri)": (
        build(start="INVITE sip:bob@biloxi.example.com; lr SIP/2.0"),
        "whitespace inside the Request-URI",
        400,
    ),
    "Request-URI with headers (escruri)": (
        build(start="INVITE sip:bob@biloxi.example.com?Route=%3Csip:x%3E SIP/2.0"),
        "headers in the Request-URI",
        400,
    ),
    "Request-URI with a bad port": (
        build(start="INVITE sip:bob@biloxi.example.com:65536 SIP/2.0"),
        "port",
        400,
    ),
    "unknown SIP version (badvers)": (
        build(start="INVITE sip:bob@biloxi.example.com SIP/7.0"),
        "version",
        505,
    ),
    "not a SIP version": (build(start="INVITE sip:bob@biloxi.example.com HTTP/1.1"), "bad SIP version", 400),
    "method with a non-token character": (
        build(start="INV@TE sip:bob@biloxi.example.com SIP/2.0"),
        "method",
        400,
    ),
    "status code of ten digits (bigcode)": (
        response("SIP/2.0 4294967301 better not break"),
        "status code",
        400,
    ),
    "status code below 100": (response("SIP/2.0 099 Low"), "status code", 400),
    "status code 700": (response("SIP/2.0 700 High"), "status code", 400),
    "status line without a reason separator": (response("SIP/2.0 200"), "bad status line", 400),
    "header line without a colon": (build(extra=("NoColonHere",)), "without a colon", 400),
    "header name with a space inside": (build(extra=("Bad Name: x",)), "bad header name", 400),
    "empty header name": (build(extra=(": x",)), "bad header name", 400),
    "missing Via": (build(replace={"Via": None}), "missing Via", 400),
    "missing From, To, Call-ID (insuf)": (
        build(replace={"From": None, "To": None, "Call-ID": None}),
        "missing From, To, Call-ID",
        400,
    ),
    "missing CSeq": (build(replace={"CSeq": None}), "missing CSeq", 400),
    "two To headers (multi01)": (build(extra=("To: <sip:x@y.example.com>",)), "more than one To", 400),
    "two Call-IDs": (build(extra=("i: other",)), "more than one Call-ID", 400),
    "two Max-Forwards": (build(extra=("Max-Forwards: 5",)), "more than one Max-Forwards", 400),
    "two Content-Lengths (mcl01)": (build(extra=("Content-Length: 5",)), "more than one Content-Length", 400),
    "CSeq method mismatch (mismatch01)": (build(replace={"CSeq": "CSeq: 1 OPTIONS"}), "CSeq method", 400),
    "unknown method, CSeq mismatch (mismatch02)": (
        build(start="NEWMETHOD sip:bob@biloxi.example.com SIP/2.0"),
        "CSeq method",
        501,
    ),
    "CSeq beyond 32 bits (scalar02)": (
        build(replace={"CSeq": "CSeq: 36893488147419103232 INVITE"}),
        "CSeq",
        400,
    ),
    "CSeq without a method": (build(replace={"CSeq": "CSeq: 1"}), "CSeq", 400),
    "negative CSeq": (build(replace={"CSeq": "CSeq: -1 INVITE"}), "CSeq", 400),
    "Max-Forwards above 255": (build(replace={"Max-Forwards": "Max-Forwards: 300"}), "Max-Forwards", 400),
    "Max-Forwards not a number": (build(replace={"Max-Forwards": "Max-Forwards: ten"}), "Max-Forwards", 400),
    "negative Content-Length (ncl)": (
        build(length=False, extra=("Content-Length: -999",)),
        "Content-Length",
        400,
    ),
    "Content-Length larger than the body (clerr)": (
        build(length=False, extra=("Content-Length: 9999",), body=b"v=0\r\n"),
        "shorter than Content-Length",
        400,
    ),
    "extraneous separators in Via (badinv01)": (
        build(replace={"Via": "Via: SIP/2.0/UDP 192.0.2.15;;,;,,"}),
        "bad Via",
        400,
    ),
    "empty Via": (build(replace={"Via": "Via: "}), "bad Via", 400),
    "Via without transport": (build(replace={"Via": "Via: SIP/2.0 a.example.com"}), "bad Via", 400),
    "Via of another SIP version": (
        build(replace={"Via": "Via: SIP/7.0/UDP a.example.com;branch=z9hG4bK1"}),
        "version",
        505,
    ),
    "Via branch without value": (
        build(replace={"Via": "Via: SIP/2.0/UDP a.example.com;branch"}),
        "branch",
        400,
    ),
    "Via port above 65535": (build(replace={"Via": "Via: SIP/2.0/UDP a.example.com:70000"}), "bad", 400),
    "Via ttl above 255": (build(replace={"Via": "Via: SIP/2.0/UDP a.example.com;ttl=300"}), "ttl", 400),
    "Via received not an address": (
        build(replace={"Via": "Via: SIP/2.0/UDP a.example.com;received=example.com"}),
        "received",
        400,
    ),
    "Via with a trailing comma": (
        build(replace={"Via": "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,"}),
        "bad Via",
        400,
    ),
    "unterminated quote in display name (quotbal)": (
        build(replace={"To": 'To: "Mr. J. User <sip:j.user@example.com>'}),
        "unterminated quoted string",
        400,
    ),
    "spaces inside <> (badaspec)": (
        build(replace={"To": 'To: "Watson, Thomas" < sip:t.watson@example.org >'}),
        "whitespace inside <URI>",
        400,
    ),
    "unquoted display name with a comma (baddn)": (
        build(replace={"From": "From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43"}),
        "must be quoted",
        400,
    ),
    "addr-spec with spaces": (
        build(replace={"To": "To: sip:bob @biloxi.example.com"}),
        "spaces in addr-spec",
        400,
    ),
    "addr-spec Contact holding '?' (regbadct)": (
        build(extra=("Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E",)),
        "<URI>",
        400,
    ),
    "unterminated <": (build(replace={"To": "To: <sip:bob@biloxi.example.com"}), "unterminated <URI>", 400),
    "empty To": (build(replace={"To": "To:"}), "bad To header", 400),
    "Contact with empty parameters": (
        build(extra=('Contact: "Joe" <sip:joe@example.org>;;;;',)),
        "Contact",
        400,
    ),
    "Contact q above 1": (build(extra=("Contact: <sip:a@192.0.2.4>;q=2.0",)), "q value", 400),
    "Contact expires not a number": (
        build(extra=("Contact: <sip:a@192.0.2.4>;expires=soon",)),
        "expires",
        400,
    ),
    "Contact: * with another Contact": (
        build(extra=("Contact: *", "Contact: <sip:a@192.0.2.4>")),
        "Contact: *",
        400,
    ),
    "Contact: * after another Contact": (
        build(extra=("Contact: <sip:a@192.0.2.4>", "m: *")),
        "Contact: *",
        400,
    ),
    "Route without <>": (build(extra=("Route: sip:p1.example.com;lr",)), "must be written as <URI>", 400),
    "Call-ID with a space": (build(replace={"Call-ID": "Call-ID: a b"}), "Call-ID", 400),
    "empty Call-ID": (build(replace={"Call-ID": "Call-ID:"}), "Call-ID", 400),
    "Date not in GMT (baddate)": (build(extra=("Date: Fri, 01 Jan 2010 16:00:00 EST",)), "Date", 400),
    "Expires not delta-seconds": (build(extra=("Expires: Thu, 01 Dec 1994 16:00:00 GMT",)), "Expires", 400),
    "Content-Type without subtype": (build(extra=("Content-Type: application",)), "Content-Type", 400),
    "Require with a non-token": (build(extra=("Require: 100rel, a b",)), "Require", 400),
    "NUL in a header value": (build(extra=("X-Bad: a\x00b",)), "control character", 400),
    "bare LF inside the headers": (build(extra=("X-Bad: a\nb",)), "bare CR or LF", 400),
    "bare CR inside the headers": (build(extra=("X-Bad: a\rb",)), "bare CR or LF", 400),
    "bad escape in a URI": (build(start="INVITE sip:b%zzob@biloxi.example.com SIP/2.0"), "escape", 400),
    "host label ending in '-'": (build(replace={"To": "To: <sip:bob@biloxi-.example.com>"}), "bad host", 400),
    "empty host label": (build(replace={"To": "To: <sip:bob@biloxi..example.com>"}), "bad host", 400),
    "bad IPv6 reference": (build(replace={"To": "To: <sip:bob@[2001:db8::g]>"}), "bad", 400),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_message(name: str) -> None:
    """Each malformed message raises ParseError with the reason and status its row expects."""
    data, reason, status = INVALID[name]
    with pytest.raises(ParseError) as info:
        parse(data)
    assert reason in info.value.reason
    assert info.value.status == status


def test_parse_error_is_a_value_error_with_context() -> None:
    """ParseError is a ValueError carrying reason, status, start line and raw headers."""
    with pytest.raises(ValueError) as info:
        parse(build(replace={"CSeq": "CSeq: x INVITE"}))
    error = info.value
    assert isinstance(error, ParseError)
    assert error.reason.startswith("bad CSeq header")
    assert error.status == 400
    assert error.start_line == START
    assert ("CSeq", "x INVITE") in error.headers
    assert ("Via", BASE[0].split(": ", 1)[1]) in error.headers


def test_parse_refuses_what_is_not_bytes() -> None:
    """A str (or anything not bytes-like) is a ParseError, not a TypeError."""
    with pytest.raises(ParseError):
        parse(build().decode())  # type: ignore[arg-type]


def test_parse_takes_bytearray_and_memoryview() -> None:
    """bytearray and memoryview parse like bytes."""
    data = build()
    assert parse(bytearray(data)) == parse(memoryview(data)) == parse(data)


# -- serialization and the message API -----------------------------------------------


def test_serialization_keeps_order_names_and_unknown_headers() -> None:
    """bytes() writes the headers in their order, under their names as written."""
    data = build(extra=("X-Custom: one", "v: SIP/2.0/TCP b.example.com;branch=z9hG4bK2"), body=b"hi")
    text = bytes(parse(data)).decode()
    names = [line.split(":", 1)[0] for line in text.split("\r\n")[1:] if ":" in line]
    assert names == [
        "Via",
        "Max-Forwards",
        "To",
        "From",
        "Call-ID",
        "CSeq",
        "X-Custom",
        "v",
        "Content-Length",
    ]
    assert text.endswith("\r\n\r\nhi")


def test_round_trip_of_a_parsed_message_is_identical() -> None:
    """A message in the canonical form comes out of parse() and bytes() unchanged."""
    data = build(
        extra=(
            "Contact: <sip:alice@192.0.2.4:5060;transport=udp>;expires=60",
            "Record-Route: <sip:p1.example.com;lr>",
        ),
        body=b"v=0\r\n",
    )
    assert bytes(parse(data)) == data


def test_content_length_follows_the_body() -> None:
    """Changing the body changes the Content-Length written, in place."""
    message = parse(build(body=b"abc"))
    message.body = b"abcdef"
    assert b"Content-Length: 6\r\n" in bytes(message)


def test_mutated_typed_values_serialize_their_new_state() -> None:
    """Typed values changed after parsing are written as they are now."""
    message = parse(build(extra=("Contact: <sip:alice@192.0.2.4>",)))
    message.to.tag = "newtag"
    message.top_via.params["received"] = "192.0.2.99"
    message.from_.uri.params["transport"] = "tcp"
    message.contact[0].uri.host = "192.0.2.5"
    message.cseq.seq = 7
    text = bytes(message).decode()
    assert "To: Bob <sip:bob@biloxi.example.com>;tag=newtag\r\n" in text
    assert ";branch=z9hG4bK776asdhds;received=192.0.2.99\r\n" in text
    assert "From: Alice <sip:alice@atlanta.example.com;transport=tcp>;tag=1928301774\r\n" in text
    assert "Contact: <sip:alice@192.0.2.5>\r\n" in text
    assert "CSeq: 7 INVITE\r\n" in text


def test_header_access_api() -> None:
    """get, get_all, has, add (first or last), set, remove and headers() work by
    case-insensitive name and compact form."""
    message = parse(build(extra=("Supported: timer", "k: 100rel")))
    assert message.get("SUPPORTED") == "timer"
    assert message.get_all("supported") == ["timer", "100rel"]
    assert message.has("k") and not message.has("Require")
    assert message.get("Require", "none") == "none"
    message.add("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp", first=True)
    assert message.top_via.host == "proxy.example.com"
    message.add("Supported", "path")
    assert message.get_all("Supported") == ["timer", "100rel", "path"]
    message.set("Supported", "gruu")
    assert message.get_all("Supported") == ["gruu"]
    message.remove("supported")
    assert not message.has("Supported")
    assert ("Max-Forwards", "70") in list(message.headers())


def test_pop_via_takes_the_topmost_value() -> None:
    """pop_via removes the first value of the first Via line, then the line."""
    message = parse(
        build(
            replace={
                "Via": "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, "
                "SIP/2.0/UDP b.example.com;branch=z9hG4bK2"
            }
        )
    )
    assert message.pop_via().host == "a.example.com"
    assert [v.host for v in message.via] == ["b.example.com"]
    assert message.pop_via().host == "b.example.com"
    assert message.via == [] and message.top_via is None
    with pytest.raises(LookupError):
        message.pop_via()


def test_response_copies_the_headers_of_8_2_6_2() -> None:
    """Request.response copies Via, From, To (adding the tag), Call-ID and CSeq."""
    request = parse(
        build(
            replace={
                "Via": "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n"
                "Via: SIP/2.0/UDP b.example.com;branch=z9hG4bK2"
            },
            extra=("Contact: <sip:alice@192.0.2.4>",),
        )
    )
    assert isinstance(request, Request)
    answer = request.response(180, to_tag="abc")
    assert (answer.status, answer.reason) == (180, "Ringing")
    assert [v.host for v in answer.via] == ["a.example.com", "b.example.com"]
    assert answer.to.tag == "abc" and request.to.tag is None
    assert (answer.call_id, answer.cseq, answer.from_) == (request.call_id, request.cseq, request.from_)
    assert not answer.has("Contact")
    assert parse(bytes(answer)) == answer


def test_copy_is_deep() -> None:
    """A copy's typed values can change without touching the original."""
    original = parse(build(extra=("Contact: <sip:alice@192.0.2.4;transport=udp>;expires=60",)))
    clone = original.copy()
    assert clone == original
    clone.to.tag = "x"
    clone.contact[0].uri.params["transport"] = "tcp"
    clone.contact[0].params["expires"] = "0"
    clone.uri.user = "carol"
    assert original.to.tag is None
    assert original.contact[0].uri.params == {"transport": "udp"}
    assert original.contact[0].params == {"expires": "60"}
    assert original.uri.user == "bob"


def test_equality_ignores_content_length_and_name_spelling() -> None:
    """Messages compare by start line, header keys and values, and body."""
    one = parse(build(replace={"Call-ID": "i: abc"}))
    two = parse(build(replace={"Call-ID": "Call-ID: abc"}, length=False))
    assert one == two
    assert one != parse(build(replace={"Call-ID": "Call-ID: abd"}))


def test_equality_compares_typed_values_not_spelling() -> None:
    """A header set as text equals the same header parsed from the wire."""
    parsed = parse(build())
    built = Request("INVITE", "sip:bob@biloxi.example.com", [line.split(": ", 1) for line in BASE])
    assert built == parsed


def test_built_message_serializes_and_parses_back() -> None:
    """A Request made with the constructor parses back equal to itself."""
    request = Request("OPTIONS", "sip:carol@chicago.example.com", body=b"x")
    request.add("Via", "SIP/2.0/UDP pc33.example.com;branch=z9hG4bKnashds8")
    request.add("To", "<sip:carol@chicago.example.com>")
    request.add("From", "Alice <sip:alice@atlanta.example.com>;tag=1928301774")
    request.add("Call-ID", "a84b4c76e66710")
    request.add("CSeq", "63104 OPTIONS")
    assert parse(bytes(request)) == request
    assert Response(404).reason == "Not Found"


def test_accessors_follow_changes_to_the_header_list() -> None:
    """Typed accessors see headers changed through the methods, a new list, or a
    line appended to the list in place."""
    message = parse(build(replace={"Max-Forwards": None}))
    assert message.max_forwards is None
    message.fields.append(["max-forwards", "Max-Forwards", 12])
    assert message.max_forwards == 12
    message.set("To", "<sip:carol@chicago.example.com>;tag=9")
    assert message.to.tag == "9"
    message.remove("CSeq")
    assert message.cseq is None
    other = parse(build(replace={"Call-ID": "Call-ID: other-call"}))
    message.fields = other.fields
    assert message.call_id == "other-call"
    message.add("Call-ID", "second")
    assert message.call_id == "other-call"


def test_reason_phrase_with_a_control_character_is_refused() -> None:
    """A reason phrase holding a control character is refused; UTF-8 and TAB are not."""
    with pytest.raises(ParseError, match="control character"):
        parse(response("SIP/2.0 200 O\x07K"))
    assert parse(response("SIP/2.0 200 O\tK ok")).reason == "O\tK ok"


@pytest.mark.parametrize(
    "value",
    ["a\tb", "zero\u200bwidth", "soft\xadhyphen", b"bad \xff\xfe utf-8".decode("utf-8", "surrogateescape"),
     '"quoted \\\x01 pair"'],
)  # fmt: skip
def test_unusual_but_allowed_header_text(value: str) -> None:
    """HTAB, non-ASCII (even invalid UTF-8, kept as is) and escaped control
    characters are allowed in the text of other headers."""
    data = build(extra=("X-Text: HERE",)).replace(b"HERE", value.encode("utf-8", "surrogateescape"))
    message = parse(data)
    assert message.get("X-Text") == value
    assert bytes(message) == data


def test_name_cache_is_bounded_and_keeps_the_standard_names() -> None:
    """A flood of invented header names cannot grow the name cache past its bound."""
    from phpvoip.sip import message_parser as module
    from phpvoip.sip.limits import UNLIMITED

    for round_ in range(5):
        extra = tuple(f"X-Flood{round_}-{i}: {i}" for i in range(300))
        assert parse(build(extra=extra), UNLIMITED).get(f"X-Flood{round_}-299") == "299"
    assert len(module._KEYS) <= module._KEYS_MAX
    assert module._KEYS["Via"][0] == "via" and module._KEYS["i"][0] == "call-id"
