"""The transaction layer: matching (§17.1.3, §17.2.3), CANCEL (§9.2), the tables,
bookkeeping, and a client and a server layer joined by an in-memory link."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from phpvoip.sip.address import Address
from phpvoip.sip.errors import LocalProtocolError
from phpvoip.sip.transaction import (
    MAGIC_COOKIE,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    TransactionLayer,
    TransactionState,
    TransactionUser,
    make_cancel,
    new_branch,
    new_tag,
)
from tests.unit.transaction_fakes import (
    UDP_PEER,
    RecordingUser,
    Responses,
    advance,
    answer,
    make_layer,
    request,
)

S = TransactionState
OTHER_PEER = Address("udp", "127.0.0.1", 5090)


# -- the tables ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "network_events"),
    [
        (ClientInviteTransaction, {"1xx", "2xx", "final"}),
        (ClientNonInviteTransaction, {"1xx", "2xx", "final", "transport_error"}),
        (ServerInviteTransaction, {"request", "ack", "transport_error"}),
        (ServerNonInviteTransaction, {"request", "transport_error"}),
    ],
)
def test_every_live_state_takes_every_network_event(machine, network_events):
    """What the network sends can never hit a missing table entry: every live state
    of every machine has an entry for every message or error that may arrive."""
    for state, row in machine.TABLE.items():
        assert state is not S.TERMINATED
        missing = network_events - row.keys()
        assert not missing, f"{machine.__name__} {state.name} lacks {missing}"


def test_client_invite_takes_transport_errors_once_started():
    """Every state a started client INVITE can be in handles a transport error."""
    for state, row in ClientInviteTransaction.TABLE.items():
        if state is not S.HELD:
            assert "transport_error" in row, state


def test_every_handler_in_the_tables_exists():
    """Each table names only methods its class has."""
    for machine in (
        ClientInviteTransaction,
        ClientNonInviteTransaction,
        ServerInviteTransaction,
        ServerNonInviteTransaction,
    ):
        for row in machine.TABLE.values():
            for handler in row.values():
                assert callable(getattr(machine, handler, None)), (machine.__name__, handler)


# -- helpers ---------------------------------------------------------------------------------


def test_new_branch_has_the_magic_cookie_and_is_unique():
    """§8.1.1.7: branches start with z9hG4bK and do not repeat."""
    branches = {new_branch() for _ in range(1000)}
    assert len(branches) == 1000
    assert all(b.startswith(MAGIC_COOKIE) and len(b) > 16 for b in branches)
    assert len({new_tag() for _ in range(1000)}) == 1000


def test_send_request_refuses_ack_missing_cookie_and_branch_reuse():
    """ACK is no transaction, a branch needs the cookie, and a live branch is not reused."""
    _, _, _, layer = make_layer()
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("ACK"), UDP_PEER, Responses())
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("OPTIONS", branch="old-style"), UDP_PEER, Responses())
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("OPTIONS", branch=None), UDP_PEER, Responses())
    layer.send_request(request("OPTIONS"), UDP_PEER, Responses())
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("OPTIONS"), UDP_PEER, Responses())
    assert layer.counts() == {"client": 1, "server": 0}


def test_send_stateless_goes_straight_to_the_transport():
    """The ACK for a 2xx is handed to the transport without a transaction."""
    _, wire, _, layer = make_layer()
    ack = request("ACK", branch=new_branch())
    layer.send_stateless(ack, UDP_PEER)
    assert wire.messages() == [ack]
    assert layer.counts() == {"client": 0, "server": 0}


# -- client matching (§17.1.3) -------------------------------------------------------------------


def test_response_matches_by_branch_and_cseq_method():
    """A response with the INVITE's branch but CSeq method CANCEL belongs to the
    CANCEL transaction, not the INVITE."""
    _, _, _, layer = make_layer()
    invite_got, cancel_got = Responses(), Responses()
    invite = request("INVITE")
    layer.send_request(invite, UDP_PEER, invite_got)
    layer.message_received(answer(invite, 180), UDP_PEER)
    cancel_tx = layer.send_request(make_cancel(invite), UDP_PEER, cancel_got)
    layer.message_received(answer(cancel_tx.request, 200), UDP_PEER)
    assert invite_got.statuses == [180]
    assert cancel_got.statuses == [200]


def test_unmatched_response_goes_up_as_stray():
    """A response for no live client transaction goes to response_received."""
    _, _, user, layer = make_layer()
    stray = answer(request("OPTIONS", branch="z9hG4bK-nobody"), 200)
    layer.message_received(stray, OTHER_PEER)
    assert user.strays == [(stray, OTHER_PEER)]


# -- server matching (§17.2.3) ----------------------------------------------------------------------


def test_same_branch_from_another_sent_by_is_another_transaction():
    """The sent-by of the top Via is part of the match."""
    _, _, user, layer = make_layer()
    layer.message_received(request("OPTIONS", sent_by="127.0.0.1:5070"), UDP_PEER)
    layer.message_received(request("OPTIONS", sent_by="127.0.0.1:5071"), OTHER_PEER)
    layer.message_received(request("OPTIONS", sent_by="127.0.0.1:5070"), UDP_PEER)
    assert len(user.requests) == 2
    assert layer.counts()["server"] == 2


def test_received_and_rport_stamps_do_not_break_matching():
    """Parameters the transport adds to the top Via leave sent-by matching intact."""
    _, _, user, layer = make_layer()
    first = request("OPTIONS")
    first.top_via.params["received"] = "127.0.0.1"
    layer.message_received(first, UDP_PEER)
    layer.message_received(request("OPTIONS"), UDP_PEER)
    assert len(user.requests) == 1


def test_rfc2543_retransmission_matches_without_cookie():
    """Without the magic cookie, Request-URI, tags, Call-ID, CSeq and top Via
    identify the transaction; a change in any of them is a new one."""
    clock, wire, user, layer = make_layer()
    old = {"branch": "1234"}
    layer.message_received(request("OPTIONS", **old), UDP_PEER)
    layer.message_received(request("OPTIONS", **old), UDP_PEER)
    assert len(user.requests) == 1
    layer.message_received(request("OPTIONS", branch=None), UDP_PEER)
    layer.message_received(request("OPTIONS", from_tag="f2", **old), UDP_PEER)
    layer.message_received(request("OPTIONS", cseq=2, **old), UDP_PEER)
    layer.message_received(request("OPTIONS", uri="sip:carol@127.0.0.1", **old), UDP_PEER)
    layer.message_received(request("OPTIONS", call_id="other@x", **old), UDP_PEER)
    layer.message_received(request("OPTIONS", to_tag="x", **old), UDP_PEER)
    assert len(user.requests) == 7
    tx = user.requests[0][1]
    tx.respond(tx.request.response(200, to_tag="t9"))
    layer.message_received(request("OPTIONS", **old), UDP_PEER)
    assert len(wire.messages(200)) == 2


def test_rfc2543_ack_for_non_2xx_matches_by_response_to_tag():
    """An RFC 2543 ACK carries the To tag of the final response; it matches the
    INVITE only with that tag."""
    clock, wire, user, layer = make_layer()
    invite = request("INVITE", branch=None)
    layer.message_received(invite, UDP_PEER)
    tx = user.requests[0][1]
    tx.respond(invite.response(486, to_tag="busy"))
    layer.message_received(request("ACK", branch=None, to_tag="wrong"), UDP_PEER)
    assert tx.state is S.COMPLETED
    assert len(user.acks) == 1
    layer.message_received(request("ACK", branch=None, to_tag="busy"), UDP_PEER)
    assert tx.state is S.CONFIRMED


def test_rfc2543_cancel_matches_its_invite():
    """A CANCEL without cookie matches the INVITE with the same URI, tags, Call-ID,
    CSeq number and top Via."""
    _, wire, user, layer = make_layer()
    layer.message_received(request("INVITE", branch=None), UDP_PEER)
    layer.message_received(request("CANCEL", branch=None), UDP_PEER)
    assert len(user.cancels) == 1
    assert sorted(m.status for m in wire.messages()) == [200, 487]


def test_ack_for_non_2xx_with_cookie_confirms_its_invite():
    """An ACK with the INVITE's branch and sent-by goes to that INVITE transaction."""
    _, _, user, layer = make_layer()
    layer.message_received(request("INVITE"), UDP_PEER)
    tx = user.requests[0][1]
    tx.respond(tx.request.response(404, to_tag="t"))
    layer.message_received(request("ACK", to_tag="t"), UDP_PEER)
    assert tx.state is S.CONFIRMED
    assert user.acks == []


