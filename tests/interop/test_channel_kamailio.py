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
from tests.support import LOOPBACK, free_port, require_program

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


async def register_phone(sipp: str, peers: Any, kamailio: Kamailio, user: str, port: int) -> None:
    """A SIPp phone registers `user` at Kamailio from `port` and exits."""
    args = sipp_args(sipp, "channel_register.xml", port, kamailio.port, "-s", user, "-au", user,
                     "-ap", PASSWORD, "-m", "1", "-timeout", "10s", "-timeout_error")
    phone = peers.start(args, deadline=20)
    assert await phone.wait() == 0, phone.output


@pytest_twisted.ensureDeferred
async def test_call_in_from_the_upstream_reaches_the_switch_side(reactor, sipp, switch, upstream, peers):
    """Phone 3001 at Kamailio calls the line's number; Kamailio sends it to the
    switch's registered Contact; the route ``* 2005 → 2005 1001`` takes it to
    extension 1001 (a SIPp UAS behind a trunk), and it is answered and hung up."""
    kamailio = await upstream()
    uas_port = free_port()
    trunk = (
        "  - type: trunk\n"
        "    name: office\n"
        f"    address: {LOOPBACK}:{uas_port}\n"
        "    numbers: ['1001']\n"
        "routes:\n"
        f"  - {{in_from: '*', in_to: '{NUMBER}', out_from: '{NUMBER}', out_to: '1001'}}\n"
    )
    service = await switch("calls: {keepalive_interval: 0}\n" + line_config(kamailio, extra=trunk))
    line = channel_of(service)
    await wait_state(reactor, line, "registered", 10)
    await register_phone(sipp, peers, kamailio, "3001", free_port())

    uas = peers.start(sipp_args(sipp, "uas", uas_port, None, "-m", "1"), deadline=30)
    phone = peers.start(
        sipp_args(sipp, "channel_phone_call.xml", free_port(), kamailio.port, "-s", NUMBER, "-au", "3001",
                  "-ap", PASSWORD, "-m", "1", "-timeout", "20s", "-timeout_error"),
        deadline=30,
    )
    assert await phone.wait() == 0, phone.output + kamailio.log()[-3000:]
    assert await uas.wait() == 0, uas.output
    assert line.counters.calls_in == 1
    # The switch's 200 carried Kamailio's Record-Route back, so the phone's BYE
    # came through Kamailio with a Route (the ACK of the 407 has none, rightly).
    byes = kamailio.lines("IN-DIALOG BYE")
    assert byes and all("route <null>" not in line for line in byes), byes
    counts = await wait_idle(reactor, service.engine)
    assert not any(counts.values()), counts
    record = service.engine.records[-1]
    assert record.status == 200


@pytest_twisted.ensureDeferred
async def test_call_out_through_the_line_answers_the_407(reactor, sipp, switch, upstream, peers):
    """A phone on the switch's side calls 3002; the route puts the line's number in
    From, the line carries it to Kamailio, answers Kamailio's 407 on the INVITE, and
    phone 3002 registered at Kamailio answers."""
    kamailio = await upstream()
    office_port = free_port()
    trunk = (
        "  - type: trunk\n"
        "    name: office\n"
        f"    address: {LOOPBACK}:{office_port}\n"
        "    numbers: ['1001']\n"
        "routes:\n"
        f"  - {{in_from: '*', in_to: '3002', out_from: '{NUMBER}'}}\n"
    )
    service = await switch("calls: {keepalive_interval: 0}\n" + line_config(kamailio, extra=trunk))
    line = channel_of(service)
    await wait_state(reactor, line, "registered", 10)
    phone_port = free_port()
    await register_phone(sipp, peers, kamailio, "3002", phone_port)

    callee = peers.start(
        sipp_args(sipp, "channel_phone_answer.xml", phone_port, None, "-s", "3002", "-m", "1"), deadline=30
    )
    caller = peers.start(
        sipp_args(sipp, "uac", office_port, service.port, "-s", "3002", "-m", "1",
                  "-timeout", "20s", "-timeout_error"),
        deadline=30,
    )
    assert await caller.wait() == 0, caller.output + kamailio.log()[-3000:]
    assert await callee.wait() == 0, callee.output
    invites = kamailio.lines("CHALLENGE INVITE")
    assert len(invites) == 1 and f"sip:{NUMBER}@{DOMAIN}" in invites[0]
    accepted = kamailio.lines("INVITE sip:")
    assert any(f"sip:{NUMBER}@{DOMAIN} -> sip:3002@{DOMAIN} accepted" in a for a in accepted), accepted
    # ACK and BYE followed the route set Kamailio recorded (§12.2.1.1).
    in_dialog = kamailio.lines("IN-DIALOG")
    assert in_dialog and all("route <null>" not in line for line in in_dialog), in_dialog
    assert line.counters.calls_out == 1
    # The challenged INVITE's client transaction rightly waits out Timer D (32 s
    # over UDP, §17.1.1.2), so only calls, legs and dialogs must be gone.
    counts = await wait_idle(reactor, service.engine, timeout=5)
    assert counts["calls"] == counts["legs"] == counts["dialogs"] == 0, counts
