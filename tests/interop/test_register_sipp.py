"""SIPp phones against the registrar in a real switch: digest REGISTER (right and
wrong password, unknown user, refresh, unregister, 423) and calls between two
registered phones."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task

from tests.interop.conftest import sipp_args, wait_idle
from tests.support import free_port

pytestmark = pytest.mark.interop

USERS = {"1001": "secret1", "1002": "secret2"}


def registrar_config(algorithms: str = "[MD5, SHA-256]", extra: str = "") -> str:
    users = ", ".join(f'"{u}": {{password: {p}}}' for u, p in USERS.items())
    return (
        "calls: {keepalive_interval: 0}\n"
        "modules:\n"
        "  - type: registrar\n"
        f"    users: {{{users}}}\n"
        f"    algorithms: {algorithms}\n"
        "    min_expires: 60\n" + extra
    )


def registrar_of(service: Any) -> Any:
    [module] = [m for m in service.engine.modules if m.name == "registrar"]
    return module


def logged(directory: Path, scenario: str) -> str:
    """What the scenario's <log> actions wrote (-trace_logs)."""
    return "".join(p.read_text(errors="replace") for p in directory.glob(f"{scenario}_*_logs.log"))


def register_args(sipp: str, service: Any, port: int, user: str, password: str, expires: int) -> list[str]:
    return sipp_args(
        sipp, "register.xml", port, service.port,
        "-s", user, "-au", user, "-ap", password, "-key", "expires", str(expires),
        "-m", "1", "-trace_logs", "-timeout", "15",
    )  # fmt: skip


async def register(sipp, service, peers, tmp_path, user, password, expires=120, port=None) -> str:
    """Run register.xml once; return its FINAL line."""
    for old in tmp_path.glob("register_*_logs.log"):
        old.unlink()
    args = register_args(sipp, service, port or free_port(), user, password, expires)
    peer = peers.start(args, deadline=30)
    assert await peer.wait() == 0, peer.output
    finals = re.findall(r"FINAL [^\n]*", logged(tmp_path, "register"))
    assert len(finals) == 1, peer.output
    return finals[0]


@pytest_twisted.ensureDeferred
async def test_right_password_registers(sipp, switch, peers, tmp_path):
    """SIPp answers the 401 and is bound for the Expires it asked for, at the
    address the REGISTER came from."""
    service = await switch(registrar_config())
    port = free_port()
    assert await register(sipp, service, peers, tmp_path, "1001", "secret1", 120, port) == (
        "FINAL 200 expires=120 (expires=120)"
    )
    [binding] = registrar_of(service).contacts("1001")
    assert binding.contact == f"sip:1001@127.0.0.1:{port}"
    assert (binding.source.host, binding.source.port) == ("127.0.0.1", port)
    assert binding.user_agent == "SIPp"


@pytest_twisted.ensureDeferred
async def test_wrong_password_and_unknown_user_are_refused_alike(sipp, switch, peers, tmp_path):
    """A wrong password and an unknown user both get a second 401, and nothing is bound."""
    service = await switch(registrar_config())
    assert await register(sipp, service, peers, tmp_path, "1001", "wrong") == "FINAL 401"
    assert await register(sipp, service, peers, tmp_path, "7777", "secret1") == "FINAL 401"
    module = registrar_of(service)
    assert len(module.bindings) == 0 and module.stats["auth_failed"] == 2


@pytest_twisted.ensureDeferred
async def test_too_brief_expires_gets_423(sipp, switch, peers, tmp_path):
    """Expires below min_expires gets 423 with Min-Expires 60."""
    service = await switch(registrar_config())
    assert await register(sipp, service, peers, tmp_path, "1002", "secret2", 10) == "FINAL 423 min-expires=60"
    assert len(registrar_of(service).bindings) == 0


@pytest_twisted.ensureDeferred
async def test_too_long_expires_is_cut_down(sipp, switch, peers, tmp_path):
    """Expires above max_expires is granted as max_expires."""
    service = await switch(registrar_config(extra="    max_expires: 900\n"))
    assert await register(sipp, service, peers, tmp_path, "1002", "secret2", 86400) == (
        "FINAL 200 expires=900 (expires=900)"
    )


@pytest_twisted.ensureDeferred
async def test_refresh_then_unregister(reactor, sipp, switch, peers, tmp_path):
    """A phone registers, refreshes in the same dialog (same Call-ID, CSeq 3/4)
    with a new Expires and stays one binding, then its Expires: 0 removes it."""
    service = await switch(registrar_config())
    module = registrar_of(service)
    phone = peers.start(
        sipp_args(
            sipp, "register_refresh.xml", free_port(), service.port,
            "-s", "1001", "-au", "1001", "-ap", "secret1", "-key", "expires", "120", "-key", "refresh", "300",
            "-d", "1500", "-m", "1", "-trace_logs", "-timeout", "20",
        ),
        deadline=30,
    )  # fmt: skip
    await _until(reactor, lambda: len(module.bindings) == 1)
    first = module.contacts("1001")[0]
    await _until(reactor, lambda: module.contacts("1001") and module.contacts("1001")[0].cseq == 4)
    [refreshed] = module.contacts("1001")
    assert refreshed.key == first.key and refreshed.call_id == first.call_id
    assert refreshed.expires_at - first.expires_at > 150
    assert await phone.wait() == 0, phone.output
    assert "REFRESHED expires=300" in logged(tmp_path, "register_refresh")
    assert module.contacts("1001") == [] and len(module.bindings) == 0


