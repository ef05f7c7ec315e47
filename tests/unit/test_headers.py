"""Typed header values (RFC 3261 §20, §25.1): tables of text and what it parses to,
and the fast paths checked against the general parsers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phpvoip.sip import headers_nameaddr as na
from phpvoip.sip import headers_via as hv
from phpvoip.sip.errors import ParseError
from phpvoip.sip.headers import (
    STAR,
    CSeq,
    NameAddr,
    Via,
    canonical_key,
    check_content_type,
    check_date,
    check_option_tags,
    display_name,
    parse_call_id,
    parse_contact_list,
    parse_cseq,
    parse_delta_seconds,
    parse_int,
    parse_name_addr,
    parse_name_addr_list,
    parse_params,
    parse_route_list,
    parse_via_list,
    split_commas,
)
from phpvoip.sip.uri import URI

# text -> (display, str(uri), params)
NAME_ADDRS = {
    "<sip:a@b.example.com>": (None, "sip:a@b.example.com", {}),
    '"Alice" <sip:a@b.example.com>;tag=1': ('"Alice"', "sip:a@b.example.com", {"tag": "1"}),
    '"" <sip:a@b>': ('""', "sip:a@b", {}),
    "Alice Liddell <sip:a@b>": ("Alice Liddell", "sip:a@b", {}),
    "token1~` token2'+_ token3*%!.- <sip:a@b>": ("token1~` token2'+_ token3*%!.-", "sip:a@b", {}),
    "caller<sip:a@b>": ("caller", "sip:a@b", {}),
    "sip:a@b;tag=9": (None, "sip:a@b", {"tag": "9"}),
    "sip:a@b ; Tag = 9 ; Flag": (None, "sip:a@b", {"tag": "9", "flag": None}),
    '  "x\\"y" \t<sip:a@b;lr>  ;  q = 0.5 ': ('"x\\"y"', "sip:a@b;lr", {"q": "0.5"}),
    "<tel:+1-201-555-0123>": (None, "tel:+1-201-555-0123", {}),
    "isbn:2983792873": (None, "isbn:2983792873", {}),
    '<sip:a@b>;p="quoted; value, with commas"': (None, "sip:a@b", {"p": '"quoted; value, with commas"'}),
    "<sip:a@b>;maddr=[2001:db8::1]": (None, "sip:a@b", {"maddr": "[2001:db8::1]"}),
    "<sip:a@b?Route=%3Csip:c%3E>": (None, "sip:a@b?Route=%3Csip:c%3E", {}),
    "<sip:a@b>;tag=1;tag=2": (None, "sip:a@b", {"tag": "1"}),
}
BAD_NAME_ADDRS = {
    "": "empty address",
    '"unterminated <sip:a@b>': "unterminated quoted string",
    "<sip:a@b": "unterminated <URI>",
    "< sip:a@b>": "whitespace inside <URI>",
    "Bell, Alexander <sip:a@b>": "must be quoted",
    "sip:a @b": "spaces in addr-spec",
    "sip:a@b?x=y": "must be written as <URI>",
    "<sip:a@b>;": "bad address",
    "<sip:a@b>;tag=": "bad address",
    "<sip:a@b> junk": "bad address",
    "<sip:a@b>, <sip:c@d>": "bad address",
    "<not a uri>": "whitespace inside <URI>",
    "<nouri>": "no scheme",
}


@pytest.mark.parametrize("text", sorted(NAME_ADDRS))
def test_name_addr(text: str) -> None:
    """Each From/To value parses to its display name, URI and parameters."""
    value = parse_name_addr(text.strip(" \t"))
    assert (value.display, str(value.uri), value.params) == NAME_ADDRS[text]
    assert parse_name_addr(str(value)) == value


@pytest.mark.parametrize("text", sorted(BAD_NAME_ADDRS))
def test_bad_name_addr(text: str) -> None:
    """Each malformed From/To value is refused with a reason that says why."""
    with pytest.raises(ParseError) as info:
        parse_name_addr(text)
    assert BAD_NAME_ADDRS[text] in info.value.reason


def test_name_addr_tag_and_display_text() -> None:
    """tag reads and writes the tag parameter; display_text undoes quoting."""
    value = parse_name_addr('"A \\"B\\" C" <sip:a@b>')
    assert value.display_text == 'A "B" C' and value.tag is None
    value.tag = "x1"
    assert str(value) == '"A \\"B\\" C" <sip:a@b>;tag=x1'
    value.tag = None
    assert str(value) == '"A \\"B\\" C" <sip:a@b>'
    assert NameAddr(URI("sip", "u", "h"), "Token").display_text == "Token"


def test_repeated_parameter_names() -> None:
    """A repeated parameter name: the first counts, and the text is relayed as
    received until the parameters are read as a dict."""
    value = parse_name_addr("<sip:a@b;lr;lr=on>;tag=1;tag=2")
    assert value.tag == "1" and value.uri.param("lr") is None
    assert str(value) == "<sip:a@b;lr;lr=on>;tag=1;tag=2"
    assert value.params == {"tag": "1"}
    assert str(value) == "<sip:a@b;lr;lr=on>;tag=1"
    assert value.uri.params == {"lr": None}
    assert str(value) == "<sip:a@b;lr>;tag=1"


def test_name_addr_uri_stays_text_until_read() -> None:
    """A parsed name-addr builds its URI when first read, and a copy does not share it."""
    value = parse_name_addr("<sip:a@b;transport=udp>;tag=1")
    clone = value.copy()
    assert value.uri.params == {"transport": "udp"}
    value.uri.params["transport"] = "tcp"
    assert str(value) == "<sip:a@b;transport=tcp>;tag=1"
    assert str(clone) == "<sip:a@b;transport=udp>;tag=1"
    assert clone.uri.host == "b"


# Via text -> [(transport, host, port, params)]
VIAS = {
    "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds": [
        ("UDP", "pc33.atlanta.com", None, {"branch": "z9hG4bK776asdhds"})],
    "SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74b43": [
        ("TCP", "client.atlanta.example.com", 5060, {"branch": "z9hG4bK74b43"})],
    "SIP/2.0/UDP 192.0.2.1:5060;received=192.0.2.207;branch=z9hG4bK77asjd;rport=5061": [
        ("UDP", "192.0.2.1", 5060, {"received": "192.0.2.207", "branch": "z9hG4bK77asjd", "rport": "5061"})],
    "SIP/2.0/UDP h;rport": [("UDP", "h", None, {"rport": None})],
    "SIP/2.0/sctp [2001:db8::1]:5060;maddr=224.2.0.1;ttl=16": [
        ("SCTP", "[2001:db8::1]", 5060, {"maddr": "224.2.0.1", "ttl": "16"})],
    "sip / 2.0 / tls  h.example.com : 5061 ; BRANCH = z9hG4bK1": [
        ("TLS", "h.example.com", 5061, {"branch": "z9hG4bK1"})],
    "SIP/2.0/UDP a;branch=z9hG4bK1,SIP/2.0/TCP b:1;branch=z9hG4bK2 , SIP/2.0/UNKNOWN c": [
        ("UDP", "a", None, {"branch": "z9hG4bK1"}), ("TCP", "b", 1, {"branch": "z9hG4bK2"}),
        ("UNKNOWN", "c", None, {})],
    "SIP/2.0/UDP h;branch=z9hG4bK;received=2001:db8::2": [
        ("UDP", "h", None, {"branch": "z9hG4bK", "received": "2001:db8::2"})],
    'SIP/2.0/UDP h;x="a;b,c"': [("UDP", "h", None, {"x": '"a;b,c"'})],
}  # fmt: skip
BAD_VIAS = {
    "": ("bad Via", 400),
    "SIP/2.0/UDP": ("bad Via", 400),
    "SIP/2.0 UDP h": ("bad Via", 400),
    "SIP/2.0/UDP h;": ("bad Via", 400),
    "SIP/2.0/UDP h;;": ("bad Via", 400),
    "SIP/2.0/UDP h,": ("bad Via", 400),
    "SIP/2.0/UDP h:99999": ("port", 400),
    "SIP/2.0/UDP h:65536": ("port", 400),
    "SIP/2.0/UDP h;branch": ("branch without a value", 400),
    "SIP/2.0/UDP h;ttl=256": ("ttl", 400),
    "SIP/2.0/UDP h;maddr=-x": ("maddr", 400),
    "SIP/2.0/UDP h;received=h.example.com": ("received", 400),
    "SIP/2.0/UDP h;rport=x": ("rport", 400),
    "SIP/2.0/UDP -h": ("bad Via", 400),
    "SIP/2.0/UDP h..x": ("bad Via host", 400),
    "SIP/3.0/UDP h": ("version", 505),
    "HTTP/2.0/UDP h": ("bad Via protocol", 400),
}


@pytest.mark.parametrize("text", sorted(VIAS))
def test_via(text: str) -> None:
    """Each Via line parses to its values: transport, sent-by, parameters."""
    vias = parse_via_list(text)
    assert [(v.transport, v.host, v.port, v.params) for v in vias] == VIAS[text]
    assert parse_via_list(", ".join(str(v) for v in vias)) == vias


@pytest.mark.parametrize("text", sorted(BAD_VIAS))
def test_bad_via(text: str) -> None:
    """Each malformed Via is refused with the reason and status its row gives."""
    reason, status = BAD_VIAS[text]
    with pytest.raises(ParseError) as info:
        parse_via_list(text)
    assert reason in info.value.reason
    assert info.value.status == status


def test_via_properties() -> None:
    """Via reads branch, received, rport, maddr, ttl and sent-by from its parameters."""
    via = parse_via_list(
        "SIP/2.0/UDP h:5070;branch=z9hG4bKx;received=192.0.2.1;rport=9;maddr=m.example;ttl=3"
    )[0]
    assert (via.branch, via.received, via.rport, via.maddr, via.ttl) == (
        "z9hG4bKx",
        "192.0.2.1",
        9,
        "m.example",
        3,
    )
    assert via.sent_by == "h:5070"
    built = Via("udp", "192.0.2.9", 5060, {"branch": "z9hG4bK1", "rport": None})
    assert str(built) == "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1;rport"
    assert built.rport is None and built.copy() == built


def test_contact_lists() -> None:
    """Contact: lists of name-addrs and addr-specs, and '*' alone."""
    contacts = parse_contact_list('<sip:a@b>;q=0.7;expires=3600, "Z" <sip:c@d>, sip:e@f;q=1')
    assert [(c.display, c.uri.user, c.params) for c in contacts] == [
        (None, "a", {"q": "0.7", "expires": "3600"}),
        ('"Z"', "c", {}),
        (None, "e", {"q": "1"}),
    ]
    assert parse_contact_list("*") is STAR and parse_contact_list(" * ") is STAR
    assert str(STAR) == "*" and STAR.copy() is STAR


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<sip:a@b>;q=1.5", "q value"),
        ("<sip:a@b>;q", "q value"),
        ("<sip:a@b>;q=0.1234", "q value"),
        ("<sip:a@b>;expires=-1", "expires"),
        ("<sip:a@b>;expires", "expires"),
        ("<sip:a@b>,", "empty address"),
        ("<sip:a@b>,,<sip:c@d>", "empty address"),
        ("*, <sip:a@b>", "only contact"),
        ("sip:a@b?Route=x", "<URI>"),
    ],
)
def test_bad_contact(text: str, reason: str) -> None:
    """A malformed Contact list is refused with a reason."""
    with pytest.raises(ParseError) as info:
        parse_contact_list(text)
    assert reason in info.value.reason


def test_route_lists_need_name_addrs() -> None:
    """Route and Record-Route take name-addrs only (§20.30); a plain list takes both."""
    routes = parse_route_list("<sip:p1.example.com;lr>,<sip:p2.example.com;lr>")
    assert [str(r.uri) for r in routes] == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    with pytest.raises(ParseError, match="must be written as <URI>"):
        parse_route_list("sip:p1.example.com;lr")
    assert str(parse_name_addr_list("sip:p1.example.com, <sip:p2>")[1].uri) == "sip:p2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4711 INVITE", (4711, "INVITE")),
        ("0 ACK", (0, "ACK")),
        ("4294967295 BYE", (2**32 - 1, "BYE")),
        ("1\t \tREGISTER", (1, "REGISTER")),
        ("7 !odd-Method~", (7, "!odd-Method~")),
    ],
)
def test_cseq(text: str, expected: tuple[int, str]) -> None:
    """CSeq parses to a 32-bit number and a method token."""
    cseq = parse_cseq(text)
    assert (cseq.seq, cseq.method) == expected
    assert parse_cseq(str(cseq)) == cseq == CSeq(*expected)


@pytest.mark.parametrize(
    "text", ["", "1", "INVITE", "4294967296 INVITE", "-1 INVITE", "1 INV ITE", "1 IN@VITE"]
)
def test_bad_cseq(text: str) -> None:
    """A CSeq without a 32-bit number and one method token is refused."""
    with pytest.raises(ParseError, match="CSeq"):
        parse_cseq(text)


@pytest.mark.parametrize(
    ("text", "good"),
    [
        ("a84b4c76e66710@pc33.atlanta.com", True),
        ("word%ZK-!.*_+'@word`~)(><:\\/\"][?}{", True),
        ("f81d4fae-7dec-11d0-a765-00a0c91e6bf6", True),
        ("", False),
        ("a b", False),
        ("a@b@c", False),
        ("a;b", False),
        ("ñ", False),
    ],
)
def test_call_id(text: str, good: bool) -> None:
    """Call-ID is word [ "@" word ]."""
    if good:
        assert parse_call_id(text) == text
    else:
        with pytest.raises(ParseError, match="Call-ID"):
            parse_call_id(text)


def test_numbers() -> None:
    """parse_int reads 1*DIGIT within a bound; delta-seconds clamps to 2**32-1."""
    assert parse_int("0068", "Max-Forwards", 255) == 68
    for bad in ("", "-1", "256", "1e3", "٣"):
        with pytest.raises(ParseError):
            parse_int(bad, "Max-Forwards", 255)
    assert parse_delta_seconds("3600") == 3600
    assert parse_delta_seconds("1" + "0" * 100) == 2**32 - 1
    with pytest.raises(ParseError):
        parse_delta_seconds("soon")


@pytest.mark.parametrize(
    ("check", "text", "good"),
    [
        (check_date, "Sat, 13 Nov 2010 23:29:00 GMT", True),
        (check_date, "sat, 13 nov 2010 23:29:00 gmt", True),
        (check_date, "Fri, 01 Jan 2010 16:00:00 EST", False),
        (check_date, "Fri, 01 Jan 2010 16:00:00 UTC", False),
        (check_date, "Fri, 1 Jan 2010 16:00:00 GMT", False),
        (check_content_type, "application/sdp", True),
        (check_content_type, 'multipart/mixed; boundary="unique-boundary-1"', True),
        (check_content_type, "text/plain;charset=UTF-8", True),
        (check_content_type, "application", False),
        (check_content_type, "application/sdp;", False),
        (check_content_type, "a b/c", False),
        (check_option_tags, "100rel, timer,replaces", True),
        (check_option_tags, "nothingSupportsThis", True),
        (check_option_tags, "100rel,", False),
        (check_option_tags, "a b", False),
    ],
)
def test_checked_headers(check: object, text: str, good: bool) -> None:
    """Date, Content-Type and option-tag lists are checked, and given back unchanged."""
    if good:
        assert check(text) == text  # type: ignore[operator]
    else:
        with pytest.raises(ParseError):
            check(text)  # type: ignore[operator]


def test_parse_params_and_split_commas() -> None:
    """parse_params reads ;name=value lists with LWS; split_commas respects quotes and <>."""
    assert parse_params(' ; a = 1 ;B; c="x;y"') == {"a": "1", "b": None, "c": '"x;y"'}
    assert parse_params("") == {}
    with pytest.raises(ParseError):
        parse_params("x;a=1")
    with pytest.raises(ParseError):
        parse_params(";a=")
    assert split_commas('a, "b,c" , <d,e>, f') == ["a", ' "b,c" ', " <d,e>", " f"]


def test_header_names() -> None:
    """Compact forms expand (§7.3.3) and keys print in their conventional spelling."""
    assert [canonical_key(n) for n in ("i", "M", "Via", "l", "C")] == [
        "call-id", "contact", "via", "content-length", "content-type"]  # fmt: skip
    assert [display_name(k) for k in ("call-id", "cseq", "www-authenticate", "max-forwards")] == [
        "Call-ID", "CSeq", "WWW-Authenticate", "Max-Forwards"]  # fmt: skip


# -- the fast paths against the general parsers ----------------------------------------

_HOSTS = st.sampled_from(
    ["b.example.com", "192.0.2.4", "[2001:db8::1]", "h", "a-b.c", "x.", "-x", "1.2.3.4.5", "host_1"]
)
_TOKENS = st.text("abcXYZ019-.!%*_+`'~", min_size=1, max_size=6)
_PARAM = st.one_of(
    st.builds(lambda n: f";{n}", _TOKENS),
    st.builds(lambda n, v: f";{n}={v}", _TOKENS, _TOKENS),
    st.builds(
        lambda n, v: f";{n}={v}",
        st.sampled_from(["tag", "q", "expires", "branch", "rport", "ttl", "maddr", "received", "Branch"]),
        st.sampled_from(["1", "0.5", "1.000", "2", "abc", "192.0.2.1", "::1", "300", "65535", "0", "x"]),
    ),
    st.sampled_from([";", "; tag = 1", ';x="a;b"', ";x=[::1]", ";lr"]),
)  # fmt: skip
_PARAMS = st.lists(_PARAM, max_size=3).map("".join)
_URI = st.builds(
    lambda scheme, user, host, port, params: f"{scheme}:{user}{host}{port}{params}",
    st.sampled_from(["sip", "sips", "SIP", "tel"]),
    st.sampled_from(["", "alice@", "a%20b@", "u:pw@", "bad user@", "a%zz@"]),
    _HOSTS,
    st.sampled_from(["", ":5060", ":05060", ":65536", ":0"]),
    _PARAMS,
)
_DISPLAY = st.sampled_from(
    ["", '"Alice" ', '"Alice"', "Alice ", "Alice  Liddell ", '"a\\"b" ', '"unterminated ']
)
_NAME_ADDR = st.one_of(
    st.builds(lambda d, u, p: f"{d}<{u}>{p}", _DISPLAY, _URI, _PARAMS),
    st.builds(lambda u, p: f"{u}{p}", _URI, _PARAMS),
)
_VIA = st.builds(
    lambda proto, transport, host, port, params: f"{proto}/{transport} {host}{port}{params}",
    st.sampled_from(["SIP/2.0", "SIP/2.0", "sip/2.0", "SIP / 2.0", "SIP/3.0"]),
    st.sampled_from(["UDP", "tcp", "TLS", "SCTP", "X"]),
    _HOSTS,
    st.sampled_from(["", ":5060", " : 5060", ":70000"]),
    _PARAMS,
)


def _outcome(parse: object, text: str) -> object:
    try:
        return parse(text)  # type: ignore[operator]
    except ParseError:
        return ParseError


@settings(max_examples=500, deadline=None)
@given(_NAME_ADDR)
def test_fast_name_addr_agrees_with_the_general_parser(text: str) -> None:
    """From/To: whatever the fast path accepts, the general parser accepts the same."""
    fast = _outcome(parse_name_addr, text)
    assert fast == _outcome(na._parse_name_addr_general, text)
    if fast is not ParseError:
        # (the printed forms may differ where a parameter name repeats: see
        # test_repeated_parameter_names)
        assert parse_name_addr(str(fast)) == fast


@settings(max_examples=500, deadline=None)
@given(st.lists(_NAME_ADDR, min_size=1, max_size=3), st.sampled_from([",", ", ", " ,"]))
def test_fast_lists_agree_with_the_general_parser(items: list[str], comma: str) -> None:
    """Contact and Route lists: the fast path and the general parser agree."""
    text = comma.join(items)
    assert _outcome(parse_contact_list, text) == _outcome(na._contact_list_general, text)
    assert _outcome(parse_route_list, text) == _outcome(lambda t: na._addr_list(t, True), text)
    assert _outcome(parse_name_addr_list, text) == _outcome(lambda t: na._addr_list(t, False), text)


@settings(max_examples=500, deadline=None)
@given(st.lists(_VIA, min_size=1, max_size=3), st.sampled_from([",", ", ", " , "]))
def test_fast_via_agrees_with_the_general_parser(items: list[str], comma: str) -> None:
    """Via: whatever the fast path accepts, the general parser accepts the same."""
    text = comma.join(items)
    fast = _outcome(parse_via_list, text)
    assert fast == _outcome(hv._via_list_general, text)
    if fast is not ParseError:
        assert parse_via_list(", ".join(str(v) for v in fast)) == fast  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("params", "tag"),
    [(";tag=1", "1"), ("", None), (";tag", None), (";tag;tag=2", None), (";tagx=1;tag=2", "2"),
     (";x=1;tag=abc;y", "abc"), (";TAG=up", "up"), (";tag = spaced", "spaced")],
)  # fmt: skip
def test_tag_lookup_agrees_with_the_dict(params: str, tag: str | None) -> None:
    """tag read from the parameter text gives what the dict gives (first one wins)."""
    value = parse_name_addr(f"<sip:a@b>{params}")
    assert value.tag == tag
    assert value.params.get("tag") == tag
    assert value.tag == tag


@pytest.mark.parametrize(
    ("params", "branch"),
    [(";branch=z9hG4bK1", "z9hG4bK1"), ("", None), (";branchx=1;branch=2", "2"), (";rport;branch=x;y", "x"),
     (";BRANCH=up", "up"), (";branch=1;branch=2", "1")],
)  # fmt: skip
def test_branch_lookup_agrees_with_the_dict(params: str, branch: str | None) -> None:
    """branch read from the parameter text gives what the dict gives (first one wins)."""
    via = parse_via_list(f"SIP/2.0/UDP h{params}")[0]
    assert via.branch == branch
    assert via.params.get("branch") == branch
    assert via.branch == branch


def test_display_name_may_start_with_a_star() -> None:
    """A token display name starting with '*' is a contact, not Contact: *."""
    contacts = parse_contact_list("*star <sip:a@[2001:db8::1]>, <sip:b@c>")
    assert [c.display for c in contacts] == ["*star", None]
    with pytest.raises(ParseError, match="only contact"):
        parse_contact_list(" * , <sip:b@c>")
