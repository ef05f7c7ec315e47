"""Generated messages survive bytes() and parse(); any bytes at all give a message or
a ParseError, never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from phpvoip.sip.errors import ParseError
from phpvoip.sip.headers import CSeq, NameAddr, Via, canonical_key
from phpvoip.sip.message import Message, Request, Response, parse
from phpvoip.sip.uri import URI

FOLDER = Path(__file__).parents[2].parent / "shared" / "rfc4475"
TORTURE = sorted(FOLDER.glob("*.dat")) if FOLDER.is_dir() else []

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
LOWER_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~"
# Headers the parser types or checks: the generators below make them on purpose.
RESERVED = {
    "via", "from", "to", "call-id", "cseq", "max-forwards", "contact", "route", "record-route",
    "content-length", "date", "expires", "content-type", "require", "proxy-require",
}  # fmt: skip

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=8)
lower_tokens = st.text(LOWER_TOKEN_CHARS, min_size=1, max_size=8)
labels = st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,6}[a-z0-9])?", fullmatch=True)
hostnames = st.builds(
    lambda parts, top: ".".join([*parts, top]),
    st.lists(labels, max_size=3),
    st.from_regex(r"[a-zA-Z]([a-zA-Z0-9\-]{0,5}[a-zA-Z0-9])?", fullmatch=True),
)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.one_of(st.none(), st.integers(0, 65535))
escapes = st.integers(0, 255).map(lambda b: f"%{b:02X}")


def escaped_text(chars: str, min_size: int, max_size: int) -> st.SearchStrategy[str]:
    """Runs of `chars` and %HH escapes."""
    runs = st.one_of(st.text(chars, min_size=1, max_size=4), escapes)
    return st.lists(runs, min_size=min_size, max_size=max_size).map("".join)


users = escaped_text("abcXYZ0189-_.!~*'()&=+$,;?/", 1, 4)
passwords = escaped_text("abcXYZ019-_.!~*'()&=+$,", 0, 3)
pchars = escaped_text("abcXYZ019[]/:&+$-_.!~*'()", 1, 3)
pnames = st.text("abcxyz019[]/:&+$-_.!~*'()", min_size=1, max_size=6)
uri_params = st.dictionaries(pnames, st.one_of(st.none(), pchars), max_size=3)
hchars = st.text("abcXYZ019[]/?:+$-_.!~*'()", min_size=1, max_size=5)
uri_headers = st.lists(
    st.tuples(hchars, st.text("abcXYZ019[]/?:+$-_.", max_size=5)), min_size=1, max_size=2
).map(lambda hs: "&".join(f"{n}={v}" for n, v in hs))
sip_uris = st.builds(
    URI,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.one_of(st.none(), users),
    host=hosts,
    port=ports,
    params=uri_params,
    headers=st.one_of(st.none(), st.none(), uri_headers),
    password=st.none(),
)
sip_uris_with_password = st.builds(
    lambda user, password, host: URI("sip", user, host, password=password), users, passwords, hosts
)
opaque_uris = st.builds(
    lambda scheme, rest: URI(scheme, opaque=rest),
    st.sampled_from(["tel", "urn", "mailto", "x-custom"]),
    st.text("abcXYZ019;/?:@&=+$,-_.!~*'()", min_size=1, max_size=12),
)
any_uris = st.one_of(sip_uris, sip_uris, sip_uris_with_password, opaque_uris)
request_uris = st.one_of(
    sip_uris.map(lambda u: URI(u.scheme, u.user, u.host, u.port, u.params)), opaque_uris
)  # no headers in a Request-URI (§19.1.1)

qdtext = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\\r\n', min_codepoint=0x20),
    max_size=8,
).filter(lambda t: "\x7f" not in t)
quoted_pair = st.sampled_from(['\\"', "\\\\", "\\a", "\\\x01", "\\\x00"])
quoted = st.lists(st.one_of(qdtext, quoted_pair), max_size=4).map(lambda parts: '"' + "".join(parts) + '"')
displays = st.one_of(st.none(), quoted, st.lists(tokens, min_size=1, max_size=3).map(" ".join))
gen_values = st.one_of(st.none(), tokens, quoted, ipv6)
header_params = st.dictionaries(
    lower_tokens.filter(lambda n: n not in ("q", "expires")), gen_values, max_size=3
)
contact_params = st.tuples(
    header_params,
    st.one_of(st.none(), st.sampled_from(["0", "0.5", "0.123", "1", "1.000"])),
    st.one_of(st.none(), st.integers(0, 2**32 - 1).map(str)),
).map(lambda t: {**t[0], **({"q": t[1]} if t[1] else {}), **({"expires": t[2]} if t[2] else {})})
name_addrs = st.builds(NameAddr, any_uris, displays, header_params)
route_addrs = st.builds(NameAddr, sip_uris, displays, header_params)
contacts = st.builds(NameAddr, any_uris, displays, contact_params)
via_params = st.tuples(
    st.dictionaries(
        lower_tokens.filter(lambda n: n not in ("branch", "received", "rport", "ttl", "maddr")),
        st.one_of(st.none(), tokens, quoted),
        max_size=2,
    ),
    st.one_of(st.none(), tokens.map(lambda b: "z9hG4bK" + b)),
    st.one_of(st.none(), ipv4, st.ip_addresses(v=6).map(str)),
    st.sampled_from([None, "", "5060"]),
    st.one_of(st.none(), st.integers(0, 255).map(str)),
    st.one_of(st.none(), hostnames),
).map(
    lambda t: {
        **t[0],
        **({"branch": t[1]} if t[1] else {}),
        **({"received": t[2]} if t[2] else {}),
        **({"rport": t[3] or None} if t[3] is not None else {}),
        **({"ttl": t[4]} if t[4] else {}),
        **({"maddr": t[5]} if t[5] else {}),
    }
)
vias = st.builds(Via, st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]).map(str), hosts, ports, via_params)
call_ids = st.from_regex(
    r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]{1,12}(@[A-Za-z0-9.\-]{1,10})?", fullmatch=True
)
unknown_names = tokens.filter(lambda n: canonical_key(n) not in RESERVED)
unknown_values = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f"), max_size=20
).map(lambda t: t.strip(" \t"))
unknown_headers = st.lists(st.tuples(unknown_names, unknown_values), max_size=4)
bodies = st.one_of(st.just(b""), st.binary(max_size=64))
methods = st.one_of(st.sampled_from(["INVITE", "ACK", "BYE", "OPTIONS", "REGISTER", "MESSAGE"]), tokens)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """A request or a response built through the API with typed headers."""
    method = draw(methods)
    if draw(st.booleans()):
        message: Message = Request(method, draw(request_uris))
    else:
        reason = draw(st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12))
        message = Response(draw(st.integers(100, 699)), reason)
    for via_line in draw(st.lists(st.lists(vias, min_size=1, max_size=3), min_size=1, max_size=2)):
        message.add("Via", via_line)
    message.add(draw(st.sampled_from(["From", "f"])), draw(name_addrs))
    message.add(draw(st.sampled_from(["To", "t"])), draw(name_addrs))
    message.add(draw(st.sampled_from(["Call-ID", "i", "call-id"])), draw(call_ids))
    message.add("CSeq", CSeq(draw(st.integers(0, 2**32 - 1)), method))
    if draw(st.booleans()):
        message.add("Max-Forwards", draw(st.integers(0, 255)))
    for contact_line in draw(st.lists(st.lists(contacts, min_size=1, max_size=2), max_size=2)):
        message.add(draw(st.sampled_from(["Contact", "m"])), contact_line)
    for name in ("Route", "Record-Route"):
        for route_line in draw(st.lists(st.lists(route_addrs, min_size=1, max_size=2), max_size=2)):
            message.add(name, route_line)
    for name, value in draw(unknown_headers):
        message.add(name, value)
    message.body = draw(bodies)
    return message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_round_trip(message: Message) -> None:
    """parse(bytes(m)) == m for generated requests and responses."""
    data = bytes(message)
    parsed = parse(data)
    assert parsed == message
    assert bytes(parsed) == bytes(parse(bytes(parsed)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_round_trip_keeps_typed_values(message: Message) -> None:
    """The typed routing values of a generated message come back equal."""
    parsed = parse(bytes(message))
    assert parsed.via == message.via
    assert parsed.from_ == message.from_ and parsed.to == message.to
    assert parsed.call_id == message.call_id and parsed.cseq == message.cseq
    assert parsed.contact == message.contact
    assert parsed.route == message.route and parsed.record_route == message.record_route
    assert parsed.body == message.body


@settings(max_examples=150, deadline=None)
@given(any_uris)
def test_uri_str_is_stable(uri: URI) -> None:
    """str() of a URI parses back to an equal URI, and prints the same again."""
    from phpvoip.sip.uri import parse_uri

    again = parse_uri(str(uri))
    assert again == uri and str(again) == str(uri)


def _only_parse_error(data: bytes) -> None:
    try:
        parsed = parse(data)
    except ParseError as e:
        assert e.reason and isinstance(e.status, int)
        return
    # what parses must serialize and parse again
    assert parse(bytes(parsed)) == parsed


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_parse_error(data: bytes) -> None:
    """Random octets give a message or a ParseError, nothing else."""
    _only_parse_error(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    b"INVITE ", b"SIP/2.0", b" ", b"\r\n", b"\r\n ", b":", b";", b",", b"<", b">", b'"', b"\\", b"sip:",
    b"Via", b"From", b"To", b"Call-ID", b"CSeq", b"Content-Length", b"Contact", b"v", b"l", b"m", b"*", b"@",
    b"SIP/2.0/UDP", b"branch=", b"tag=", b"1", b"0", b"-", b"a", b"[", b"]", b"=", b"?", b"%", b"\x00", b"\t",
]), max_size=60).map(b"".join))  # fmt: skip
def test_sip_shaped_noise_only_raises_parse_error(data: bytes) -> None:
    """Noise made of SIP's own pieces gives a message or a ParseError, nothing else."""
    _only_parse_error(data)


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in edits:
        if not out:
            break
        i = where % len(out)
        if kind == 0:
            out[i] = value  # replace an octet
        elif kind == 1:
            out.insert(i, value)  # insert one
        elif kind == 2:
            del out[i]  # delete one
        else:
            del out[i:]  # truncate
    return bytes(out)


edits = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6
)


@pytest.mark.skipif(not TORTURE, reason=f"RFC 4475 messages not found at {FOLDER}")
@settings(max_examples=400, deadline=None)
@given(st.sampled_from(TORTURE or [Path("/nonexistent")]), edits)
def test_mutated_torture_messages_only_raise_parse_error(
    path: Path, changes: list[tuple[int, int, int]]
) -> None:
    """RFC 4475 messages with octets flipped, inserted, deleted or cut give a
    message or a ParseError."""
    _only_parse_error(_mutate(path.read_bytes(), changes))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), edits)
def test_mutated_generated_messages_only_raise_parse_error(
    message: Message, changes: list[tuple[int, int, int]]
) -> None:
    """Generated messages with octets flipped, inserted, deleted or cut give a
    message or a ParseError."""
    data = bytes(message)
    mutated = _mutate(data, changes)
    assume(mutated != data)
    _only_parse_error(mutated)
