"""The RFC 3261 §17 transaction layer: matching, the four machines, CANCEL (§9).

`TransactionLayer` sits between the transport (whose sink it is) and the transaction
user (the dialog layer / engine). It matches every message to a transaction, creates
server transactions for new requests, runs client transactions for the requests the
user sends, answers CANCEL itself, and forgets every transaction that terminates, so
`counts()` returns to zero when traffic stops.

The machines live in `transaction_client` and `transaction_server`; their shared
parts (states, errors, local responses, branch and tag helpers) in
`transaction_base`. Everything public is re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from phpvoip.sip.address import Address
from phpvoip.sip.errors import LocalProtocolError
from phpvoip.sip.message import Request, Response
from phpvoip.sip.timers import Timers
from phpvoip.sip.transaction_base import (
    MAGIC_COOKIE,
    LocalResponse,
    ResponseCallback,
    TimerQueue,
    TransactionState,
    TransactionStateError,
    is_local,
    new_branch,
    new_tag,
)
from phpvoip.sip.transaction_client import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ClientTransaction,
    make_ack,
    make_cancel,
)
from phpvoip.sip.transaction_server import (
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
)

__all__ = [
    "MAGIC_COOKIE",
    "ClientInviteTransaction",
    "ClientNonInviteTransaction",
    "ClientTransaction",
    "LocalResponse",
    "ServerInviteTransaction",
    "ServerNonInviteTransaction",
    "ServerTransaction",
    "TransactionLayer",
    "TransactionState",
    "TransactionStateError",
    "TransactionUser",
    "is_local",
    "make_ack",
    "make_cancel",
    "new_branch",
    "new_tag",
]

log = Logger()
S = TransactionState

DEFAULT_TIMERS = Timers()

SendFunction = Callable[[Request | Response, Address], None]


@runtime_checkable
class TransactionUser(Protocol):
    """What the layer calls upwards."""

    def request_received(self, request: Request, transaction: ServerTransaction) -> None:
        """A new request (never ACK or CANCEL); answer through `transaction.respond`."""

    def ack_received(self, ack: Request, source: Address) -> None:
        """An ACK that belongs to no transaction: the ACK for a 2xx (end to end)."""

    def cancel_received(self, cancel: Request, invite_transaction: ServerTransaction) -> None:
        """A CANCEL for an INVITE not yet finally answered. The CANCEL has had its
        200; when this returns, the layer answers the INVITE 487 unless the user
        sent a final response meanwhile."""

    def response_received(self, response: Response, source: Address) -> None:
        """A response that matches no client transaction (e.g. a 2xx retransmitted
        after timer M, or a late one); the user may drop it."""


def _match_key(request: Request, to_tag: str | None) -> tuple:
    """What identifies the server transaction of `request`, method aside.

    §17.2.3: with the magic cookie, the top Via's branch and sent-by. Without it
    (RFC 2543 peers), the Request-URI, To tag, From tag, Call-ID, CSeq number and
    top Via. `to_tag` is passed in because an ACK carries the response's tag.
    """
    via = request.top_via
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), via.port)
    return (None, str(request.uri), to_tag, request.from_.tag, request.call_id, request.cseq.seq, str(via))


class TransactionLayer:
    """Matches messages to transactions and owns their lifetimes.

    `clock` gives time, `send(message, address)` hands a message to the transport,
    `user` receives what belongs to no transaction or starts a new one. Server
    transactions answer to `address` = where the request came from.
    """

    def __init__(
        self,
        clock: IReactorTime,
        send: SendFunction,
        user: TransactionUser,
        timers: Timers = DEFAULT_TIMERS,
    ) -> None:
        self.clock = clock
        self.user = user
        self.timers = timers
        self._send = send
        self.timer_queue = TimerQueue(clock)
        # (branch, CSeq method) -> client transaction (§17.1.3)
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        # (method, match key) -> server transaction; ACK is looked up as INVITE
        self._servers: dict[tuple, ServerTransaction] = {}
        # match key -> the transaction a CANCEL with that key would cancel (§9.2)
        self._originals: dict[tuple, ServerTransaction] = {}
        # Totals since start, for the manhole and metrics: plain ints, bumped in place.
        self.clients_started = 0
        self.servers_started = 0
        self.retransmissions_sent = 0  # requests and responses sent again
        self.retransmissions_received = 0  # duplicates absorbed or answered again

    # -- from the transport ------------------------------------------------------

    def message_received(self, message: Request | Response, source: Address) -> None:
        """The transport's sink: one parsed message and where it came from."""
        if isinstance(message, Response):
            self._response_received(message, source)
        else:
            self._request_received(message, source)

    def transport_error(self, address: Address) -> None:
        """`address` is unreachable (ICMP error, refused or broken TCP connection):
        every live transaction talking to it fails at once (§17.1.4, §17.2.4)."""
        doomed: list[ClientTransaction | ServerTransaction] = [
            tx for tx in self._clients.values() if tx.destination == address
        ]
        doomed += [tx for tx in self._servers.values() if tx.source == address]
        if doomed:
            log.debug(
                "transport error towards {address}: {count} transactions",
                address=str(address),
                count=len(doomed),
            )
        for tx in doomed:
            # An earlier one may have ended a later one (an INVITE its CANCEL).
            if not tx.terminated:
                tx._event("transport_error")

    # -- for the transaction user ------------------------------------------------------

    def send_request(
        self, request: Request, destination: Address, on_response: ResponseCallback
    ) -> ClientTransaction:
        """Start a client transaction for `request` towards `destination`.

        The top Via must carry a branch with the magic cookie (`new_branch()`).
        A CANCEL (see `make_cancel`) for an INVITE still in Calling waits for its
        first provisional response (§9.1); for an INVITE that has its final
        response, or that this layer does not know, it is not sent and
        `on_response` gets a local 481.
        """
        method = request.method
        if method == "ACK":
            raise LocalProtocolError("ACK is not a transaction; send it with send_stateless()")
        via = request.top_via
        branch = via.branch if via is not None else None
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise LocalProtocolError(f"{method}: the top Via needs a branch starting with {MAGIC_COOKIE}")
        key = (branch, method)
        if key in self._clients:
            raise LocalProtocolError(f"{method}: branch {branch} is in use by a live transaction")
        tx: ClientTransaction
        if method == "INVITE":
            tx = ClientInviteTransaction(self, request, destination, on_response)
        else:
            tx = ClientNonInviteTransaction(self, request, destination, on_response)
        self._clients[key] = tx
        self.clients_started += 1
        try:
            if method == "CANCEL":
                self._start_cancel(tx, branch)
            else:
                tx._event("start")
        except Exception:
            if not tx.terminated:
                tx._terminate()
            raise
        return tx

    def send_stateless(self, message: Request | Response, destination: Address) -> None:
        """Hand a message to the transport outside any transaction (the ACK for a
        2xx, §13.2.2.4)."""
        self._send(message, destination)

    def counts(self) -> dict[str, int]:
        """Live transactions: ``{"client": n, "server": m}``."""
        return {"client": len(self._clients), "server": len(self._servers)}

    def totals(self) -> dict[str, int]:
        """What the layer has done since it was made (these only grow): transactions
        started, and messages sent again or received again. Duplicates the user
        handles itself (a 2xx to INVITE retransmitted to an Accepted client
        transaction) are not counted here."""
        return {
            "client_started": self.clients_started,
            "server_started": self.servers_started,
            "retransmissions_sent": self.retransmissions_sent,
            "retransmissions_received": self.retransmissions_received,
        }

    # -- matching --------------------------------------------------------------------

    def _response_received(self, response: Response, source: Address) -> None:
        # §17.1.3: the top Via branch and the CSeq method identify the transaction.
        via = response.top_via
        tx = self._clients.get((via.branch, response.cseq.method)) if via is not None else None
        if tx is None:
            log.debug(
                "stray response {status} ({branch})",
                status=response.status,
                branch=via.branch if via is not None else None,
                callID=response.call_id,
            )
            self.user.response_received(response, source)
            return
        tx._receive(response)

    def _request_received(self, request: Request, source: Address) -> None:
        method = request.method
        if method == "ACK":
            tx = self._match_ack(request)
            if tx is None:
                self.user.ack_received(request, source)
            else:
                tx._event("ack", (request, source))
            return
        match = _match_key(request, request.to.tag)
        key = (method, match)
        known = self._servers.get(key)
        if known is not None:
            self.retransmissions_received += 1
            known._event("request", request)
            return
        if method == "CANCEL":
            self._cancel_received(request, source, key)
            return
        tx: ServerTransaction
        if method == "INVITE":
            tx = ServerInviteTransaction(self, request, source, key)
        else:
            tx = ServerNonInviteTransaction(self, request, source, key)
        self._servers[key] = tx
        self._originals[match] = tx
        self.servers_started += 1
        self.user.request_received(request, tx)

    def _match_ack(self, ack: Request) -> ServerTransaction | None:
        """The INVITE transaction an ACK belongs to (§17.2.3: method ACK matches
        INVITE), or None for an ACK to a 2xx, which has a branch of its own."""
        via = ack.top_via
        branch = via.branch
        if branch is not None and branch.startswith(MAGIC_COOKIE):
            return self._servers.get(("INVITE", (branch, via.host.lower(), via.port)))
        # RFC 2543: "the To tag of the ACK matches the To tag of the response sent
        # by the server transaction"; the INVITE itself had none, or (re-INVITE) it.
        tag = ack.to.tag
        for invite_tag in (tag, None):
            tx = self._servers.get(("INVITE", _match_key(ack, invite_tag)))
            if tx is None:
                continue
            request = tx.request  # None once Accepted: then to_tag says it all
            if tx.to_tag == tag or (request is not None and request.to.tag == tag):
                return tx
        return None

    # -- CANCEL ------------------------------------------------------------------------

    def _cancel_received(self, cancel: Request, source: Address, key: tuple) -> None:
        """§9.2: the CANCEL is a transaction of its own that this layer answers; it
        matches the request it cancels like a retransmission of it would."""
        tx = ServerNonInviteTransaction(self, cancel, source, key)
        self._servers[key] = tx
        self.servers_started += 1
        original = self._originals.get(key[1])
        if original is None or original.terminated:
            # §9.2: "it SHOULD respond to the CANCEL with a 481".
            tx.respond(cancel.response(481, to_tag=new_tag()))
            return
        # §9.2: "The To tag of the response to the CANCEL and the response to the
        # original request SHOULD be the same."
        if original.to_tag is None:
            original.to_tag = new_tag()
        tx.respond(cancel.response(200, to_tag=original.to_tag))
        if isinstance(original, ServerInviteTransaction) and original.state is S.PROCEEDING:
            self.user.cancel_received(cancel, original)
            # §9.2: "the UAS SHOULD immediately respond to the INVITE with a 487".
            if original.state is S.PROCEEDING:
                original.respond(original.request.response(487, to_tag=original.to_tag))

    def _start_cancel(self, cancel: ClientTransaction, branch: str) -> None:
        invite = self._clients.get((branch, "INVITE"))
        if invite is None or invite.state not in (S.CALLING, S.PROCEEDING):
            # §9.1: "the CANCEL request MUST NOT be sent" after a final response.
            cancel._event("abandon")
        elif invite.state is S.CALLING:
            # §9.1: "the client MUST wait for the arrival of a provisional response".
            assert isinstance(invite, ClientInviteTransaction)
            invite.hold_cancel(cancel)
        else:
            cancel._event("start")
            # A transport that fails synchronously may have ended the INVITE too.
            if not invite.terminated:
                invite._event("cancel_sent")

    # -- bookkeeping -----------------------------------------------------------------------

    def _forget(self, tx: ClientTransaction | ServerTransaction) -> None:
        """Called by a transaction as it enters Terminated."""
        if isinstance(tx, ClientTransaction):
            key = (tx.branch, tx.method)
            if self._clients.get(key) is tx:
                del self._clients[key]
        else:
            if self._servers.get(tx.key) is tx:
                del self._servers[tx.key]
            match = tx.key[1]
            if self._originals.get(match) is tx:
                del self._originals[match]
