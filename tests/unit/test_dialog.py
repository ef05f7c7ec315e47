"""Dialogs (RFC 3261 §12): creation on both sides, IDs, route sets, in-dialog requests,
CSeq rules, target refresh, glare, termination, the table and 481."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from phpvoip.sip.dialog import (
    Dialog,
    DialogError,
    DialogId,
    DialogState,
    DialogTable,
    Role,
    UacDialogs,
    UacEvent,
    dialog_response,
    error_response,
    no_such_dialog,
)
from phpvoip.sip.errors import LocalProtocolError
from phpvoip.sip.message import parse
from phpvoip.sip.timers import Timers
from phpvoip.sip.uri import parse_uri
from tests.unit.dialog_fixtures import (
    ALICE_CONTACT,
    BOB_CONTACT,
    CALL_ID,
    P1,
    P2,
    in_dialog_request,
    invite_received,
    invite_sent,
    response,
)

TIMERS = Timers(t1=0.5, t2=4.0, t4=5.0)


def uac_dialog(**kwargs: object) -> Dialog:
    return Dialog.uac(invite_sent(), response(200, "OK", **kwargs))


def uas_dialog(status: int = 200) -> Dialog:
    invite = invite_received()
    answer = dialog_response(invite, status, "bob1", parse_uri(BOB_CONTACT))
    return Dialog.uas(invite, answer)


# -- creation -------------------------------------------------------------------


def test_uac_dialog_from_2xx():
    """A 2xx to our INVITE makes a confirmed UAC dialog with the §12.1.2 state."""
    dialog = uac_dialog()
    assert dialog.role is Role.UAC
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.id == DialogId(CALL_ID, "alice1", "bob1")
    assert dialog.local_seq == 1
    assert dialog.remote_seq is None
    assert str(dialog.remote_target) == BOB_CONTACT
    assert str(dialog.local_target) == ALICE_CONTACT
    assert str(dialog.local_party) == '"Alice" <sip:alice@127.0.0.1>;tag=alice1'
    assert str(dialog.remote_party) == "<sip:bob@example.test>;tag=bob1"
    assert dialog.secure is False


def test_uas_dialog_from_2xx():
    """Answering an INVITE with a tagged 2xx makes a confirmed UAS dialog (§12.1.1)."""
    dialog = uas_dialog()
    assert dialog.role is Role.UAS
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.id == DialogId(CALL_ID, "bob1", "alice1")
    assert dialog.remote_seq == 1
    assert dialog.local_seq is None
    assert str(dialog.remote_target) == ALICE_CONTACT
    assert str(dialog.local_target) == BOB_CONTACT
    assert str(dialog.local_party) == "<sip:bob@example.test>;tag=bob1"
    assert str(dialog.remote_party) == '"Alice" <sip:alice@127.0.0.1>;tag=alice1'


def test_uac_early_dialog_from_tagged_1xx():
    """A 180 with a To tag makes an early UAC dialog."""
    dialog = Dialog.uac(invite_sent(), response(180, "Ringing"))
    assert dialog.state is DialogState.EARLY
    assert dialog.id == DialogId(CALL_ID, "alice1", "bob1")


def test_uas_early_dialog_from_tagged_1xx():
    """Answering with a tagged 180 makes an early UAS dialog."""
    dialog = uas_dialog(180)
    assert dialog.state is DialogState.EARLY
    assert dialog.id == DialogId(CALL_ID, "bob1", "alice1")


@pytest.mark.parametrize("status, tag", [(180, None), (100, "bob1"), (486, "bob1")])
def test_no_dialog_without_tag_or_from_100_or_failure(status, tag):
    """Only 101-299 responses with a To tag create dialogs."""
    with pytest.raises(LocalProtocolError):
        Dialog.uac(invite_sent(), response(status, "X", tag=tag))


def test_route_set_order_on_both_sides():
    """Two record-routing proxies: the UAS keeps Record-Route order, the UAC reverses it."""
    uas = uas_dialog()
    uac = uac_dialog()
    assert [str(r) for r in uas.route_set] == [P2, P1]
    assert [str(r) for r in uac.route_set] == [P1, P2]


def test_dialog_response_copies_record_route_and_adds_contact():
    """A dialog-creating response carries the request's Record-Route in order, our tag and Contact."""
    answer = dialog_response(invite_received(), 200, "bob1", parse_uri(BOB_CONTACT))
    assert answer.status == 200
    assert answer.to.tag == "bob1"
    assert [str(r) for r in answer.record_route] == [P2, P1]
    assert [str(c) for c in answer.contact] == [f"<{BOB_CONTACT}>"]
    assert answer.call_id == CALL_ID