@pytest.mark.parametrize("caller, callee", [("1001", "1002"), ("1002", "1001")])
@pytest_twisted.ensureDeferred
async def test_two_registered_phones_call_each_other(reactor, sipp, switch, peers, tmp_path, caller, callee):
    """The callee registers and waits; the caller registers from its own port,
    then calls: 407, credentials, the callee's contact rings at the address it
    registered from, answers, and the caller hangs up. Nothing is left behind."""
    service = await switch(registrar_config())
    module = registrar_of(service)
    callee_port, caller_port = free_port(), free_port()
    phone = peers.start(
        sipp_args(
            sipp, "phone_register_wait.xml", callee_port, service.port,
            "-oocsf", str(Path(__file__).parent / "scenarios" / "phone_answer.xml"),
            "-s", callee, "-au", callee, "-ap", USERS[callee], "-key", "expires", "120",
            "-d", "4000", "-m", "1", "-trace_logs", "-timeout", "30",
        ),
        deadline=40,
    )  # fmt: skip
    await _until(reactor, lambda: len(module.contacts(callee)) == 1)
    await register(sipp, service, peers, tmp_path, caller, USERS[caller], 120, caller_port)
    call = peers.start(
        sipp_args(
            sipp, "phone_call.xml", caller_port, service.port,
            "-s", callee, "-key", "caller", caller, "-au", caller, "-ap", USERS[caller],
            "-d", "300", "-m", "1", "-timeout", "20",
        ),
        deadline=30,
    )  # fmt: skip
    assert await call.wait() == 0, call.output
    assert await phone.wait() == 0, phone.output
    assert f"ANSWERED sip:{callee}@127.0.0.1:{callee_port}" in logged(tmp_path, "phone_register_wait")
    # The phone's first INVITE was challenged: that attempt is recorded too.
    challenged, record = list(service.engine.records)
    assert (challenged.status, challenged.disposition) == (407, "FAILED")
    assert (record.caller, record.callee, record.status) == (caller, callee, 200)
    assert record.inbound_module == record.outbound_module == "registrar"
    counts = await wait_idle(reactor, service.engine)
    assert not any(counts.values()), counts


async def _until(reactor: Any, condition: Any, timeout: float = 15.0) -> None:
    deadline = reactor.seconds() + timeout
    while not condition():
        assert reactor.seconds() < deadline, "condition not met in time"
        await task.deferLater(reactor, 0.05, lambda: None)


@pytest_twisted.ensureDeferred
async def test_a_call_forks_to_every_contact_and_cancels_the_losers(reactor, sipp, switch, peers, tmp_path):
    """1002 is registered from two phones: a call rings both, the one that answers
    wins, and the other is CANCELled with Reason cause=200 "Call completed
    elsewhere" (it answers 487 and gets its ACK)."""
    service = await switch(registrar_config())
    module = registrar_of(service)
    scenarios = Path(__file__).parent / "scenarios"
    phones = {}
    for name, ooc in (("answers", "phone_answer.xml"), ("rings", "phone_ring_cancelled.xml")):
        phones[name] = peers.start(
            sipp_args(
                sipp, "phone_register_wait.xml", free_port(), service.port,
                "-oocsf", str(scenarios / ooc),
                "-s", "1002", "-au", "1002", "-ap", "secret2", "-key", "expires", "120",
                "-d", "4000", "-m", "1", "-trace_logs", "-timeout", "30",
            ),
            deadline=40,
        )  # fmt: skip
    await _until(reactor, lambda: len(module.contacts("1002")) == 2)
    caller_port = free_port()
    await register(sipp, service, peers, tmp_path, "1001", "secret1", 120, caller_port)
    call = peers.start(
        sipp_args(
            sipp, "phone_call.xml", caller_port, service.port,
            "-s", "1002", "-key", "caller", "1001", "-au", "1001", "-ap", "secret1",
            "-d", "300", "-m", "1", "-timeout", "20",
        ),
        deadline=30,
    )  # fmt: skip
    assert await call.wait() == 0, call.output
    for name, phone in phones.items():
        assert await phone.wait() == 0, (name, phone.output)
    # SIPp notes each out-of-call INVITE it hands to -oocsf; anything else is a fault.
    notes = "".join(p.read_text() for p in tmp_path.glob("phone_register_wait_*_errors.log"))
    assert notes.count("using the out-of-call scenario") == 2
    assert not re.search(r"Aborting|unexpected|Dead call|Timeout", notes), notes
    logs = logged(tmp_path, "phone_register_wait")
    assert "ANSWERED sip:1002@" in logs
    assert 'CANCELLED cause=200;text="Call completed elsewhere"' in logs, logs
    challenged, record = list(service.engine.records)
    assert challenged.status == 407
    assert record.status == 200 and record.callee == "1002"
    # Calls, legs and dialogs are gone; the cancelled INVITE's client transaction
    # still waits out Timer D (32 s on UDP), as RFC 3261 §17.1.1.2 wants.
    counts = await wait_idle(reactor, service.engine, timeout=5.0)
    assert counts["calls"] == counts["legs"] == counts["dialogs"] == 0, counts
