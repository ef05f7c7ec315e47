"""SIP, SIPS and other URIs (RFC 3261 §19.1, §25.1): tables of text and parts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phpvoip.sip.errors import ParseError
from phpvoip.sip.uri import URI, _parse_uri_general, check_host, parse_uri, unescape

# RFC 4475 intmeth's user part and password: every character they may hold
ODD_USER = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
ODD_PASSWORD = "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
# text -> (scheme, user, password, host, port, params, headers)
VALID = {
    "sip:alice@atlanta.com": ("sip", "alice", None, "atlanta.com", None, {}, None),
    "sip:alice:secretword@atlanta.com;transport=tcp": (
        "sip", "alice", "secretword", "atlanta.com", None, {"transport": "tcp"}, None),
    "sips:alice@atlanta.com?subject=project%20x&priority=urgent": (
        "sips", "alice", None, "atlanta.com", None, {}, "subject=project%20x&priority=urgent"),
    "sip:+1-212-555-1212:1234@gateway.com;user=phone": (
        "sip", "+1-212-555-1212", "1234", "gateway.com", None, {"user": "phone"}, None),
    "sips:1212@gateway.com": ("sips", "1212", None, "gateway.com", None, {}, None),
    "sip:alice@192.0.2.4": ("sip", "alice", None, "192.0.2.4", None, {}, None),
    "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com": (
        "sip", None, None, "atlanta.com", None, {"method": "REGISTER"}, "to=alice%40atlanta.com"),
    "sip:alice;day=tuesday@atlanta.com": ("sip", "alice;day=tuesday", None, "atlanta.com", None, {}, None),
    "sip:[2001:db8::10]:5070;lr": ("sip", None, None, "[2001:db8::10]", 5070, {"lr": None}, None),
    "SIP:Bob@Biloxi.Example.COM:5060": ("sip", "Bob", None, "Biloxi.Example.COM", 5060, {}, None),
    "sip:host.example.com.": ("sip", None, None, "host.example.com.", None, {}, None),
    "sip:h:05060": ("sip", None, None, "h", 5060, {}, None),
    "sip:%00@host5.example.com": ("sip", "%00", None, "host5.example.com", None, {}, None),
    "sip:a@b;Transport=UDP;MADDR=239.255.255.1": (
        "sip", "a", None, "b", None, {"transport": "UDP", "maddr": "239.255.255.1"}, None),
    f"sip:{ODD_USER}:{ODD_PASSWORD}@example.com": (
        "sip", ODD_USER, ODD_PASSWORD, "example.com", None, {}, None),
    "sip:1.2.3.4.example": ("sip", None, None, "1.2.3.4.example", None, {}, None),
    "sip:x@h;n%61me=v%61lue%25%34%31": ("sip", "x", None, "h", None, {"n%61me": "v%61lue%25%34%31"}, None),
}  # fmt: skip

# text -> what the reason says
INVALID = {
    "": "no scheme",
    "alice@atlanta.com": "no scheme",
    "1sip:alice@atlanta.com": "no scheme",
    "sip:": "bad",
    "sip:alice@": "bad",
    "sip:alice@atlanta.com:65536": "port",
    "sip:alice@atlanta.com:5060x": "bad",
    "sip:al ice@atlanta.com": "bad user",
    "sip:al%zzice@atlanta.com": "escape",
    "sip:alice@-atlanta.com": "bad",
    "sip:alice@atlanta-.com": "bad host",
    "sip:alice@atlanta..com": "bad host",
    "sip:alice@123": "bad host",
    "sip:alice@1.2.3.4.5": "bad host",
    "sip:alice@[2001:db8::g]": "bad host",
    "sip:alice@[2001:db8::1": "bad",
    "sip:alice@atlanta.com;=x": "bad parameter",
    "sip:alice@atlanta.com;a=": "bad parameter",
    "sip:alice@atlanta.com?novalue": "bad headers",
    "sip:alice@atlanta.com>": "bad",
    "tel:+1 555": "bad URI",
    "mailto:": "bad URI",
    "http://example.com/a b": "bad URI",
}


@pytest.mark.parametrize("text", sorted(VALID))
def test_valid_uri(text: str) -> None:
    """Each URI parses into the parts its row lists, and prints back as written."""
    uri = parse_uri(text)
    parts = (uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params, uri.headers)
    assert parts == VALID[text]
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize("text", sorted(INVALID))
def test_invalid_uri(text: str) -> None:
    """Each malformed URI raises ParseError whose reason says what is wrong."""
    with pytest.raises(ParseError) as info:
        parse_uri(text)
    assert INVALID[text] in info.value.reason


@pytest.mark.parametrize(
    ("text", "opaque"),
    [
        ("tel:+1-201-555-0123", "+1-201-555-0123"),
        ("nobodyKnowsThisScheme:totallyopaquecontent", "totallyopaquecontent"),
        ("soap.beep://192.0.2.103:3002", "//192.0.2.103:3002"),
        ("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
    ],
)
def test_other_schemes_are_opaque(text: str, opaque: str) -> None:
    """URIs of other schemes keep what follows the colon, and are not SIP."""
    uri = parse_uri(text)
    assert (uri.opaque, uri.is_sip) == (opaque, False)
    assert str(uri) == text[: text.index(":")].lower() + ":" + opaque


def test_parameters_kept_as_text_until_read() -> None:
    """A parsed URI writes its parameters as received until the dict is changed."""
    uri = parse_uri("sip:a@b;transport=udp;lr")
    assert str(uri) == "sip:a@b;transport=udp;lr"
    assert uri.param("transport") == "udp" and uri.param("lr") is None and uri.param("x") is None
    uri.params["lr"] = "on"
    del uri.params["transport"]
    assert str(uri) == "sip:a@b;lr=on"


def test_param_lookup_skips_longer_names() -> None:
    """param('tag') is not fooled by a parameter whose name starts with 'tag'."""
    uri = parse_uri("sip:a@b;tagx=1;tag=2")
    assert uri.param("tag") == "2"
    assert uri.params["tag"] == "2"


def test_copy_is_independent() -> None:
    """A copied URI (text parameters or dict) changes without touching the original."""
    original = parse_uri("sip:a@b;transport=udp")
    clone = original.copy()
    clone.params["transport"] = "tcp"
    clone.user = "c"
    assert str(original) == "sip:a@b;transport=udp"
    assert str(clone) == "sip:c@b;transport=tcp"


def test_equality_is_case_insensitive_where_the_rfc_says() -> None:
    """Scheme and host compare without case (§19.1.4); the user part with case."""
    assert parse_uri("SIP:alice@AtLanTa.CoM") == parse_uri("sip:alice@atlanta.com")
    assert parse_uri("sip:ALICE@atlanta.com") != parse_uri("sip:alice@atlanta.com")
    assert hash(parse_uri("sip:alice@ATLANTA.com")) == hash(parse_uri("sip:alice@atlanta.com"))


def test_built_uri_prints_its_parts() -> None:
    """A URI built from parts prints in the §25.1 form."""
    uri = URI("sips", "bob", "biloxi.example.com", 5061, {"transport": "tls", "lr": None}, "x=1", "pw")
    assert str(uri) == "sips:bob:pw@biloxi.example.com:5061;transport=tls;lr?x=1"
    assert uri.hostport == "biloxi.example.com:5061" and uri.transport == "tls"


def test_unescape_decodes_utf8_and_nulls() -> None:
    """unescape decodes %HH as UTF-8 octets, %00 included."""
    assert unescape("I%20have%20spaces") == "I have spaces"
    assert unescape("null-%00-null") == "null-\x00-null"
    assert unescape("%C3%B1") == "ñ"
    assert unescape("plain") == "plain"


@pytest.mark.parametrize(
    ("host", "good"),
    [
        ("example.com", True),
        ("example.com.", True),
        ("a-b.c-d.example", True),
        ("192.0.2.1", True),
        ("[::1]", True),
        ("[2001:db8::1]", True),
        ("", False),
        ("-a.com", False),
        ("a-.com", False),
        ("a..com", False),
        ("a.123", False),
        ("[::1", False),
        ("[1::2::3]", False),
        ("under_score.com", False),
    ],
)
def test_check_host(host: str, good: bool) -> None:
    """check_host accepts hostnames, IPv4 and IPv6 references, and nothing else."""
    assert check_host(host) is good


# -- the fast path against the general one -------------------------------------------

_HOST = st.one_of(
    st.from_regex(
        r"[a-zA-Z0-9]([a-zA-Z0-9\-]{0,4}[a-zA-Z0-9])?(\.[a-zA-Z][a-zA-Z0-9\-]{0,4}){0,3}\.?", fullmatch=True
    ),
    st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
    st.sampled_from(["[::1]", "[2001:db8::5]", "a-", "-a", "a..b", "1.2", "[x]"]),
)
_USER_CHARS = "abcXYZ019-_.!~*'()&=+$,;?/%:@ "
_PARAM_CHARS = "abcXYZ09[]/:&+$-_.!~*'()%=;"
_URI_TEXT = st.builds(
    lambda scheme, user, host, port, params, headers: f"{scheme}:{user}{host}{port}{params}{headers}",
    st.sampled_from(["sip", "sips", "SIP", "sIp", "tel", "x"]),
    st.one_of(st.just(""), st.text(_USER_CHARS, min_size=1, max_size=8).map(lambda u: u + "@")),
    _HOST,
    st.one_of(st.just(""), st.integers(0, 99999).map(lambda p: f":{p}"), st.just(":05060")),
    st.lists(st.text(_PARAM_CHARS, max_size=6), max_size=3).map(lambda ps: "".join(";" + p for p in ps)),
    st.one_of(st.just(""), st.text(_PARAM_CHARS + "?", max_size=8).map(lambda h: "?" + h)),
)


@settings(max_examples=600, deadline=None)
@given(_URI_TEXT)
def test_fast_path_agrees_with_the_general_parser(text: str) -> None:
    """Whatever the fast path accepts, the general parser accepts as the same URI."""
    try:
        general = _parse_uri_general(text)
    except ParseError:
        general = None
    try:
        fast = parse_uri(text)
    except ParseError:
        fast = None
    assert fast == general
    if fast is not None:
        assert parse_uri(str(fast)) == fast
