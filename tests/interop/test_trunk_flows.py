"""Call flows through the switch between two SIPp peers (issue 4 checks).

SIPp UAC → switch (trunk in) → switch (trunk out) → SIPp UAS, one scenario pair per
flow. Each test checks both SIPp exit codes, what the switch recorded for the call
(`engine.records`) and that the engine holds nothing afterwards (`wait_idle`).
SIPp writes every message it sent and received to a log (``-trace_msg``), which the
tests read to check headers the scenarios cannot easily check themselves.
"""

from __future__ import annotations

import errno
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task

from tests.interop.conftest import SCENARIOS, sipp_args, wait_idle
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.interop

DEADLINE = 40.0  # seconds before a SIPp peer is killed
# An INVITE client transaction that got a non-2xx final answer over UDP waits in
# Completed for Timer D, "at least 32 seconds" (RFC 3261 §17.1.1.2) whatever T1 is,
# to absorb retransmitted finals; flows that end that way need this long to be idle.
TIMER_D_IDLE = 40.0
CALL_STATE = ("calls", "legs", "dialogs")
# A keepalive probe gives up after Timer F, 64*T1 (RFC 3261 §17.1.2.2): 3.2 s here.
KEEPALIVE_TIMERS = "  timers: {t1: 0.05, t2: 0.4, t4: 0.5}\n"


def trunk_config(uas_port: int, calls: str = "keepalive_interval: 0", transport: str = "") -> str:
    return (
        "calls: {" + calls + "}\n"
        "modules:\n"
        "  - type: trunk\n"
        "    name: backend\n"
        f"    address: {transport}127.0.0.1:{uas_port}\n"
        "    allow: [127.0.0.1]\n"
        "    numbers: ['*']\n"
    )


@dataclass
class Run:
    """One flow's outcome: the switch, both peers and their message logs."""

    service: Any
    uac: Any
    uas: Any
    uac_log: Path
    uas_log: Path
    counts: dict[str, int]

    @property
    def records(self) -> list[Any]:
        return list(self.service.engine.records)


async def run_flow(
    reactor: Any,
    sipp: str,
    switch: Any,
    peers: Any,
    tmp_path: Path,
    uac_scenario: str,
    uas_scenario: str,
    calls: int = 1,
    settings: str = "keepalive_interval: 0",
    uac_extra: tuple[str, ...] = (),
    uas_extra: tuple[str, ...] = (),
    trunk_transport: str = "",
    timers: str | None = None,
    idle_timeout: float = 15.0,
) -> Run:
    """Run one UAS and one UAC scenario through a fresh switch; assert both exit 0."""
    uas_port = free_port()
    extra = trunk_config(uas_port, settings, trunk_transport)
    service = await (switch(extra) if timers is None else switch(extra, timers))
    uac_log, uas_log = tmp_path / "uac_messages.log", tmp_path / "uas_messages.log"
    common = ("-m", str(calls), "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error", "-trace_msg")
    uas = peers.start(
        sipp_args(sipp, uas_scenario, uas_port, None, *common, "-message_file", str(uas_log), *uas_extra),
        deadline=DEADLINE,
    )
    # The switch dials the callee as soon as the caller calls: the callee must be there.
    await wait_bound(reactor, uas, uas_port, "tcp" if "t1" in uas_extra else "udp")
    uac = peers.start(
        sipp_args(sipp, uac_scenario, free_port(), service.port, "-s", "2005", *common,
                  "-message_file", str(uac_log), *uac_extra),
        deadline=DEADLINE,
    )
    uac_code = await uac.wait()
    uas_code = await uas.wait()
    assert uac_code == 0, f"UAC exit {uac_code}:\n{uac.output}\n{_tail(uac_log)}"
    assert uas_code == 0, f"UAS exit {uas_code}:\n{uas.output}\n{_tail(uas_log)}"
    # Calls, legs and dialogs go at once; transactions after their RFC timers.
    call_state = await _wait_for(reactor, service.engine, CALL_STATE, 5.0)
    assert not any(call_state.values()), call_state
    counts = await wait_idle(reactor, service.engine, idle_timeout)
    return Run(service, uac, uas, uac_log, uas_log, counts)


