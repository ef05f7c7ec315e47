"""The outside line against a real upstream: Kamailio as the carrier's registrar and
proxy (tests/interop/kamailio/upstream.cfg), challenging with digest.

The switch runs in this process (so the tests can read the line's state); Kamailio
and the SIPp phones run as child processes on loopback ports picked at run time, and
are stopped at teardown whatever happens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task

from tests.interop.conftest import sipp_args, wait_idle
from tests.interop.kamailio_upstream import DOMAIN, PASSWORD, Kamailio
from tests.support import LOOPBACK, Switch, free_port, require_program

pytestmark = pytest.mark.interop

NUMBER = "2005"


@pytest_twisted.async_yield_fixture
async def upstream(reactor: Any, tmp_path: Path):
    """``await upstream(*defines)`` starts a Kamailio; all are stopped at teardown."""
    require_program("kamailio")
    started: list[Kamailio] = []

    async def start(*defines: str) -> Kamailio:
        kamailio = Kamailio(reactor, tmp_path, free_port(), defines)
        started.append(kamailio)
        await kamailio.start()
        return kamailio

    yield start
    for kamailio in started:
        await kamailio.stop()


def line_config(kamailio: Kamailio, password: str = PASSWORD, extra: str = "", **keys: Any) -> str:
    lines = "".join(f"    {key}: {value}\n" for key, value in keys.items())
    return (
        "modules:\n"
        "  - type: channel\n"
        "    name: carrier\n"
        f'    user: "{NUMBER}@{DOMAIN}"\n'
        f"    password: {password}\n"
        f"    server: {LOOPBACK}:{kamailio.port}\n" + lines + extra
    )


def channel_of(service: Any, name: str = "carrier") -> Any:
    return next(m for m in service.engine.modules if m.name == name)


async def wait_state(reactor: Any, line: Any, state: str, timeout: float) -> None:
    deadline = reactor.seconds() + timeout
    while line.state != state:
        if reactor.seconds() > deadline:
            raise AssertionError(f"line stayed {line.state!r}, wanted {state!r}: {line.snapshot()}")
        await task.deferLater(reactor, 0.1, lambda: None)


# -- registration ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_registers_refreshes_and_survives_a_restart(reactor, switch, upstream):
    """Against Kamailio (SHA-256, qop=auth): the line registers its Contact, refreshes
    with the same Call-ID and higher CSeq, registers again after Kamailio restarts
    and forgets it, and unregisters (Expires 0) when stopped."""
    kamailio = await upstream("WITH_SHA256")
    service = await switch(line_config(kamailio, expires=10, keepalive=2))
    line = channel_of(service)
    await wait_state(reactor, line, "registered", 10)
    first = kamailio.registrations()[0]
    assert first["aor"] == f"sip:{NUMBER}@{DOMAIN}"
    assert first["contact"] == f"<sip:{NUMBER}@{LOOPBACK}:{service.port}>"
    assert line.registration.granted == 10

    await kamailio.wait_for(lambda: len(kamailio.registrations()) >= 2, 10, "a refresh")
    refresh = kamailio.registrations()[1]
    assert refresh["callid"] == first["callid"] and int(refresh["cseq"]) > int(first["cseq"])
    # The refresh carried credentials up front: no new challenge was needed.
    assert len(kamailio.lines("CHALLENGE REGISTER")) == 1

    await kamailio.stop()
    await kamailio.start()  # same port, no bindings
    await kamailio.wait_for(lambda: kamailio.registrations(), 20, "a registration after the restart")
    await wait_state(reactor, line, "registered", 10)
    again = kamailio.registrations()[0]
    assert again["callid"] == first["callid"] and int(again["cseq"]) > int(refresh["cseq"])

    await line.stop()  # what the switch does to its modules when it stops
    await kamailio.wait_for(lambda: kamailio.registrations()[-1]["expires"] == "0", 5, "the unregister")
    unregister = kamailio.registrations()[-1]
    assert unregister["expires"] == "0" and line.state == "unregistered"


@pytest_twisted.ensureDeferred
async def test_real_switch_process_unregisters_on_sigterm(reactor, upstream, tmp_path):
    """The real `twistd -n phpvoip` with a ``type: channel`` config registers the
    line at Kamailio, and on SIGTERM unregisters it (Expires 0) before it exits."""
    kamailio = await upstream("WITH_SHA256")
    port = free_port()
    workdir = tmp_path / "switch"
    workdir.mkdir()
    process = Switch(workdir, Switch.config_for(port, line_config(kamailio)), port)
    try:
        process.start()  # bounded; Kamailio runs on by itself meanwhile
        await kamailio.wait_for(lambda: kamailio.registrations(), 10, "the switch's registration")
        process.stop()
        await kamailio.wait_for(
            lambda: kamailio.registrations()[-1]["expires"] == "0", 5, "the unregister at shutdown"
        )
    finally:
        process.stop()
    first, last = kamailio.registrations()[0], kamailio.registrations()[-1]
    assert first["contact"] == f"<sip:{NUMBER}@{LOOPBACK}:{port}>"
    assert last["callid"] == first["callid"] and int(last["cseq"]) > int(first["cseq"])


@pytest.mark.parametrize("defines", [(), ("WITH_NOQOP",)], ids=["md5-qop", "md5-no-qop"])
@pytest_twisted.ensureDeferred
async def test_registers_with_md5_with_and_without_qop(reactor, switch, upstream, defines):
    """Kamailio's MD5 challenge with qop=auth, and without qop (RFC 2069 style),
    is answered and accepted."""
    kamailio = await upstream(*defines)
    service = await switch(line_config(kamailio))
    await wait_state(reactor, channel_of(service), "registered", 10)
    assert len(kamailio.lines("CHALLENGE REGISTER")) == 1


@pytest_twisted.ensureDeferred
async def test_follows_423_min_expires(reactor, switch, upstream):
    """Kamailio answering 423 with Min-Expires: 120 gets a REGISTER asking 120."""
    kamailio = await upstream("WITH_423", "MIN_EXPIRES=120")
    service = await switch(line_config(kamailio, expires=60))
    line = channel_of(service)
    await wait_state(reactor, line, "registered", 10)
    assert line.registration.expires == 120 and line.registration.granted == 120
    assert kamailio.registrations()[0]["expires"] == "120"


@pytest_twisted.ensureDeferred
async def test_wrong_password_ends_in_failed_auth_and_goes_quiet(reactor, switch, upstream):
    """A refused password: the line goes to failed-auth after two REGISTERs and sends
    no more during the following seconds (the next try is minutes away)."""
    kamailio = await upstream()
    service = await switch(line_config(kamailio, password="not-the-password"))
    line = channel_of(service)
    await wait_state(reactor, line, "failed-auth", 10)
    await task.deferLater(reactor, 5.0, lambda: None)
    challenges = kamailio.lines("CHALLENGE REGISTER")
    assert len(challenges) == 2, challenges
    assert kamailio.registrations() == []
    snapshot = line.snapshot()
    assert snapshot["counters"]["registers_sent"] == 2
    assert snapshot["registration"]["next_attempt_in"] > 200


@pytest_twisted.ensureDeferred
async def test_two_lines_one_failing(reactor, switch, upstream):
    """Two lines on one switch: the one with a wrong password fails alone, the
    other registers and stays registered."""
    kamailio = await upstream()
    second = (
        "  - type: channel\n"
        "    name: other\n"
        f'    user: "2006@{DOMAIN}"\n'
        "    password: wrong\n"
        f"    server: {LOOPBACK}:{kamailio.port}\n"
    )
    service = await switch(line_config(kamailio, extra=second))
    await wait_state(reactor, channel_of(service), "registered", 10)
    await wait_state(reactor, channel_of(service, "other"), "failed-auth", 10)
    assert [r["aor"] for r in kamailio.registrations()] == [f"sip:{NUMBER}@{DOMAIN}"]


# -- calls ---------------------------------------------------------------------------------------

OFFICE_PASSWORD = "secret1"


def office_config(routes: str) -> str:
    """The switch side: a registrar with extension 1001 (MD5 only: SIPp answers only
    the first challenge), and the route table."""
    return (
        "  - type: registrar\n"
        f"    users: {{'1001': {{password: {OFFICE_PASSWORD}}}}}\n"
        "    algorithms: [MD5]\n"
        "routes:\n" + routes
    )


async def register_phone(
    sipp: str, peers: Any, port: int, target: int, user: str, domain: str, password: str
) -> None:
    """A SIPp phone registers `user` at `target` from `port` and exits."""
    args = sipp_args(sipp, "channel_register.xml", port, target, "-s", user, "-key", "domain", domain,
                     "-au", user, "-ap", password, "-m", "1", "-timeout", "10s", "-timeout_error")
    phone = peers.start(args, deadline=20)
    assert await phone.wait() == 0, phone.output


def answer_args(sipp: str, port: int, user: str) -> list[str]:
    return sipp_args(sipp, "channel_phone_answer.xml", port, None, "-s", user, "-m", "1", "-trace_msg")


def call_args(sipp: str, target: int, caller: str, callee: str, domain: str, password: str) -> list[str]:
    return sipp_args(sipp, "channel_phone_call.xml", free_port(), target, "-s", callee,
                     "-key", "caller", caller, "-key", "domain", domain, "-au", caller, "-ap", password,
                     "-m", "1", "-timeout", "20s", "-timeout_error", "-trace_msg")


@pytest_twisted.ensureDeferred
async def test_call_in_from_the_upstream_reaches_a_registered_phone(reactor, sipp, switch, upstream, peers):
    """Phone 3001 at Kamailio calls the line's number; Kamailio sends it to the
    switch's registered Contact; the route ``* 2005 → 2005 1001`` takes it to
    extension 1001, a SIPp phone registered at the switch's registrar, which
    answers; the caller hangs up."""
    kamailio = await upstream()
    routes = f"  - {{in_from: '*', in_to: '{NUMBER}', out_from: '{NUMBER}', out_to: '1001'}}\n"
    config = "calls: {keepalive_interval: 0}\n" + line_config(kamailio, extra=office_config(routes))
    service = await switch(config)
    line = channel_of(service)
    await wait_state(reactor, line, "registered", 10)
    office_port = free_port()
    await register_phone(sipp, peers, office_port, service.port, "1001", LOOPBACK, OFFICE_PASSWORD)
    await register_phone(sipp, peers, free_port(), kamailio.port, "3001", DOMAIN, PASSWORD)

    callee = peers.start(answer_args(sipp, office_port, "1001"), deadline=30)
    caller = peers.start(call_args(sipp, kamailio.port, "3001", NUMBER, DOMAIN, PASSWORD), deadline=30)
    assert await caller.wait() == 0, caller.output + kamailio.log()[-3000:]
    assert await callee.wait() == 0, callee.output
    assert line.counters.calls_in == 1
    # The switch's 200 carried Kamailio's Record-Route back, so the phone's BYE
    # came through Kamailio with a Route (the ACK of the 407 has none, rightly).
    byes = kamailio.lines("IN-DIALOG BYE")
    assert byes and all("route <null>" not in line for line in byes), byes
    counts = await wait_idle(reactor, service.engine, timeout=5)
    assert counts["calls"] == counts["legs"] == counts["dialogs"] == 0, counts
    assert service.engine.records[-1].status == 200


@pytest_twisted.ensureDeferred
async def test_call_out_through_the_line_answers_the_407(reactor, sipp, switch, upstream, peers):
    """Extension 1001 (registered at the switch) calls 3002; the route puts the
    line's number in From; the line carries the call to Kamailio in its domain,
    answers Kamailio's 407 on the INVITE, and phone 3002 registered at Kamailio
    answers; ACK and BYE follow Kamailio's Record-Route."""
    kamailio = await upstream()
    routes = f"  - {{in_from: '*', in_to: '3002', out_from: '{NUMBER}'}}\n"
    config = "calls: {keepalive_interval: 0}\n" + line_config(kamailio, extra=office_config(routes))
    service = await switch(config)
    line = channel_of(service)
    await wait_state(reactor, line, "registered", 10)
    phone_port = free_port()
    await register_phone(sipp, peers, phone_port, kamailio.port, "3002", DOMAIN, PASSWORD)

    callee = peers.start(answer_args(sipp, phone_port, "3002"), deadline=30)
    caller = peers.start(
        call_args(sipp, service.port, "1001", "3002", LOOPBACK, OFFICE_PASSWORD), deadline=30
    )
    assert await caller.wait() == 0, caller.output + kamailio.log()[-3000:]
    assert await callee.wait() == 0, callee.output
    invites = kamailio.lines("CHALLENGE INVITE")
    assert len(invites) == 1 and f"sip:{NUMBER}@{DOMAIN} -> sip:3002@{DOMAIN}" in invites[0]
    accepted = kamailio.lines("accepted")
    assert any(f"sip:{NUMBER}@{DOMAIN} -> sip:3002@{DOMAIN} accepted" in a for a in accepted), accepted
    # ACK and BYE followed the route set Kamailio recorded (§12.2.1.1).
    in_dialog = kamailio.lines("IN-DIALOG")
    assert in_dialog and all("route <null>" not in line for line in in_dialog), in_dialog
    assert line.counters.calls_out == 1
    # The challenged INVITE's client transaction rightly waits out Timer D (32 s
    # over UDP, §17.1.1.2), so only calls, legs and dialogs must be gone.
    counts = await wait_idle(reactor, service.engine, timeout=5)
    assert counts["calls"] == counts["legs"] == counts["dialogs"] == 0, counts
