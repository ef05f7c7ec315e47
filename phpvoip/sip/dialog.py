"""SIP dialogs (RFC 3261 §12, §13.2.2.4, §13.3.1.4, §14, §15).

A `Dialog` is the state two user agents share between an INVITE's answer and the BYE:
its ID (Call-ID, local tag, remote tag), both CSeq counters, the route set and the
remote target. It builds the requests we send inside it, checks the ones we receive,
and keeps the end-to-end pieces of INVITE reliability: the ACK we sent for a 2xx
(sent again for each retransmitted 2xx) and the 2xx we retransmit until its ACK.

`UacDialogs` follows the dialogs that one INVITE of ours creates (forking can make
several); `DialogTable` finds the dialog of an incoming request, and
`no_such_dialog()` answers those that have none (481).

Nothing here sends through transactions: the caller passes in-dialog requests to its
transaction layer, and ACKs and 2xx retransmissions go to a plain `send(message,
destination)` callable. Time comes from an injected `IReactorTime`.

The code lives in three private-by-topic modules re-exported here:
`dialog_state` (the `Dialog`), `dialog_routing` (Request-URI, Route, next hop) and
`dialog_reliability` (2xx retransmission).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import NamedTuple

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from phpvoip.sip.dialog_reliability import AnswerRetransmitter, AnswerState, Send
from phpvoip.sip.dialog_routing import Hop, next_hop, request_target, uri_hop
from phpvoip.sip.dialog_state import (
    MAX_FORWARDS,
    TARGET_REFRESH,
    Dialog,
    DialogError,
    DialogId,
    DialogState,
    Role,
    dialog_response,
    error_response,
    new_branch,
    new_tag,
)
from phpvoip.sip.errors import LocalProtocolError
from phpvoip.sip.message import Request, Response
from phpvoip.sip.timers import Timers

__all__ = [
    "MAX_FORWARDS",
    "TARGET_REFRESH",
    "AnswerRetransmitter",
    "AnswerState",
    "Dialog",
    "DialogError",
    "DialogId",
    "DialogState",
    "DialogTable",
    "Hop",
    "Role",
    "Send",
    "UacDialogs",
    "UacEvent",
    "UacUpdate",
    "dialog_response",
    "error_response",
    "new_branch",
    "new_tag",
    "next_hop",
    "no_such_dialog",
    "request_target",
    "uri_hop",
]

log = Logger()


def no_such_dialog(request: Request) -> Response:
    """The 481 for an in-dialog request (one with a To tag) that matches no dialog
    (§12.2.2: "If the UAS wishes to reject the request because it does not wish to
    recreate the dialog, it MUST respond to the request with a 481"). An ACK is never
    answered (§17.1.1.1); drop it instead."""
    if request.method == "ACK":
        raise LocalProtocolError("an ACK is never answered, not even with a 481")
    return request.response(481)


class DialogTable:
    """The dialogs of one switch by ID, to route incoming requests to their dialog.
    A dialog added here leaves by itself when it terminates."""

    __slots__ = ("_dialogs",)

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def add(self, dialog: Dialog) -> None:
        if dialog.state is DialogState.TERMINATED:
            raise LocalProtocolError(f"{dialog!r} has ended")
        key = dialog.id
        known = self._dialogs.get(key)
        if known is dialog:
            return
        if known is not None:
            raise LocalProtocolError(f"a dialog {key} exists already")
        self._dialogs[key] = dialog
        dialog.when_terminated(self.remove)

    def find(self, call_id: str, local_tag: str, remote_tag: str | None) -> Dialog | None:
        return self._dialogs.get(DialogId(call_id, local_tag, remote_tag))

    def match(self, request: Request) -> Dialog | None:
        """The dialog of an incoming request: ours is its To tag, the peer's its From
        tag (§12.2.2). None without a To tag (not an in-dialog request) or when no
        dialog has that ID; answer the latter with `no_such_dialog()`."""
        local_tag = request.to.tag
        if local_tag is None:
            return None
        return self._dialogs.get(DialogId(request.call_id, local_tag, request.from_.tag))

    def remove(self, dialog: Dialog) -> bool:
        key = dialog.id
        if self._dialogs.get(key) is dialog:
            del self._dialogs[key]
            return True
        return False

    def count(self) -> int:
        return len(self._dialogs)

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))


class UacEvent(enum.Enum):
    """What a response to our dialog-creating request did (`UacDialogs.on_response`)."""

    NONE = "none"  # no dialog business (100, untagged 1xx, stray)
    EARLY = "early"  # a new early dialog
    PROVISIONAL = "provisional"  # another 1xx in a known early dialog
    CONFIRMED = "confirmed"  # a 2xx confirmed an early dialog or made a new one
    RETRANSMISSION = "retransmission"  # a 2xx seen before (the ACK, if sent, went again)
    FAILED = "failed"  # a non-2xx final: every early dialog ended


class UacUpdate(NamedTuple):
    event: UacEvent
    dialog: Dialog | None


class UacDialogs:
    """The dialogs that one INVITE of ours creates (§12.1.2, §13.2.2.4). Forking
    proxies may answer with several To tags: each tag is its own dialog; a 2xx with a
    known tag confirms that early dialog, a 2xx with a new tag makes a new confirmed
    one (a B2BUA ACKs and BYEs the extras), a non-2xx final ends the early ones.
    64*T1 after the first 2xx the INVITE counts as complete and the early dialogs no
    2xx confirmed end (§13.2.2.4).

    New dialogs are added to `table` when one is given.
    """

    __slots__ = ("request", "completed", "_clock", "_timers", "_send", "_table", "_dialogs", "_timer")

    def __init__(
        self,
        request: Request,
        clock: IReactorTime,
        timers: Timers,
        send: Send | None = None,
        table: DialogTable | None = None,
    ) -> None:
        self.request: Request | None = request
        self.completed = False
        self._clock = clock
        self._timers = timers
        self._send = send
        self._table = table
        self._dialogs: dict[str, Dialog] = {}
        self._timer: IDelayedCall | None = None

    @property
    def dialogs(self) -> list[Dialog]:
        return list(self._dialogs.values())

    def on_response(self, response: Response) -> UacUpdate:
        """Take a response to the request (every one the transaction layer passes up,
        2xx retransmissions included) and say what it did to which dialog."""
        status = response.status
        tag = response.to.tag
        if status >= 300:
            return self._failed()
        if status == 100 or tag is None:
            if status >= 200:
                log.warn("{status} for {callID} without a To tag", status=status, callID=response.call_id)
            return UacUpdate(UacEvent.NONE, None)
        dialog = self._dialogs.get(tag)
        if status < 200:
            if dialog is None:
                if self.completed:
                    return UacUpdate(UacEvent.NONE, None)
                return UacUpdate(UacEvent.EARLY, self._create(response))
            if dialog.state is DialogState.EARLY:
                return UacUpdate(UacEvent.PROVISIONAL, dialog)
            return UacUpdate(UacEvent.NONE, dialog)
        if dialog is None:
            if self.completed:
                log.warn("2xx with a new tag for {callID} after 64*T1", callID=response.call_id)
                return UacUpdate(UacEvent.NONE, None)
            dialog = self._create(response)
            self._first_2xx()
            return UacUpdate(UacEvent.CONFIRMED, dialog)
        if dialog.state is DialogState.EARLY:
            dialog.receive_response(response)
            self._first_2xx()
            return UacUpdate(UacEvent.CONFIRMED, dialog)
        dialog.on_2xx_retransmission(response)
        return UacUpdate(UacEvent.RETRANSMISSION, dialog)

    def close(self) -> None:
        """Give up on the request: end the early dialogs and drop the timer. The
        confirmed dialogs are left to their owner, who may keep this object for
        their 2xx retransmissions; the request, which only made new dialogs, is
        dropped (None)."""
        self.completed = True
        self._cancel_timer()
        self._end_early()
        self.request = None

    def _create(self, response: Response) -> Dialog:
        dialog = Dialog.uac(self.request, response, self._send)  # type: ignore[arg-type]
        self._dialogs[response.to.tag] = dialog
        if self._table is not None:
            self._table.add(dialog)
        return dialog

    def _first_2xx(self) -> None:
        if self._timer is None and not self.completed:
            self._timer = self._clock.callLater(self._timers.b, self._expired)

    def _expired(self) -> None:
        self._timer = None
        self.completed = True
        self._end_early()

    def _failed(self) -> UacUpdate:
        # A final failure ends the transaction: no 2xx can follow (§13.2.2.3).
        self.completed = True
        self._cancel_timer()
        self._end_early()
        return UacUpdate(UacEvent.FAILED, None)

    def _end_early(self) -> None:
        for dialog in self._dialogs.values():
            if dialog.state is DialogState.EARLY:
                dialog.terminate()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
