"""Flood protection (phpvoip.limits) under a Clock: the sliding window, bans and
their expiry, exemptions, the caps, auth failures joining the ban list, and what
the transport, engine, manhole and metrics make of it."""

from __future__ import annotations

import configparser
import ipaddress
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from twisted.internet.task import Clock
from twisted.logger import formatEvent, formatEventAsClassicLogText, globalLogPublisher

from phpvoip import config, inspect
from phpvoip.limits import BUCKETS, Limits, LimitSettings, limit_settings, peer_networks
from phpvoip.manhole import HELPERS, namespace
from phpvoip.metrics import build_registry
from phpvoip.modules.throttle import AuthThrottle, ThrottleSettings
from phpvoip.service import build_service
from phpvoip.settings import ConfigError, Section
from phpvoip.sip.address import Address
from phpvoip.sip.message import parse
from phpvoip.transport import SipTransport
from tests.unit.registrar_fakes import NAT, FakeEngine, Phone, registrar
from tests.unit.test_engine import deliver, invite, make_engine, responses, trunk
from tests.unit.test_metrics import scrape

REQUEST = b"OPTIONS sip:x@192.0.2.1 SIP/2.0\r\n\r\n"  # never parsed by Limits: only its start is looked at
RESPONSE = b"SIP/2.0 200 OK\r\n\r\n"
FLOODER = "203.0.113.9"

# The fail2ban filter shipped in etc/, as Python reads it: fail2ban matches after
# the date it has cut off, and <HOST> is an address.
FILTER = Path(__file__).resolve().parents[2] / "etc" / "fail2ban" / "filter.d" / "phpvoip.conf"


def fail2ban_patterns() -> list[re.Pattern]:
    parser = configparser.RawConfigParser()
    parser.read(FILTER)
    lines = parser.get("Definition", "failregex").strip().splitlines()
    return [re.compile(line.strip().replace("<HOST>", r"(?P<host>[0-9a-fA-F.:]+)")) for line in lines]


def fail2ban_hosts(events: list[dict]) -> list[str]:
    """The sources the filter finds in the events as twistd writes them."""
    found = []
    for event in events:
        line = formatEventAsClassicLogText(event)  # what twistd's text log holds
        _date, _, rest = line.partition(" ")
        for pattern in fail2ban_patterns():
            m = pattern.search(" " + rest.rstrip("\n"))
            if m:
                found.append(m.group("host"))
    return found