async def wait_bound(reactor: Any, peer: Any, port: int, transport: str = "udp",
                     timeout: float = 5.0) -> None:
    """Wait (bounded) until a peer has bound `port` on loopback, so that nothing
    reaches it before it listens (a UDP request would draw an ICMP error)."""
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    deadline = reactor.seconds() + timeout
    while reactor.seconds() < deadline:
        if peer.collect.ended.called:
            raise AssertionError(f"{peer.args[0]} ended before it listened:\n{peer.output}")
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return
                raise
        await task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError(f"nothing bound {transport} port {port} within {timeout}s")


async def _wait_for(reactor: Any, engine: Any, keys: tuple[str, ...], timeout: float) -> dict[str, int]:
    """Wait (bounded) until the named counts of the engine are zero."""
    deadline = reactor.seconds() + timeout
    while True:
        counts = {k: v for k, v in engine.counts().items() if k in keys}
        if not any(counts.values()) or reactor.seconds() >= deadline:
            return counts
        await task.deferLater(reactor, 0.1, lambda: None)


def _tail(path: Path, size: int = 6000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


def received(log: Path, start_line: str) -> list[str]:
    """The messages a SIPp peer received whose first line starts with `start_line`,
    retransmissions left out (one per Call-ID, CSeq and first line)."""
    return _messages(log, r"message received \[\d+\] bytes :", start_line)


def sent(log: Path, start_line: str) -> list[str]:
    """The messages a SIPp peer sent whose first line starts with `start_line`,
    retransmissions left out."""
    return _messages(log, r"message sent \(\d+ bytes\):", start_line)


def _messages(log: Path, marker: str, start_line: str) -> list[str]:
    text = log.read_text(errors="replace")
    found: dict[tuple[str, str | None, str | None], str] = {}
    for chunk in re.split(rf"^.*{marker}\s*$", text, flags=re.M)[1:]:
        message = chunk.split("\n-----", 1)[0].strip("\n")
        if message.startswith(start_line):
            key = (message.split("\n", 1)[0], header(message, "Call-ID"), header(message, "CSeq"))
            found.setdefault(key, message)
    return list(found.values())


def header(message: str, name: str) -> str | None:
    """The first value of a header in a message as SIPp logged it."""
    match = re.search(rf"^{re.escape(name)}\s*:\s*(.*?)\s*$", message, flags=re.M | re.I)
    return match.group(1) if match else None


def _tag(value: str | None) -> str:
    """The tag parameter of a From or To value."""
    match = re.search(r";\s*tag=([^;,\s]+)", value or "")
    return match.group(1) if match else ""


def _branch(message: str) -> str:
    """The branch of a message's top Via."""
    via = header(message, "Via") or ""
    match = re.search(r";\s*branch=([^;,\s]+)", via)
    return match.group(1) if match else ""


@pytest_twisted.ensureDeferred
async def test_callee_hangs_up_first(reactor, sipp, switch, peers, tmp_path):
    """The callee's BYE after answer reaches the caller as a BYE it answers 200."""
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_callee_bye.xml", "uas_bye_first.xml",
                         calls=3)
    assert not any(run.counts.values()), run.counts
    assert len(run.records) == 3
    for record in run.records:
        assert record.status == 200 and record.answer is not None and record.end is not None
        assert record.hangup_by == "callee"
    assert len(received(run.uac_log, "BYE ")) == 3


