"""Parsing and formatting of challenge and credentials header values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phpvoip.sip.authheaders import (
    Challenge,
    Credentials,
    _fast_scan,
    _scan,
    parse_challenge,
    parse_challenges,
    parse_credentials,
    quote,
)
from phpvoip.sip.errors import LocalProtocolError, ParseError

RFC7616_CHALLENGE = (
    'Digest\r\n    realm="http-auth@example.org",\r\n    qop="auth, auth-int",\r\n'
    "    algorithm=SHA-256,\r\n"
    '    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",\r\n'
    '    opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)


def test_rfc7616_challenge_with_folded_lines():
    """The RFC 7616 §3.9.1 challenge, laid out over several lines, parses."""
    c = parse_challenge(RFC7616_CHALLENGE)
    assert c.scheme == "Digest" and c.is_digest
    assert c.realm == "http-auth@example.org"
    assert c.qop_options == ["auth", "auth-int"]
    assert c.algorithm == "SHA-256"
    assert c.nonce == "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
    assert c.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    assert not c.stale


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # LWS around '=' and ','
        (
            'Digest realm = "a" ,nonce=  "b"  ,  algorithm =MD5',
            {"realm": "a", "nonce": "b", "algorithm": "MD5"},
        ),
        # tabs as whitespace
        ('Digest\trealm="a",\tnonce="b"', {"realm": "a", "nonce": "b"}),
        # escaped quote and backslash inside a quoted string
        (r'Digest realm="say \"hi\" \\ bye", nonce="n"', {"realm": 'say "hi" \\ bye', "nonce": "n"}),
        # an escaped ordinary character stands for itself
        (r'Digest realm="\a\b", nonce="n"', {"realm": "ab", "nonce": "n"}),
        # commas and '=' inside quoted values
        (
            'Digest realm="a, b=c", domain="sip:x, sip:y", nonce="n"',
            {"realm": "a, b=c", "domain": "sip:x, sip:y", "nonce": "n"},
        ),
        # case-insensitive names, kept lower case; scheme in any case
        ('dIgEsT REALM="a", Nonce="b", QOP="auth"', {"realm": "a", "nonce": "b", "qop": "auth"}),
        # unknown parameters are kept, token or quoted
        (
            'Digest realm="a", nonce="b", charset=UTF-8, x-vendor="v 1"',
            {"realm": "a", "nonce": "b", "charset": "UTF-8", "x-vendor": "v 1"},
        ),
        # empty list elements are skipped (RFC 7230 §7)
        ('Digest realm="a",, nonce="b",', {"realm": "a", "nonce": "b"}),
        # empty quoted string
        ('Digest realm="", nonce="b"', {"realm": "", "nonce": "b"}),
        # UTF-8 in a quoted string
        ('Digest realm="Zürich", nonce="b"', {"realm": "Zürich", "nonce": "b"}),
    ],
)
def test_odd_but_valid_forms(text, expected):
    """Valid header values with unusual spacing, escapes and quoting parse to the
    same parameters."""
    assert parse_challenge(text).params == expected


def test_stale_is_case_insensitive():
    """stale=TRUE and stale="true" both mean stale (RFC 7616 §3.3)."""
    assert parse_challenge('Digest realm="a", nonce="b", stale=TRUE').stale
    assert parse_challenge('Digest realm="a", nonce="b", stale="true"').stale
    assert not parse_challenge('Digest realm="a", nonce="b", stale=false').stale


def test_algorithm_defaults_to_md5():
    """A challenge without algorithm means MD5 (RFC 7616 §3.3)."""
    assert parse_challenge('Digest realm="a", nonce="b"').algorithm == "MD5"


def test_several_challenges_in_one_line():
    """An HTTP-style line with two challenges splits at the second scheme."""
    found = parse_challenges('Digest realm="a", nonce="b", algorithm=SHA-256, Digest realm="a", nonce="c"')
    assert [c.nonce for c in found] == ["b", "c"]
    assert [c.algorithm for c in found] == ["SHA-256", "MD5"]
    other = parse_challenges('Basic realm="x", Digest realm="a", nonce="b"')
    assert [c.scheme for c in other] == ["Basic", "Digest"]


def test_parse_challenge_refuses_two():
    """parse_challenge wants exactly one challenge, as RFC 3261 §25.1 has it."""
    with pytest.raises(ParseError):
        parse_challenge('Digest realm="a", nonce="b", Digest realm="a", nonce="c"')


def test_credentials_accessors():
    """Credentials expose username, uri, response, cnonce, nc and qop."""
    c = parse_credentials(
        'Digest username="Mufasa", realm="r", nonce="n", uri="sip:a@b;transport=udp", '
        'response="ab12", cnonce="c", nc=00000001, qop="AUTH", opaque="o"'
    )
    assert isinstance(c, Credentials)
    assert (c.username, c.realm, c.nonce, c.uri) == ("Mufasa", "r", "n", "sip:a@b;transport=udp")
    assert (c.response, c.cnonce, c.nc, c.qop, c.opaque) == ("ab12", "c", "00000001", "auth", "o")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        '"Digest" realm="a"',  # scheme must be a token
        'Digest realm="a" nonce="b"',  # missing comma
        'Digest realm="a',  # unterminated quoted string
        'Digest realm="a\\',  # escape at the end
        "Digest realm=",  # no value
        "Digest realm=, nonce=b",  # empty value
        'Digest realm="a", realm="b"',  # duplicate parameter
        'Digest realm="a", REALM="b"',  # duplicate, case-insensitively
        "Digest abc==",  # token68 is not supported
        "Digest foo",  # bare token where a parameter must be
        'Digest realm="a"x',  # text glued after a quoted string
        "Digest realm=a b",  # whitespace inside a token value
        'Digest realm="a\nb"',  # raw LF inside a quoted string
        'Digest realm="a\x01b"',  # control character inside a quoted string
        'Digest realm="\\\r"',  # CR cannot be escaped
        "Digest nonce=a/b",  # '/' is not a token character
        'Digest, realm="a"',  # no whitespace between the scheme and a parameter
        'Digest(realm="a")',
    ],
)
def test_invalid_forms_are_rejected(text):
    """Malformed values raise ParseError with a reason."""
    with pytest.raises(ParseError) as info:
        parse_challenge(text)
    assert info.value.reason


def test_credentials_with_two_schemes_rejected():
    """One Authorization value carries one set of credentials."""
    with pytest.raises(ParseError):
        parse_credentials('Digest username="a", Basic realm="b"')


def test_challenge_format_quotes_per_rfc7616():
    """A challenge quotes realm, nonce, opaque and qop, but not algorithm or stale."""
    c = Challenge(
        "Digest",
        {"realm": "r", "nonce": "n", "opaque": "o", "algorithm": "SHA-256", "qop": "auth", "stale": "true"},
    )
    assert str(c) == 'Digest realm="r", nonce="n", opaque="o", algorithm=SHA-256, qop="auth", stale=true'


def test_credentials_format_quotes_per_rfc7616():
    """Credentials quote username, realm, nonce, uri, response, cnonce and opaque,
    but not algorithm, qop or nc (RFC 7616 §3.4)."""
    c = Credentials(
        "Digest",
        {
            "username": "u",
            "realm": "r",
            "nonce": "n",
            "uri": "sip:r",
            "response": "ff",
            "algorithm": "MD5",
            "cnonce": "c",
            "nc": "00000001",
            "qop": "auth",
            "opaque": "o",
        },
    )
    assert str(c) == (
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="ff", '
        'algorithm=MD5, cnonce="c", nc=00000001, qop=auth, opaque="o"'
    )


def test_format_escapes_and_round_trips():
    """Quotes and backslashes are escaped on output and come back unchanged."""
    c = Credentials("Digest", {"username": 'a"b\\c', "realm": "r,=x", "nonce": "n"})
    text = str(c)
    assert 'username="a\\"b\\\\c"' in text
    assert parse_credentials(text) == c


def test_unknown_params_keep_their_quoting():
    """An unknown parameter that came quoted is written back quoted, a token as a token."""
    c = parse_challenge('Digest realm="a", nonce="b", x="tok", y=tok')
    assert str(c) == 'Digest realm="a", nonce="b", x="tok", y=tok'


def test_non_token_values_are_quoted_even_for_token_params():
    """A value that is not a token is quoted whatever its name, so output always parses."""
    c = Challenge("Digest", {"realm": "a", "nonce": "b", "algorithm": "odd value"})
    assert 'algorithm="odd value"' in str(c)
    assert parse_challenge(str(c)).algorithm == "odd value"


def test_format_refuses_header_injection():
    """CR/LF in a value would split the header: refused as a local bug."""
    with pytest.raises(LocalProtocolError):
        quote("a\r\nVia: x")
    with pytest.raises(LocalProtocolError):
        str(Credentials("Digest", {"username": "a\nb"}))


def test_repr_hides_values():
    """repr() names the parameters but shows no values (no secrets in logs)."""
    c = parse_credentials('Digest username="u", response="deadbeef"')
    assert "deadbeef" not in repr(c) and "response" in repr(c)


_PIECES = st.sampled_from(
    [
        "Digest",
        "Basic",
        " ",
        "\t",
        "\r\n ",
        ",",
        "=",
        '"',
        "\\",
        "realm",
        "nonce",
        "qop",
        "a",
        "b=c",
        "é",
        "\x01",
        "/",
    ]
)


@settings(max_examples=3000, deadline=None)
@given(
    st.tuples(st.sampled_from(["", "Digest ", "Basic\t"]), st.lists(_PIECES, max_size=14).map("".join)).map(
        "".join
    )
)
def test_fast_path_agrees_with_the_scanner(text):
    """The one-regex fast path gives what the full scanner gives, and parsing
    raises nothing but ParseError."""
    fast = _fast_scan(text)
    try:
        slow = list(_scan(text))
    except ParseError:
        slow = None
    if fast is not None:
        assert slow is not None and len(slow) == 1
        assert fast[0] == slow[0][0] and fast[1] == slow[0][1] and fast[2] == slow[0][2]
    try:
        parse_challenges(text)
    except ParseError:
        pass