def test_missing_contact_falls_back_to_request_uri():
    """A 2xx without Contact still leaves a remote target: the Request-URI used."""
    dialog = uac_dialog(contact=None)
    assert str(dialog.remote_target) == "sip:bob@example.test"


# -- requests we build (§12.2.1.1) -------------------------------------------------


def test_loose_routing_request():
    """With a loose first route the Request-URI is the remote target and Route is the route set."""
    dialog = uac_dialog()
    bye = dialog.new_request("BYE", "127.0.0.1", 5062)
    data = bytes(bye).decode()
    lines = data.split("\r\n")
    branch = bye.top_via.branch
    assert branch.startswith("z9hG4bK") and len(branch) > 7
    assert lines == [
        f"BYE {BOB_CONTACT} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch={branch}",
        "Max-Forwards: 70",
        f"Route: {P1}, {P2}",
        'From: "Alice" <sip:alice@127.0.0.1>;tag=alice1',
        "To: <sip:bob@example.test>;tag=bob1",
        f"Call-ID: {CALL_ID}",
        "CSeq: 2 BYE",
        "Content-Length: 0",
        "",
        "",
    ]
    assert parse(bytes(bye)) == bye


def test_strict_routing_request():
    """With a strict first route it becomes the Request-URI and the remote target the last Route."""
    dialog = uac_dialog(record_route=("<sip:127.0.0.3;lr>", "<sip:p1@127.0.0.2;method=INVITE>"))
    info = dialog.new_request("INFO", "127.0.0.1", 5062)
    assert str(info.uri) == "sip:p1@127.0.0.2"
    assert [str(r) for r in info.route] == ["<sip:127.0.0.3;lr>", f"<{BOB_CONTACT}>"]


def test_no_route_set_request():
    """Without a route set the request goes straight to the remote target, no Route."""
    dialog = uac_dialog(record_route=())
    info = dialog.new_request("INFO", "127.0.0.1", 5062, "TCP")
    assert str(info.uri) == BOB_CONTACT
    assert not info.has("Route")
    assert str(info.top_via).startswith("SIP/2.0/TCP 127.0.0.1:5062;branch=z9hG4bK")


def test_cseq_increments_and_branches_differ():
    """Each new request takes the next local CSeq and a fresh branch."""
    dialog = uac_dialog()
    methods = ["INFO", "OPTIONS", "UPDATE", "MESSAGE", "NOTIFY", "REFER", "INVITE"]
    requests = [dialog.new_request(m, "127.0.0.1", 5062) for m in methods]
    assert [r.cseq.seq for r in requests] == [2, 3, 4, 5, 6, 7, 8]
    assert [r.cseq.method for r in requests] == methods
    assert len({r.top_via.branch for r in requests}) == len(requests)
    assert dialog.local_seq == 8


def test_uas_first_request_picks_initial_cseq():
    """A UAS dialog's local CSeq starts empty; its first request picks one below 2**31."""
    dialog = uas_dialog()
    first = dialog.new_request("INFO", "127.0.0.4", 5064)
    second = dialog.new_request("INFO", "127.0.0.4", 5064)
    assert 0 < first.cseq.seq < 2**31
    assert second.cseq.seq == first.cseq.seq + 1
    assert str(first.uri) == ALICE_CONTACT
    assert str(first.from_) == "<sip:bob@example.test>;tag=bob1"
    assert str(first.to) == '"Alice" <sip:alice@127.0.0.1>;tag=alice1'