@pytest_twisted.ensureDeferred
async def test_caller_cancels_while_ringing(reactor, sipp, switch, peers, tmp_path):
    """A CANCEL after 180 gets 200 + 487 for the caller and becomes a CANCEL to the callee."""
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_cancel.xml", "uas_cancelled.xml",
                         calls=3, idle_timeout=TIMER_D_IDLE)
    assert not any(run.counts.values()), run.counts
    assert len(run.records) == 3
    for record in run.records:
        assert record.status == 487 and record.answer is None and record.end is not None
        assert record.hangup_by == "caller"
    cancels = received(run.uas_log, "CANCEL ")
    assert len(cancels) == 3
    # The 487's ACK reached the callee on the INVITE's own branch (RFC 3261 §17.1.1.3).
    invites, acks = received(run.uas_log, "INVITE "), received(run.uas_log, "ACK ")
    assert sorted(map(_branch, acks)) == sorted(map(_branch, invites)) == sorted(map(_branch, cancels))


@pytest_twisted.ensureDeferred
async def test_caller_cancels_before_the_callee_answers_anything(reactor, sipp, switch, peers, tmp_path):
    """A CANCEL that comes before the callee's first provisional reaches the callee after its 100."""
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_cancel_early.xml",
                         "uas_trying_cancelled.xml", calls=3, idle_timeout=TIMER_D_IDLE)
    assert not any(run.counts.values()), run.counts
    assert [(r.status, r.hangup_by) for r in run.records] == [(487, "caller")] * 3
    assert len(received(run.uas_log, "CANCEL ")) == 3
    assert len(received(run.uac_log, "SIP/2.0 487")) == 3


@pytest.mark.parametrize("uas_scenario", ["uas_race_answer_first.xml", "uas_race_cancel_first.xml"])
@pytest_twisted.ensureDeferred
async def test_cancel_crosses_the_answer(reactor, sipp, switch, peers, tmp_path, uas_scenario):
    """A 200 that arrives for a cancelled INVITE is ACKed and BYEd at once; the caller still gets 487."""
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_cancel.xml", uas_scenario, calls=3,
                         idle_timeout=TIMER_D_IDLE)
    assert not any(run.counts.values()), run.counts
    assert len(run.records) == 3
    for record in run.records:
        assert record.status == 487 and record.answer is None
        assert record.hangup_by == "caller"
    # The BYE ends the dialog the unwanted 200 made: its To carries the callee's tag.
    answers = [m for m in sent(run.uas_log, "SIP/2.0 200") if (header(m, "CSeq") or "").endswith("INVITE")]
    byes = received(run.uas_log, "BYE ")
    assert sorted(_tag(header(m, "To")) for m in byes) == sorted(_tag(header(m, "To")) for m in answers)
    assert len(byes) == 3
    # The caller never saw that 200: its only 200s answer its CANCELs.
    assert all((header(m, "CSeq") or "").endswith("CANCEL") for m in received(run.uac_log, "SIP/2.0 200"))
    assert len(received(run.uac_log, "SIP/2.0 487")) == 3


@pytest_twisted.ensureDeferred
async def test_callee_busy(reactor, sipp, switch, peers, tmp_path):
    """A 486 from the callee reaches the caller as 486; both sides get their ACK."""
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_busy.xml", "uas_busy.xml", calls=3,
                         idle_timeout=TIMER_D_IDLE)
    assert not any(run.counts.values()), run.counts
    assert len(run.records) == 3
    for record in run.records:
        assert record.status == 486 and record.answer is None
        assert record.hangup_by == "callee"
    assert len(received(run.uas_log, "ACK ")) == 3
    assert len(received(run.uac_log, "SIP/2.0 486")) == 3


