"""End-to-end INVITE reliability: the ACK for a 2xx (§13.2.2.4) and the UAS's 2xx
retransmission until the ACK (§13.3.1.4), stepped with a fake clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from phpvoip.sip.address import Address
from phpvoip.sip.dialog import (
    AnswerRetransmitter,
    AnswerState,
    Dialog,
    DialogState,
    DialogTable,
    UacDialogs,
    UacEvent,
    dialog_response,
)
from phpvoip.sip.errors import LocalProtocolError
from phpvoip.sip.message import parse
from phpvoip.sip.timers import Timers
from phpvoip.sip.uri import parse_uri
from tests.unit.dialog_fixtures import (
    BOB_CONTACT,
    CALL_ID,
    P1,
    P2,
    Recorder,
    in_dialog_request,
    invite_received,
    invite_sent,
    response,
)

TIMERS = Timers(t1=0.5, t2=4.0, t4=5.0)
PROXY = Address("udp", "127.0.0.2", 5060)
ALICE = Address("udp", "127.0.0.1", 5062)


# -- UAC: ACK for 2xx ----------------------------------------------------------------------


def test_ack_for_2xx_headers_exact():
    """The ACK has the INVITE's CSeq number, method ACK, a new branch and the route set."""
    dialog = Dialog.uac(invite_sent(), response(200, "OK"))
    ack = dialog.build_ack(response(200, "OK"), "127.0.0.1", 5062)
    branch = ack.top_via.branch
    assert branch.startswith("z9hG4bK") and branch != "z9hG4bKa1"
    assert bytes(ack).decode() == (
        f"ACK {BOB_CONTACT} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"Route: {P1}, {P2}\r\n"
        'From: "Alice" <sip:alice@127.0.0.1>;tag=alice1\r\n'
        "To: <sip:bob@example.test>;tag=bob1\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        "CSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    assert dialog.local_seq == 1


def test_ack_carries_invite_credentials_and_answer():
    """The ACK repeats the INVITE's credentials (§13.2.2.4) and can carry an SDP answer."""
    invite = invite_sent()
    credentials = 'Digest username="alice", realm="r", nonce="n", uri="sip:bob@example.test", response="x"'
    invite.add("Proxy-Authorization", credentials)
    dialog = Dialog.uac(invite, response(200, "OK"))
    ack = dialog.build_ack(
        response(200, "OK"),
        "127.0.0.1",
        5062,
        body=b"v=0\r\n",
        headers=[("Content-Type", "application/sdp")],
        invite=invite,
    )
    assert ack.get("Proxy-Authorization") == credentials
    assert ack.get("Content-Type") == "application/sdp"
    assert parse(bytes(ack)).body == b"v=0\r\n"


def test_ack_only_for_2xx_to_invite():
    """Only a 2xx to an INVITE gets an ACK from the dialog (the transaction ACKs the rest)."""
    dialog = Dialog.uac(invite_sent(), response(200, "OK"))
    with pytest.raises(LocalProtocolError):
        dialog.build_ack(response(486, "Busy Here"), "h", 1)
    with pytest.raises(LocalProtocolError):
        dialog.build_ack(response(200, "OK", cseq="2 INFO"), "h", 1)


def test_ack_resent_on_2xx_retransmission():
    """Each retransmitted 2xx gets the stored ACK again, same bytes, same destination."""
    clock, send = Clock(), Recorder()
    uac = UacDialogs(invite_sent(), clock, TIMERS, send)
    update = uac.on_response(response(200, "OK"))
    assert update.event is UacEvent.CONFIRMED
    dialog = update.dialog
    ack = dialog.build_ack(response(200, "OK"), "127.0.0.1", 5062, invite=uac.request)
    dialog.send_ack(ack, PROXY)
    assert send.sent == [(ack, PROXY)]
    for _ in range(3):
        assert uac.on_response(response(200, "OK")).event is UacEvent.RETRANSMISSION
    assert send.sent == [(ack, PROXY)] * 4
    assert dialog.ack is ack


def test_2xx_retransmission_before_ack_sends_nothing():
    """A 2xx repeated before we ACKed is reported as a retransmission and sends nothing."""
    clock, send = Clock(), Recorder()
    uac = UacDialogs(invite_sent(), clock, TIMERS, send)
    uac.on_response(response(200, "OK"))
    assert uac.on_response(response(200, "OK")).event is UacEvent.RETRANSMISSION
    assert send.sent == []


def test_ack_resent_after_bye():
    """A 2xx still retransmitted after our BYE gets the ACK again, so the peer stops."""
    clock, send = Clock(), Recorder()
    uac = UacDialogs(invite_sent(), clock, TIMERS, send)
    dialog = uac.on_response(response(200, "OK")).dialog
    dialog.send_ack(dialog.build_ack(response(200, "OK"), "127.0.0.1", 5062), PROXY)
    dialog.new_request("BYE", "127.0.0.1", 5062)
    assert dialog.state is DialogState.TERMINATED
    assert uac.on_response(response(200, "OK")).event is UacEvent.RETRANSMISSION
    assert len(send.sent) == 2


def test_ack_for_reinvite_and_its_retransmission():
    """A re-INVITE's 2xx is ACKed with the re-INVITE's CSeq; its retransmission gets the ACK again."""
    send = Recorder()
    dialog = Dialog.uac(invite_sent(), response(200, "OK"), send)
    reinvite = dialog.new_request("INVITE", "127.0.0.1", 5062)
    ok = response(200, "OK", cseq=f"{reinvite.cseq.seq} INVITE")
    assert dialog.receive_response(ok) is True
    ack = dialog.build_ack(ok, "127.0.0.1", 5062)
    assert (ack.cseq.seq, ack.cseq.method) == (reinvite.cseq.seq, "ACK")
    dialog.send_ack(ack, PROXY)
    assert dialog.receive_response(ok) is False
    assert send.sent == [(ack, PROXY), (ack, PROXY)]
    old = response(200, "OK", cseq="1 INVITE")
    assert dialog.on_2xx_retransmission(old) is False


# -- UAS: 2xx retransmission ------------------------------------------------------------------


def ok_for_bob():
    invite = invite_received()
    return invite, dialog_response(invite, 200, "bob1", parse_uri(BOB_CONTACT))


def test_2xx_retransmission_instants():
    """The 2xx goes at 0, T1, 3T1, 7T1, ... with the interval capped at T2, then gives up at 64*T1."""
    clock = Clock()
    send = Recorder(clock)
    timeouts = []
    _, ok = ok_for_bob()
    rt = AnswerRetransmitter(clock, TIMERS, send, ok, ALICE, lambda: timeouts.append(clock.seconds()))
    clock.pump([0.25] * 200)
    assert send.times == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(message is ok and dest == ALICE for message, dest in send.sent)
    assert timeouts == [32.0]
    assert rt.state is AnswerState.TIMED_OUT
    assert clock.getDelayedCalls() == []


def test_2xx_retransmission_interval_capped_at_t2():
    """With T2 = 2*T1 the interval stops doubling at T2."""
    clock = Clock()
    send = Recorder(clock)
    _, ok = ok_for_bob()
    AnswerRetransmitter(clock, Timers(t1=1.0, t2=2.0), send, ok, ALICE, lambda: None)
    clock.pump([0.5] * 20)
    assert send.times == [0, 1, 3, 5, 7, 9]


def test_2xx_retransmission_stops_on_ack():
    """The ACK with the INVITE's CSeq stops the retransmissions; another CSeq does not."""
    clock = Clock()
    send = Recorder(clock)
    timeouts = []
    _, ok = ok_for_bob()
    rt = AnswerRetransmitter(clock, TIMERS, send, ok, ALICE, lambda: timeouts.append(1))
    clock.pump([0.5] * 4)
    assert rt.ack_received(in_dialog_request("ACK", 7)) is False
    assert rt.ack_received(in_dialog_request("ACK", 1)) is True
    assert rt.ack_received(in_dialog_request("ACK", 1)) is False
    clock.pump([1] * 40)
    assert send.times == [0, 0.5, 1.5]
    assert timeouts == []
    assert rt.state is AnswerState.ACKNOWLEDGED
    assert clock.getDelayedCalls() == []


def test_send_first_false_only_retransmits():
    """When the transaction sent the 2xx, the retransmitter only sends the repeats."""
    clock = Clock()
    send = Recorder(clock)
    _, ok = ok_for_bob()
    AnswerRetransmitter(clock, TIMERS, send, ok, ALICE, lambda: None, send_first=False)
    clock.pump([0.5] * 4)
    assert send.times == [0.5, 1.5]


def test_only_2xx_to_invite_is_retransmitted():
    """A non-2xx, or a 2xx to another method, is refused."""
    invite, _ = ok_for_bob()
    with pytest.raises(LocalProtocolError):
        AnswerRetransmitter(Clock(), TIMERS, Recorder(), invite.response(486), ALICE, lambda: None)
    info = in_dialog_request("INFO", 2)
    with pytest.raises(LocalProtocolError):
        AnswerRetransmitter(Clock(), TIMERS, Recorder(), info.response(200), ALICE, lambda: None)


def test_dialog_answer_stops_on_ack():
    """A dialog's 2xx stops when the ACK reaches the dialog; a repeated ACK is not new."""
    clock, table = Clock(), DialogTable()
    send = Recorder(clock)
    invite, ok = ok_for_bob()
    dialog = Dialog.uas(invite, ok, send)
    table.add(dialog)
    dialog.answer(ok, ALICE, clock, TIMERS, lambda: None)
    assert dialog.answer_pending
    clock.pump([0.5, 0.5])
    ack = in_dialog_request("ACK", 1)
    assert table.match(ack).receive_request(ack) is True
    assert table.match(ack).receive_request(ack) is False
    assert not dialog.answer_pending
    clock.advance(60)
    assert send.times == [0, 0.5]
    assert clock.getDelayedCalls() == []


def test_no_ack_ends_dialog_with_bye():
    """No ACK within 64*T1: on_timeout lets the owner send BYE, which ends the dialog."""
    clock, table = Clock(), DialogTable()
    send = Recorder(clock)
    invite = invite_received()
    ringing = dialog_response(invite, 180, "bob1", parse_uri(BOB_CONTACT))
    dialog = Dialog.uas(invite, ringing, send)
    table.add(dialog)
    byes = []

    def hang_up() -> None:
        byes.append((clock.seconds(), dialog.new_request("BYE", "127.0.0.4", 5064)))

    ok = dialog_response(invite, 200, "bob1", parse_uri(BOB_CONTACT))
    dialog.answer(ok, ALICE, clock, TIMERS, hang_up)
    assert dialog.state is DialogState.CONFIRMED
    clock.pump([1] * 40)
    assert [t for t, _ in byes] == [32]
    bye = byes[0][1]
    assert bye.method == "BYE" and bye.to.tag == "alice1" and bye.from_.tag == "bob1"
    assert [str(r) for r in bye.route] == [P2, P1]
    assert dialog.state is DialogState.TERMINATED
    assert table.count() == 0
    assert clock.getDelayedCalls() == []


def test_terminate_stops_2xx_retransmission():
    """Ending the dialog stops its 2xx retransmission: no timer outlives the dialog."""
    clock = Clock()
    send = Recorder(clock)
    invite, ok = ok_for_bob()
    dialog = Dialog.uas(invite, ok, send)
    rt = dialog.answer(ok, ALICE, clock, TIMERS, lambda: None)
    dialog.terminate()
    assert rt.state is AnswerState.STOPPED
    assert clock.getDelayedCalls() == []


def test_2xx_to_reinvite_retransmitted_until_its_ack():
    """A 2xx to a re-INVITE is retransmitted too, and only the ACK with its CSeq stops it."""
    clock = Clock()
    send = Recorder(clock)
    invite, ok = ok_for_bob()
    dialog = Dialog.uas(invite, ok, send)
    dialog.answer(ok, ALICE, clock, TIMERS, lambda: None)
    dialog.receive_request(in_dialog_request("ACK", 1))
    reinvite = in_dialog_request("INVITE", 2)
    dialog.receive_request(reinvite)
    reok = dialog_response(reinvite, 200, "bob1", parse_uri(BOB_CONTACT))
    dialog.answer(reok, ALICE, clock, TIMERS, lambda: None)
    assert dialog.receive_request(in_dialog_request("ACK", 1)) is False
    assert dialog.answer_pending
    assert dialog.receive_request(in_dialog_request("ACK", 2)) is True
    assert clock.getDelayedCalls() == []
