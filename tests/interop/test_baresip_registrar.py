"""baresip, a softphone we did not write, registers at the switch with digest auth as
two users who call each other; audio flows both ways (directly between the phones:
the switch passes SDP through), seen in baresip's RTP statistics at hang-up."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, error, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.protocols.basic import NetstringReceiver

from tests.interop.conftest import wait_idle
from tests.support import LOOPBACK, free_port, require_program

pytestmark = pytest.mark.interop

USERS = {"1001": "secret1", "1002": "secret2"}
TALK = 2.0  # seconds of audio per call
# 50 packets a second at ptime 20; ask for a third of what TALK seconds give.
MIN_PACKETS = int(TALK * 50 / 3)


@pytest.fixture
def baresip() -> str:
    return require_program("baresip")


def sip_port() -> int:
    """A port P with P (UDP and TCP) and P+1 free: baresip also binds SIP over
    TLS on the next port."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as tls:
            try:
                tls.bind((LOOPBACK, port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair")


def write_config(directory: Path) -> tuple[int, int]:
    """A headless baresip: tone source, no sound card, controlled over ctrl_tcp."""
    directory.mkdir(parents=True)
    sip, ctrl = sip_port(), free_port()
    (directory / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen {LOOPBACK}:{sip}",
                f"net_interface {LOOPBACK}",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aubridge.so",
                "module ausine.so",
                "module_app account.so",
                "module_app menu.so",
                "module_app ctrl_tcp.so",
                f"ctrl_tcp_listen {LOOPBACK}:{ctrl}",
                "audio_player aubridge,nil",
                "audio_source ausine,440",
                "audio_alert aubridge,nil",
                # ausine makes 48 kHz stereo only; baresip resamples to PCMU.
                "ausrc_srate 48000",
                "ausrc_channels 2",
                "auplay_srate 48000",
                "auplay_channels 2",
                # print the call's RTP statistics at hang-up
                "rtp_stats yes",
                "",
            ]
        )
    )
    # The account comes over ctrl_tcp (`uanew`), so its REGISTER_OK is heard.
    (directory / "accounts").write_text("")
    return sip, ctrl


def account(user: str, switch_port: int) -> str:
    uri = f"<sip:{user}@{LOOPBACK}:{switch_port};transport=udp>"
    return f"{uri};auth_pass={USERS[user]};regint=60;answermode=auto"


class Control(NetstringReceiver):
    """baresip's ctrl_tcp: JSON in netstrings; keeps every event it hears."""

    MAX_LENGTH = 1 << 20

    def __init__(self) -> None:
        self.events: list[dict] = []
        self._waiting: list[tuple[Any, defer.Deferred]] = []

    def stringReceived(self, data: bytes) -> None:
        message = json.loads(data)
        if message.get("event"):
            self.events.append(message)
            for entry in list(self._waiting):
                if entry[0](message):
                    self._waiting.remove(entry)
                    entry[1].callback(message)

    def command(self, name: str, params: str = "") -> None:
        self.sendString(json.dumps({"command": name, "params": params, "token": name}).encode())

    def event(self, kind: str, reactor: Any, timeout: float = 15.0) -> defer.Deferred:
        """Fires with the first event of `kind` (already heard or still to come)."""
        for message in self.events:
            if message.get("type") == kind:
                return defer.succeed(message)
        d: defer.Deferred = defer.Deferred()
        entry = (lambda m: m.get("type") == kind, d)
        self._waiting.append(entry)
        d.addTimeout(timeout, reactor, onTimeoutCancel=lambda *_: self._timed_out(kind, entry))
        return d

    def _timed_out(self, kind: str, entry: Any) -> None:
        if entry in self._waiting:
            self._waiting.remove(entry)
        raise AssertionError(f"no {kind} from baresip; heard {[e.get('type') for e in self.events]}")

    def forget(self) -> None:
        self.events.clear()