@pytest.mark.parametrize(
    ("status", "reason", "caller_sees"),
    [(404, "Not Found", 404), (486, "Busy Here", 486), (503, "Service Unavailable", 500),
     (603, "Decline", 603)],
)
@pytest_twisted.ensureDeferred
async def test_callee_failure_mapped(reactor, sipp, switch, peers, tmp_path, status, reason, caller_sees):
    """A callee's final failure reaches the caller (a 503 as 500, RFC 3261 §16.7) and both sides get ACKs.

    The callee is on a TCP trunk, where the INVITE transaction ends at once (Timer D
    is 0 on reliable transports), so the switch is idle quickly."""
    # SIPp checks status codes when it loads a scenario, so each gets its own copy.
    scenario = tmp_path / f"uas_{status}.xml"
    text = (SCENARIOS / "uas_busy.xml").read_text()
    scenario.write_text(text.replace("SIP/2.0 486 Busy Here", f"SIP/2.0 {status} {reason}"))
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_rejected.xml", str(scenario),
                         uas_extra=("-t", "t1"), trunk_transport="tcp:")
    assert not any(run.counts.values()), run.counts
    (record,) = run.records
    assert (record.status, record.hangup_by, record.answer) == (caller_sees, "callee", None)
    (final,) = [m for m in received(run.uac_log, "SIP/2.0 ") if int(m.split()[1]) >= 300]
    assert final.startswith(f"SIP/2.0 {caller_sees} ")
    (invite,) = sent(run.uac_log, "INVITE ")
    (ack,) = sent(run.uac_log, "ACK ")
    assert _branch(ack) == _branch(invite)
    assert len(received(run.uas_log, "ACK ")) == 1


@pytest_twisted.ensureDeferred
async def test_ring_timeout(reactor, sipp, switch, peers, tmp_path):
    """With ring_timeout 2 s a ringing callee is CANCELled and the caller gets 480."""
    start = reactor.seconds()
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_no_answer.xml", "uas_cancelled.xml",
                         settings="keepalive_interval: 0, ring_timeout: 2", idle_timeout=TIMER_D_IDLE)
    assert not any(run.counts.values()), run.counts
    (record,) = run.records
    assert record.status == 480 and record.answer is None
    assert record.hangup_by == "switch"
    assert 1.9 <= record.end - record.start <= 3.0
    assert reactor.seconds() - start >= 2.0
    assert len(received(run.uas_log, "CANCEL ")) == 1
    assert len(received(run.uas_log, "ACK ")) == 1


@pytest_twisted.ensureDeferred
async def test_reinvite_relayed(reactor, sipp, switch, peers, tmp_path):
    """A caller's re-INVITE reaches the callee with its new SDP, and the callee's 200 + SDP comes back."""
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_reinvite.xml", "uas_reinvite.xml",
                         calls=3)
    assert not any(run.counts.values()), run.counts
    assert len(run.records) == 3
    for record in run.records:
        assert record.status == 200 and record.answer is not None
        assert record.hangup_by == "caller"
    invites = received(run.uas_log, "INVITE ")
    assert len(invites) == 6
    reinvites = [m for m in invites if _tag(header(m, "To"))]
    assert len(reinvites) == 3 and all("s=uac-offer-2" in m for m in reinvites)
    answers = [m for m in received(run.uac_log, "SIP/2.0 200") if header(m, "CSeq") == "2 INVITE"]
    assert len(answers) == 3 and all("s=uas-answer-2" in m for m in answers)
    # Each leg's re-INVITE 200 got its own ACK: the callee saw one per INVITE.
    assert len(received(run.uas_log, "ACK ")) == 6


@pytest_twisted.ensureDeferred
async def test_reinvite_from_the_callee_relayed(reactor, sipp, switch, peers, tmp_path):
    """A callee's re-INVITE reaches the caller with its SDP; the caller's 200 + SDP goes back and is ACKed."""
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_reinvited.xml", "uas_reinvite_back.xml",
                         calls=2)
    assert not any(run.counts.values()), run.counts
    assert [(r.status, r.hangup_by) for r in run.records] == [(200, "callee")] * 2
    reinvites = received(run.uac_log, "INVITE ")
    assert len(reinvites) == 2 and all("s=uas-offer-2" in m for m in reinvites)
    assert len(received(run.uac_log, "ACK ")) == 2


@pytest_twisted.ensureDeferred
async def test_info_and_update_relayed(reactor, sipp, switch, peers, tmp_path):
    """INFO from the caller and UPDATE + SDP from the callee cross the switch with their answers."""
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_info_update.xml", "uas_info_update.xml",
                         calls=2)
    assert not any(run.counts.values()), run.counts
    assert [r.hangup_by for r in run.records] == ["callee", "callee"]
    infos = received(run.uas_log, "INFO ")
    assert len(infos) == 2
    assert all(header(m, "Content-Type") == "application/dtmf-relay" and "Signal=5" in m for m in infos)
    updates = received(run.uac_log, "UPDATE ")
    assert len(updates) == 2 and all("s=uas-offer-2" in m for m in updates)