def test_ack_matching_nothing_goes_to_the_user():
    """An ACK that belongs to no transaction (for a 2xx) goes to ack_received."""
    _, _, user, layer = make_layer()
    ack = request("ACK", branch="z9hG4bK-e2e", to_tag="t")
    layer.message_received(ack, UDP_PEER)
    assert user.acks == [(ack, UDP_PEER)]
    assert layer.counts()["server"] == 0


# -- CANCEL on the server side (§9.2) --------------------------------------------------------------


def test_cancel_gets_200_then_user_hears_then_invite_gets_487():
    """The layer answers 200 to the CANCEL, tells the user, then answers the
    INVITE 487 with the same To tag as the 200 (§9.2)."""
    clock, wire, user, layer = make_layer()
    order: list[str] = []
    layer.message_received(request("INVITE"), UDP_PEER)
    invite_tx = user.requests[0][1]
    user.on_cancel = lambda cancel, tx: order.append(f"user sees CANCEL after {wire.messages()[-1].status}")
    advance(clock, 1)  # the 100 Trying went out
    layer.message_received(request("CANCEL"), UDP_PEER)
    assert order == ["user sees CANCEL after 200"]
    assert user.cancels[0][1] is invite_tx
    statuses = [(m.status, m.cseq.method) for m in wire.messages()]
    assert statuses == [(100, "INVITE"), (200, "CANCEL"), (487, "INVITE")]
    ok, terminated = wire.messages()[1:]
    assert ok.to.tag == terminated.to.tag is not None
    assert invite_tx.state is S.COMPLETED
    assert len(user.requests) == 1


