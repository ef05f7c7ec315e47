"""Client transactions (RFC 3261 §17.1, RFC 6026): every state and transition on a Clock."""

from __future__ import annotations

import pytest

from phpvoip.sip.headers import NameAddr
from phpvoip.sip.timers import Timers
from phpvoip.sip.transaction import (
    TransactionState,
    TransactionStateError,
    is_local,
    make_cancel,
)
from phpvoip.sip.uri import parse_uri
from tests.unit.transaction_fakes import (
    TCP_PEER,
    UDP_PEER,
    Responses,
    advance,
    answer,
    make_layer,
    request,
)

S = TransactionState


def start(method="INVITE", peer=UDP_PEER, timers=None, **kw):
    clock, wire, user, layer = make_layer(timers)
    got = Responses()
    req = request(method, **kw)
    tx = layer.send_request(req, peer, got)
    return clock, wire, user, layer, tx, got, req


# -- client INVITE: Calling ---------------------------------------------------------


def test_invite_udp_retransmits_doubling_and_times_out_at_64_t1():
    """An unanswered INVITE over UDP goes out at 0, .5, 1.5, 3.5, 7.5, 15.5, 31.5 s
    and ends with a local 408 at 32 s."""
    clock, wire, _, layer, tx, got, _ = start()
    assert tx.state is S.CALLING
    advance(clock, 31.99)
    assert got.got == []
    advance(clock, 0.01)
    assert wire.times("INVITE") == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert got.statuses == [408]
    assert is_local(got.got[0])
    assert got.got[0].call_id == tx.request.call_id
    assert tx.state is S.TERMINATED
    assert layer.counts() == {"client": 0, "server": 0}


def test_invite_retransmission_follows_configured_t1():
    """Timer A starts at the configured T1 and B is 64*T1."""
    clock, wire, _, _, _, got, _ = start(timers=Timers(t1=0.1, t2=4.0, t4=5.0))
    advance(clock, 6.39)
    assert got.statuses == []
    advance(clock, 0.02)
    assert got.statuses == [408]
    assert wire.times("INVITE") == pytest.approx([0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3])


def test_invite_tcp_sent_once_and_times_out():
    """Over a reliable transport the INVITE is not retransmitted; B still applies."""
    clock, wire, _, _, _, got, _ = start(peer=TCP_PEER)
    advance(clock, 40)
    assert wire.times("INVITE") == [0]
    assert got.statuses == [408]


def test_invite_provisional_stops_retransmission_and_timeout():
    """A 1xx moves Calling to Proceeding: no more retransmissions, no timer B."""
    clock, wire, _, layer, tx, got, req = start()
    advance(clock, 0.6)
    layer.message_received(answer(req, 100), UDP_PEER)
    layer.message_received(answer(req, 180), UDP_PEER)
    assert tx.state is S.PROCEEDING
    advance(clock, 300)
    assert wire.times("INVITE") == [0, 0.5]
    assert got.statuses == [100, 180]
    assert tx.state is S.PROCEEDING
    assert layer.counts()["client"] == 1


def test_invite_transport_error_in_calling_gives_local_503():
    """§17.1.4: a transport error ends a Calling INVITE at once with a local 503."""
    clock, wire, _, layer, tx, got, _ = start()
    layer.transport_error(UDP_PEER)
    assert got.statuses == [503]
    assert is_local(got.got[0])
    assert tx.state is S.TERMINATED
    advance(clock, 40)
    assert wire.times("INVITE") == [0]
    assert layer.counts()["client"] == 0


def test_invite_transport_error_in_proceeding_gives_local_503():
    """A transport error towards the destination also ends a Proceeding INVITE."""
    _, _, _, layer, tx, got, req = start()
    layer.message_received(answer(req, 180), UDP_PEER)
    layer.transport_error(UDP_PEER)
    assert got.statuses == [180, 503]
    assert tx.state is S.TERMINATED


def test_transport_error_for_another_address_changes_nothing():
    """Only transactions whose destination is the failed address fail."""
    _, _, _, layer, tx, got, _ = start()
    layer.transport_error(TCP_PEER)
    assert tx.state is S.CALLING
    assert got.got == []


# -- client INVITE: Completed ---------------------------------------------------------