@pytest_twisted.ensureDeferred
async def test_caller_over_tcp(reactor, sipp, switch, peers, tmp_path):
    """A caller on TCP reaches a UDP callee; the callee's BYE comes back to it over its TCP connection."""
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_callee_bye.xml", "uas_bye_first.xml",
                         calls=3, uac_extra=("-t", "t1"))
    assert not any(run.counts.values()), run.counts
    assert [(r.status, r.hangup_by) for r in run.records] == [(200, "callee")] * 3
    byes = received(run.uac_log, "BYE ")
    assert len(byes) == 3 and all("SIP/2.0/TCP" in (header(m, "Via") or "") for m in byes)


@pytest_twisted.ensureDeferred
async def test_callee_over_tcp(reactor, sipp, switch, peers, tmp_path):
    """A trunk whose address is tcp: carries the call, its re-INVITE and the BYE to the callee over TCP."""
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_reinvite.xml", "uas_reinvite.xml",
                         calls=3, uas_extra=("-t", "t1"), trunk_transport="tcp:")
    assert not any(run.counts.values()), run.counts
    assert [(r.status, r.hangup_by) for r in run.records] == [(200, "caller")] * 3
    invites = received(run.uas_log, "INVITE ")
    assert len(invites) == 6 and all("SIP/2.0/TCP" in (header(m, "Via") or "") for m in invites)


@pytest_twisted.ensureDeferred
async def test_maximum_call_length(reactor, sipp, switch, peers, tmp_path):
    """With max_duration 2 s an answered call is ended by the switch with a BYE to each side."""
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_callee_bye.xml", "uas_answer.xml",
                         settings="keepalive_interval: 0, max_duration: 2")
    assert not any(run.counts.values()), run.counts
    (record,) = run.records
    assert record.status == 200 and record.hangup_by == "switch"
    assert 1.9 <= record.duration <= 3.0
    for log in (run.uac_log, run.uas_log):
        (bye,) = received(log, "BYE ")
        assert "Maximum call length" in (header(bye, "Reason") or "")


async def run_silent_callee(reactor: Any, sipp: str, switch: Any, peers: Any, tmp_path: Path) -> Run:
    """A call whose callee stops answering the switch's keepalive OPTIONS (every 1 s)."""
    return await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_callee_bye.xml",
                          "uas_keepalive_silent.xml", settings="keepalive_interval: 1",
                          timers=KEEPALIVE_TIMERS)


@pytest_twisted.ensureDeferred
async def test_keepalive_unanswered_hangs_up_the_caller(reactor, sipp, switch, peers, tmp_path):
    """A callee that stops answering OPTIONS gets the call ended: the caller gets a BYE with Reason 408."""
    run = await run_silent_callee(reactor, sipp, switch, peers, tmp_path)
    assert not any(run.counts.values()), run.counts
    (record,) = run.records
    assert record.status == 200 and record.answer is not None
    assert record.hangup_by == "switch"
    # The caller answered its own probes while the callee's one timed out.
    assert received(run.uac_log, "OPTIONS ")
    assert len(received(run.uas_log, "OPTIONS ")) == 1
    (to_caller,) = received(run.uac_log, "BYE ")
    assert "cause=408" in (header(to_caller, "Reason") or "")


@pytest_twisted.ensureDeferred
async def test_keepalive_unanswered_sends_bye_to_the_callee(reactor, sipp, switch, peers, tmp_path):
    """The callee that stopped answering OPTIONS also gets a BYE with Reason 408 (RFC 3261 §12.2.1.2)."""
    run = await run_silent_callee(reactor, sipp, switch, peers, tmp_path)
    (to_callee,) = received(run.uas_log, "BYE ")
    assert "cause=408" in (header(to_callee, "Reason") or "")
