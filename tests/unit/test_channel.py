"""The SipChannel module: config, calls in and out, keepalive, several lines."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from phpvoip.config import ConfigError, build_module, load_text
from phpvoip.interfaces import IModule, IncomingCall, NotMine
from phpvoip.modules.channel import ChannelSettings, SipChannel
from phpvoip.modules.line_state import LineState, RegistrationPolicy
from phpvoip.sip.address import Address
from phpvoip.sip.digest import DigestClient
from phpvoip.sip.message import Request, parse
from tests.unit.channel_fakes import SERVER, FakeEngine, Upstream

CONFIG = """
sip: {listen: [udp:127.0.0.1:5060]}
modules:
  - type: channel
    name: carrier
    user: "2005@carol.example"
    password: secret
    server: 127.0.0.1:5070
"""


def load_channel(extra: str = "", base: str = CONFIG) -> SipChannel:
    config = load_text(base + "".join(f"    {line}\n" for line in extra.splitlines() if line))
    return build_module(config.modules[0])


def make_channel(random: float = 0.5, **overrides) -> tuple[SipChannel, FakeEngine]:
    fields = {"user": "2005", "domain": "carol.example", "server": SERVER, "password": "secret"}
    fields.update(overrides)
    channel = SipChannel("carrier", ChannelSettings(**fields), random=lambda: random)
    engine = FakeEngine()
    return channel, engine


def invite(
    to: str = "<sip:2005@carol.example>",
    from_: str = '"Alice" <sip:3001@carol.example>;tag=abc',
    ruri: str | None = None,
) -> Request:
    text = (
        f"INVITE {ruri or to[to.index('<') + 1 : to.index('>')]} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc\r\n"
        f"From: {from_}\r\n"
        f"To: {to}\r\n"
        "Call-ID: call-1@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:3001@127.0.0.1:5070>\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse(text.encode())
    assert isinstance(message, Request)
    return message


def incoming(request: Request, source: Address | None = SERVER) -> IncomingCall:
    return IncomingCall(invite=request, source=source, call_id=request.call_id)


# -- config --------------------------------------------------------------------------------


def test_channel_provides_imodule():
    """A configured channel is an IModule with its name and weight."""
    channel = load_channel()
    verifyObject(IModule, channel)
    assert channel.name == "carrier" and channel.weight == 60


def test_config_defaults():
    """From `user`: the AOR's user and domain; number defaults to the user part;
    registration on, 3600 s, keepalive off, UDP to the server."""
    settings = load_channel().settings
    assert (settings.user, settings.domain, settings.bound_number) == ("2005", "carol.example", "2005")
    assert settings.server == Address("udp", "127.0.0.1", 5070)
    assert settings.register and settings.policy.expires == 3600 and settings.keepalive == 0
    assert "secret" not in repr(settings)


def test_config_overrides():
    """domain, number, auth_user, expires, keepalive, register, weight, backoff."""
    settings = load_channel(
        "domain: sip.carol.example\nnumber: '555'\nauth_user: acct9\nexpires: 120\nkeepalive: 30\n"
        "register: false\nweight: 5\nretry_min: 1\nretry_max: 60\nauth_retry: 600\n"
        "server: tcp:127.0.0.2:5080\n",
        base=CONFIG.replace("    server: 127.0.0.1:5070\n", ""),
    ).settings
    assert settings.domain == "sip.carol.example" and settings.bound_number == "555"
    assert settings.auth_user == "acct9" and settings.keepalive == 30 and not settings.register
    assert settings.policy == RegistrationPolicy(expires=120, retry_min=1, retry_max=60, auth_retry=600)
    assert settings.server == Address("tcp", "127.0.0.2", 5080)


def test_user_without_domain_takes_the_server_host():
    """``user: 2005`` registers as sip:2005@<server address>."""
    settings = load_channel(base=CONFIG.replace('"2005@carol.example"', '"2005"')).settings
    assert settings.domain == "127.0.0.1"


@pytest.mark.parametrize(
    ("line", "key", "problem"),
    [
        ("server: carrier.example:5060", "server", "not an IP address"),
        ("server: 127.0.0.1:99999", "server", "not a port"),
        ("expires: 5", "expires", "at least 10"),
        ("keepalive: -1", "keepalive", "at least 0"),
        ("register: maybe", "register", "true or false"),
        ("colour: blue", "colour", "unknown key"),
    ],
)
def test_config_errors_name_the_key(line, key, problem):
    """Bad values are refused with the key path and what is wrong."""
    base = CONFIG
    if line.startswith("server:"):
        base = CONFIG.replace("    server: 127.0.0.1:5070\n", "")
    with pytest.raises(ConfigError) as caught:
        load_channel(line, base=base)
    assert caught.value.key == f"modules[0].{key}" and problem in caught.value.problem


def test_config_refuses_a_bad_user():
    """``user`` must be USER or USER@DOMAIN."""
    with pytest.raises(ConfigError, match=r"modules\[0\]\.user"):
        load_channel(base=CONFIG.replace('"2005@carol.example"', '"2005@"'))


# -- start, stop, state ----------------------------------------------------------------------


def test_start_registers_with_the_switch_contact():
    """start() sends REGISTER to the server with Contact = the switch's address and
    the line's user."""
    channel, engine = make_channel()
    channel.start(engine)
    sent = engine.last()
    assert sent.destination == SERVER
    assert str(sent.request.contact[0].uri) == "sip:2005@127.0.0.1:5060"
    assert channel.state == LineState.REGISTERING