def test_cancel_uses_the_to_tag_of_an_earlier_provisional():
    """After a 180 with a tag, the 200 to CANCEL and the 487 reuse that tag."""
    _, wire, user, layer = make_layer()
    layer.message_received(request("INVITE"), UDP_PEER)
    invite_tx = user.requests[0][1]
    invite_tx.respond(invite_tx.request.response(180, to_tag="ring"))
    layer.message_received(request("CANCEL"), UDP_PEER)
    assert [m.to.tag for m in wire.messages()] == ["ring", "ring", "ring"]


def test_user_answering_during_cancel_prevents_the_487():
    """If the user sends a final response from cancel_received, no 487 follows."""
    _, wire, user, layer = make_layer()
    layer.message_received(request("INVITE"), UDP_PEER)
    user.on_cancel = lambda cancel, tx: tx.respond(tx.request.response(486, to_tag="t"))
    layer.message_received(request("CANCEL"), UDP_PEER)
    assert [m.status for m in wire.messages()] == [200, 486]


def test_cancel_after_final_gets_200_and_changes_nothing():
    """A CANCEL that finds the INVITE already answered gets 200; no 487, user not told."""
    _, wire, user, layer = make_layer()
    layer.message_received(request("INVITE"), UDP_PEER)
    invite_tx = user.requests[0][1]
    invite_tx.respond(invite_tx.request.response(200, to_tag="t"))
    layer.message_received(request("CANCEL"), UDP_PEER)
    assert [(m.status, m.cseq.method) for m in wire.messages()] == [(200, "INVITE"), (200, "CANCEL")]
    assert user.cancels == []
    assert invite_tx.state is S.ACCEPTED


def test_cancel_of_non_invite_gets_200_without_effect():
    """§9.2: a CANCEL matching a non-INVITE transaction is answered 200 and does nothing."""
    _, wire, user, layer = make_layer()
    layer.message_received(request("OPTIONS"), UDP_PEER)
    layer.message_received(request("CANCEL"), UDP_PEER)
    assert [m.status for m in wire.messages()] == [200]
    assert user.cancels == []


def test_cancel_matching_nothing_gets_481():
    """§9.2: a CANCEL for no known transaction is answered 481 by the layer."""
    clock, wire, user, layer = make_layer()
    layer.message_received(request("CANCEL", branch="z9hG4bK-none"), UDP_PEER)
    assert [m.status for m in wire.messages()] == [481]
    assert wire.messages()[0].to.tag is not None
    assert user.requests == [] and user.cancels == []
    layer.message_received(request("CANCEL", branch="z9hG4bK-none"), UDP_PEER)
    assert [m.status for m in wire.messages()] == [481, 481]
    advance(clock, 32)
    assert layer.counts() == {"client": 0, "server": 0}


def test_cancel_retransmission_gets_200_again_and_user_hears_once():
    """A retransmitted CANCEL matches the CANCEL transaction, not the INVITE."""
    _, wire, user, layer = make_layer()
    layer.message_received(request("INVITE"), UDP_PEER)
    layer.message_received(request("CANCEL"), UDP_PEER)
    layer.message_received(request("CANCEL"), UDP_PEER)
    assert [(m.status, m.cseq.method) for m in wire.messages()] == [
        (200, "CANCEL"),
        (487, "INVITE"),
        (200, "CANCEL"),
    ]
    assert len(user.cancels) == 1