def test_invite_non_2xx_is_acked_and_passed_up_once():
    """A 486 is ACKed by the transaction (§17.1.1.3) and passed up; retransmissions
    of it are ACKed again and absorbed; timer D (32 s) ends the transaction."""
    route = "Route: <sip:proxy.example;lr>\r\n"
    clock, wire, _, layer, tx, got, req = start(extra=route)
    layer.message_received(answer(req, 180), UDP_PEER)
    busy = answer(req, 486, to_tag="busy")
    layer.message_received(busy, UDP_PEER)
    assert tx.state is S.COMPLETED
    assert got.statuses == [180, 486]
    [ack] = wire.messages("ACK")
    assert ack.uri == req.uri
    assert ack.to.tag == "busy"
    assert ack.from_ == req.from_
    assert ack.call_id == req.call_id
    assert (ack.cseq.seq, ack.cseq.method) == (req.cseq.seq, "ACK")
    assert ack.via == [req.top_via]
    assert [str(r) for r in ack.route] == ["<sip:proxy.example;lr>"]
    advance(clock, 1)
    layer.message_received(answer(req, 486, to_tag="busy"), UDP_PEER)
    layer.message_received(answer(req, 180), UDP_PEER)
    assert len(wire.messages("ACK")) == 2
    assert got.statuses == [180, 486]
    advance(clock, 30.99)
    assert tx.state is S.COMPLETED
    advance(clock, 0.01)
    assert tx.state is S.TERMINATED
    assert layer.counts()["client"] == 0


def test_invite_non_2xx_in_calling_goes_straight_to_completed():
    """A final 300-699 in Calling stops timer A and B and is ACKed."""
    clock, wire, _, layer, tx, got, req = start()
    layer.message_received(answer(req, 603), UDP_PEER)
    advance(clock, 31)
    assert wire.times("INVITE") == [0]
    assert got.statuses == [603]
    assert tx.state is S.COMPLETED


def test_invite_non_2xx_over_tcp_terminates_at_once():
    """Timer D is zero over a reliable transport."""
    _, wire, _, layer, tx, got, req = start(peer=TCP_PEER, transport="TCP")
    layer.message_received(answer(req, 486), TCP_PEER)
    assert got.statuses == [486]
    assert len(wire.messages("ACK")) == 1
    assert tx.state is S.TERMINATED
    assert layer.counts()["client"] == 0


def test_invite_transport_error_in_completed_ends_quietly():
    """A failure to send the ACK ends a Completed INVITE without a second final."""
    _, _, _, layer, tx, got, req = start()
    layer.message_received(answer(req, 486), UDP_PEER)
    layer.transport_error(UDP_PEER)
    assert tx.state is S.TERMINATED
    assert got.statuses == [486]


def test_invite_2xx_after_non_2xx_from_another_fork_goes_up():
    """A 2xx in Completed made a dialog that the user must ACK and end, so it goes up."""
    _, wire, _, layer, _, got, req = start()
    layer.message_received(answer(req, 486, to_tag="a"), UDP_PEER)
    layer.message_received(answer(req, 200, to_tag="b"), UDP_PEER)
    assert got.statuses == [486, 200]
    assert len(wire.messages("ACK")) == 1


# -- client INVITE: Accepted (RFC 6026) -----------------------------------------------------


def test_invite_2xx_enters_accepted_and_passes_every_2xx_for_timer_m():
    """RFC 6026: after a 2xx every 2xx (retransmission or fork) goes to the user
    for 64*T1; non-2xx are absorbed; no ACK is made by the transaction."""
    clock, wire, user, layer, tx, got, req = start()
    layer.message_received(answer(req, 200, to_tag="x"), UDP_PEER)
    assert tx.state is S.ACCEPTED
    advance(clock, 5)
    layer.message_received(answer(req, 200, to_tag="x"), UDP_PEER)
    layer.message_received(answer(req, 200, to_tag="fork"), UDP_PEER)
    layer.message_received(answer(req, 486, to_tag="other"), UDP_PEER)
    layer.message_received(answer(req, 180, to_tag="other"), UDP_PEER)
    assert got.statuses == [200, 200, 200]
    assert [r.to.tag for r in got.got] == ["x", "x", "fork"]
    assert wire.messages("ACK") == []
    assert wire.times("INVITE") == [0]
    advance(clock, 27)
    assert tx.state is S.TERMINATED
    assert layer.counts()["client"] == 0
    layer.message_received(answer(req, 200, to_tag="x"), UDP_PEER)
    assert [r.status for r, _ in user.strays] == [200]


def test_invite_transport_error_in_accepted_is_ignored():
    """In Accepted the ACK is the user's business; a transport error changes nothing."""
    _, _, _, layer, tx, got, req = start()
    layer.message_received(answer(req, 200), UDP_PEER)
    layer.transport_error(UDP_PEER)
    assert tx.state is S.ACCEPTED
    assert got.statuses == [200]


def test_impossible_event_raises_naming_state_and_event():
    """An event with no table entry raises an error naming machine, state and event."""
    _, _, _, _, tx, _, _ = start()
    with pytest.raises(TransactionStateError) as info:
        tx._event("timer_D")
    assert info.value.state is S.CALLING
    assert info.value.event == "timer_D"
    assert "ClientInviteTransaction" in str(info.value)
    assert "CALLING" in str(info.value)


