"""Fault: the switch is killed with SIGKILL mid-traffic and started again (issue 14,
item 5).

The real `twistd -n phpvoip` with a SQLite store, a registrar (five phones), an
outside line registered at a Kamailio upstream, and a trunk carrying SIPp calls at
20/s. While calls are up the process gets SIGKILL: no shutdown, no flush, no
unregister. Started again on the same database, it must

- restore every binding with its expiry unchanged, so a call still reaches a phone
  at the address it registered from (without the phone registering again);
- register its outside line at Kamailio again;
- carry new calls at once.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task

from tests.interop.conftest import sipp_args
from tests.interop.test_channel_kamailio import line_config, upstream  # noqa: F401 (a fixture)
from tests.interop.test_trunk_flows import wait_bound
from tests.support import LOOPBACK, Switch, free_port

pytestmark = pytest.mark.interop

PHONES = {f"100{n}": f"secret{n}" for n in range(1, 6)}
DEADLINE = 60.0


def switch_config(port: int, kamailio: Any, backend: int, metrics: int) -> str:
    users = ", ".join(f'"{user}": {{password: {password}}}' for user, password in PHONES.items())
    extra = (
        "calls: {keepalive_interval: 0}\n"
        f'metrics: {{listen: "tcp:{metrics}:interface={LOOPBACK}"}}\n'
        + line_config(kamailio, expires=60)
        + "  - type: registrar\n"
        f"    users: {{{users}}}\n"
        "    algorithms: [MD5]\n"
        "  - type: trunk\n"
        "    name: backend\n"
        f"    address: {LOOPBACK}:{backend}\n"
        f"    allow: [{LOOPBACK}]\n"
        "    numbers: ['9*']\n"
    )
    return Switch.config_for(port, extra, storage="sqlite:var/phpvoip.db")


def metric(port: int, name: str) -> float:
    """One unlabelled figure from the switch's Prometheus page."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as page:
        text = page.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match is not None, text[-2000:]
    return float(match.group(1))


def bindings_in(database: Path) -> list[tuple]:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT aor, contact, expires_at FROM bindings ORDER BY aor").fetchall()


async def run(peers: Any, args: list[str], deadline: float = 30.0) -> tuple[int, str]:
    """Run a SIPp to its end through the reactor (so nothing blocks it)."""
    peer = peers.start(args, deadline=deadline)
    code = await peer.wait()
    return code, peer.output


async def sleep(reactor: Any, seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_sigkill_mid_traffic_then_restart(reactor, sipp, peers, upstream, tmp_path):  # noqa: F811
    """SIGKILL with dozens of calls up; after the restart the bindings, the line and
    the calls are all back."""
    kamailio = await upstream("WITH_SHA256")
    port, backend, metrics = free_port(), free_port(), free_port()
    workdir = tmp_path / "switch"
    workdir.mkdir()
    switch = Switch(workdir, switch_config(port, kamailio, backend, metrics), port)
    database = workdir / "var" / "phpvoip.db"
    phone_ports = {user: free_port() for user in PHONES}
    try:
        switch.start()
        await kamailio.wait_for(lambda: kamailio.registrations(), 10, "the line's registration")
        for user, password in PHONES.items():
            code, output = await run(peers, sipp_args(
                sipp, "register.xml", phone_ports[user], port, "-m", "1", "-timeout", "20",
                "-s", user, "-au", user, "-ap", password, "-key", "expires", "600"))
            assert code == 0, output[-2000:]

        # Calls at 20/s, each held 3 s, so some 60 are up when the switch dies.
        uas = peers.start(sipp_args(sipp, "uas", backend, None, "-timeout", "50s"), deadline=DEADLINE)
        await wait_bound(reactor, uas, backend)
        peers.start(sipp_args(sipp, "uac", free_port(), port, "-s", "9001", "-r", "20", "-m", "100",
                              "-d", "3000", "-timeout", "50s"), deadline=DEADLINE)
        await sleep(reactor, 3.5)
        before = bindings_in(database)
        calls_up = metric(metrics, "phpvoip_calls_active")
        assert calls_up >= 20, calls_up
        line_registrations = len(kamailio.registrations())
        assert switch.process is not None
        switch.process.send_signal(signal.SIGKILL)
        assert switch.stop() == -signal.SIGKILL

        # Every binding answered 200 before the kill is on disk, expiry unchanged.
        assert [aor for aor, _, _ in before] == sorted(PHONES), before
        assert bindings_in(database) == before

        switch.start()
        # The store loads on its thread once the switch answers: its line may come a little later.
        restored = f"{len(PHONES)} bindings restored"
        for _ in range(200):  # 10 s
            if restored in switch.full_log():
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        assert restored in switch.full_log(), switch.log()
        # The outside line registers again (the old process never unregistered).
        await kamailio.wait_for(lambda: len(kamailio.registrations()) > line_registrations, 15,
                                "the line's registration after the restart")
        assert kamailio.registrations()[-1]["expires"] != "0"

        # New calls go through at once.
        code, output = await run(peers, sipp_args(sipp, "uac", free_port(), port, "-s", "9002", "-r", "10",
                                                  "-m", "10", "-d", "100", "-timeout", "20s"))
        assert code == 0, output[-2000:]

        # 1002 did not register again, yet a call to it rings it where it registered
        # (the caller is on the trunk's trusted address: no challenge).
        answer = peers.start(sipp_args(sipp, "phone_answer.xml", phone_ports["1002"], port, "-m", "1",
                                       "-timeout", "20", "-trace_logs"), deadline=30)
        await wait_bound(reactor, answer, phone_ports["1002"])
        code, output = await run(peers, sipp_args(sipp, "uac", free_port(), port, "-s", "1002", "-m", "1",
                                                  "-d", "200", "-timeout", "20"))
        assert code == 0, output[-2000:] + switch.log()
        assert await answer.wait() == 0, answer.output[-2000:]
        logs = "".join(p.read_text() for p in tmp_path.glob("phone_answer_*_logs.log"))
        assert f"ANSWERED sip:1002@{LOOPBACK}:{phone_ports['1002']}" in logs, logs
    finally:
        switch.stop()