def test_contact_only_on_target_refresh():
    """Our Contact goes on re-INVITE and UPDATE, not on INFO or BYE."""
    dialog = uac_dialog()
    assert [str(c) for c in dialog.new_request("UPDATE", "h", 1).contact] == [f"<{ALICE_CONTACT}>"]
    assert dialog.new_request("INFO", "h", 1).contact == []


def test_extra_headers_and_body():
    """Caller headers and body go into the built request."""
    dialog = uac_dialog()
    info = dialog.new_request(
        "INFO", "h", 1, body=b"Signal=5\r\n", headers=[("Content-Type", "application/dtmf-relay")]
    )
    assert info.get("Content-Type") == "application/dtmf-relay"
    assert parse(bytes(info)).body == b"Signal=5\r\n"


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_ack_and_cancel_are_not_new_requests(method):
    """ACK and CANCEL are not built as new in-dialog requests."""
    with pytest.raises(LocalProtocolError):
        uac_dialog().new_request(method, "h", 1)


def test_callee_may_not_bye_early_dialog():
    """§15: the callee must not send BYE in an early dialog; the caller may."""
    with pytest.raises(LocalProtocolError):
        uas_dialog(180).new_request("BYE", "h", 1)
    early = Dialog.uac(invite_sent(), response(180, "Ringing"))
    assert early.new_request("BYE", "h", 1).method == "BYE"
    assert early.state is DialogState.TERMINATED


def test_sending_bye_terminates_dialog():
    """Building a BYE ends the dialog; nothing more can be built in it."""
    dialog = uac_dialog()
    dialog.new_request("BYE", "h", 1)
    assert dialog.state is DialogState.TERMINATED
    with pytest.raises(LocalProtocolError):
        dialog.new_request("INFO", "h", 1)


# -- requests we receive (§12.2.2) --------------------------------------------------


def test_lower_remote_cseq_is_rejected_with_500():
    """A request with a CSeq lower than the remote CSeq is refused with 500."""
    dialog = uas_dialog()
    assert dialog.receive_request(in_dialog_request("INFO", 3)) is True
    assert dialog.remote_seq == 3
    late = in_dialog_request("INFO", 2)
    with pytest.raises(DialogError) as caught:
        dialog.receive_request(late)
    assert caught.value.status == 500
    answer = error_response(late, caught.value)
    assert answer.status == 500
    assert answer.to.tag == "bob1"
    assert dialog.remote_seq == 3


def test_remote_cseq_set_when_empty():
    """A UAC dialog's remote CSeq is empty until the peer's first request sets it."""
    dialog = uac_dialog()
    request = in_dialog_request("INFO", 77, from_tag="bob1", to_tag="alice1")
    assert dialog.receive_request(request) is True
    assert dialog.remote_seq == 77


def test_remote_target_updated_by_reinvite():
    """A received re-INVITE replaces the remote target with its Contact (§12.2.2)."""
    dialog = uas_dialog()
    dialog.receive_request(in_dialog_request("INVITE", 2, contact="sip:alice@127.0.0.9:6000"))
    assert str(dialog.remote_target) == "sip:alice@127.0.0.9:6000"


def test_remote_target_not_updated_by_info():
    """A request that is no target refresh leaves the remote target alone."""
    dialog = uas_dialog()
    dialog.receive_request(in_dialog_request("INFO", 2, contact="sip:alice@127.0.0.9:6000"))
    assert str(dialog.remote_target) == ALICE_CONTACT


def test_remote_target_updated_by_2xx_to_our_reinvite():
    """The 2xx to our re-INVITE replaces the remote target with its Contact (§12.2.1.2)."""
    dialog = uac_dialog()
    reinvite = dialog.new_request("INVITE", "127.0.0.1", 5062)
    ok = response(200, "OK", contact="sip:bob@127.0.0.8:7000", cseq=f"{reinvite.cseq.seq} INVITE")
    assert dialog.receive_response(ok) is True
    assert str(dialog.remote_target) == "sip:bob@127.0.0.8:7000"
    assert dialog.new_request("INFO", "h", 1).uri == parse_uri("sip:bob@127.0.0.8:7000")


