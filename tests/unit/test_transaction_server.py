"""Server transactions (RFC 3261 §17.2, RFC 6026): every state and transition on a Clock."""

from __future__ import annotations

import pytest

from phpvoip.sip.errors import LocalProtocolError
from phpvoip.sip.headers import CSeq
from phpvoip.sip.transaction import (
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    TransactionState,
    TransactionStateError,
)
from tests.unit.transaction_fakes import TCP_PEER, UDP_PEER, advance, make_layer, request

S = TransactionState


def receive(method="INVITE", source=UDP_PEER, **kw):
    """A layer that has just received one request; returns its server transaction."""
    clock, wire, user, layer = make_layer()
    req = request(method, transport=source.transport.upper(), **kw)
    layer.message_received(req, source)
    [(got, tx)] = user.requests
    assert got is req
    failures: list[str] = []
    tx.on_failure = lambda t, reason: failures.append(reason)
    return clock, wire, user, layer, tx, req, failures


def ack_for(req, to_tag="t1", branch=None):
    """The ACK a client transaction sends for a non-2xx (same branch as the INVITE)."""
    return request(
        "ACK",
        branch=branch or req.top_via.branch,
        to_tag=to_tag,
        call_id=req.call_id,
        cseq=req.cseq.seq,
        sent_by=req.top_via.sent_by,
        transport=req.top_via.transport,
    )


# -- server INVITE: Proceeding -------------------------------------------------------------


def test_invite_sends_100_trying_after_200_ms_of_silence():
    """§17.2.1: the transaction answers 100 Trying when the user has not answered
    within 200 ms; the 100 carries no To tag and copies Timestamp."""
    clock, wire, _, _, tx, req, _ = receive(extra="Timestamp: 54\r\n")
    assert isinstance(tx, ServerInviteTransaction)
    assert tx.state is S.PROCEEDING
    advance(clock, 0.19)
    assert wire.sent == []
    advance(clock, 0.01)
    [trying] = wire.messages(100)
    assert wire.times(100) == [0.2]
    assert trying.to.tag is None
    assert trying.get("Timestamp") == "54"
    assert trying.top_via == req.top_via
    assert wire.sent[0][2] == UDP_PEER


def test_invite_no_100_when_the_user_answers_in_time():
    """A provisional from the user within 200 ms makes the 100 unnecessary."""
    clock, wire, _, _, tx, req, _ = receive()
    advance(clock, 0.1)
    tx.respond(req.response(180, to_tag="t1"))
    advance(clock, 1)
    assert [m.status for m in wire.messages()] == [180]


def test_invite_retransmission_gets_the_last_provisional():
    """A retransmitted INVITE in Proceeding is answered with the latest provisional."""
    clock, wire, user, layer, tx, req, _ = receive()
    tx.respond(req.response(180, to_tag="t1"))
    tx.respond(req.response(183, to_tag="t1"))
    advance(clock, 0.5)
    layer.message_received(request("INVITE"), UDP_PEER)
    assert [m.status for m in wire.messages()] == [180, 183, 183]
    assert len(user.requests) == 1


def test_invite_retransmission_before_any_answer_gets_100_at_once():
    """A retransmission that beats the 200 ms timer is quenched with 100 right away,
    and the timer does not send a second one."""
    clock, wire, _, layer, _, _, _ = receive()
    advance(clock, 0.1)
    layer.message_received(request("INVITE"), UDP_PEER)
    advance(clock, 1)
    assert wire.times(100) == [0.1]


def test_invite_transport_error_in_proceeding_tells_the_user():
    """Figure 7: a transport error in Proceeding terminates and informs the user."""
    _, _, _, layer, tx, _, failures = receive()
    layer.transport_error(UDP_PEER)
    assert tx.state is S.TERMINATED
    assert failures == ["transport"]
    assert layer.counts()["server"] == 0


# -- server INVITE: Completed and Confirmed ----------------------------------------------------


def test_invite_non_2xx_retransmitted_by_timer_g_until_timer_h():
    """Timer G resends a 486 at T1, 2T1, 4T1 ... capped at T2; timer H (64*T1)
    ends the transaction and tells the user the ACK never came."""
    clock, wire, _, layer, tx, req, failures = receive()
    tx.respond(req.response(486, to_tag="t1"))
    assert tx.state is S.COMPLETED
    advance(clock, 31.99)
    assert failures == []
    advance(clock, 0.01)
    assert wire.times(486) == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert failures == ["timeout"]
    assert tx.state is S.TERMINATED
    assert layer.counts()["server"] == 0


