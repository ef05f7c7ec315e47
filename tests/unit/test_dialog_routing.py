"""Next hop of a request (§8.1.2, RFC 3263 §4 without DNS) and the Request-URI and
Route of in-dialog requests (§12.2.1.1)."""

from __future__ import annotations

import pytest

from phpvoip.sip.address import Address
from phpvoip.sip.dialog import Dialog, Hop, next_hop, request_target, uri_hop
from phpvoip.sip.errors import ProtocolError
from phpvoip.sip.headers import parse_name_addr
from phpvoip.sip.message import Request
from phpvoip.sip.uri import parse_uri
from tests.unit.dialog_fixtures import invite_sent, response


@pytest.mark.parametrize(
    "uri, hop",
    [
        ("sip:bob@127.0.0.4", Hop("127.0.0.4", 5060, "udp")),
        ("sip:bob@127.0.0.4:5070", Hop("127.0.0.4", 5070, "udp")),
        ("sip:bob@127.0.0.4;transport=TCP", Hop("127.0.0.4", 5060, "tcp")),
        ("sip:bob@example.test:5080;transport=tcp", Hop("example.test", 5080, "tcp")),
        ("sips:bob@127.0.0.4", Hop("127.0.0.4", 5061, "tls")),
        ("sips:bob@127.0.0.4:5071;transport=tcp", Hop("127.0.0.4", 5071, "tls")),
        ("sip:bob@example.test;maddr=127.0.0.9", Hop("127.0.0.9", 5060, "udp")),
        ("sip:bob@[::1]:5090", Hop("::1", 5090, "udp")),
        ("sip:127.0.0.2;lr", Hop("127.0.0.2", 5060, "udp")),
    ],
)
def test_uri_hop(uri, hop):
    """maddr, port and transport parameters choose the hop; defaults are 5060/UDP and 5061/TLS."""
    assert uri_hop(parse_uri(uri)) == hop


def test_uri_hop_refuses_other_schemes():
    """A tel: URI cannot be sent to: 416."""
    with pytest.raises(ProtocolError) as caught:
        uri_hop(parse_uri("tel:+15551234"))
    assert caught.value.status == 416


def test_hop_address_only_for_ip_literals():
    """A hop becomes an Address only when its host needs no resolving."""
    assert Hop("127.0.0.2", 5060, "udp").address() == Address("udp", "127.0.0.2", 5060)
    assert Hop("::1", 5070, "tcp").address() == Address("tcp", "::1", 5070)
    assert Hop("example.test", 5060, "udp").address() is None


def request_with(uri: str, *routes: str) -> Request:
    request = Request("BYE", uri)
    if routes:
        request.add("Route", [parse_name_addr(r) for r in routes])
    return request


def test_next_hop_loose_route():
    """A loose top Route is the next hop."""
    assert next_hop(request_with("sip:bob@127.0.0.4", "<sip:127.0.0.2:5070;lr>")) == Hop(
        "127.0.0.2", 5070, "udp"
    )


def test_next_hop_strict_route_uses_request_uri():
    """With a strict router in the Request-URI (top Route without lr) the Request-URI is the hop."""
    request = request_with("sip:p1@127.0.0.2;transport=tcp", "<sip:bob@127.0.0.4>")
    assert next_hop(request) == Hop("127.0.0.2", 5060, "tcp")


def test_next_hop_without_route():
    """Without Route the Request-URI is the hop."""
    assert next_hop(request_with("sip:bob@127.0.0.4:5064")) == Hop("127.0.0.4", 5064, "udp")


def test_request_target_strict_strips_disallowed_parts():
    """A strict router's URI loses its method parameter and headers as a Request-URI."""
    routes = [
        parse_name_addr("<sip:p@127.0.0.2;method=INVITE;transport=udp?X=y>"),
        parse_name_addr("<sip:q;lr>"),
    ]
    uri, route = request_target(parse_uri("sip:bob@127.0.0.4"), routes)
    assert str(uri) == "sip:p@127.0.0.2;transport=udp"
    assert [str(r) for r in route] == ["<sip:q;lr>", "<sip:bob@127.0.0.4>"]
    assert str(routes[0]) == "<sip:p@127.0.0.2;method=INVITE;transport=udp?X=y>"


def test_dialog_next_hop():
    """A dialog's next hop is its first route (loose or strict), else its remote target."""
    routed = Dialog.uac(invite_sent(), response(200, "OK"))
    assert routed.next_hop() == Hop("127.0.0.2", 5060, "udp")
    direct = Dialog.uac(invite_sent(), response(200, "OK", record_route=()))
    assert direct.next_hop() == Hop("127.0.0.4", 5064, "udp")
    bye = routed.new_request("BYE", "127.0.0.1", 5062)
    assert next_hop(bye) == routed.next_hop()