def test_remote_target_not_updated_by_2xx_to_info():
    """The 2xx to a request that is no target refresh leaves the remote target alone."""
    dialog = uac_dialog()
    info = dialog.new_request("INFO", "127.0.0.1", 5062)
    dialog.receive_response(
        response(200, "OK", contact="sip:bob@127.0.0.8:7000", cseq=f"{info.cseq.seq} INFO")
    )
    assert str(dialog.remote_target) == BOB_CONTACT


def test_remote_target_not_updated_by_failed_reinvite():
    """A rejected re-INVITE changes no target and lets a new INVITE be sent."""
    dialog = uac_dialog()
    reinvite = dialog.new_request("INVITE", "127.0.0.1", 5062)
    dialog.receive_response(
        response(
            488, "Not Acceptable Here", cseq=f"{reinvite.cseq.seq} INVITE", contact="sip:bob@127.0.0.8:7000"
        )
    )
    assert str(dialog.remote_target) == BOB_CONTACT
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.new_request("INVITE", "h", 1).cseq.seq == reinvite.cseq.seq + 1


@pytest.mark.parametrize("status", [481, 408])
def test_481_or_408_ends_dialog(status):
    """§12.2.1.2: a 481 or 408 to an in-dialog request terminates the dialog."""
    dialog = uac_dialog()
    info = dialog.new_request("INFO", "h", 1)
    dialog.receive_response(response(status, "X", cseq=f"{info.cseq.seq} INFO"))
    assert dialog.state is DialogState.TERMINATED


def test_received_bye_terminates_dialog():
    """An accepted BYE ends the dialog."""
    dialog = uas_dialog()
    assert dialog.receive_request(in_dialog_request("BYE", 2)) is True
    assert dialog.state is DialogState.TERMINATED
    with pytest.raises(DialogError) as caught:
        dialog.receive_request(in_dialog_request("INFO", 3))
    assert caught.value.status == 481


# -- re-INVITE glare (§14) -------------------------------------------------------------


def test_reinvite_while_ours_in_progress_gets_491():
    """§14.2: an INVITE arriving while our re-INVITE is pending is answered 491."""
    dialog = uas_dialog()
    dialog.new_request("INVITE", "127.0.0.4", 5064)
    with pytest.raises(DialogError) as caught:
        dialog.receive_request(in_dialog_request("INVITE", 2))
    assert caught.value.status == 491


def test_second_reinvite_before_final_gets_500_with_retry_after():
    """§14.2: a second INVITE before our final answer to the first gets 500 with Retry-After."""
    dialog = uas_dialog()
    first = in_dialog_request("INVITE", 2)
    dialog.receive_request(first)
    second = in_dialog_request("INVITE", 3)
    with pytest.raises(DialogError) as caught:
        dialog.receive_request(second)
    answer = error_response(second, caught.value)
    assert answer.status == 500
    assert 0 <= int(answer.get("Retry-After")) <= 10
    dialog.response_sent(first.response(488))
    assert dialog.receive_request(in_dialog_request("INVITE", 4)) is True


def test_no_reinvite_while_one_is_in_progress():
    """§14.1: we may not start an INVITE while one is in progress either way."""
    dialog = uas_dialog()
    dialog.receive_request(in_dialog_request("INVITE", 2))
    with pytest.raises(LocalProtocolError):
        dialog.new_request("INVITE", "h", 1)
    other = uac_dialog()
    other.new_request("INVITE", "h", 1)
    with pytest.raises(LocalProtocolError):
        other.new_request("INVITE", "h", 1)


def test_retry_delay_after_491():
    """§14.1: the Call-ID owner waits 2.1-4 s before retrying, the other side 0-2 s."""
    assert uac_dialog().retry_delay(lambda: 0.0) == 2.1
    assert uac_dialog().retry_delay(lambda: 0.999999) == 4.0
    assert uas_dialog().retry_delay(lambda: 0.0) == 0.0
    assert uas_dialog().retry_delay(lambda: 0.5) == 1.0