def test_invite_retransmission_in_completed_gets_the_final_again():
    """A retransmitted INVITE in Completed is answered with the final response."""
    clock, wire, user, layer, tx, req, _ = receive()
    tx.respond(req.response(404, to_tag="t1"))
    advance(clock, 0.2)
    layer.message_received(request("INVITE"), UDP_PEER)
    assert wire.times(404) == [0, 0.2]
    assert len(user.requests) == 1


def test_invite_ack_confirms_then_timer_i_absorbs_ack_retransmissions():
    """The ACK stops G and H (Confirmed); more ACKs are absorbed; timer I (T4)
    terminates. The ACK for a non-2xx never reaches the user."""
    clock, wire, user, layer, tx, req, failures = receive()
    tx.respond(req.response(486, to_tag="t1"))
    advance(clock, 1)
    layer.message_received(ack_for(req), UDP_PEER)
    assert tx.state is S.CONFIRMED
    layer.message_received(ack_for(req), UDP_PEER)
    layer.message_received(request("INVITE"), UDP_PEER)
    advance(clock, 4.99)
    assert tx.state is S.CONFIRMED
    advance(clock, 0.01)
    assert tx.state is S.TERMINATED
    assert wire.times(486) == [0, 0.5]
    assert user.acks == []
    assert failures == []
    assert layer.counts()["server"] == 0


def test_invite_over_tcp_no_timer_g_and_no_timer_i():
    """Over TCP the final is sent once (no G) and the ACK ends it at once (I = 0)."""
    clock, wire, _, layer, tx, req, _ = receive(source=TCP_PEER)
    tx.respond(req.response(486, to_tag="t1"))
    advance(clock, 10)
    assert wire.times(486) == [0]
    layer.message_received(ack_for(req), TCP_PEER)
    assert tx.state is S.TERMINATED


def test_invite_over_tcp_without_ack_fails_at_timer_h():
    """Timer H runs over TCP too."""
    clock, _, _, _, tx, req, failures = receive(source=TCP_PEER)
    tx.respond(req.response(486, to_tag="t1"))
    advance(clock, 32)
    assert failures == ["timeout"]


def test_invite_transport_error_in_completed_tells_the_user():
    """Figure 7: a transport error while retransmitting the final ends it."""
    _, _, _, layer, tx, req, failures = receive()
    tx.respond(req.response(486, to_tag="t1"))
    layer.transport_error(UDP_PEER)
    assert failures == ["transport"]
    assert tx.state is S.TERMINATED


def test_invite_no_response_after_final():
    """Answering again after a non-2xx final is a bug and raises, naming state and event."""
    _, _, _, _, tx, req, _ = receive()
    tx.respond(req.response(486, to_tag="t1"))
    with pytest.raises(TransactionStateError) as info:
        tx.respond(req.response(200, to_tag="t1"))
    assert info.value.state is S.COMPLETED
    assert info.value.event == "send_2xx"


def test_respond_rejects_a_status_out_of_range():
    """Only 100-699 are responses."""
    _, _, _, _, tx, req, _ = receive()
    with pytest.raises(LocalProtocolError) as info:
        tx.respond(req.response(700))
    assert "700" in str(info.value)


# -- server INVITE: Accepted (RFC 6026) ----------------------------------------------------------


def test_invite_2xx_accepted_absorbs_invites_and_passes_2xx_and_ack():
    """RFC 6026: after a 2xx, retransmitted INVITEs are absorbed, the user's 2xx
    retransmissions go out, a matching ACK goes up, and timer L ends it."""
    clock, wire, user, layer, tx, req, failures = receive()
    ok = req.response(200, to_tag="t1")
    tx.respond(ok)
    assert tx.state is S.ACCEPTED
    advance(clock, 0.5)
    layer.message_received(request("INVITE"), UDP_PEER)
    tx.respond(ok)
    assert wire.times(200) == [0, 0.5]
    layer.message_received(ack_for(req), UDP_PEER)
    assert [a.method for a, _ in user.acks] == ["ACK"]
    with pytest.raises(TransactionStateError):
        tx.respond(req.response(486, to_tag="t1"))
    with pytest.raises(TransactionStateError):
        tx.respond(req.response(180, to_tag="t1"))
    advance(clock, 31.49)
    assert tx.state is S.ACCEPTED
    advance(clock, 0.01)
    assert tx.state is S.TERMINATED
    assert failures == []
    assert layer.counts()["server"] == 0


