"""The static route table: pattern kinds, first match, what is rewritten."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from phpvoip.interfaces import IRouter
from phpvoip.router import Pattern, Route, RouteError, Router
from phpvoip.sip.message import Request

INVITE = (
    b"INVITE sip:2005@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
    b"From: \"Alice\" <sip:1001@127.0.0.1>;tag=a1\r\n"
    b"To: <sip:2005@127.0.0.1>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:1001@127.0.0.1:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def invite(from_user: str = "1001", to_user: str = "2005") -> Request:
    from phpvoip.sip.message import parse

    data = INVITE.replace(b"sip:1001@127.0.0.1>", f"sip:{from_user}@127.0.0.1>".encode())
    data = data.replace(b"2005@", f"{to_user}@".encode())
    return parse(data)


def test_router_provides_interface():
    """Router provides IRouter."""
    assert verifyObject(IRouter, Router())


@pytest.mark.parametrize(
    "pattern, user, expected",
    [
        ("*", "1001", True),
        ("*", "", True),
        ("2005", "2005", True),
        ("2005", "20050", False),
        ("1000-1999", "1000", True),
        ("1000-1999", "1500", True),
        ("1000-1999", "1999", True),  # the PHP original missed the upper bound
        ("1000-1999", "2000", False),
        ("1000-1999", "999", False),
        ("1000-1999", "alice", False),
        ("221,231,300-309", "231", True),
        ("221,231,300-309", "305", True),
        ("221,231,300-309", "310", False),
        ("00*", "0044123", True),
        ("00*", "044123", False),
        ("alice", "alice", True),
    ],
)
def test_pattern_kinds(pattern, user, expected):
    """Each pattern kind matches exactly the users it names."""
    assert Pattern(pattern).matches(user) is expected


@pytest.mark.parametrize("text", ["300-200", "1,,2", "1*2", "*1"])
def test_bad_patterns_are_refused(text):
    """Backward ranges, empty list items and stray '*' are errors."""
    with pytest.raises(ValueError):
        Pattern(text)


def test_route_rewrites_uri_from_and_to_but_not_contact():
    """A match rewrites Request-URI, From and To users; Contact stays."""
    router = Router([Route.from_fields(in_from="*", in_to="2005", out_from="2005", out_to="1001")])
    original = invite()
    routed = router.route(original)
    assert routed.uri.user == "1001"
    assert routed.to.uri.user == "1001"
    assert routed.from_.uri.user == "2005"
    assert routed.from_.tag == "a1"
    assert str(routed.contact[0].uri) == "sip:1001@127.0.0.1:5062"
    assert original.uri.user == "2005" and original.from_.uri.user == "1001"
    assert b"INVITE sip:1001@127.0.0.1 SIP/2.0" in bytes(routed)


def test_first_match_wins():
    """Routes are tried in order and the first match is used."""
    router = Router(
        [
            Route.from_fields(in_to="221", out_to="231"),
            Route.from_fields(in_to="200-299", out_to="999"),
        ]
    )
    assert router.route(invite(to_user="221")).to.uri.user == "231"
    assert router.route(invite(to_user="250")).to.uri.user == "999"


def test_no_match_leaves_request_unchanged():
    """Without a matching route the very same request comes back."""
    router = Router([Route.from_fields(in_to="221", out_to="231")])
    request = invite(to_user="500")
    assert router.route(request) is request


def test_out_fields_may_keep_values():
    """An out_* left empty keeps the old value; in_from filters by caller."""
    router = Router([Route.from_fields(in_from="1001", in_to="*", out_to="1002")])
    routed = router.route(invite())
    assert routed.from_.uri.user == "1001" and routed.to.uri.user == "1002"
    assert router.route(invite(from_user="1003")).to.uri.user == "2005"


def test_reload_replaces_table():
    """reload() swaps the whole table at once."""
    router = Router([Route.from_fields(in_to="221", out_to="231")])
    router.reload([Route.from_fields(in_to="221", out_to="241")])
    assert router.route(invite(to_user="221")).to.uri.user == "241"


def test_bad_out_value_names_field():
    """An out value that is not a plain user part is refused, naming the field."""
    with pytest.raises(RouteError) as info:
        Route.from_fields(in_to="1", out_to="sip:x@y")
    assert info.value.field == "out_to"
