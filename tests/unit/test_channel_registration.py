"""The outside line's registration client: requests, digest, refresh, 423, backoff,
failed-auth and unregistering, on a `Clock` against a fake upstream."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from phpvoip.modules.line_state import (
    TRANSITIONS,
    LineCounters,
    LineState,
    LineStateError,
    Registration,
    RegistrationPolicy,
    header_lines,
)
from phpvoip.sip.authheaders import parse_credentials
from phpvoip.sip.digest import DigestClient
from phpvoip.sip.uri import URI
from tests.unit.channel_fakes import REALM, SERVER, FakeEngine, Upstream

AOR = URI("sip", "2005", REALM)
CONTACT = URI("sip", "2005", "127.0.0.1", 5060)


@pytest.fixture
def capture_log():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def make(
    engine: FakeEngine | None = None,
    password: str | None = "secret",
    random: float = 0.5,
    **policy,
) -> tuple[Registration, FakeEngine]:
    engine = engine or FakeEngine()
    credentials = DigestClient("2005", password) if password is not None else None
    registration = Registration(
        AOR,
        SERVER,
        CONTACT,
        credentials,
        engine.clock,
        engine.send_request,
        RegistrationPolicy(**policy),
        LineCounters(),
        random=lambda: random,
        name="carrier",
    )
    return registration, engine


def registered(upstream_kw: dict | None = None, **kw) -> tuple[Registration, FakeEngine, Upstream]:
    registration, engine = make(**kw)
    upstream = Upstream(engine.clock, **(upstream_kw or {}))
    registration.start()
    upstream.serve(engine)
    assert registration.state == LineState.REGISTERED
    return registration, engine, upstream


# -- the REGISTER itself -----------------------------------------------------------------


def test_first_register_has_the_rfc3261_10_2_fields():
    """The first REGISTER: Request-URI the domain, To/From the AOR with a From tag,
    our Contact, Expires, CSeq 1, no Via and no credentials yet."""
    registration, engine = make()
    registration.start()
    assert registration.state == LineState.REGISTERING
    sent = engine.last()
    request = sent.request
    assert sent.destination == SERVER
    assert str(request.uri) == "sip:carol.example"
    assert str(request.to.uri) == "sip:2005@carol.example" and request.to.tag is None
    assert str(request.from_.uri) == "sip:2005@carol.example" and request.from_.tag
    assert str(request.contact[0].uri) == "sip:2005@127.0.0.1:5060"
    assert request.get("Expires") == "3600"
    assert request.cseq.seq == 1 and request.cseq.method == "REGISTER"
    assert request.call_id.endswith("@127.0.0.1")
    assert not request.has("Via") and not request.has("Authorization")


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_401_is_answered_with_qop_auth(algorithm):
    """A 401 (SHA-256 or MD5, qop=auth) is answered once with credentials the
    server accepts: cnonce, nc=00000001, CSeq + 1, same Call-ID and From tag."""
    registration, engine = make()
    upstream = Upstream(engine.clock, algorithms=(algorithm,))
    registration.start()
    first = engine.last()
    upstream.respond(first)
    second = engine.last().request
    assert second.cseq.seq == first.request.cseq.seq + 1
    assert second.call_id == first.request.call_id and second.from_.tag == first.request.from_.tag
    credentials = parse_credentials(second.get("Authorization"))
    assert credentials.qop == "auth" and credentials.nc == "00000001" and credentials.cnonce
    assert credentials.params["uri"] == "sip:carol.example" and credentials.params["username"] == "2005"
    assert (credentials.params.get("algorithm") or "MD5") == algorithm
    upstream.respond(engine.last())
    assert upstream.outcomes == ["ok"]
    assert registration.state == LineState.REGISTERED
    assert registration.counters.challenges_answered == 1


def test_407_is_answered_with_proxy_authorization():
    """A registrar behind a proxy that answers 407 gets Proxy-Authorization."""
    registration, engine = make()
    upstream = Upstream(engine.clock, proxy=True, algorithms=("MD5",))
    registration.start()
    upstream.serve(engine)
    request = engine.registers()[-1]
    assert request.has("Proxy-Authorization") and not request.has("Authorization")
    assert upstream.outcomes == ["ok"] and registration.state == LineState.REGISTERED


def test_server_without_qop_gets_the_rfc2069_answer():
    """An old server offering no qop gets credentials without qop, nc or cnonce,
    and accepts them."""
    registration, engine = make()
    upstream = Upstream(engine.clock, qop=(), algorithms=("MD5",))
    registration.start()
    upstream.serve(engine)
    credentials = parse_credentials(engine.registers()[-1].get("Authorization"))
    assert credentials.qop is None and credentials.nc is None and credentials.cnonce is None
    assert upstream.outcomes == ["ok"] and registration.state == LineState.REGISTERED


def test_challenge_lines_are_read_unsplit():
    """Challenge values hold commas: each header line is one value, and the line
    answers the strongest of several challenges."""
    registration, engine = make()
    registration.start()
    lines = (
        ("WWW-Authenticate", 'Digest realm="a", nonce="n1", qop="auth"'),
        ("www-authenticate", 'Digest realm="a", nonce="n2", algorithm=SHA-256'),
    )
    response = engine.last().request.response(401)
    for name, value in lines:
        response.add(name, value)
    assert header_lines(response, "WWW-Authenticate") == [value for _, value in lines]
    engine.last().reply(response)
    assert 'nonce="n2"' in engine.last().request.get("Authorization")


# -- refresh ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("random", "fraction"), [(0.0, 0.55), (0.5, 0.60), (1.0, 0.65)])
def test_refresh_at_sixty_percent_with_jitter(random, fraction):
    """The refresh goes out at 60% of the granted time, ±5% from the random source."""
    registration, engine, _ = registered(random=random, expires=1000)
    count = len(engine.registers())
    engine.clock.advance(1000 * fraction - 0.01)
    assert len(engine.registers()) == count
    engine.clock.advance(0.02)
    assert len(engine.registers()) == count + 1
    assert registration.state == LineState.REFRESHING


def test_refresh_follows_the_granted_time_of_our_contact():
    """The server's grant (our Contact's expires parameter) sets the refresh, not
    what we asked for."""
    registration, engine, _ = registered(upstream_kw={"grant": 100}, expires=3600)
    assert registration.granted == 100
    count = len(engine.registers())
    engine.clock.advance(61)
    assert len(engine.registers()) == count + 1


def test_grant_from_expires_header_when_contact_has_none():
    """Without an expires parameter on our Contact, the Expires header counts."""
    registration, engine = make(password=None)
    registration.start()
    engine.last().answer(200, (("Expires", "120"),))
    assert registration.granted == 120 and registration.state == LineState.REGISTERED


def test_refreshes_keep_call_id_and_raise_cseq_and_reuse_the_nonce():
    """Every refresh: same Call-ID and From tag, CSeq one higher, credentials sent
    up front with the nonce count increased (no extra round trip)."""
    registration, engine, upstream = registered(expires=100)
    for _ in range(3):
        engine.clock.advance(61)
        upstream.serve(engine)
        assert registration.state == LineState.REGISTERED
    requests = engine.registers()
    assert len({r.call_id for r in requests}) == 1
    assert len({r.from_.tag for r in requests}) == 1
    assert [r.cseq.seq for r in requests] == list(range(1, len(requests) + 1))
    assert len(requests) == 5  # initial, answered challenge, three refreshes
    ncs = [parse_credentials(r.get("Authorization")).nc for r in requests[1:]]
    assert ncs == ["00000001", "00000002", "00000003", "00000004"]
    assert upstream.outcomes == ["ok"] * 4


def test_refresh_with_a_forgotten_nonce_reauthenticates():
    """A server that forgot our nonce (restart) challenges the refresh; the line
    answers the new challenge and stays registered."""
    registration, engine, upstream = registered(expires=100)
    engine.clock.advance(61)
    fresh = Upstream(engine.clock)
    fresh.digest = type(upstream.digest)(REALM, b"x" * 32, engine.clock)  # another secret
    fresh.serve(engine)
    assert fresh.outcomes == ["invalid", "ok"]
    assert registration.state == LineState.REGISTERED


# -- 423 -------------------------------------------------------------------------------------


def test_423_min_expires_is_followed_and_kept():
    """423 with Min-Expires: the REGISTER is sent again at once with that expiry,
    and refreshes keep asking for it (§10.2.8)."""
    registration, engine = make(password=None, expires=60)
    registration.start()
    engine.last().answer(423, (("Min-Expires", "300"),))
    assert registration.state == LineState.REGISTERING
    assert engine.last().request.get("Expires") == "300"
    engine.last().answer(200, (("Expires", "300"),))
    engine.clock.advance(300)
    assert engine.last().request.get("Expires") == "300"


def test_423_without_usable_min_expires_backs_off():
    """A 423 that names no larger minimum cannot be satisfied: retry later."""
    registration, engine = make(password=None, expires=600, random=0.0)
    registration.start()
    engine.last().answer(423, (("Min-Expires", "60"),))
    assert registration.state == LineState.RETRYING
    assert len(engine.registers()) == 1


# -- backoff and failed-auth ----------------------------------------------------------------


def test_backoff_doubles_from_5s_and_caps_at_5min():
    """A server that never answers: waits 5, 10, 20, ... capped at 300 s."""
    registration, engine = make(random=0.0)
    registration.start()
    waits = []
    for _ in range(9):
        engine.last().timeout()
        assert registration.state == LineState.RETRYING
        waits.append(registration.next_attempt - engine.clock.seconds())
        engine.clock.advance(waits[-1])
        assert registration.state == LineState.REGISTERING
    assert waits == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert registration.counters.timeouts == 9


def test_backoff_jitter_only_shortens():
    """Jitter takes up to 20% off a wait and never adds to it."""
    registration, _ = make(random=1.0)
    assert registration.backoff(1) == pytest.approx(4.0)
    assert registration.backoff(20) == pytest.approx(240.0)


def test_success_resets_the_backoff():
    """After a success the next failure waits the shortest time again."""
    registration, engine = make(password=None, random=0.0, expires=100)
    registration.start()
    for _ in range(3):
        engine.last().timeout()
        engine.clock.advance(registration.next_attempt - engine.clock.seconds())
    engine.last().answer(200)
    assert registration.failures == 0
    engine.clock.advance(60)
    engine.last().answer(503, reason="Service Unavailable")
    assert registration.next_attempt - engine.clock.seconds() == 5


def test_retry_after_is_honoured_up_to_the_cap():
    """A 503 with Retry-After waits that long (never beyond retry_max)."""
    registration, engine = make(password=None, random=0.0)
    registration.start()
    engine.last().answer(503, (("Retry-After", "120"),))
    assert registration.next_attempt - engine.clock.seconds() == 120
    engine.clock.advance(120)
    engine.last().answer(503, (("Retry-After", "99999"),))
    assert registration.next_attempt - engine.clock.seconds() == 300


def test_retry_after_that_is_not_ascii_digits_is_ignored():
    """A Retry-After of "²" (a digit to str.isdigit, not to int) is no delay: the
    line backs off as for a plain 503 instead of failing on the value."""
    registration, engine = make(password=None, random=0.0)
    registration.start()
    engine.last().answer(503, (("Retry-After", "\u00b2"),))
    assert registration.next_attempt - engine.clock.seconds() == 5


def test_wrong_password_goes_to_failed_auth_and_stays_quiet():
    """Refused credentials (a new challenge right after our answer): failed-auth,
    two REGISTERs per 5-minute wait, so at most a few a minute over an hour."""
    registration, engine = make(password="wrong", random=0.0)
    upstream = Upstream(engine.clock, password="secret")
    registration.start()
    upstream.serve(engine)
    assert registration.state == LineState.FAILED_AUTH
    assert len(engine.registers()) == 2
    per_minute = []
    for _ in range(60):
        before = len(engine.registers())
        engine.clock.advance(60)
        upstream.serve(engine)
        per_minute.append(len(engine.registers()) - before)
    assert max(per_minute) <= 2
    assert sum(per_minute) <= 2 * 60 // 4  # one attempt per >= 4 min (300 s less 20% jitter)
    assert registration.state == LineState.FAILED_AUTH
    assert registration.counters.auth_refusals == 1 + sum(per_minute) // 2


def test_failed_auth_logs_once_per_attempt(capture_log):
    """Each refused attempt logs one warning, nothing per REGISTER."""
    registration, engine = make(password="guess-4711", random=0.0)
    upstream = Upstream(engine.clock, password="secret")
    registration.start()
    upstream.serve(engine)
    engine.clock.advance(300)
    upstream.serve(engine)
    warnings = [e for e in capture_log if e.get("log_level").name == "warn"]
    assert len(warnings) == 2
    assert all("guess-4711" not in repr(e) for e in capture_log)


def test_403_goes_to_failed_auth():
    """403 Forbidden to a REGISTER is a refusal, not a transient failure."""
    registration, engine = make(random=0.0)
    registration.start()
    engine.last().answer(403)
    assert registration.state == LineState.FAILED_AUTH
    assert registration.next_attempt - engine.clock.seconds() == 300


def test_challenge_without_password_is_a_refusal():
    """A line with no password that is challenged cannot get further."""
    registration, engine = make(password=None)
    registration.start()
    Upstream(engine.clock).serve(engine)
    assert registration.state == LineState.FAILED_AUTH and len(engine.registers()) == 1


def test_unanswerable_challenge_is_a_refusal():
    """A challenge in a scheme or algorithm we do not speak ends in failed-auth."""
    registration, engine = make()
    registration.start()
    engine.last().answer(401, (("WWW-Authenticate", 'Digest realm="r", nonce="n", algorithm=SHA-1'),))
    assert registration.state == LineState.FAILED_AUTH and len(engine.registers()) == 1


def test_endless_stale_challenges_are_bounded():
    """A server that says stale=true to every answer gets two answers per attempt."""
    registration, engine = make()
    registration.start()
    for n in range(3):
        engine.last().answer(
            401, (("WWW-Authenticate", f'Digest realm="r", nonce="n{n}", qop="auth", stale=true'),)
        )
    assert registration.state == LineState.FAILED_AUTH and len(engine.registers()) == 3


def test_failed_auth_tries_again_with_a_clean_slate():
    """The attempt after failed-auth starts without the refused nonce, so a fixed
    password registers in two REGISTERs."""
    registration, engine = make(password="wrong", random=0.0)
    upstream = Upstream(engine.clock, password="secret")
    registration.start()
    upstream.serve(engine)
    registration.credentials._password = "secret"  # the operator fixed it
    engine.clock.advance(300)
    assert not engine.last().request.has("Authorization")
    upstream.serve(engine)
    assert registration.state == LineState.REGISTERED


# -- keepalive loss, stop -----------------------------------------------------------------


def test_lost_server_registers_again_at_once():
    """When keepalives find the server gone, a registered line re-registers now."""
    registration, engine, _ = registered()
    count = len(engine.registers())
    registration.lost()
    assert registration.state == LineState.REGISTERING and len(engine.registers()) == count + 1
    engine.last().timeout()
    assert registration.state == LineState.RETRYING


def test_stop_unregisters_with_expires_zero():
    """stop() sends the binding's REGISTER with Expires: 0 (credentials up front)
    and fires once the server answers."""
    registration, engine, upstream = registered()
    done = registration.stop()
    assert registration.state == LineState.UNREGISTERING
    request = engine.last().request
    assert request.get("Expires") == "0" and str(request.contact[0].uri) == str(CONTACT)
    assert request.has("Authorization")
    assert not done.called
    upstream.serve(engine)
    assert done.called and registration.state == LineState.UNREGISTERED
    assert not engine.clock.getDelayedCalls()


def test_stop_answers_one_challenge_on_the_way_out():
    """An Expires: 0 that is challenged is answered once."""
    registration, engine = make(password="secret")
    upstream = Upstream(engine.clock)
    registration.start()
    upstream.serve(engine)
    upstream.digest = type(upstream.digest)(REALM, b"y" * 32, engine.clock)  # forgets our nonce
    done = registration.stop()
    upstream.serve(engine)
    assert done.called and upstream.outcomes[-2:] == ["invalid", "ok"]


def test_stop_is_bounded_when_the_server_is_silent():
    """stop() fires after the unregister timeout if no answer comes; a late
    answer changes nothing."""
    registration, engine, _ = registered(unregister_timeout=2.0)
    done = registration.stop()
    engine.clock.advance(1.9)
    assert not done.called
    engine.clock.advance(0.2)
    assert done.called and registration.state == LineState.UNREGISTERED
    engine.last().answer(200)
    assert registration.state == LineState.UNREGISTERED


def test_stop_while_retrying_sends_nothing():
    """A line that holds no binding stops at once, timers cancelled."""
    registration, engine = make()
    registration.start()
    engine.last().timeout()
    done = registration.stop()
    assert done.called and registration.state == LineState.UNREGISTERED
    assert len(engine.registers()) == 1 and not engine.clock.getDelayedCalls()


def test_stop_twice_waits_for_the_same_unregister():
    """A second stop() while unregistering sends nothing more and fires too."""
    registration, engine, upstream = registered()
    first, second = registration.stop(), registration.stop()
    assert len(engine.pending()) == 1
    upstream.serve(engine)
    assert first.called and second.called


def test_answer_to_a_superseded_register_is_ignored():
    """stop() during the first REGISTER: that REGISTER's late 200 is ignored, the
    unregister's answer ends it."""
    registration, engine = make(password=None)
    registration.start()
    first = engine.last()
    done = registration.stop()
    first.answer(200)
    assert registration.state == LineState.UNREGISTERING
    engine.last().answer(200)
    assert done.called and registration.state == LineState.UNREGISTERED