def test_ack_for_2xx_with_own_branch_goes_to_the_user():
    """An ACK for a 2xx has a branch of its own, matches no transaction and goes up."""
    _, _, user, layer, tx, req, _ = receive()
    tx.respond(req.response(200, to_tag="t1"))
    ack = ack_for(req, branch="z9hG4bK-ack")
    layer.message_received(ack, UDP_PEER)
    assert user.acks == [(ack, UDP_PEER)]
    assert tx.state is S.ACCEPTED


def test_ack_before_any_final_is_absorbed():
    """An ACK matching an INVITE still in Proceeding acknowledges nothing."""
    _, wire, user, layer, tx, req, _ = receive()
    layer.message_received(ack_for(req), UDP_PEER)
    assert tx.state is S.PROCEEDING
    assert user.acks == []


# -- server non-INVITE -----------------------------------------------------------------------


def test_non_invite_trying_absorbs_retransmissions():
    """Before the user answers, retransmissions are absorbed silently (no 100)."""
    clock, wire, user, layer, tx, _, _ = receive("OPTIONS")
    assert isinstance(tx, ServerNonInviteTransaction)
    assert tx.state is S.TRYING
    advance(clock, 0.5)
    layer.message_received(request("OPTIONS"), UDP_PEER)
    advance(clock, 5)
    assert wire.sent == []
    assert len(user.requests) == 1
    layer.transport_error(UDP_PEER)
    assert tx.state is S.TRYING


def test_non_invite_proceeding_resends_the_provisional():
    """After a provisional (Proceeding), a retransmission gets it again."""
    _, wire, _, layer, tx, req, _ = receive("SUBSCRIBE")
    tx.respond(req.response(100))
    assert tx.state is S.PROCEEDING
    layer.message_received(request("SUBSCRIBE"), UDP_PEER)
    assert [m.status for m in wire.messages()] == [100, 100]


def test_non_invite_completed_resends_final_discards_more_and_timer_j():
    """A final moves to Completed: retransmissions get it again, later responses
    from the user are discarded, timer J (64*T1) ends it."""
    clock, wire, _, layer, tx, req, _ = receive("OPTIONS")
    tx.respond(req.response(100))
    tx.respond(req.response(200, to_tag="t1"))
    assert tx.state is S.COMPLETED
    advance(clock, 3)
    layer.message_received(request("OPTIONS"), UDP_PEER)
    tx.respond(req.response(500, to_tag="t1"))
    tx.respond(req.response(180, to_tag="t1"))
    assert [m.status for m in wire.messages()] == [100, 200, 200]
    advance(clock, 28.99)
    assert tx.state is S.COMPLETED
    advance(clock, 0.01)
    assert tx.state is S.TERMINATED
    assert layer.counts()["server"] == 0
    with pytest.raises(TransactionStateError):
        tx.respond(req.response(200, to_tag="t1"))


def test_non_invite_over_tcp_ends_with_the_final():
    """Timer J is zero over TCP."""
    _, wire, _, layer, tx, req, _ = receive("OPTIONS", source=TCP_PEER)
    tx.respond(req.response(200, to_tag="t1"))
    assert tx.state is S.TERMINATED
    assert [m.status for m in wire.messages()] == [200]
    assert layer.counts()["server"] == 0


def test_non_invite_transport_error_in_proceeding_and_completed():
    """Figure 8: a transport error after a response was sent ends it and tells the user."""
    _, _, _, layer, tx, req, failures = receive("OPTIONS")
    tx.respond(req.response(100))
    layer.transport_error(UDP_PEER)
    assert failures == ["transport"] and tx.state is S.TERMINATED
    _, _, _, layer, tx, req, failures = receive("OPTIONS")
    tx.respond(req.response(200, to_tag="t1"))
    layer.transport_error(UDP_PEER)
    assert failures == ["transport"] and tx.state is S.TERMINATED


def test_new_request_with_same_branch_other_method_is_a_new_transaction():
    """Method is part of the match (§17.2.3): a BYE reusing a branch is its own."""
    _, _, user, layer, tx, _, _ = receive("OPTIONS")
    bye = request("BYE")
    bye.cseq = CSeq(2, "BYE")
    layer.message_received(bye, UDP_PEER)
    assert len(user.requests) == 2
    assert user.requests[1][1] is not tx
    assert layer.counts()["server"] == 2