# -- CANCEL from the client side (§9.1) ----------------------------------------------------------


def test_cancel_waits_for_a_provisional_response():
    """A CANCEL sent while the INVITE is Calling is held until a 1xx arrives."""
    clock, wire, _, layer, invite_tx, got, req = start()
    cancel_got = Responses()
    cancel_tx = layer.send_request(make_cancel(req), UDP_PEER, cancel_got)
    assert cancel_tx.state is S.HELD
    assert wire.messages("CANCEL") == []
    assert layer.counts()["client"] == 2
    advance(clock, 1)
    layer.message_received(answer(req, 180), UDP_PEER)
    assert cancel_tx.state is S.TRYING
    [cancel] = wire.messages("CANCEL")
    assert wire.times("CANCEL") == [1]
    layer.message_received(answer(cancel, 200), UDP_PEER)
    assert cancel_got.statuses == [200]
    layer.message_received(answer(req, 487), UDP_PEER)
    assert got.statuses == [180, 487]
    assert invite_tx.state is S.COMPLETED
    advance(clock, 40)
    assert layer.counts()["client"] == 0


def test_held_cancel_is_dropped_when_the_invite_ends_first():
    """If the INVITE times out before any provisional, its CANCEL is never sent and
    ends with a local 481."""
    clock, wire, _, layer, _, got, req = start()
    cancel_got = Responses()
    layer.send_request(make_cancel(req), UDP_PEER, cancel_got)
    advance(clock, 32)
    assert got.statuses == [408]
    assert cancel_got.statuses == [481]
    assert is_local(cancel_got.got[0])
    assert wire.messages("CANCEL") == []
    assert layer.counts()["client"] == 0


def test_cancel_after_final_response_is_not_sent():
    """§9.1: no CANCEL once a final response arrived; the user gets a local 481."""
    _, wire, _, layer, _, _, req = start()
    layer.message_received(answer(req, 200), UDP_PEER)
    cancel_got = Responses()
    cancel_tx = layer.send_request(make_cancel(req), UDP_PEER, cancel_got)
    assert cancel_got.statuses == [481]
    assert cancel_tx.state is S.TERMINATED
    assert wire.messages("CANCEL") == []


def test_cancelled_invite_without_final_ends_after_64_t1():
    """§9.1: 64*T1 after the CANCEL went out without a final response, the INVITE
    transaction is considered cancelled: a local 487."""
    clock, _, _, layer, invite_tx, got, req = start()
    layer.message_received(answer(req, 180), UDP_PEER)
    advance(clock, 10)
    cancel_tx = layer.send_request(make_cancel(req), UDP_PEER, Responses())
    layer.message_received(answer(cancel_tx.request, 200), UDP_PEER)
    advance(clock, 31.9)
    assert invite_tx.state is S.PROCEEDING
    advance(clock, 0.2)
    assert got.statuses == [180, 487]
    assert is_local(got.got[-1])
    assert invite_tx.state is S.TERMINATED
    advance(clock, 10)
    assert layer.counts()["client"] == 0


def test_make_cancel_copies_what_section_9_1_requires():
    """CANCEL keeps Request-URI, Call-ID, To, From, CSeq number, top Via and Route."""
    req = request("INVITE", extra="Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n")
    req.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKlower")
    cancel = make_cancel(req)
    assert cancel.method == "CANCEL"
    assert cancel.uri == req.uri
    assert cancel.to == req.to and cancel.from_ == req.from_
    assert cancel.call_id == req.call_id
    assert (cancel.cseq.seq, cancel.cseq.method) == (req.cseq.seq, "CANCEL")
    assert cancel.via == [req.top_via]
    assert [str(r) for r in cancel.route] == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    assert cancel.max_forwards == 70


# -- client non-INVITE ------------------------------------------------------------------------


def test_non_invite_retransmits_capped_at_t2_and_times_out():
    """An unanswered OPTIONS goes out at 0, .5, 1.5, 3.5, 7.5 and then every T2
    (4 s) up to 31.5 s; a local 408 at 32 s (timer F)."""
    clock, wire, _, layer, tx, got, _ = start("OPTIONS")
    assert tx.state is S.TRYING
    advance(clock, 31.99)
    assert got.got == []
    advance(clock, 0.01)
    assert wire.times("OPTIONS") == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert got.statuses == [408]
    assert is_local(got.got[0])
    assert layer.counts()["client"] == 0


