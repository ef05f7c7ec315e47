"""The manhole over SSH with OpenSSH's client, against a live SIPp call.

An in-process switch with a trunk and a manhole on a free loopback port; the test
key is made with ssh-keygen in the test's directory. One interactive session
(``ssh -tt``, commands typed on its stdin) shows the SIPp call in ``calls()`` and
ends it with ``hangup()``: both SIPp peers must get a BYE carrying the operator's
Reason (their scenarios check it, and so does the test in their message logs).
A key not in authorized_keys is refused, and so is a password: the server offers
no method but publickey.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task

from tests.interop.conftest import sipp_args, wait_idle
from tests.interop.test_trunk_flows import header, received, trunk_config, wait_bound
from tests.support import LOOPBACK, free_port, require_program

pytestmark = pytest.mark.interop

DEADLINE = 40.0  # seconds before a peer (SIPp, ssh) is killed
REASON = 'Q.850;cause=16;text="Hung up by an operator"'
ANSI = re.compile(rb"\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])")


@pytest.fixture
def ssh() -> str:
    require_program("ssh-keygen")
    return require_program("ssh")


def make_key(tmp_path: Path, name: str) -> Path:
    import subprocess

    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True,
                   timeout=30)
    return path


def ssh_args(ssh: str, key: Path, port: int, *options: str, command: str | None = None) -> list[str]:
    """OpenSSH's client for the manhole, ignoring the user's config and known hosts."""
    return [ssh, "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o",
            "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
            "-F", "/dev/null", *options, f"operator@{LOOPBACK}", *([command] if command else [])]


def screen(peer: Any) -> str:
    """What the terminal shows, escape sequences left out."""
    return ANSI.sub(b"", bytes(peer.collect.output)).decode(errors="replace").replace("\r", "")


async def wait_until(reactor: Any, check: Any, timeout: float, what: str) -> None:
    deadline = reactor.seconds() + timeout
    while not check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"no {what} within {timeout}s")
        await task.deferLater(reactor, 0.1, lambda: None)


async def manhole_switch(switch: Any, tmp_path: Path, uas_port: int) -> tuple[Any, int, Path]:
    key = make_key(tmp_path, "operator")
    authorized = tmp_path / "manhole_keys"
    authorized.write_bytes(key.with_suffix(".pub").read_bytes())
    port = free_port()
    service = await switch(
        trunk_config(uas_port)
        + "manhole:\n"
        + f"  listen: 'tcp:{port}:interface={LOOPBACK}'\n"
        + f"  authorized_keys: {authorized}\n"
        + f"  host_key: {tmp_path / 'var' / 'manhole_host_key'}\n"
    )
    return service, port, key


@pytest_twisted.ensureDeferred
async def test_calls_shows_a_live_call_and_hangup_ends_both_legs(reactor, sipp, ssh, switch, peers, tmp_path):
    """calls() in an interactive SSH session lists the SIPp call with both legs;
    hangup() sends both SIPp peers a BYE with the operator's Reason."""
    uas_port = free_port()
    service, port, key = await manhole_switch(switch, tmp_path, uas_port)
    logs = {side: tmp_path / f"{side}_messages.log" for side in ("uac", "uas")}
    common = ("-m", "1", "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error", "-trace_msg")
    uas = peers.start(sipp_args(sipp, "manhole_uas_hung_up.xml", uas_port, None, *common, "-message_file",
                                str(logs["uas"])), deadline=DEADLINE)
    await wait_bound(reactor, uas, uas_port)
    uac = peers.start(sipp_args(sipp, "manhole_uac_hung_up.xml", free_port(), service.port, "-s", "2005",
                                *common, "-message_file", str(logs["uac"])), deadline=DEADLINE)
    engine = service.engine
    answered = lambda: any(b.record.answer for b in engine.calls.values())  # noqa: E731
    await wait_until(reactor, answered, 10, "answered call")
    [call_id] = engine.calls
    started = reactor.seconds()
    shell = peers.start(ssh_args(ssh, key, port, "-tt"), deadline=DEADLINE)
    await wait_until(reactor, lambda: ">>> " in screen(shell), 15, f"prompt:\n{screen(shell)}")
    login_s = reactor.seconds() - started
    shell.process.write(b"calls()\r")
    await wait_until(reactor, lambda: "callee 2005" in screen(shell), 10, f"calls() table:\n{screen(shell)}")
    [row] = [line for line in screen(shell).splitlines() if line.startswith(call_id)]
    assert "answered" in row and "established" in row and row.rstrip().endswith("-"), row
    assert f"udp:{LOOPBACK}:{uas_port}" in screen(shell)
    shell.process.write(f"hangup({call_id!r})\r".encode())
    await wait_until(reactor, lambda: "hung up, Reason" in screen(shell), 10, f"hangup:\n{screen(shell)}")
    shell.process.write(b"\x04")  # Ctrl-D leaves the shell
    assert await shell.wait() == 0, screen(shell)
    assert await uac.wait() == 0, uac.output
    assert await uas.wait() == 0, uas.output
    for side, log in logs.items():
        [bye] = received(log, "BYE ")
        assert header(bye, "Reason") == REASON, (side, bye)
    [record] = [r for r in engine.records if r.id == call_id]
    assert (record.hangup_by, record.disposition) == ("switch", "ANSWERED")
    counts = await wait_idle(reactor, engine)
    assert not any(counts.values()), counts
    print(f"manhole login with OpenSSH took {login_s:.2f}s")


