"""Calls through the registrar: 407 for callers (callin), forking to contacts (callout),
and the throttle on failed authentications."""

from __future__ import annotations

import pytest
from twisted.logger import globalLogPublisher

from phpvoip.interfaces import CallRejected, IncomingCall, NotMine
from phpvoip.legs.fork import ForkLeg
from phpvoip.sip.address import Address
from phpvoip.sip.digest import DigestClient
from phpvoip.sip.message import Request
from tests.unit.registrar_fakes import DOMAIN, NAT, PHONE, Phone, message, registrar


@pytest.fixture
def capture_log():
    """The twisted.logger events emitted during the test."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def invite(from_user: str = "1001", to_user: str = "1002", from_host: str = DOMAIN,
           to_host: str = DOMAIN, authorization: str | None = None, cseq: int = 1) -> Request:
    lines = [
        f"INVITE sip:{to_user}@{to_host} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv{cseq}",
        f'From: "Alice" <sip:{from_user}@{from_host}>;tag=a1',
        f'To: "Bob" <sip:{to_user}@{to_host}>',
        "Call-ID: call-1@192.0.2.10",
        f"CSeq: {cseq} INVITE",
        "Max-Forwards: 70",
        "Contact: <sip:1001@192.0.2.10:5060>",
    ]
    if authorization:
        lines.append(f"Proxy-Authorization: {authorization}")
    return message(lines)


def call_of(request: Request, source: Address | None = PHONE) -> IncomingCall:
    return IncomingCall(request, source, None, request.call_id)


def challenge_of(rejected: CallRejected) -> list[str]:
    return [v for n, v in rejected.headers if n == "Proxy-Authenticate"]


def authorized_call(module, user: str = "1001", password: str = "secret1", source: Address = PHONE,
                    **kwargs) -> tuple[IncomingCall, DigestClient]:
    with pytest.raises(CallRejected) as info:
        module.callin(call_of(invite(from_user=user, **kwargs), source))
    client = DigestClient(user, password)
    client.update(challenge_of(info.value), proxy=True)
    to_user = kwargs.get("to_user", "1002")
    auth = client.authorization("INVITE", f"sip:{to_user}@{DOMAIN}")
    return call_of(invite(from_user=user, authorization=auth, cseq=2, **kwargs), source), client


# -- callin ----------------------------------------------------------------------------


def test_call_from_a_user_without_credentials_gets_407():
    """An INVITE from one of our users without Proxy-Authorization is refused
    with 407 and Proxy-Authenticate challenges."""
    module, _ = registrar()
    with pytest.raises(CallRejected) as info:
        module.callin(call_of(invite()))
    assert info.value.status == 407
    assert len(challenge_of(info.value)) == 2
    assert all("qop" in v for v in challenge_of(info.value))


def test_call_with_valid_credentials_gets_an_inbound_leg():
    """Valid Proxy-Authorization gets the engine's inbound leg for the call."""
    module, engine = registrar()
    call, _ = authorized_call(module)
    leg = module.callin(call)
    assert leg is engine.inbound[0] and leg.call is call


def test_call_with_wrong_password_is_challenged_again():
    """A wrong password on an INVITE gets a fresh 407, never a leg."""
    module, engine = registrar()
    call, _ = authorized_call(module, password="wrong")
    with pytest.raises(CallRejected) as info:
        module.callin(call)
    assert info.value.status == 407 and engine.inbound == []


def test_credentials_of_another_user_are_forbidden():
    """1002's valid credentials do not let a call claim to be from 1001."""
    module, _ = registrar()
    with pytest.raises(CallRejected) as first:
        module.callin(call_of(invite()))
    client = DigestClient("1002", "secret2")
    client.update(challenge_of(first.value), proxy=True)
    auth = client.authorization("INVITE", f"sip:1002@{DOMAIN}")
    with pytest.raises(CallRejected) as info:
        module.callin(call_of(invite(authorization=auth, cseq=2)))
    assert info.value.status == 403


def test_unknown_caller_at_our_domain_is_challenged_like_a_known_one():
    """With challenge_unknown (the default) an unknown user's INVITE gets the
    same 407, so INVITEs cannot list our users either."""
    module, _ = registrar()
    with pytest.raises(CallRejected) as info:
        module.callin(call_of(invite(from_user="9999")))
    assert info.value.status == 407
    call, _ = authorized_call(module, user="9999", password="guess")
    with pytest.raises(CallRejected) as again:
        module.callin(call)
    assert again.value.status == 407


def test_unknown_caller_goes_on_without_challenge_unknown():
    """With challenge_unknown: false an unknown caller is left to other modules."""
    module, _ = registrar({"challenge_unknown": False})
    with pytest.raises(NotMine):
        module.callin(call_of(invite(from_user="9999")))


@pytest.mark.parametrize(
    "request_kwargs, source",
    [({"from_host": "elsewhere.example"}, PHONE), ({}, None)],
    ids=["foreign-domain", "local-application"],
)
def test_calls_not_from_our_domain_or_the_network_are_not_ours(request_kwargs, source):
    """A caller of another domain, or a call an application places (no source
    address), is not the registrar's."""
    module, _ = registrar()
    with pytest.raises(NotMine):
        module.callin(call_of(invite(**request_kwargs), source))


# -- the throttle -------------------------------------------------------------------------