def test_non_invite_after_provisional_retransmits_every_t2():
    """§17.1.2.2: in Proceeding timer E is reset to T2 each time it fires."""
    clock, wire, _, layer, tx, got, req = start("OPTIONS")
    advance(clock, 0.7)
    layer.message_received(answer(req, 100), UDP_PEER)
    assert tx.state is S.PROCEEDING
    advance(clock, 40)
    assert wire.times("OPTIONS") == [0, 0.5, 1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert got.statuses == [100, 408]


def test_non_invite_final_completes_and_timer_k_absorbs_duplicates():
    """A final response goes up once; duplicates are absorbed for T4, then the
    transaction is gone."""
    clock, wire, _, layer, tx, got, req = start("REGISTER")
    layer.message_received(answer(req, 100), UDP_PEER)
    layer.message_received(answer(req, 200), UDP_PEER)
    assert tx.state is S.COMPLETED
    layer.message_received(answer(req, 200), UDP_PEER)
    layer.message_received(answer(req, 100), UDP_PEER)
    assert got.statuses == [100, 200]
    advance(clock, 4.99)
    assert tx.state is S.COMPLETED
    assert wire.times("REGISTER") == [0]  # nothing is retransmitted in Completed
    advance(clock, 0.01)
    assert tx.state is S.TERMINATED
    assert layer.counts()["client"] == 0


def test_non_invite_final_in_trying_stops_retransmission():
    """A final response in Trying goes straight to Completed; E and F stop."""
    clock, wire, _, layer, _, got, req = start("OPTIONS")
    advance(clock, 0.6)
    layer.message_received(answer(req, 404), UDP_PEER)
    advance(clock, 60)
    assert wire.times("OPTIONS") == [0, 0.5]
    assert got.statuses == [404]


def test_non_invite_over_tcp_no_retransmission_and_no_timer_k():
    """Over TCP: sent once, timer F still applies; Completed ends at once."""
    clock, wire, _, layer, tx, got, req = start("OPTIONS", peer=TCP_PEER, transport="TCP")
    layer.message_received(answer(req, 200), TCP_PEER)
    assert tx.state is S.TERMINATED
    assert got.statuses == [200]
    _, wire2, _, _, _, got2, _ = start("OPTIONS", peer=TCP_PEER, transport="TCP")
    advance(wire2.clock, 40)
    assert wire2.times("OPTIONS") == [0]
    assert got2.statuses == [408]


def test_non_invite_transport_error_in_trying_and_proceeding():
    """§17.1.4: a transport error ends Trying or Proceeding with a local 503."""
    _, _, _, layer, tx, got, _ = start("OPTIONS")
    layer.transport_error(UDP_PEER)
    assert got.statuses == [503] and tx.state is S.TERMINATED
    _, _, _, layer, tx, got, req = start("OPTIONS")
    layer.message_received(answer(req, 100), UDP_PEER)
    layer.transport_error(UDP_PEER)
    assert got.statuses == [100, 503] and tx.state is S.TERMINATED


def test_non_invite_transport_error_in_completed_is_absorbed():
    """After the final response a transport error has nothing left to end early."""
    _, _, _, layer, tx, got, req = start("OPTIONS")
    layer.message_received(answer(req, 200), UDP_PEER)
    layer.transport_error(UDP_PEER)
    assert tx.state is S.COMPLETED
    assert got.statuses == [200]


def test_send_error_terminates_the_new_transaction():
    """If the transport raises while sending the first request, the transaction is
    removed and the error reaches the caller."""
    _, _, user, layer = make_layer()

    def broken(message, address):
        raise OSError("no route")

    layer._send = broken
    with pytest.raises(OSError):
        layer.send_request(request("OPTIONS"), UDP_PEER, Responses())
    assert layer.counts()["client"] == 0


def test_synchronous_transport_error_while_sending():
    """A transport that reports the error from inside send still leaves no timer
    running and the user with one local 503."""
    clock, wire, user, layer = make_layer()

    def refuse(message, address):
        wire(message, address)
        layer.transport_error(address)

    layer._send = refuse
    got = Responses()
    tx = layer.send_request(request("INVITE"), TCP_PEER, got)
    assert got.statuses == [503]
    assert tx.state is S.TERMINATED
    advance(clock, 100)
    assert got.statuses == [503]
    assert clock.getDelayedCalls() == []


def test_local_response_carries_request_identity():
    """The local 408 has the request's Call-ID, CSeq, From and Via like a real one."""
    clock, _, _, _, _, got, req = start("OPTIONS")
    advance(clock, 32)
    [timeout] = got.got
    assert timeout.cseq == req.cseq
    assert timeout.from_ == req.from_
    assert timeout.via == req.via
    assert timeout.local is True


def test_user_may_set_request_uri_object():
    """Requests built in code (not parsed) work as well as parsed ones."""
    clock, wire, user, layer = make_layer()
    req = request("OPTIONS")
    req.uri = parse_uri("sip:carol@127.0.0.1:5080")
    req.to = NameAddr(parse_uri("sip:carol@127.0.0.1"))
    got = Responses()
    layer.send_request(req, UDP_PEER, got)
    layer.message_received(answer(req, 200), UDP_PEER)
    assert got.statuses == [200]