def test_cancel_after_invite_transaction_ended_gets_481():
    """Once the INVITE transaction is gone, a CANCEL finds nothing: 481."""
    clock, wire, user, layer = make_layer()
    layer.message_received(request("INVITE"), UDP_PEER)
    invite_tx = user.requests[0][1]
    invite_tx.respond(invite_tx.request.response(200, to_tag="t"))
    advance(clock, 33)
    layer.message_received(request("CANCEL"), UDP_PEER)
    assert wire.messages()[-1].status == 481


# -- bookkeeping --------------------------------------------------------------------------------


def test_counts_return_to_zero_after_mixed_traffic():
    """Every transaction, whatever its end, leaves the tables once its timers ran."""
    clock, wire, user, layer = make_layer()
    for i in range(5):
        layer.message_received(request("INVITE", branch=f"z9hG4bK-i{i}"), UDP_PEER)
        layer.message_received(request("OPTIONS", branch=f"z9hG4bK-o{i}"), UDP_PEER)
        layer.send_request(request("OPTIONS", branch=f"z9hG4bK-c{i}"), UDP_PEER, Responses())
        layer.send_request(request("INVITE", branch=f"z9hG4bK-d{i}"), UDP_PEER, Responses())
    for n, (req, tx) in enumerate(user.requests):
        tx.respond(req.response([200, 486, 404][n % 3], to_tag="t"))
    assert layer.counts() == {"client": 10, "server": 10}
    advance(clock, 64)
    assert layer.counts() == {"client": 0, "server": 0}
    assert clock.getDelayedCalls() == []


# -- a client layer and a server layer over an in-memory link -------------------------------------------


class Link:
    """Two layers joined directly; each message is delivered after `delay`."""

    def __init__(self, clock, delay=0.01):
        self.clock = clock
        self.delay = delay
        self.ends = {}

    def sender(self, me):
        def send(message, address):
            self.clock.callLater(self.delay, self.ends[address].message_received, message, me)

        return send


def test_invite_ringing_answered_and_acked_between_two_layers():
    """INVITE → 100/180/200 → ACK end to end: both sides reach Accepted, the ACK goes
    to the server's user, and both layers are empty after timers L and M."""
    clock = Clock()
    link = Link(clock)
    alice, bob = Address("udp", "127.0.0.1", 5061), Address("udp", "127.0.0.1", 5062)
    server_user = RecordingUser()
    client_user = RecordingUser()
    server = TransactionLayer(clock, link.sender(bob), server_user)
    client = TransactionLayer(clock, link.sender(alice), client_user)
    link.ends = {alice: client, bob: server}

    got = Responses()
    invite = request("INVITE", branch=new_branch(), sent_by="127.0.0.1:5061")
    client.send_request(invite, bob, got)
    advance(clock, 0.5)
    [(req, tx)] = server_user.requests
    tx.respond(req.response(180, to_tag="b"))
    advance(clock, 1)
    tx.respond(req.response(200, to_tag="b"))
    advance(clock, 0.1)
    assert got.statuses == [100, 180, 200]
    ack = request("ACK", branch=new_branch(), sent_by="127.0.0.1:5061", to_tag="b")
    client.send_stateless(ack, bob)
    advance(clock, 0.1)
    assert [a.method for a, _ in server_user.acks] == ["ACK"]
    advance(clock, 40)
    assert client.counts() == server.counts() == {"client": 0, "server": 0}


def test_recording_users_meet_the_transaction_user_protocol():
    """The fakes (and so the tests) speak the TransactionUser protocol the layer calls."""
    assert isinstance(RecordingUser(), TransactionUser)


def test_cancel_with_a_transport_failing_synchronously():
    """A transport error raised from inside send while a CANCEL goes out ends both
    the CANCEL and its INVITE with local 503s, and nothing is left running."""
    clock, wire, user, layer = make_layer()
    invite_got, cancel_got = Responses(), Responses()
    invite = request("INVITE")
    layer.send_request(invite, UDP_PEER, invite_got)
    layer.message_received(answer(invite, 180), UDP_PEER)

    def refuse(message, address):
        layer.transport_error(address)

    layer._send = refuse
    layer.send_request(make_cancel(invite), UDP_PEER, cancel_got)
    assert invite_got.statuses == [180, 503]
    assert cancel_got.statuses == [503]
    assert layer.counts() == {"client": 0, "server": 0}
    assert clock.getDelayedCalls() == []