async def control(reactor: Any, port: int, timeout: float = 10.0) -> Control:
    deadline = reactor.seconds() + timeout
    while True:
        try:
            return await connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, port), Control())
        except error.ConnectError:
            if reactor.seconds() > deadline:
                raise
            await task.deferLater(reactor, 0.1, lambda: None)


def rtp_packets(output: str) -> list[tuple[int, int]]:
    """(sent, received) audio packets from each call statistics table baresip
    prints at hang-up."""
    return [(int(a), int(b)) for a, b in re.findall(r"packets:\s+(\d+)\s+(\d+)", output)]


async def call(reactor: Any, caller: Control, callee: Control, callee_user: str, switch_port: int) -> None:
    """`caller` dials `callee_user`; both see the call established; audio for TALK
    seconds; the caller hangs up and both see it closed."""
    caller.forget()
    callee.forget()
    caller.command("dial", f"sip:{callee_user}@{LOOPBACK}:{switch_port}")
    await defer.gatherResults(
        [caller.event("CALL_ESTABLISHED", reactor), callee.event("CALL_ESTABLISHED", reactor)]
    )
    await task.deferLater(reactor, TALK, lambda: None)
    caller.command("hangup")
    await defer.gatherResults([caller.event("CALL_CLOSED", reactor), callee.event("CALL_CLOSED", reactor)])


@pytest_twisted.ensureDeferred
async def test_two_baresip_phones_register_and_call_each_other(reactor, baresip, switch, peers, tmp_path):
    """Both phones register (401, digest MD5), 1001 calls 1002 and 1002 calls
    1001 through the switch, each call carries audio both ways, and quitting
    unregisters both."""
    users = ", ".join(f'"{u}": {{password: {p}}}' for u, p in USERS.items())
    service = await switch(
        "calls: {keepalive_interval: 0}\n"
        "modules:\n"
        "  - type: registrar\n"
        f"    users: {{{users}}}\n"
        # baresip 1.0 gives up on any challenge that is not MD5 (PEERS.md).
        "    algorithms: [MD5]\n"
    )
    [module] = [m for m in service.engine.modules if m.name == "registrar"]
    phones: dict[str, Any] = {}
    controls: dict[str, Control] = {}
    for user in USERS:
        directory = tmp_path / user
        _, ctrl_port = write_config(directory)
        phones[user] = peers.start([baresip, "-f", str(directory)], deadline=90)
        controls[user] = await control(reactor, ctrl_port)
        controls[user].command("uanew", account(user, service.port))
    try:
        for user in USERS:
            event = await controls[user].event("REGISTER_OK", reactor)
            assert event["param"].startswith("200"), event
        assert all(len(module.contacts(u)) == 1 for u in USERS)
        assert all("baresip" in (module.contacts(u)[0].user_agent or "") for u in USERS)

        await call(reactor, controls["1001"], controls["1002"], "1002", service.port)
        await call(reactor, controls["1002"], controls["1001"], "1001", service.port)

        # Each phone's first INVITE is challenged (407) and recorded as an attempt.
        records = [r for r in service.engine.records if r.status != 407]
        calls = [(r.caller, r.callee, r.status) for r in records]
        assert calls == [("1001", "1002", 200), ("1002", "1001", 200)]
        assert all(r.answer is not None and r.hangup_by == "caller" for r in records)
    finally:
        for user in USERS:
            controls[user].command("quit")
    codes = [await phones[user].wait() for user in USERS]
    outputs = {user: phones[user].output for user in USERS}
    for user, output in outputs.items():
        stats = rtp_packets(output)
        assert len(stats) == 2, output[-3000:]
        assert all(sent >= MIN_PACKETS and received >= MIN_PACKETS for sent, received in stats), (user, stats)
    assert codes == [0, 0], outputs
    # baresip unregisters as it quits
    assert len(module.bindings) == 0
    counts = await wait_idle(reactor, service.engine)
    assert not any(counts.values()), counts