@pytest_twisted.ensureDeferred
async def test_wrong_key_and_password_are_refused(reactor, ssh, switch, peers, tmp_path):
    """A key not in authorized_keys gets "Permission denied"; a client ready to
    give a password is never asked for one (only publickey is offered); the right
    key runs a command (exec, no terminal) and exits 0."""
    service, port, key = await manhole_switch(switch, tmp_path, free_port())
    wrong = make_key(tmp_path, "stranger")
    refused = peers.start(ssh_args(ssh, wrong, port, "-o", "BatchMode=yes", command="calls()"),
                          deadline=DEADLINE)
    assert await refused.wait() == 255
    assert "Permission denied (publickey)" in refused.output, refused.output
    # A password ready to be typed by SSH_ASKPASS: the script notes whether it ran.
    asked = tmp_path / "askpass_ran"
    askpass = tmp_path / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\ntouch {asked}\necho secret\n")
    askpass.chmod(0o700)
    os.environ.update(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
    try:
        password = peers.start(ssh_args(ssh, wrong, port, "-o", "PubkeyAuthentication=no", "-o",
                                        "PreferredAuthentications=password,keyboard-interactive",
                                        command="calls()"),
                               deadline=DEADLINE)
        assert await password.wait() == 255
    finally:
        for name in ("SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "DISPLAY"):
            os.environ.pop(name, None)
    assert "Permission denied (publickey)" in password.output, password.output
    assert not asked.exists()
    allowed = peers.start(ssh_args(ssh, key, port, "-o", "BatchMode=yes", command="route(1000, 2005)"),
                          deadline=DEADLINE)
    assert await allowed.wait() == 0, allowed.output
    assert "backend (weight 50): TAKES IT: number 2005" in allowed.output
    assert not service.engine.calls


@pytest_twisted.ensureDeferred
async def test_originate_connects_two_sip_parties(reactor, sipp, ssh, switch, peers, tmp_path):
    """originate(2005, 2006) from an SSH command: 2005 is rung with an inactive
    placeholder and answers, 2006 is called with 2005's SDP and answers, 2005 is
    re-INVITEd with 2006's SDP; hangup() then ends both with the operator's Reason."""
    first_port, second_port, port = free_port(), free_port(), free_port()
    key = make_key(tmp_path, "operator")
    authorized = tmp_path / "manhole_keys"
    authorized.write_bytes(key.with_suffix(".pub").read_bytes())
    trunks = "".join(
        f"  - type: trunk\n    name: {name}\n    address: 127.0.0.1:{p}\n    allow: [192.0.2.1]\n"
        f"    numbers: ['{number}']\n"
        for name, p, number in (("first", first_port, "2005"), ("second", second_port, "2006")))
    service = await switch(
        "calls: {keepalive_interval: 0}\nmodules:\n" + trunks
        + f"manhole:\n  listen: 'tcp:{port}:interface={LOOPBACK}'\n  authorized_keys: {authorized}\n"
        + f"  host_key: {tmp_path / 'manhole_host_key'}\n")
    common = ("-m", "1", "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error")
    first = peers.start(sipp_args(sipp, "manhole_originate_first.xml", first_port, None, *common, "-mp",
                                  str(free_port())), deadline=DEADLINE)
    second = peers.start(sipp_args(sipp, "manhole_originate_second.xml", second_port, None, *common, "-mp",
                                   str(free_port())), deadline=DEADLINE)
    await wait_bound(reactor, first, first_port)
    await wait_bound(reactor, second, second_port)
    started = reactor.seconds()
    originate = peers.start(ssh_args(ssh, key, port, "-o", "BatchMode=yes", command="originate(2005, 2006)"),
                            deadline=DEADLINE)
    assert await originate.wait() == 0, originate.output
    connected_s = reactor.seconds() - started
    match = re.search(r"'(call-\d+): 2005 and 2006 connected'", originate.output)
    assert match, originate.output
    call_id = match.group(1)
    record = service.engine.calls[call_id].record
    # 2006 took the place of the switch's placeholder, on the caller's side.
    assert record.transfers == ["2006"] and (record.inbound_module, record.outbound_module) == (
        "second", "first")
    hangup = peers.start(ssh_args(ssh, key, port, "-o", "BatchMode=yes", command=f"hangup({call_id!r})"),
                         deadline=DEADLINE)
    assert await hangup.wait() == 0, hangup.output
    assert await first.wait() == 0, first.output
    assert await second.wait() == 0, second.output
    print(f"originate over SSH connected in {connected_s:.2f}s")
