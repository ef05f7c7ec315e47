"""Blind transfer (RFC 3515 REFER, as RFC 5589 §6 describes it) between SIPp peers.

Three SIPp peers around an in-process switch with three trunks: the caller A comes in
on ``callers``, the callee B is reached through ``to-b`` (number 2000) and the
transfer target C through ``to-c`` (number 3000). One party REFERs the other to C;
the scenarios check the 202, the NOTIFYs' message/sipfrag bodies and the BYE the
transferor gets, and that the transferee is re-INVITEd with C's SDP; the tests read
the peers' message logs (``-trace_msg``) for the headers and check what the switch
recorded and that it holds nothing afterwards (`wait_idle`).

Flows whose INVITE to C fails put C on a TCP trunk: over UDP the failed INVITE's
client transaction would wait Timer D (32 s whatever T1 is) before the switch is
idle. Every test takes about 7 s, most of it the REFER's server transaction
waiting Timer J (64*T1 with the short test timers) before `wait_idle` sees zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from tests.interop.conftest import sipp_args, wait_idle
from tests.interop.test_trunk_flows import header, received, sent, wait_bound
from tests.support import free_port

pytestmark = pytest.mark.interop

DEADLINE = 40.0  # seconds before a SIPp peer is killed
CALLER = "1000"  # the caller trunk's number: nothing is ever routed back to it
CALLEE = "2000"
TARGET = "3000"
NOBODY = "4000"  # a number no module takes
SIPFRAG = "message/sipfrag;version=2.0"
TRANSFERRED = 'Q.850;cause=16;text="Call transferred"'


def transfer_config(a_port: int, b_port: int, c_port: int, c_transport: str = "") -> str:
    """Three trunks; calls come in on ``callers`` only (the others allow only a
    documentation address, 192.0.2.1, so that no call is taken in on them)."""
    return (
        "calls: {keepalive_interval: 0}\n"
        "modules:\n"
        "  - type: trunk\n"
        "    name: callers\n"
        f"    address: 127.0.0.1:{a_port}\n"
        "    allow: [127.0.0.1]\n"
        f"    numbers: ['{CALLER}']\n"
        "  - type: trunk\n"
        "    name: to-b\n"
        f"    address: 127.0.0.1:{b_port}\n"
        "    allow: [192.0.2.1]\n"
        f"    numbers: ['{CALLEE}']\n"
        "  - type: trunk\n"
        "    name: to-c\n"
        f"    address: {c_transport}127.0.0.1:{c_port}\n"
        "    allow: [192.0.2.1]\n"
        f"    numbers: ['{TARGET}']\n"
    )


@dataclass
class Transfer:
    """One transfer flow's outcome: the switch and each peer's message log."""

    service: Any
    logs: dict[str, Path]
    counts: dict[str, int]

    @property
    def records(self) -> list[Any]:
        return list(self.service.engine.records)


async def run_transfer(
    reactor: Any, sipp: str, switch: Any, peers: Any, tmp_path: Path,
    a: str, b: str, c: str | None, refer_to: str = f"sip:{TARGET}@127.0.0.1", c_over_tcp: bool = False,
) -> Transfer:
    """Run the scenarios `a`, `b` and (if given) `c` through a fresh switch; assert
    every SIPp exits 0 and wait (bounded) until the engine holds nothing. The
    transferor's scenario REFERs to ``-key refer_to``."""
    a_port, b_port, c_port = free_port(), free_port(), free_port()
    service = await switch(transfer_config(a_port, b_port, c_port, "tcp:" if c_over_tcp else ""))
    logs = {name: tmp_path / f"{name}_messages.log" for name in "abc"}

    def args(name: str, scenario: str, port: int, remote: int | None = None, *extra: str) -> list[str]:
        # Each peer its own media port, so that C's SDP differs from B's and the
        # transferee must be re-INVITEd.
        return sipp_args(sipp, scenario, port, remote, *extra, "-m", "1", "-timeout",
                         f"{int(DEADLINE) - 5}s", "-timeout_error", "-trace_msg", "-message_file",
                         str(logs[name]), "-mp", str(free_port()), "-key", "refer_to", refer_to)

    # B and C must listen before the switch dials them.
    started = {"B": peers.start(args("b", b, b_port), deadline=DEADLINE)}
    await wait_bound(reactor, started["B"], b_port)
    if c is not None:
        started["C"] = peers.start(args("c", c, c_port, None, *(("-t", "t1") if c_over_tcp else ())),
                                   deadline=DEADLINE)
        await wait_bound(reactor, started["C"], c_port, "tcp" if c_over_tcp else "udp")
    started["A"] = peers.start(args("a", a, a_port, service.port, "-s", CALLEE), deadline=DEADLINE)
    codes = {name: await peer.wait() for name, peer in started.items()}
    for name, code in codes.items():
        assert code == 0, f"{name} exit {code}:\n{started[name].output}\n{_tail(logs[name.lower()])}"
    counts = await wait_idle(reactor, service.engine)
    return Transfer(service, logs, counts)