def test_tcp_server_gets_a_tcp_contact():
    """A line to a TCP server registers a Contact with transport=tcp."""
    channel, engine = make_channel(server=Address("tcp", "127.0.0.1", 5070))
    channel.start(engine)
    assert str(engine.last().request.contact[0].uri) == "sip:2005@127.0.0.1:5060;transport=tcp"


def test_auth_user_is_the_digest_username():
    """With auth_user set, credentials carry it as the digest username."""
    channel, engine = make_channel(auth_user="acct9")
    upstream = Upstream(engine.clock, users=("acct9",))
    channel.start(engine)
    upstream.serve(engine)
    assert channel.state == LineState.REGISTERED and upstream.outcomes == ["ok"]


def test_static_line_sends_no_register():
    """register: false: no REGISTER, state 'static', stop fires at once."""
    channel, engine = make_channel(register=False)
    channel.start(engine)
    assert engine.sent == [] and channel.state == "static"
    assert channel.stop().called


def test_stop_unregisters():
    """stop() unregisters the line and fires when the server answered."""
    channel, engine = make_channel()
    upstream = Upstream(engine.clock)
    channel.start(engine)
    upstream.serve(engine)
    done = channel.stop()
    assert engine.last().request.get("Expires") == "0"
    upstream.serve(engine)
    assert done.called and channel.state == LineState.UNREGISTERED


def test_snapshot_has_state_and_counters():
    """The manhole's view of a line: name, number, state, counters, registration."""
    channel, engine = make_channel()
    channel.start(engine)
    Upstream(engine.clock).serve(engine)
    snap = channel.snapshot()
    assert snap["state"] == "registered" and snap["number"] == "2005"
    assert snap["counters"]["registers_sent"] == 2 and snap["counters"]["registrations"] == 1
    assert snap["registration"]["granted"] == 3600


# -- calls in ---------------------------------------------------------------------------------


def test_call_from_the_server_to_the_number_comes_in():
    """An INVITE from the server's address to the bound number becomes an inbound
    leg, and the call is marked as arrived on this line."""
    channel, engine = make_channel()
    channel.start(engine)
    call = incoming(invite())
    leg = channel.callin(call)
    assert leg == ("inbound leg", call) and call.attributes["line"] == "carrier"
    assert channel.counters.calls_in == 1


