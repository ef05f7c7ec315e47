"""Prometheus metrics on the wire: a switch with ``metrics:`` on, SIPp calls and
registrations through it, scraped over HTTP during and after; the counters equal
what SIPp did."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, task
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent

from tests.interop.conftest import sipp_args
from tests.interop.test_register_sipp import registrar_config
from tests.interop.test_trunk_flows import wait_bound
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.interop

DEADLINE = 40.0  # seconds before a SIPp peer is killed
ANSWERED = 4  # calls SIPp's built-in uac makes to the answering callee, all at once
BUSY = 3  # calls to the callee that answers 486
HOLD_MS = 3000  # how long SIPp holds each answered call
DEFAULT_TIMERS = ""  # RFC timers (T1 500 ms): no retransmission of ours on a slow loaded host

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Body(Protocol):
    """Collects a response body; `done` fires with it when the response ends."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(bytes(self.data))


async def scrape(reactor: Any, port: int, path: str = "/metrics") -> tuple[int, Samples]:
    """GET the endpoint; the status and every sample, parsed back from the text format."""
    response = await Agent(reactor).request(b"GET", f"http://{LOOPBACK}:{port}{path}".encode())
    body_protocol = Body()
    response.deliverBody(body_protocol)
    body = (await body_protocol.done).decode()
    if response.code != 200:
        return response.code, {}
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }
    return response.code, samples


async def scrape_until(reactor: Any, port: int, name: str, wanted: float, timeout: float = 10.0) -> Samples:
    """Scrape (bounded) until sample `name` (no labels) equals `wanted`; the last scrape."""
    deadline = reactor.seconds() + timeout
    while True:
        _, samples = await scrape(reactor, port)
        if samples.get((name, ())) == wanted or reactor.seconds() > deadline:
            return samples
        await task.deferLater(reactor, 0.1, lambda: None)


def sipp_stats(path: Path) -> dict[str, int]:
    """The cumulative counters of SIPp's last -trace_stat row."""
    rows = list(csv.reader(path.read_text().splitlines(), delimiter=";"))
    header, last = rows[0], rows[-1]
    wanted = ("SuccessfulCall(C)", "FailedCall(C)", "Retransmissions(C)")
    return {name: int(last[header.index(name)]) for name in wanted}


def stat_args(tmp_path: Path, name: str) -> tuple[str, ...]:
    return ("-trace_stat", "-stf", str(tmp_path / f"{name}.csv"))


def calls_config(answer_port: int, busy_port: int, metrics_port: int) -> str:
    return (
        "calls: {keepalive_interval: 0}\n"
        "modules:\n"
        f"  - {{type: trunk, name: answering, address: '{LOOPBACK}:{answer_port}', allow: [{LOOPBACK}],"
        " numbers: ['1*']}\n"
        f"  - {{type: trunk, name: busy, address: '{LOOPBACK}:{busy_port}', allow: [{LOOPBACK}],"
        " numbers: ['2*']}\n"
        f"metrics: {{listen: 'tcp:{metrics_port}:interface={LOOPBACK}'}}\n"
    )