@pytest.fixture
def logged():
    """The text of every log event during the test."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def texts(events: list[dict]) -> list[str]:
    return [formatEvent(e) for e in events]


def running(settings: LimitSettings | None = None, modules=()) -> tuple[Limits, Clock]:
    clock = Clock()
    limits = Limits(settings or LimitSettings(), clock, lambda: modules)
    limits.startService()
    return limits, clock


def send(limits: Limits, host: str, count: int, data: bytes = REQUEST) -> int:
    """How many of `count` requests from `host` were admitted."""
    return sum(limits.admit(host, data) for _ in range(count))


# -- config ---------------------------------------------------------------------------------


def test_defaults_are_pikes():
    """No `limits:` section: 30 requests per 2 s, bans of 300 s, peers exempt, the
    caps on transactions and TCP connections, no cap on calls."""
    got = config.load_text("sip: {listen: [udp:127.0.0.1:5060]}\n").limits
    assert got == LimitSettings()
    assert (got.requests, got.window, got.ban, got.exempt_peers) == (30, 2.0, 300.0, True)
    assert (got.max_calls, got.per_source_transactions, got.per_source_tcp, got.retry_after) == (0, 50, 20, 5)


def test_every_key_is_read():
    """Each key of `limits:` lands in its setting; exempt takes addresses and networks."""
    data = {"per_source": {"requests": 100, "window": 5}, "ban": 60, "exempt": ["10.0.0.0/8", "192.0.2.1"],
            "exempt_peers": False, "max_calls": 500, "per_source_transactions": 10, "per_source_tcp": 3,
            "retry_after": 30}
    got = limit_settings(Section("f.yaml", "", {"limits": data}))
    assert got == LimitSettings(100, 5.0, 60.0, (ipaddress.ip_network("10.0.0.0/8"),
                                                 ipaddress.ip_network("192.0.2.1/32")), False, 500, 10, 3, 30)


@pytest.mark.parametrize(("data", "where"), [
    ({"per_source": {"request": 3}}, "limits.per_source: 'request'"),
    ({"exempt": ["nobody.example"]}, "limits.exempt[0]"),
    ({"ban": 0}, "limits.ban"),
    ({"per_source": {"window": 0}}, "limits.per_source.window"),
    ({"bans": 3}, "limits: 'bans'"),
])
def test_mistakes_name_their_key(data, where):
    """A typo or a bad value is a config error naming the key."""
    with pytest.raises(ConfigError) as info:
        limit_settings(Section("f.yaml", "", {"limits": data}))
    assert where.split(":")[0] in str(info.value)


# -- the window ------------------------------------------------------------------------------


def test_the_request_over_the_limit_bans(logged):
    """30 requests in the window pass, the 31st bans its source and is dropped,
    and so is everything after it; the log line names the source."""
    limits, _ = running()
    assert send(limits, FLOODER, 30) == 30
    assert not limits.admit(FLOODER, REQUEST)
    assert FLOODER in limits.banned
    assert send(limits, FLOODER, 5) == 0
    assert send(limits, FLOODER, 5, RESPONSE) == 0  # a ban drops responses too
    assert limits.dropped["rate"] == 1 and limits.dropped["banned"] == 10
    assert "phpvoip: ban 203.0.113.9 for 300s: 31 requests in 2s" in texts(logged)
    assert limits.admit("192.0.2.20", REQUEST)  # other sources are unaffected


def test_responses_are_not_counted():
    """Answers to what the switch sent do not count against their source."""
    limits, _ = running()
    assert send(limits, FLOODER, 100, RESPONSE) == 100
    assert not limits.banned


def test_the_window_slides():
    """A steady rate below the limit never bans: counts leave the window bucket by
    bucket (15 requests per second for a minute, against 30 per 2 s)."""
    limits, clock = running()
    step = limits.settings.window / BUCKETS
    for _ in range(int(60 / step)):
        assert send(limits, FLOODER, int(15 * step)) == int(15 * step)
        clock.advance(step)
    assert not limits.banned


def test_a_burst_over_the_window_bans():
    """Twice the rate is caught even when it straddles bucket boundaries."""
    limits, clock = running()
    step = limits.settings.window / BUCKETS
    admitted = 0
    for _ in range(BUCKETS * 2):
        admitted += send(limits, FLOODER, 16)
        clock.advance(step)
    assert FLOODER in limits.banned
    assert admitted <= 31


def test_no_limit_with_requests_zero():
    """per_source.requests 0 turns the rate limit off (bans by hand still work)."""
    limits, _ = running(LimitSettings(requests=0))
    assert send(limits, FLOODER, 1000) == 1000
    limits.ban(FLOODER)
    assert not limits.admit(FLOODER, REQUEST)


# -- bans ------------------------------------------------------------------------------------


def test_ban_expires(logged):
    """A ban ends `ban` seconds later (within one bucket's tick); the source starts
    from a clean count."""
    limits, clock = running(LimitSettings(ban=10))
    send(limits, FLOODER, 31)
    clock.advance(9.5)
    assert not limits.admit(FLOODER, REQUEST)
    clock.advance(1.0)
    assert FLOODER not in limits.banned
    assert send(limits, FLOODER, 30) == 30
    assert "phpvoip: ban of 203.0.113.9 ended" in texts(logged)


def test_manual_ban_unban_and_longest_wins():
    """ban(host, s) and unban(host); a shorter ban does not cut a longer one."""
    limits, clock = running()
    limits.ban("192.0.2.5", 100, "test")
    limits.ban("192.0.2.5", 10)
    assert limits.banned["192.0.2.5"].until == 100
    assert [b.host for b in limits.bans()] == ["192.0.2.5"]
    assert limits.unban("192.0.2.5") and not limits.unban("192.0.2.5")
    assert limits.admit("192.0.2.5", REQUEST)


def test_stopping_stops_the_timer():
    """The bucket timer runs only while the service does."""
    limits, clock = running()
    assert clock.getDelayedCalls()
    limits.stopService()
    assert not clock.getDelayedCalls()


# -- exemptions ------------------------------------------------------------------------------


def test_configured_exemptions_are_never_banned():
    """An address inside an `exempt` network floods freely; others do not."""
    limits, _ = running(LimitSettings(exempt=(ipaddress.ip_network("203.0.113.0/24"),)))
    assert send(limits, FLOODER, 500) == 500
    assert send(limits, "198.51.100.1", 500) == 30


def test_trunk_and_line_peers_are_exempt():
    """A trunk's `allow` networks and a line's server are exempt by default, and
    not with exempt_peers false; a reload's new module list counts at once."""
    peers = [SimpleNamespace(settings=SimpleNamespace(allow=(ipaddress.ip_network("198.51.100.0/24"),))),
             SimpleNamespace(settings=SimpleNamespace(server=Address("udp", "192.0.2.77", 5060)))]
    assert [str(n) for n in peer_networks(peers)] == ["198.51.100.0/24", "192.0.2.77/32"]
    modules = {"now": peers}
    limits = Limits(LimitSettings(), Clock(), lambda: modules["now"])
    assert send(limits, "198.51.100.4", 100) == 100
    assert send(limits, "192.0.2.77", 100) == 100
    modules["now"] = []  # the reload removed them
    assert send(limits, "192.0.2.77", 1) == 0
    strict = Limits(LimitSettings(exempt_peers=False), Clock(), lambda: peers)
    assert send(strict, "198.51.100.4", 100) == 30


# -- the digest round trip and failed authentications ------------------------------------------


def test_a_phones_challenge_round_trip_is_not_counted():
    """A phone that registers with digest (REGISTER, 401, REGISTER with
    credentials) 100 times in a window stays under the limit; so do its requests."""
    limits, _ = running()
    engine = FakeEngine()
    engine.limits = limits
    module, _ = registrar(engine=engine)
    phone = Phone("1001", "secret1", source=NAT)
    for _ in range(100):
        for _ in range(2):
            limits.admit(NAT.host, REQUEST)
        assert phone.register(module, ["<sip:1001@10.1.1.5>"]).status == 200
    assert not limits.banned
    assert limits._totals.get(NAT.host, 0) == 0


def test_failed_authentications_ban_at_the_switch(logged):
    """The registrar's throttle logs every failure in the fail2ban line and, at its
    limit, bans the source in the switch's ban list for its `block` time."""
    limits, clock = running()
    engine = FakeEngine(clock=clock)
    engine.limits = limits
    module, _ = registrar({"auth_failures": {"limit": 3, "window": 60, "block": 120}}, engine=engine)
    for _ in range(3):
        Phone("1001", "guess", source=NAT).register(module, ["<sip:1001@10.1.1.5>"])
    assert NAT.host in limits.banned
    assert limits.banned[NAT.host].until == 120
    lines = texts(logged)
    assert lines.count("phpvoip: auth failure from 198.51.100.7 user '1001'") == 3
    assert "phpvoip: ban 198.51.100.7 for 120s: 3 failed authentications in 60s" in lines
    clock.advance(121)
    assert NAT.host not in limits.banned


def test_exempt_sources_are_throttled_but_not_banned():
    """A peer that is exempt still gets the registrar's 403 block, never a ban."""
    limits, _ = running(LimitSettings(exempt=(ipaddress.ip_network(NAT.host),)))
    throttle = AuthThrottle(limits.clock, ThrottleSettings(limit=2), bans=limits)
    throttle.failed(NAT.host, "x")
    assert throttle.failed(NAT.host, "x")
    assert throttle.blocked(NAT.host) and not limits.banned


def test_user_names_cannot_forge_the_log_line(logged):
    """The peer's user name comes after the source, quoted and printable."""
    AuthThrottle(Clock()).failed("192.0.2.9", "x\nphpvoip: auth failure from 10.0.0.1 user y")
    line = texts(logged)[0]
    assert "\n" not in line
    assert fail2ban_hosts(logged) == ["192.0.2.9"]


def test_fail2ban_filter_matches_the_real_lines(logged):
    """The shipped fail2ban filter finds the source in both kinds of line, and in
    nothing else the switch logs about it."""
    limits, _ = running()
    send(limits, FLOODER, 31)
    throttle = AuthThrottle(Clock(), ThrottleSettings(limit=2), bans=limits)
    throttle.failed("2001:db8::7", "1001")
    throttle.failed("2001:db8::7", "1001")
    assert fail2ban_hosts(logged) == [FLOODER, "2001:db8::7", "2001:db8::7", "2001:db8::7"]


# -- caps ------------------------------------------------------------------------------------


def pending(host: str) -> SimpleNamespace:
    """A server transaction still waiting for our final answer (its request kept)."""
    return SimpleNamespace(source=Address("udp", host, 5060), request=object())


def test_pending_transactions_per_source_are_capped():
    """A source with `per_source_transactions` requests awaiting a final answer
    gets no more; once one is answered, the next goes on; others are unaffected."""
    limits, _ = running(LimitSettings(per_source_transactions=3))
    txs = [pending(FLOODER) for _ in range(3)]
    assert all(limits.admit_transaction(t) for t in txs)
    assert not limits.admit_transaction(pending(FLOODER))
    assert limits.admit_transaction(pending("192.0.2.1"))
    txs[0].request = None  # answered: the transaction let go of its request
    assert limits.admit_transaction(pending(FLOODER))
    assert limits.dropped["transactions"] == 1


def test_finished_transactions_are_swept():
    """The table forgets sources whose transactions are all answered."""
    limits, clock = running()
    done = pending(FLOODER)
    limits.admit_transaction(done)
    done.request = None
    clock.advance(limits.settings.window)  # not yet
    assert FLOODER in limits._pending
    clock.advance(limits.settings.window * 10)
    assert FLOODER not in limits._pending


def test_max_calls_answers_503_with_retry_after():
    """Beyond `max_calls` calls up, a new INVITE gets 503 with Retry-After; a call
    already up is untouched."""
    engine, transport, clock = make_engine(trunk(allow="0.0.0.0/0"))
    engine.limits = Limits(LimitSettings(max_calls=1, retry_after=7), clock, lambda: engine.modules)
    deliver(engine, invite())
    assert len(engine.calls) == 1
    deliver(engine, invite())
    busy = [r for r in responses(transport.sent) if r.status == 503]
    assert len(busy) == 1 and busy[0].get("Retry-After") == "7"
    assert busy[0].reason == "Too Many Calls"
    assert len(engine.calls) == 1 and engine.limits.dropped["calls"] == 1


def test_pending_invites_per_source_answer_503():
    """A source at its cap of unanswered requests gets 503 with Retry-After."""
    engine, transport, clock = make_engine(trunk(allow="0.0.0.0/0"))
    engine.limits = Limits(LimitSettings(per_source_transactions=2, exempt_peers=False), clock,
                           lambda: engine.modules)
    for _ in range(3):
        deliver(engine, invite())
    busy = [r for r in responses(transport.sent) if r.status == 503]
    assert len(busy) == 1 and busy[0].reason == "Too Many Requests From You"
    assert busy[0].get("Retry-After") == "5"


def test_tcp_connections_per_source_are_capped():
    """The TCP factory refuses a source's connection beyond `per_source_tcp`, and
    a banned source's at once; a closed connection frees its place."""
    transport = SipTransport(Clock())
    limits = Limits(LimitSettings(per_source_tcp=2), transport.clock)
    transport.gate = limits
    factory = transport.tcp_factory()
    peer = SimpleNamespace(host="192.0.2.8", port=40000)
    first, second = factory.buildProtocol(peer), factory.buildProtocol(peer)
    assert first is not None and second is not None
    assert factory.buildProtocol(peer) is None
    first.connectionLost(None)
    assert factory.buildProtocol(peer) is not None
    limits.ban("192.0.2.9")
    assert factory.buildProtocol(SimpleNamespace(host="192.0.2.9", port=1)) is None
    assert limits.dropped["tcp"] == 1 and limits.dropped["banned"] == 1


# -- the transport drops before parsing ----------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.messages: list = []

    def message_received(self, message, source) -> None:
        self.messages.append(message)

    def transport_error(self, address) -> None:
        pass


def test_banned_datagrams_are_never_parsed():
    """What a banned source sends reaches neither the parser (no parse error for
    garbage), nor the tap, nor the sink."""
    sink = Sink()
    transport = SipTransport(Clock(), sink)
    tapped: list = []
    transport.tap = SimpleNamespace(received=lambda *a: tapped.append(a), sent=lambda *a: None)
    limits = Limits(LimitSettings(), transport.clock)
    transport.gate = limits
    protocol = SimpleNamespace(local=None)
    good = bytes(parse(invite()))
    transport._datagram(protocol, good, "192.0.2.1", 5060)
    assert len(sink.messages) == 1 and len(tapped) == 1
    limits.ban("192.0.2.1")
    transport._datagram(protocol, good, "192.0.2.1", 5060)
    transport._datagram(protocol, b"\x00garbage", "192.0.2.1", 5060)
    assert len(sink.messages) == 1 and len(tapped) == 1 and transport.parse_errors == 0


# -- manhole and metrics -----------------------------------------------------------------------


CONFIG = """\
sip: {listen: [udp:127.0.0.1:25170]}
limits: {per_source: {requests: 5, window: 2}, ban: 60}
"""


def built(tmp_path):
    path = tmp_path / "phpvoip.yaml"
    path.write_text(CONFIG)
    return build_service(config.load(path), Clock())


def test_service_wires_the_limits(tmp_path):
    """build_service makes one Limits: the transport's gate, the engine's caps."""
    service = built(tmp_path)
    assert service.transport.gate is service.limits is service.engine.limits
    assert service.limits.settings.requests == 5


def test_manhole_bans_ban_unban(tmp_path, capsys):
    """bans() lists, ban(ip) bans for the configured time, unban(ip) lifts it."""
    service = built(tmp_path)
    names = namespace(service)
    assert {"bans", "ban", "unban"} <= set(HELPERS)
    names["bans"]()
    assert capsys.readouterr().out.splitlines() == [
        "no bans", "bans_active 0, bans_total 0, dropped_banned 0, dropped_rate 0, dropped_transactions 0, "
        "dropped_calls 0, dropped_tcp 0"]
    names["ban"]("192.0.2.66")
    assert "192.0.2.66: banned for 1m00s" in capsys.readouterr().out
    names["bans"]()
    table = capsys.readouterr().out
    assert re.search(r"192\.0\.2\.66\s+1m00s\s+0s ago\s+by hand \(manhole\)", table)
    names["unban"]("192.0.2.66")
    assert capsys.readouterr().out.strip() == "192.0.2.66: unbanned"
    assert str(inspect.bans(service.limits)) == "no bans"


def test_metrics_export_bans_and_drops(tmp_path):
    """phpvoip_bans_active and phpvoip_requests_dropped_total{reason}."""
    service = built(tmp_path)
    registry, _ = build_registry(service)
    send(service.limits, FLOODER, 8)
    samples = scrape(registry)
    assert samples[("phpvoip_bans_active", ())] == 1
    assert samples[("phpvoip_requests_dropped_total", (("reason", "rate"),))] == 1
    assert samples[("phpvoip_requests_dropped_total", (("reason", "banned"),))] == 2


def test_a_busy_reactor_still_retires_the_buckets():
    """Ticks missed while the reactor was busy retire their buckets all the same."""
    limits, clock = running()
    send(limits, FLOODER, 30)
    clock.advance(limits.settings.window * 3)  # one late call of the timer
    assert send(limits, FLOODER, 30) == 30
    assert not limits.banned


def test_a_banned_sources_tcp_frames_close_the_connection():
    """A frame from a banned source over TCP is not parsed: its connection closes."""
    sink = Sink()
    transport = SipTransport(Clock(), sink)
    limits = Limits(LimitSettings(), transport.clock)
    transport.gate = limits
    closed: list = []
    connection = SimpleNamespace(peer=Address("tcp", "192.0.2.1", 5060), local=None,
                                 close=lambda: closed.append(True))
    good = bytes(parse(invite()))
    transport._frame(connection, "message", good)
    assert len(sink.messages) == 1 and not closed
    limits.ban("192.0.2.1")
    transport._frame(connection, "message", good)
    assert len(sink.messages) == 1 and closed == [True]


def test_reload_applies_new_limits_and_keeps_bans(tmp_path):
    """A reload (SIGHUP, reload()) takes a changed `limits:` at once; bans stay."""
    service = built(tmp_path)
    service.limits.ban("192.0.2.66")
    (tmp_path / "phpvoip.yaml").write_text(CONFIG.replace("requests: 5", "requests: 50"))
    assert service.reload()
    assert service.limits.settings.requests == 50
    assert "192.0.2.66" in service.limits.banned