def test_call_in_matches_request_uri_user_too():
    """A server that keeps To as dialled but sets the Request-URI to our Contact
    still reaches the line."""
    channel, engine = make_channel()
    channel.start(engine)
    call = incoming(invite(to="<sip:+4930555@carol.example>", ruri="sip:2005@127.0.0.1:5060"))
    assert channel.callin(call)[0] == "inbound leg"


@pytest.mark.parametrize(
    "source",
    [Address("udp", "127.0.0.1", 5071), Address("udp", "127.0.0.2", 5070), None],
)
def test_call_from_elsewhere_is_not_mine(source):
    """Another port, another host, or a local call: not this line's."""
    channel, engine = make_channel()
    channel.start(engine)
    with pytest.raises(NotMine):
        channel.callin(incoming(invite(), source))


def test_call_to_another_number_is_not_mine():
    """The server's INVITE for another number is left to other lines."""
    channel, engine = make_channel()
    channel.start(engine)
    with pytest.raises(NotMine):
        channel.callin(incoming(invite(to="<sip:2006@carol.example>")))


def test_tcp_line_ignores_the_source_port():
    """Over TCP the server may connect from any port; the host must still match."""
    channel, engine = make_channel(server=Address("tcp", "127.0.0.1", 5070), register=False)
    channel.start(engine)
    assert channel.callin(incoming(invite(), Address("tcp", "127.0.0.1", 40123)))[0] == "inbound leg"


# -- calls out --------------------------------------------------------------------------------


def test_call_out_is_translated_into_the_line_domain():
    """A routed INVITE from the bound number goes to the server with Request-URI
    and To in the line's domain, From the line's user, display names kept, and
    fresh credentials of the line for the leg to answer 401/407."""
    channel, engine = make_channel(auth_user="acct9")
    channel.start(engine)
    routed = invite(to='"Bob" <sip:3001@127.0.0.1>', from_='"Front desk" <sip:2005@127.0.0.1>;tag=x1')
    original = incoming(invite(from_="<sip:1001@127.0.0.1>;tag=x1"), Address("udp", "127.0.0.1", 6000))
    leg = channel.callout(routed, original)
    request, destination, credentials = engine.outbound[0]
    assert leg == ("outbound leg", request) and destination == SERVER
    assert str(request.uri) == "sip:3001@carol.example"
    assert str(request.to) == '"Bob" <sip:3001@carol.example>'
    assert str(request.from_) == '"Front desk" <sip:2005@carol.example>'
    assert not request.has("Contact") and not request.has("Via") and not request.has("Call-ID")
    assert isinstance(credentials, DigestClient) and credentials.username == "acct9"
    assert channel.counters.calls_out == 1


def test_each_call_gets_its_own_credentials():
    """Calls do not share a digest client with each other or the registration."""
    channel, engine = make_channel()
    channel.start(engine)
    routed = invite(to="<sip:3001@127.0.0.1>", from_="<sip:2005@127.0.0.1>;tag=x")
    channel.callout(routed, incoming(invite(), None))
    channel.callout(routed, incoming(invite(), None))
    first, second = engine.outbound[0][2], engine.outbound[1][2]
    assert first is not second and first is not channel.registration.credentials


def test_line_without_password_sends_calls_without_credentials():
    """No password: the leg gets no credentials (a 401/407 then fails the call)."""
    channel, engine = make_channel(password=None, register=False)
    channel.start(engine)
    channel.callout(invite(from_="<sip:2005@x>;tag=1", to="<sip:3001@x>"), incoming(invite(), None))
    assert engine.outbound[0][2] is None


def test_call_from_another_number_is_not_mine():
    """Only calls whose routed From is the bound number leave on the line."""
    channel, engine = make_channel()
    channel.start(engine)
    with pytest.raises(NotMine):
        channel.callout(invite(from_="<sip:1001@127.0.0.1>;tag=1"), incoming(invite(), None))