def test_start_again_after_stop_keeps_call_id():
    """A stopped line started again goes on with the same Call-ID and higher CSeq."""
    registration, engine, upstream = registered()
    registration.stop()
    upstream.serve(engine)
    registration.start()
    requests = engine.registers()
    assert requests[-1].call_id == requests[0].call_id
    assert requests[-1].cseq.seq == len(requests)


def test_send_failure_is_treated_as_no_answer():
    """A sender that fails instead of answering 503 puts the line in retrying."""
    clock = Clock()

    def broken(request, destination):
        raise OSError("no route")

    registration = Registration(AOR, SERVER, CONTACT, None, clock, broken, random=lambda: 0.0)
    registration.start()
    assert registration.state == LineState.RETRYING and registration.counters.timeouts == 1


# -- the table ----------------------------------------------------------------------------------


def test_impossible_event_raises_naming_state_and_event():
    """An event the state has no transition for is a bug and says so."""
    registration, _ = make()
    with pytest.raises(LineStateError, match=r"'ok'.*'unregistered'"):
        registration._transition("ok")


def test_every_state_is_reachable_and_left():
    """The table has no dead states: every state is entered and (but the first)
    left by some event."""
    states = {v for k, v in vars(LineState).items() if k.isupper()}
    entered = set(TRANSITIONS.values())
    left = {state for state, _ in TRANSITIONS}
    assert states == entered | {LineState.UNREGISTERED}
    assert states == left


def test_snapshot_reports_state_and_times():
    """The manhole's view: state, expiry left, counters-worthy fields."""
    registration, engine, _ = registered(expires=100)
    engine.clock.advance(10)
    snap = registration.snapshot()
    assert snap["state"] == "registered" and snap["granted"] == 100
    assert snap["expires_in"] == pytest.approx(90)
    assert snap["next_attempt_in"] == pytest.approx(50)
    assert "secret" not in repr(snap)


def test_coming_up_logs_at_info_and_refreshes_at_debug(capture_log):
    """The operator sees the line come up once; routine refreshes stay at debug."""
    registration, engine, upstream = registered(expires=100)
    for _ in range(3):
        engine.clock.advance(61)
        upstream.serve(engine)
    registered_events = [e for e in capture_log if "registered at" in e.get("log_format", "")]
    assert [e["log_level"].name for e in registered_events] == ["info", "debug", "debug", "debug"]
