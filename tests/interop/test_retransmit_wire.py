"""Issue 3 black-box: the transaction layer of the real `twistd` switch, seen from a
raw UDP socket on loopback.

The switch runs with no modules and short timers (T1 0.2 s, T2 0.8 s, T4 1 s), so
an INVITE is refused 403 (no module takes the caller) and timer H ends at 12.8 s.
Every request names the probe's own address in its Via, so answers come back to it.
Timing is measured with the wall clock against a real process; tolerances are
below half of T1, so a gap of T1 cannot pass for 2*T1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop._wire import T1, T2, T4, Probe, gaps, running_switch, timer_g_schedule
from tests.support import Switch

pytestmark = pytest.mark.interop

TOLERANCE = 0.09  # seconds either way on a measured gap (under T1 / 2)


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switch]:
    """One real switch for this module; every test talks to it from its own socket."""
    with running_switch(tmp_path_factory.mktemp("switch")) as switch:
        yield switch


@pytest.fixture
def probe(switch: Switch) -> Iterator[Probe]:
    with Probe(switch.port) as probe:
        yield probe
    assert switch.alive(), f"the switch stopped answering OPTIONS:\n{switch.log()}"


def ack_for(invite: bytes, response: bytes) -> bytes:
    """The ACK for a non-2xx final response (§17.1.1.3): the INVITE's Request-URI,
    Call-ID, From, top Via (same branch) and CSeq number, the response's To."""
    head = invite.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    uri = head[0].split(b" ")[1]
    lines = [b"ACK " + uri + b" SIP/2.0"]
    for line in head[1:]:
        name = line.split(b":", 1)[0].lower()
        if name in (b"via", b"from", b"call-id", b"max-forwards"):
            lines.append(line)
        elif name == b"cseq":
            lines.append(line.replace(b"INVITE", b"ACK"))
    for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        if line.lower().startswith(b"to:"):
            lines.append(line)
    lines.append(b"Content-Length: 0")
    return b"\r\n".join(lines) + b"\r\n\r\n"


# -- (a) a retransmitted request gets the identical response ------------------------------


def test_retransmitted_options_gets_identical_response(probe: Probe) -> None:
    """The same OPTIONS datagram sent three times gets the byte-identical 200 each
    time (§17.2.2: the server transaction resends its last response)."""
    options = probe.request("OPTIONS", uri=f"sip:127.0.0.1:{probe.target[1]}")
    answers = []
    for _ in range(3):
        probe.send(options)
        answer = probe.final(2.0)
        assert answer is not None, "no answer to the OPTIONS"
        answers.append(answer.data)
    assert answers[0].startswith(b"SIP/2.0 200 ")
    assert answers[1] == answers[0] and answers[2] == answers[0]


def test_retransmitted_non_invite_error_is_identical(probe: Probe) -> None:
    """A retransmitted out-of-dialog MESSAGE nobody takes gets the same refusal,
    byte for byte, To tag included."""
    message = probe.request("MESSAGE", extra="Content-Type: text/plain\r\n", body="hello")
    probe.send(message)
    first = probe.final(2.0)
    probe.send(message)
    second = probe.final(2.0)
    assert first is not None and second is not None
    assert first.status is not None and first.status >= 400
    assert second.data == first.data


def test_retransmitted_invite_gets_identical_final(probe: Probe) -> None:
    """An INVITE sent again after its 403 gets that 403 again at once (not a new
    call, not a new To tag): §17.2.1, Completed state resends the last response."""
    invite = probe.request("INVITE")
    probe.send(invite)
    first = probe.final(2.0)
    assert first is not None and first.status == 403, first
    sent = probe.send(invite)
    again = probe.final(1.0)
    assert again is not None
    assert again.data == first.data
    # It answered the retransmission, not just timer G at T1 after the first 403.
    assert again.at - sent < T1 / 2
    probe.send(ack_for(invite, first.data))


# -- (b) timer G until timer H ------------------------------------------------------------------