def test_call_that_came_in_on_the_line_does_not_go_back_out():
    """A call in on this line routed with From = the line's number (``* 2005 →
    2005 1001``) is not sent back to the server."""
    channel, engine = make_channel()
    channel.start(engine)
    call = incoming(invite())
    channel.callin(call)
    routed = invite(to="<sip:1001@127.0.0.1>", from_="<sip:2005@127.0.0.1>;tag=abc")
    with pytest.raises(NotMine):
        channel.callout(routed, call)


# -- keepalive ---------------------------------------------------------------------------------


def test_keepalive_sends_options_to_the_server():
    """keepalive: N sends an OPTIONS to the server every N seconds."""
    channel, engine = make_channel(register=False, keepalive=30.0)
    channel.start(engine)
    engine.clock.advance(30)
    sent = engine.last()
    assert sent.request.method == "OPTIONS" and sent.destination == SERVER
    assert str(sent.request.uri) == "sip:127.0.0.1:5070" and sent.request.from_.tag
    sent.answer(200)
    engine.clock.advance(30)
    assert [s.request.method for s in engine.sent] == ["OPTIONS", "OPTIONS"]
    assert engine.sent[0].request.call_id != engine.sent[1].request.call_id
    assert channel.counters.keepalives_sent == 2


def test_keepalive_any_answer_counts_as_alive():
    """A 404 or 501 to OPTIONS still shows the server is there."""
    channel, engine = make_channel(keepalive=30.0)
    upstream = Upstream(engine.clock)
    channel.start(engine)
    upstream.serve(engine)
    engine.clock.advance(30)
    engine.last().answer(501)
    assert channel.state == LineState.REGISTERED and channel.counters.keepalives_failed == 0


def test_keepalive_timeout_makes_the_line_register_again():
    """No answer to a keepalive: the registered line re-registers at once."""
    channel, engine = make_channel(keepalive=30.0)
    upstream = Upstream(engine.clock)
    channel.start(engine)
    upstream.serve(engine)
    engine.clock.advance(30)
    engine.last().timeout()
    assert channel.counters.keepalives_failed == 1
    assert channel.state == LineState.REGISTERING and engine.last().request.method == "REGISTER"


def test_keepalive_waits_for_the_previous_one():
    """While one OPTIONS is unanswered no second one is sent."""
    channel, engine = make_channel(register=False, keepalive=10.0)
    channel.start(engine)
    engine.clock.advance(10)
    engine.clock.advance(10)
    assert len(engine.sent) == 1 and channel.counters.keepalives_sent == 1


def test_stop_ends_the_keepalive():
    """After stop() no keepalive is sent and no timer is left."""
    channel, engine = make_channel(register=False, keepalive=10.0)
    channel.start(engine)
    channel.stop()
    engine.clock.advance(100)
    assert engine.sent == [] and not engine.clock.getDelayedCalls()


# -- several lines ------------------------------------------------------------------------------


def test_lines_are_independent():
    """Two lines on one switch: one whose server is silent retries with backoff,
    the other stays registered and takes its calls; numbers pick the line."""
    engine = FakeEngine()
    a = SipChannel("a", ChannelSettings("2005", "carol.example", SERVER, "secret"), random=lambda: 0.0)
    other = Address("udp", "127.0.0.1", 5080)
    b = SipChannel("b", ChannelSettings("7000", "dave.example", other, "secret"), random=lambda: 0.0)
    a.start(engine)
    b.start(engine)
    upstream = Upstream(engine.clock)
    for sent in engine.pending():
        if sent.destination == SERVER:
            upstream.respond(sent)
        else:
            sent.timeout()
    upstream.serve(engine)
    assert a.state == LineState.REGISTERED and b.state == LineState.RETRYING
    call = incoming(invite())
    assert a.callin(call)[0] == "inbound leg"
    with pytest.raises(NotMine):
        b.callin(call)
    assert b.callin(incoming(invite(to="<sip:7000@dave.example>"), other))[0] == "inbound leg"
    assert a.registration.call_id != b.registration.call_id