# -- UAS early dialog → confirmed / ended ------------------------------------------------


def test_uas_early_dialog_confirmed_by_2xx_and_ended_by_failure():
    """The 2xx we send confirms our early dialog; a non-2xx final ends it instead."""
    invite = invite_received()
    ringing = dialog_response(invite, 180, "bob1", parse_uri(BOB_CONTACT))
    dialog = Dialog.uas(invite, ringing)
    dialog.response_sent(dialog_response(invite, 200, "bob1", parse_uri(BOB_CONTACT)))
    assert dialog.state is DialogState.CONFIRMED
    other = Dialog.uas(invite, ringing)
    other.response_sent(invite.response(486, to_tag="bob1"))
    assert other.state is DialogState.TERMINATED


# -- the table and 481 -------------------------------------------------------------------


def test_table_matches_incoming_request_from_uas_view():
    """An incoming request's To tag is our local tag and its From tag the remote one."""
    table = DialogTable()
    dialog = uas_dialog()
    table.add(dialog)
    assert table.match(in_dialog_request("BYE", 2)) is dialog
    assert table.find(CALL_ID, "bob1", "alice1") is dialog
    assert table.count() == 1 and len(table) == 1


def test_table_matches_request_to_uac_dialog():
    """A request from the callee (tags swapped) finds the caller's dialog."""
    table = DialogTable()
    dialog = uac_dialog()
    table.add(dialog)
    assert table.match(in_dialog_request("BYE", 9, from_tag="bob1", to_tag="alice1")) is dialog
    assert table.match(in_dialog_request("BYE", 9)) is None


def test_unknown_dialog_gets_481():
    """A request with a To tag that matches no dialog is answered 481."""
    table = DialogTable()
    table.add(uas_dialog())
    stray = in_dialog_request("INFO", 5, to_tag="nobody")
    assert table.match(stray) is None
    answer = no_such_dialog(stray)
    assert answer.status == 481
    assert answer.reason == "Call/Transaction Does Not Exist"
    assert answer.to.tag == "nobody"
    assert answer.cseq.seq == 5 and answer.cseq.method == "INFO"


def test_no_481_for_ack():
    """An ACK for an unknown dialog is dropped, never answered."""
    with pytest.raises(LocalProtocolError):
        no_such_dialog(in_dialog_request("ACK", 1, to_tag="nobody"))


def test_request_without_to_tag_is_not_in_dialog():
    """A request without a To tag matches no dialog (it is out of dialog, not 481)."""
    table = DialogTable()
    table.add(uas_dialog())
    assert table.match(invite_received()) is None


def test_table_refuses_duplicate_and_terminated():
    """Two dialogs with one ID, or a terminated dialog, cannot be added."""
    table = DialogTable()
    table.add(uas_dialog())
    with pytest.raises(LocalProtocolError):
        table.add(uas_dialog())
    ended = uac_dialog()
    ended.terminate()
    with pytest.raises(LocalProtocolError):
        table.add(ended)


def test_table_forgets_terminated_dialogs():
    """Every terminated dialog leaves the table, so the count returns to zero."""
    table = DialogTable()
    dialogs = []
    for n in range(5):
        invite = invite_received()
        invite.call_id = f"c{n}"
        dialog = Dialog.uas(invite, dialog_response(invite, 200, f"t{n}", parse_uri(BOB_CONTACT)))
        table.add(dialog)
        dialogs.append(dialog)
    assert table.count() == 5
    dialogs[0].terminate()
    dialogs[1].new_request("BYE", "h", 1)
    bye = in_dialog_request("BYE", 2, to_tag="t2")
    bye.call_id = "c2"
    table.match(bye).receive_request(bye)
    assert table.count() == 2
    for dialog in list(table):
        dialog.terminate()
    assert table.count() == 0
    assert dialogs[0].terminate() is False


# -- UacDialogs: early dialogs, forks, confirmation --------------------------------------