def test_unacked_invite_error_retransmitted_until_timer_h(probe: Probe) -> None:
    """A 403 to an INVITE that is never ACKed comes again at T1, 2*T1, 4*T1 ...
    capped at T2, byte-identical, and stops at timer H (64*T1): 17 copies after
    the first with T1 = 0.2 s, T2 = 0.8 s."""
    expected = timer_g_schedule()
    probe.send(probe.request("INVITE"))
    arrivals = probe.collect(64 * T1 + 2.0)
    trying = [a for a in arrivals if a.status == 100]
    finals = [a for a in arrivals if a.status is not None and a.status >= 200]
    assert len(trying) == 1, "100 Trying is sent once and never retransmitted"
    assert finals and finals[0].status == 403
    assert {a.data for a in finals} == {finals[0].data}, "every copy is byte-identical"
    offsets = [a.at - finals[0].at for a in finals[1:]]
    assert len(offsets) == len(expected), f"got copies at {[round(t, 3) for t in offsets]}"
    measured = gaps([0.0, *offsets])
    wanted = gaps([0.0, *expected])
    for i, (got, want) in enumerate(zip(measured, wanted, strict=True)):
        assert abs(got - want) < TOLERANCE, f"gap {i}: {got:.3f}s, expected {want:.3f}s ({measured})"
    assert offsets[-1] < 64 * T1 + TOLERANCE
    assert max(measured) < T2 + TOLERANCE, "the interval is capped at T2"


def test_ack_stops_retransmission_and_absorbs_invite(probe: Probe) -> None:
    """The ACK for the 403 stops timer G at once; in Confirmed (timer I, T4) a
    retransmitted INVITE and ACK are absorbed without an answer."""
    invite = probe.request("INVITE")
    probe.send(invite)
    final = probe.final(2.0)
    assert final is not None and final.status == 403
    ack = ack_for(invite, final.data)
    probe.send(ack)
    probe.send(invite)  # a late copy of the INVITE, inside timer I
    probe.send(ack)
    later = probe.collect(T4 + 1.0)  # past timer I
    assert later == [], f"after the ACK the switch still sent {[a.start_line for a in later]}"


# -- (c) CANCEL for nothing, (d) in-dialog request for no dialog ---------------------------------


def test_cancel_matching_nothing_gets_481(probe: Probe) -> None:
    """A CANCEL whose branch matches no INVITE gets 481 (§9.2), and its
    retransmission gets the same 481."""
    cancel = probe.request("CANCEL")
    probe.send(cancel)
    answer = probe.final(2.0)
    assert answer is not None and answer.status == 481, answer
    probe.send(cancel)
    again = probe.final(2.0)
    assert again is not None and again.data == answer.data


def test_cancel_after_final_gets_200_and_no_487(probe: Probe) -> None:
    """A CANCEL for an INVITE already refused matches its transaction: 200 to the
    CANCEL (§9.2 "as long as the CANCEL matched an existing transaction"), and the
    INVITE keeps its 403 (no 487 after a final response)."""
    invite = probe.request("INVITE")
    probe.send(invite)
    final = probe.final(2.0)
    assert final is not None and final.status == 403
    # Same Request-URI, Call-ID, From, To, Via branch and CSeq number (§9.1).
    cancel = invite.replace(b"INVITE sip:", b"CANCEL sip:", 1).replace(b"1 INVITE", b"1 CANCEL")
    cancel = cancel.split(b"Contact:")[0] + b"Content-Length: 0\r\n\r\n"
    probe.send(cancel)
    answers = probe.collect(1.0)
    statuses = [(a.status, a.header("CSeq")) for a in answers]
    assert (200, "1 CANCEL") in statuses, statuses
    assert all(status != 487 for status, _ in statuses), statuses
    probe.send(ack_for(invite, final.data))


@pytest.mark.parametrize("method", ["BYE", "INFO", "UPDATE", "OPTIONS"])
def test_in_dialog_request_for_unknown_dialog_gets_481(probe: Probe, method: str) -> None:
    """A request with a To tag that names no dialog of the switch gets 481
    (§12.2.2)."""
    probe.send(probe.request(method, to_tag="nosuchdialog", cseq=2))
    answer = probe.final(2.0)
    assert answer is not None and answer.status == 481, answer


def test_reinvite_for_unknown_dialog_gets_481(probe: Probe) -> None:
    """A re-INVITE (To tag) for no dialog gets 481 (§12.2.2), not a new call."""
    invite = probe.request("INVITE", to_tag="nosuchdialog", cseq=2)
    probe.send(invite)
    answer = probe.final(2.0)
    assert answer is not None and answer.status == 481, answer
    probe.send(ack_for(invite, answer.data))


def test_ack_for_unknown_dialog_is_not_answered(probe: Probe) -> None:
    """An ACK that matches no transaction or dialog is dropped: never answered
    (§17.2.1), not even with 481."""
    probe.send(probe.request("ACK", to_tag="nosuchdialog"))
    assert probe.collect(0.5) == []