def test_repeated_failures_block_the_source_only():
    """After `limit` failures in the window a source gets 403 even with the right
    password; another source still registers; after `block` seconds the first
    may try again."""
    module, engine = registrar({"auth_failures": {"limit": 3, "window": 60, "block": 120}})
    for _ in range(2):
        assert Phone("1001", "bad", source=NAT).register(module, ["<sip:1001@10.1.1.5>"]).status == 401
    assert Phone("1001", "bad", source=NAT).register(module, ["<sip:1001@10.1.1.5>"]).status == 403
    assert Phone("1001", "secret1", source=NAT).register(module, ["<sip:1001@10.1.1.5>"]).status == 403
    assert Phone("1002", "secret2", source=PHONE).register(module, ["<sip:1002@192.0.2.10>"]).status == 200
    with pytest.raises(CallRejected) as info:
        module.callin(call_of(invite(), NAT))
    assert info.value.status == 403 and info.value.headers == ()
    engine.clock.advance(121)
    assert Phone("1001", "secret1", source=NAT).register(module, ["<sip:1001@10.1.1.5>"]).status == 200
    assert module.throttle.blocks == 1


def test_failures_outside_the_window_do_not_add_up():
    """Failures spread over more than the window never reach the limit."""
    module, engine = registrar({"auth_failures": {"limit": 3, "window": 10}})
    for _ in range(6):
        assert Phone("1001", "bad").register(module, ["<sip:1001@192.0.2.10>"]).status == 401
        engine.clock.advance(6)
    assert module.throttle.blocks == 0


def test_success_clears_the_count():
    """A right password clears the source's count of failures."""
    module, _ = registrar({"auth_failures": {"limit": 3}})
    for _ in range(2):
        Phone("1001", "bad").register(module, ["<sip:1001@192.0.2.10>"])
    assert Phone("1001", "secret1").register(module, ["<sip:1001@192.0.2.10>"]).status == 200
    for _ in range(2):
        assert Phone("1001", "bad").register(module, ["<sip:1001@192.0.2.10>"]).status == 401


def test_block_is_logged_without_credentials(capture_log):
    """The block is logged once with the source, never with a password or response."""
    module, _ = registrar({"auth_failures": {"limit": 2}})
    for _ in range(2):
        Phone("1001", "hunter2").register(module, ["<sip:1001@192.0.2.10>"])
    blocks = [e for e in capture_log if "refusing it" in e.get("log_format", "")]
    assert len(blocks) == 1 and blocks[0]["source"] == PHONE.host
    assert "hunter2" not in repr(capture_log)


def test_limit_zero_never_blocks():
    """auth_failures.limit 0 turns the throttle off."""
    module, _ = registrar({"auth_failures": {"limit": 0}})
    for _ in range(20):
        assert Phone("1001", "bad").register(module, ["<sip:1001@192.0.2.10>"]).status == 401


# -- callout ----------------------------------------------------------------------------


def test_call_to_a_registered_user_rings_its_contact_at_the_source_address():
    """callout builds one outbound leg per contact: Request-URI the contact, To the
    AOR, From the routed caller at our domain, sent where the REGISTER came from."""
    module, engine = registrar()
    Phone("1002", "secret2", source=NAT).register(module, ["<sip:1002@10.1.1.5:5062;ob>"])
    leg = module.callout(invite(), call_of(invite()))
    assert isinstance(leg, ForkLeg)
    [branch] = engine.outbound
    assert str(branch.invite.uri) == "sip:1002@10.1.1.5:5062;ob"
    assert str(branch.invite.to) == f'"Bob" <sip:1002@{DOMAIN}>'
    assert str(branch.invite.from_) == f'"Alice" <sip:1001@{DOMAIN}>'
    assert branch.destination == NAT


def test_route_to_contact_uses_the_contact_address():
    """With route_to: contact, calls go to the contact's host and port."""
    module, engine = registrar({"route_to": "contact"})
    Phone("1002", "secret2", source=NAT).register(module, ["<sip:1002@10.1.1.5:5062;transport=tcp>"])
    module.callout(invite(), call_of(invite()))
    assert engine.outbound[0].destination == Address("tcp", "10.1.1.5", 5062)


def test_several_contacts_fork_best_q_first():
    """Every live contact becomes a branch, highest q first."""
    module, engine = registrar()
    Phone("1002", "secret2").register(
        module, ["<sip:1002@192.0.2.20>;q=0.2", "<sip:1002@192.0.2.21>;q=0.9", "<sip:1002@192.0.2.22>"]
    )
    leg = module.callout(invite(), call_of(invite()))
    assert [str(b.invite.uri) for b in leg.branches] == [
        "sip:1002@192.0.2.22", "sip:1002@192.0.2.21", "sip:1002@192.0.2.20",
    ]  # fmt: skip


def test_known_user_without_contacts_is_480():
    """A user we know who has no live binding is temporarily unavailable."""
    module, engine = registrar()
    Phone("1002", "secret2").register(module, ["<sip:1002@192.0.2.20>"], expires=60)
    engine.clock.advance(61)
    with pytest.raises(CallRejected) as info:
        module.callout(invite(), call_of(invite()))
    assert info.value.status == 480


@pytest.mark.parametrize("kwargs", [{"to_user": "5555"}, {"to_host": "elsewhere.example"}])
def test_unknown_or_foreign_callee_is_not_ours(kwargs):
    """A callee we do not know, or of another domain, is left to other modules."""
    module, _ = registrar()
    Phone("1002", "secret2").register(module, ["<sip:1002@192.0.2.20>"])
    with pytest.raises(NotMine):
        module.callout(invite(**kwargs), call_of(invite()))