def test_uac_dialogs_fork_and_confirm():
    """Two forks ring; the 2xx confirms one; the other early dialog ends 64*T1 later."""
    clock, table = Clock(), DialogTable()
    uac = UacDialogs(invite_sent(), clock, TIMERS, table=table)
    assert uac.on_response(response(100, "Trying", tag=None)).event is UacEvent.NONE
    assert uac.on_response(response(180, "Ringing", tag=None)).event is UacEvent.NONE
    a = uac.on_response(response(180, "Ringing", tag="a"))
    b = uac.on_response(response(183, "Session Progress", tag="b"))
    assert a.event is UacEvent.EARLY and b.event is UacEvent.EARLY
    assert uac.on_response(response(180, "Ringing", tag="a")) == (UacEvent.PROVISIONAL, a.dialog)
    assert table.count() == 2
    ok = uac.on_response(response(200, "OK", tag="b"))
    assert ok == (UacEvent.CONFIRMED, b.dialog)
    assert b.dialog.state is DialogState.CONFIRMED
    assert a.dialog.state is DialogState.EARLY
    clock.advance(TIMERS.b - 0.01)
    assert a.dialog.state is DialogState.EARLY
    clock.advance(0.01)
    assert a.dialog.state is DialogState.TERMINATED
    assert table.count() == 1
    assert clock.getDelayedCalls() == []


def test_uac_dialogs_second_2xx_makes_second_dialog():
    """A 2xx from another fork makes its own confirmed dialog."""
    clock = Clock()
    uac = UacDialogs(invite_sent(), clock, TIMERS)
    first = uac.on_response(response(200, "OK", tag="x"))
    second = uac.on_response(response(200, "OK", tag="y", contact="sip:bob@127.0.0.5"))
    assert first.event is second.event is UacEvent.CONFIRMED
    assert first.dialog is not second.dialog
    assert second.dialog.id == DialogId(CALL_ID, "alice1", "y")
    assert str(second.dialog.remote_target) == "sip:bob@127.0.0.5"


def test_uac_dialogs_failure_ends_early_dialogs():
    """A non-2xx final response ends every early dialog and leaves no timer."""
    clock, table = Clock(), DialogTable()
    uac = UacDialogs(invite_sent(), clock, TIMERS, table=table)
    uac.on_response(response(180, "Ringing", tag="a"))
    uac.on_response(response(180, "Ringing", tag="b"))
    update = uac.on_response(response(486, "Busy Here", tag="c"))
    assert update.event is UacEvent.FAILED
    assert [d.state for d in uac.dialogs] == [DialogState.TERMINATED] * 2
    assert table.count() == 0
    assert clock.getDelayedCalls() == []
    assert uac.on_response(response(180, "Ringing", tag="d")).event is UacEvent.NONE


def test_early_dialog_2xx_recomputes_route_set_and_target():
    """The 2xx confirming an early dialog recomputes its route set and remote target (§13.2.2.4)."""
    clock = Clock()
    uac = UacDialogs(invite_sent(), clock, TIMERS)
    early = uac.on_response(response(180, "Ringing", record_route=(P1,), contact="sip:bob@127.0.0.7")).dialog
    assert [str(r) for r in early.route_set] == [P1]
    uac.on_response(response(200, "OK"))
    assert [str(r) for r in early.route_set] == [P1, P2]
    assert str(early.remote_target) == BOB_CONTACT
    uac.close()
    assert clock.getDelayedCalls() == []


def test_uac_dialogs_close_ends_early_and_timer():
    """close() ends the early dialogs and cancels the 64*T1 timer."""
    clock = Clock()
    uac = UacDialogs(invite_sent(), clock, TIMERS)
    early = uac.on_response(response(180, "Ringing", tag="a")).dialog
    confirmed = uac.on_response(response(200, "OK", tag="b")).dialog
    uac.close()
    assert early.state is DialogState.TERMINATED
    assert confirmed.state is DialogState.CONFIRMED
    assert clock.getDelayedCalls() == []