def _tail(path: Path, size: int = 8000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


def notifies(log: Path) -> list[str]:
    """The NOTIFYs a peer received, in order."""
    return received(log, "NOTIFY ")


def sipfrag(message: str) -> str:
    """The status line a NOTIFY's message/sipfrag body carries."""
    return message.split("\n\n", 1)[1].strip().splitlines()[0] if "\n\n" in message else ""


def check_notifies(log: Path, refer_cseq: int, finals: list[str]) -> None:
    """The transferor's NOTIFYs: the refer event of its REFER, sipfrag bodies with
    `finals` in order, the subscription active until the last one ends it."""
    found = notifies(log)
    assert [sipfrag(m) for m in found] == finals, found
    for i, message in enumerate(found):
        assert header(message, "Event") == f"refer;id={refer_cseq}"
        assert header(message, "Content-Type") == SIPFRAG
        expected = "terminated;reason=noresource" if i == len(found) - 1 else "active;expires=60"
        assert header(message, "Subscription-State") == expected


def check_accepted(log: Path) -> None:
    """The REFER got one 202, with a Contact (RFC 3515 §2.4.2)."""
    (accepted,) = [m for m in received(log, "SIP/2.0 202") if (header(m, "CSeq") or "").endswith("REFER")]
    assert header(accepted, "Contact")


def reinvite(log: Path) -> str:
    """The one re-INVITE a peer received (an INVITE inside its dialog: To tag)."""
    (found,) = [m for m in received(log, "INVITE ") if "tag=" in (header(m, "To") or "")]
    return found


def media_port(message: str) -> str:
    return message.split("m=audio ", 1)[1].split()[0]


def answer_sdp(log: Path) -> str:
    """The SDP a peer answered the first INVITE with."""
    (answer,) = [m for m in sent(log, "SIP/2.0 200") if header(m, "CSeq") == "1 INVITE"]
    return answer


TRYING, RINGING = "SIP/2.0 100 Trying", "SIP/2.0 180 Ringing"


@pytest_twisted.ensureDeferred
async def test_callee_transfers_the_caller(reactor, sipp, switch, peers, tmp_path):
    """B REFERs A to C: 202, NOTIFYs 100/180/200 and a BYE for B; A is re-INVITEd with C's SDP."""
    run = await run_transfer(reactor, sipp, switch, peers, tmp_path,
                             a="refer_uac_transferee.xml", b="refer_uas_transferor.xml",
                             c="refer_target_answer.xml")
    assert not any(run.counts.values()), run.counts
    check_accepted(run.logs["b"])
    check_notifies(run.logs["b"], 1, [TRYING, RINGING, "SIP/2.0 200 OK"])
    (bye,) = received(run.logs["b"], "BYE ")
    assert header(bye, "Reason") == TRANSFERRED
    # A sees one session: B's origin, next version, with C's media (RFC 3264 §8).
    offer = reinvite(run.logs["a"])
    assert "o=uas 1 2 " in offer and "s=target-answer-1" in offer
    assert media_port(offer) == media_port(answer_sdp(run.logs["c"])) != media_port(answer_sdp(run.logs["b"]))
    # C was called as from A (the transferee), and A's BYE reached it.
    (invite,) = received(run.logs["c"], "INVITE ")
    assert "sip:sipp@" in (header(invite, "From") or "")
    assert len(received(run.logs["c"], "BYE ")) == 1
    (record,) = run.records
    assert record.status == 200 and record.transfers == [TARGET]
    assert record.outbound_module == "to-c" and record.hangup_by == "caller"


@pytest_twisted.ensureDeferred
async def test_caller_transfers_the_callee(reactor, sipp, switch, peers, tmp_path):
    """A REFERs B to C (tel: URI): 202, NOTIFYs and a BYE for A; B is re-INVITEd with C's SDP."""
    run = await run_transfer(reactor, sipp, switch, peers, tmp_path,
                             a="refer_uac_transferor.xml", b="refer_uas_transferee.xml",
                             c="refer_target_answer.xml", refer_to=f"tel:{TARGET}")
    assert not any(run.counts.values()), run.counts
    check_accepted(run.logs["a"])
    check_notifies(run.logs["a"], 2, [TRYING, RINGING, "SIP/2.0 200 OK"])
    (bye,) = received(run.logs["a"], "BYE ")
    assert header(bye, "Reason") == TRANSFERRED
    offer = reinvite(run.logs["b"])
    assert "s=target-answer-1" in offer and media_port(offer) == media_port(answer_sdp(run.logs["c"]))
    # C was called as from B (the transferee), and B's BYE reached it.
    (invite,) = received(run.logs["c"], "INVITE ")
    assert f"sip:{CALLEE}@" in (header(invite, "From") or "")
    assert len(received(run.logs["c"], "BYE ")) == 1
    (record,) = run.records
    assert record.status == 200 and record.transfers == [TARGET] and record.hangup_by == "callee"
    # C took the caller's side: the record names its module there.
    assert (record.inbound_module, record.outbound_module) == ("to-c", "to-b")


@pytest_twisted.ensureDeferred
async def test_failed_transfer_keeps_the_call(reactor, sipp, switch, peers, tmp_path):
    """C answers 486: the last NOTIFY says SIP/2.0 486 Busy Here; A and B stay connected.

    C is on a TCP trunk so that the failed INVITE's transaction ends at once (Timer D
    is 0 on reliable transports) and the switch is idle quickly."""
    run = await run_transfer(reactor, sipp, switch, peers, tmp_path,
                             a="uac_callee_bye.xml", b="refer_uas_transfer_fails.xml", c="uas_busy.xml",
                             c_over_tcp=True)
    assert not any(run.counts.values()), run.counts
    check_accepted(run.logs["b"])
    check_notifies(run.logs["b"], 1, [TRYING, RINGING, "SIP/2.0 486 Busy Here"])
    assert len(received(run.logs["c"], "ACK ")) == 1
    # Nobody was re-INVITEd; A's only BYE is B's hang-up, relayed.
    assert received(run.logs["a"], "INVITE ") == []
    (bye,) = received(run.logs["a"], "BYE ")
    assert "Call transferred" not in (header(bye, "Reason") or "")
    (record,) = run.records
    assert record.status == 200 and record.transfers == [] and record.hangup_by == "callee"
    assert record.outbound_module == "to-b"


@pytest_twisted.ensureDeferred
async def test_refused_refers_keep_the_call(reactor, sipp, switch, peers, tmp_path):
    """Bad REFERs get 400/416/501, one to a number nobody takes 404; no NOTIFY; the call stays up."""
    run = await run_transfer(reactor, sipp, switch, peers, tmp_path,
                             a="uac_callee_bye.xml", b="refer_uas_refused.xml", c=None,
                             refer_to=f"sip:{NOBODY}@127.0.0.1")
    assert not any(run.counts.values()), run.counts
    answers = [m.split("\n", 1)[0] for m in received(run.logs["b"], "SIP/2.0 ")
               if (header(m, "CSeq") or "").endswith("REFER")]
    assert [line.split()[1] for line in answers] == ["400", "416", "501", "404"], answers
    assert notifies(run.logs["b"]) == []
    assert len(received(run.logs["a"], "BYE ")) == 1
    (record,) = run.records
    assert record.status == 200 and record.transfers == [] and record.hangup_by == "callee"


@pytest_twisted.ensureDeferred
async def test_transferor_leaves_before_the_target_answers(reactor, sipp, switch, peers, tmp_path):
    """B BYEs right after the 202: A waits alone and is joined to C when C answers."""
    run = await run_transfer(reactor, sipp, switch, peers, tmp_path,
                             a="refer_uac_transferee.xml", b="refer_uas_transferor_leaves.xml",
                             c="refer_target_slow.xml")
    assert not any(run.counts.values()), run.counts
    check_accepted(run.logs["b"])
    # Only the first NOTIFY: B had gone when the outcome was known.
    assert [sipfrag(m) for m in notifies(run.logs["b"])] == [TRYING]
    assert received(run.logs["b"], "BYE ") == []
    assert "s=target-answer-1" in reinvite(run.logs["a"])
    assert len(received(run.logs["c"], "BYE ")) == 1
    (record,) = run.records
    assert record.status == 200 and record.transfers == [TARGET] and record.hangup_by == "caller"


@pytest_twisted.ensureDeferred
async def test_transferee_left_alone_when_the_target_fails(reactor, sipp, switch, peers, tmp_path):
    """B leaves after the 202 and C is busy: nobody is left for A, which gets a BYE (Reason SIP;cause=486)."""
    run = await run_transfer(reactor, sipp, switch, peers, tmp_path,
                             a="uac_callee_bye.xml", b="refer_uas_transferor_leaves.xml",
                             c="refer_target_slow_busy.xml", c_over_tcp=True)
    assert not any(run.counts.values()), run.counts
    (bye,) = received(run.logs["a"], "BYE ")
    assert (header(bye, "Reason") or "").startswith("SIP;cause=486")
    (record,) = run.records
    assert record.status == 200 and record.transfers == [] and record.hangup_by == "switch"
    assert record.cause == "SIP;cause=486"


@pytest_twisted.ensureDeferred
async def test_transferee_hangs_up_while_the_target_rings(reactor, sipp, switch, peers, tmp_path):
    """A BYEs while C rings: C is CANCELled, B hears NOTIFY 487 Request Terminated and then its BYE."""
    run = await run_transfer(reactor, sipp, switch, peers, tmp_path,
                             a="refer_uac_leaves_early.xml", b="refer_uas_transferee_gone.xml",
                             c="uas_cancelled.xml", c_over_tcp=True)
    assert not any(run.counts.values()), run.counts
    check_accepted(run.logs["b"])
    check_notifies(run.logs["b"], 1, [TRYING, RINGING, "SIP/2.0 487 Request Terminated"])
    assert len(received(run.logs["c"], "CANCEL ")) == 1
    (record,) = run.records
    assert record.status == 200 and record.transfers == [] and record.hangup_by == "caller"


@pytest_twisted.ensureDeferred
async def test_transfer_without_subscription(reactor, sipp, switch, peers, tmp_path):
    """With Refer-Sub: false (RFC 4488) the 202 says so and no NOTIFY comes; the transfer still happens."""
    run = await run_transfer(reactor, sipp, switch, peers, tmp_path,
                             a="refer_uac_transferee.xml", b="refer_uas_no_subscription.xml",
                             c="refer_target_answer.xml")
    assert not any(run.counts.values()), run.counts
    assert notifies(run.logs["b"]) == []
    assert "s=target-answer-1" in reinvite(run.logs["a"])
    (record,) = run.records
    assert record.status == 200 and record.transfers == [TARGET] and record.hangup_by == "caller"


@pytest_twisted.ensureDeferred
async def test_refer_outside_a_dialog_is_forbidden(reactor, sipp, switch, peers, tmp_path):
    """A REFER without a To tag gets 403 and makes no call."""
    service = await switch(transfer_config(free_port(), free_port(), free_port()))
    log = tmp_path / "messages.log"
    peer = peers.start(
        sipp_args(sipp, "refer_out_of_dialog.xml", free_port(), service.port, "-s", CALLEE, "-m", "1",
                  "-timeout", "15s", "-timeout_error", "-trace_msg", "-message_file", str(log),
                  "-key", "refer_to", f"sip:{TARGET}@127.0.0.1"),
        deadline=20.0,
    )
    code = await peer.wait()
    assert code == 0, f"exit {code}:\n{peer.output}\n{_tail(log)}"
    counts = await wait_idle(reactor, service.engine)
    assert not any(counts.values()), counts
    assert list(service.engine.records) == []


@pytest_twisted.ensureDeferred
async def test_transferee_answers_with_new_media(reactor, sipp, switch, peers, tmp_path):
    """A answers the re-INVITE with a new media port: the switch re-INVITEs C with A's new SDP."""
    run = await run_transfer(reactor, sipp, switch, peers, tmp_path,
                             a="refer_uac_transferee_moves.xml", b="refer_uas_transferor.xml",
                             c="refer_target_reinvited.xml")
    assert not any(run.counts.values()), run.counts
    (answer,) = [m for m in sent(run.logs["a"], "SIP/2.0 200") if header(m, "CSeq") != "1 INVITE"
                 and (header(m, "CSeq") or "").endswith("INVITE")]
    (first_offer,) = sent(run.logs["a"], "INVITE ")
    offer = reinvite(run.logs["c"])
    assert "s=uac-answer-2" in offer and media_port(offer) == media_port(answer) != media_port(first_offer)
    (record,) = run.records
    assert record.status == 200 and record.transfers == [TARGET] and record.hangup_by == "caller"