@pytest_twisted.ensureDeferred
async def test_scrapes_during_and_after_sipp_calls(reactor: Any, sipp: str, switch: Any, peers: Any,
                                                    tmp_path: Path) -> None:
    """While SIPp holds its answered calls the scrape shows them active; afterwards
    calls by outcome, setup times and transactions equal what SIPp did, and
    retransmissions and parse errors equal what SIPp resent (nothing on loopback)."""
    answer_port, busy_port, metrics_port = free_port(), free_port(), free_port()
    service = await switch(calls_config(answer_port, busy_port, metrics_port), timers=DEFAULT_TIMERS)
    common = ("-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error")
    callee = peers.start(sipp_args(sipp, "uas", answer_port, None, "-m", str(ANSWERED),
                                   *stat_args(tmp_path, "callee"), *common), deadline=DEADLINE)
    refuser = peers.start(sipp_args(sipp, "uas_busy.xml", busy_port, None, "-m", str(BUSY),
                                    *stat_args(tmp_path, "refuser"), *common), deadline=DEADLINE)
    await wait_bound(reactor, callee, answer_port)
    await wait_bound(reactor, refuser, busy_port)
    code, before = await scrape(reactor, metrics_port)
    assert code == 200 and before[("phpvoip_calls_active", ())] == 0
    assert (await scrape(reactor, metrics_port, "/other"))[0] == 404

    caller = peers.start(sipp_args(sipp, "uac", free_port(), service.port, "-s", "1000", "-m", str(ANSWERED),
                                   "-l", str(ANSWERED), "-r", "20", "-d", str(HOLD_MS),
                                   *stat_args(tmp_path, "caller"), *common), deadline=DEADLINE)
    # Until every call is answered (a call still being set up is active too, so
    # waiting on the active count alone races the last answer); each is then held.
    during = await scrape_until(reactor, metrics_port, "phpvoip_call_setup_seconds_count", ANSWERED)
    assert during[("phpvoip_calls_active", ())] == ANSWERED
    assert during[("phpvoip_legs_active", ())] == 2 * ANSWERED
    assert during[("phpvoip_call_setup_seconds_count", ())] == ANSWERED

    busy_caller = peers.start(sipp_args(sipp, "uac_busy.xml", free_port(), service.port, "-s", "2000",
                                        "-m", str(BUSY), *stat_args(tmp_path, "busy_caller"), *common),
                              deadline=DEADLINE)
    for peer in (busy_caller, caller, callee, refuser):
        assert await peer.wait() == 0, peer.output
    after = await scrape_until(reactor, metrics_port, "phpvoip_calls_active", 0)

    sipp_ran = {name: sipp_stats(tmp_path / f"{name}.csv") for name in ("caller", "busy_caller", "callee",
                                                                        "refuser")}
    assert sipp_ran["caller"]["SuccessfulCall(C)"] == ANSWERED
    assert sipp_ran["busy_caller"]["SuccessfulCall(C)"] == BUSY
    assert after[("phpvoip_calls_active", ())] == 0
    calls = {labels: value for (name, labels), value in after.items() if name == "phpvoip_calls_total"}
    assert calls == {
        (("outcome", "answered"), ("status_class", "2xx")): sipp_ran["caller"]["SuccessfulCall(C)"],
        (("outcome", "busy"), ("status_class", "4xx")): sipp_ran["busy_caller"]["SuccessfulCall(C)"],
    }
    assert after[("phpvoip_call_setup_seconds_count", ())] == ANSWERED
    assert after[("phpvoip_call_setup_seconds_bucket", (("le", "+Inf"),))] == ANSWERED
    # Each answered call is an INVITE and a BYE on each side, a busy one an INVITE.
    for side in ("server", "client"):
        assert after[("phpvoip_transactions_total", (("side", side),))] == 2 * ANSWERED + BUSY
    resent_by_sipp = sum(s["Retransmissions(C)"] for s in sipp_ran.values())
    assert after[("phpvoip_retransmissions_total", (("direction", "received"),))] == resent_by_sipp
    assert after[("phpvoip_parse_errors_total", ())] == 0
    assert after[("phpvoip_uptime_seconds", ())] > 0


def finals(directory: Path) -> list[str]:
    text = "".join(p.read_text(errors="replace") for p in directory.glob("register_*_logs.log"))
    return re.findall(r"FINAL \d+", text)


@pytest_twisted.ensureDeferred
async def test_registrations_accepted_and_refused(reactor: Any, sipp: str, switch: Any, peers: Any,
                                                   tmp_path: Path) -> None:
    """SIPp phones register (three times, one contact) and fail (wrong password,
    twice): accepted and refused counts equal SIPp's FINAL lines, one binding is
    active, and the plain challenges before each are not counted as refusals."""
    metrics_port = free_port()
    extra = f"metrics: {{listen: 'tcp:{metrics_port}:interface={LOOPBACK}'}}\n"
    service = await switch(registrar_config(extra=extra), timers=DEFAULT_TIMERS)
    phone_port = free_port()
    runs = [("1001", "secret1", 3), ("1002", "wrong", 2)]
    for user, password, count in runs:
        args = sipp_args(sipp, "register.xml", phone_port, service.port, "-s", user, "-au", user,
                         "-ap", password, "-key", "expires", "120", "-m", str(count), "-trace_logs",
                         "-timeout", "15")
        peer = peers.start(args, deadline=30)
        assert await peer.wait() == 0, peer.output
    lines = finals(tmp_path)
    assert sorted(lines) == ["FINAL 200"] * 3 + ["FINAL 401"] * 2
    _, samples = await scrape(reactor, metrics_port)
    assert samples[("phpvoip_registrations_accepted_total", ())] == lines.count("FINAL 200")
    assert samples[("phpvoip_registrations_refused_total", (("status", "401"),))] == lines.count("FINAL 401")
    assert [key for key in samples if key[0] == "phpvoip_registrations_refused_total"] == [
        ("phpvoip_registrations_refused_total", (("status", "401"),))]
    assert samples[("phpvoip_registrations_active", ())] == 1
