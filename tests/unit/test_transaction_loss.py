"""Two transaction layers over a lossy in-process link (fixed seed, one Clock).

A client side sends hundreds of OPTIONS and INVITEs (a quarter of the INVITEs are
cancelled after a second); a server side answers OPTIONS 200 and INVITEs 180, then
200 or 486 after four seconds, retransmitting its 2xx until the ACK as a UAS core
does (§13.3.1.4). The link drops datagrams at random. Whatever got lost, every
transaction must end in an outcome the RFC allows, the proportions must be what the
loss rate predicts, and both layers must end empty.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
from twisted.internet.task import Clock

from phpvoip.sip.address import Address
from phpvoip.sip.message import Request, Response, parse
from phpvoip.sip.timers import Timers
from phpvoip.sip.transaction import (
    ServerTransaction,
    TransactionLayer,
    TransactionState,
    is_local,
    make_cancel,
    new_branch,
    new_tag,
)
from tests.unit.transaction_fakes import request

S = TransactionState
CLIENT = Address("udp", "127.0.0.1", 5061)
SERVER = Address("udp", "127.0.0.1", 5062)
TIMERS = Timers()
ANSWER_DELAY = 4.0  # the server's user rings this long before answering
CANCEL_AFTER = 1.0  # the client's user cancels the chosen INVITEs this soon
RING_TIMEOUT = 40.0  # the client's user gives up on a ringing INVITE (sends CANCEL)


class LossyLink:
    """Delivers each datagram after `delay`, unless the seeded coin drops it. Every
    message goes through bytes and `parse`, as on a real wire."""

    def __init__(self, clock: Clock, rng: random.Random, loss: float, delay: float = 0.02) -> None:
        self.clock = clock
        self.rng = rng
        self.loss = loss
        self.delay = delay
        self.ends: dict[Address, TransactionLayer] = {}
        self.sent = 0
        self.dropped = 0

    def sender(self, me: Address):
        def send(message: Request | Response, address: Address) -> None:
            self.sent += 1
            if self.rng.random() < self.loss:
                self.dropped += 1
                return
            data = bytes(message)
            self.clock.callLater(self.delay, self._deliver, data, address, me)

        return send

    def _deliver(self, data: bytes, address: Address, source: Address) -> None:
        self.ends[address].message_received(parse(data), source)


@dataclass
class ClientCall:
    """What the client side saw of one transaction (and its CANCEL)."""

    method: str
    request: Request
    cancel_planned: bool = False
    cancel_sent: bool = False
    finals: list[tuple[int, bool]] = field(default_factory=list)  # (status, local)
    cancel_finals: list[tuple[int, bool]] = field(default_factory=list)


class Caller:
    """The client side's user: starts transactions, ACKs every 2xx, cancels some."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.layer: TransactionLayer | None = None
        self.calls: dict[str, ClientCall] = {}
        self.stray_2xx = 0

    def start(self, method: str, n: int, cancel: bool = False) -> None:
        call_id = f"{method.lower()}-{n}@loss"
        req = request(
            method, branch=new_branch(), sent_by="127.0.0.1:5061", call_id=call_id, from_tag=new_tag()
        )
        call = self.calls[call_id] = ClientCall(method, req, cancel_planned=cancel)
        self.layer.send_request(req, SERVER, lambda r: self.on_response(call, r))
        if method == "INVITE":
            if cancel:
                self.clock.callLater(CANCEL_AFTER, self.cancel, call)
            self.clock.callLater(RING_TIMEOUT, self.cancel, call)

    def cancel(self, call: ClientCall) -> None:
        if call.finals or call.cancel_sent:
            return
        call.cancel_sent = True
        self.layer.send_request(make_cancel(call.request), SERVER, lambda r: self.on_cancel_response(call, r))

    def on_response(self, call: ClientCall, response: Response) -> None:
        if response.status < 200:
            return
        call.finals.append((response.status, is_local(response)))
        if 200 <= response.status < 300 and call.method == "INVITE":
            self.ack(response)

    def on_cancel_response(self, call: ClientCall, response: Response) -> None:
        if response.status >= 200:
            call.cancel_finals.append((response.status, is_local(response)))

    def ack(self, ok: Response) -> None:
        """§13.2.2.4: the ACK for a 2xx is the user's, on a branch of its own."""
        ack = request(
            "ACK",
            branch=new_branch(),
            sent_by="127.0.0.1:5061",
            call_id=ok.call_id,
            cseq=ok.cseq.seq,
            from_tag=ok.from_.tag,
            to_tag=ok.to.tag,
        )
        self.layer.send_stateless(ack, SERVER)

    # -- TransactionUser (the client side receives no requests) ---------------------

    def request_received(self, request: Request, transaction: ServerTransaction) -> None:
        raise AssertionError("the client side got a request")

    def ack_received(self, ack: Request, source: Address) -> None:
        raise AssertionError("the client side got an ACK")

    def cancel_received(self, cancel: Request, invite_transaction: ServerTransaction) -> None:
        raise AssertionError("the client side got a CANCEL")

    def response_received(self, response: Response, source: Address) -> None:
        # A 2xx retransmitted after timer M (or after a local 408): still ACK it.
        if 200 <= response.status < 300 and response.cseq.method == "INVITE":
            self.stray_2xx += 1
            self.ack(response)


@dataclass
class ServerCall:
    """What the server side did with one request."""

    transaction: ServerTransaction
    decision: int
    tag: str
    cancelled: bool = False
    answered: bool = False
    acked: bool = False
    failure: str | None = None
    answered_at: float = 0.0
    interval: float = TIMERS.t1
    final: Response | None = None  # the 2xx this user retransmits (§13.3.1.4)


class Answerer:
    """The server side's user: OPTIONS → 200; INVITE → 180, then 200 or 486."""

    def __init__(self, clock: Clock, rng: random.Random) -> None:
        self.clock = clock
        self.rng = rng
        self.layer: TransactionLayer | None = None
        self.calls: dict[str, ServerCall] = {}
        self.unacked_2xx = 0

    def request_received(self, request: Request, transaction: ServerTransaction) -> None:
        call = ServerCall(transaction, self.rng.choice([200, 486]), new_tag())
        self.calls[request.call_id] = call
        transaction.on_failure = lambda tx, reason: setattr(call, "failure", reason)
        if request.method == "OPTIONS":
            transaction.respond(request.response(200, to_tag=call.tag))
            return
        transaction.respond(request.response(180, to_tag=call.tag))
        self.clock.callLater(ANSWER_DELAY, self.answer, call)

    def answer(self, call: ServerCall) -> None:
        tx = call.transaction
        if call.cancelled or tx.state is not S.PROCEEDING:
            return
        call.answered = True
        call.answered_at = self.clock.seconds()
        call.final = tx.request.response(call.decision, to_tag=call.tag)
        tx.respond(call.final)
        if call.decision == 200:
            self.clock.callLater(call.interval, self.retransmit_2xx, call)

    def retransmit_2xx(self, call: ServerCall) -> None:
        """§13.3.1.4: T1, doubling up to T2, until the ACK or 64*T1."""
        if call.acked:
            return
        if self.clock.seconds() - call.answered_at >= 64 * TIMERS.t1 or call.transaction.terminated:
            self.unacked_2xx += 1
            return
        call.transaction.respond(call.final)
        call.interval = min(2 * call.interval, TIMERS.t2)
        self.clock.callLater(call.interval, self.retransmit_2xx, call)

    def ack_received(self, ack: Request, source: Address) -> None:
        call = self.calls.get(ack.call_id)
        assert call is not None and call.decision == 200 and call.answered
        call.acked = True

    def cancel_received(self, cancel: Request, invite_transaction: ServerTransaction) -> None:
        self.calls[cancel.call_id].cancelled = True

    def response_received(self, response: Response, source: Address) -> None:
        raise AssertionError("the server side got a response")


def run(seed: int, loss: float, n_options: int, n_invites: int):
    """Run the whole exchange until no timer is left; return both users and the link."""
    clock = Clock()
    rng = random.Random(seed)
    link = LossyLink(clock, rng, loss)
    caller, answerer = Caller(clock), Answerer(clock, rng)
    caller.layer = client = TransactionLayer(clock, link.sender(CLIENT), caller, TIMERS)
    answerer.layer = server = TransactionLayer(clock, link.sender(SERVER), answerer, TIMERS)
    link.ends = {CLIENT: client, SERVER: server}
    for n in range(max(n_options, n_invites)):
        start = n * 0.1
        if n < n_options:
            clock.callLater(start, caller.start, "OPTIONS", n)
        if n < n_invites:
            clock.callLater(start + 0.05, caller.start, "INVITE", n, n % 4 == 0)
    peak = {"client": 0, "server": 0}
    while clock.calls:
        assert clock.seconds() < 600, "timers still running after 10 minutes"
        clock.advance(max(0.0, clock.calls[0].getTime() - clock.seconds()))
        for side, count in (("client", client.counts()["client"]), ("server", server.counts()["server"])):
            peak[side] = max(peak[side], count)
    return caller, answerer, link, client, server, peak


def outcomes(caller: Caller, answerer: Answerer) -> Counter:
    """Check every transaction's end against what the RFC allows; count the kinds."""
    seen: Counter = Counter()
    for call_id, call in caller.calls.items():
        server = answerer.calls.get(call_id)
        if call.method == "OPTIONS":
            # Timer F or a 200, exactly once (§17.1.2.2).
            assert call.finals in ([(200, False)], [(408, True)]), (call_id, call.finals)
            if call.finals == [(200, False)]:
                assert server is not None
            seen["OPTIONS " + _label(call.finals[0])] += 1
            continue
        assert call.finals, f"{call_id} never ended"
        first = call.finals[0]
        if len(call.finals) > 1:
            # Only the Accepted state passes more than one final: all 2xx (RFC 6026).
            assert all(200 <= s < 300 and not local for s, local in call.finals), call.finals
        status, local = first
        if local:
            # 408: timer B in Calling; 487: §9.1, no final 64*T1 after the CANCEL.
            assert status in (408, 487), first
            if status == 487:
                assert call.cancel_sent
        elif status == 487:
            assert server is not None and server.cancelled and call.cancel_sent
        else:
            assert server is not None and status == server.decision and server.answered, (first, server)
        if call.cancel_sent:
            assert len(call.cancel_finals) == 1, call.cancel_finals
            assert call.cancel_finals[0] in ((200, False), (481, False), (481, True), (408, True))
            seen["CANCEL " + _label(call.cancel_finals[0])] += 1
        kind = "INVITE cancelled" if call.cancel_planned else "INVITE"
        seen[f"{kind} {_label(first)}"] += 1
    for call_id, server in answerer.calls.items():
        tx = server.transaction
        assert tx.terminated, (call_id, tx)
        if tx.method == "INVITE" and tx.last_response is not None and tx.last_response.status >= 300:
            # Non-2xx to INVITE: the ACK came (Confirmed, then timer I) or timer H fired.
            seen["server non-2xx " + ("no ACK (timer H)" if server.failure == "timeout" else "ACKed")] += 1
            assert server.failure in (None, "timeout")
    return seen


def _label(final: tuple[int, bool]) -> str:
    status, local = final
    return f"{status} local" if local else str(status)


@pytest.mark.parametrize("seed", [20250611])
def test_thirty_percent_loss_everything_completes_or_times_out(seed):
    """At 30% loss every transaction ends as the RFC allows, nearly all succeed
    (retransmission works), and both layers end with no live transaction."""
    caller, answerer, link, client, server, peak = run(seed, 0.3, n_options=300, n_invites=300)
    seen = outcomes(caller, answerer)
    print(dict(sorted(seen.items())), "sent", link.sent, "dropped", link.dropped, "peak", peak)
    assert 0.27 < link.dropped / link.sent < 0.33
    assert client.counts() == server.counts() == {"client": 0, "server": 0}
    assert peak["client"] > 100 and peak["server"] > 100
    # An OPTIONS times out only if all 11 request/response round trips fail:
    # 0.51**11 ≈ 0.06%; an uncancelled INVITE reaches the server's answer likewise.
    assert seen["OPTIONS 200"] >= 0.98 * 300
    plain = sum(v for k, v in seen.items() if k.startswith("INVITE ") and "cancelled" not in k)
    answered = seen["INVITE 200"] + seen["INVITE 486"]
    assert answered >= 0.95 * plain
    cancelled = sum(v for k, v in seen.items() if k.startswith("INVITE cancelled"))
    assert cancelled == 75
    # The rest lost the race the RFC allows: the answer went out before the CANCEL
    # (held until a provisional came, §9.1) reached the server.
    assert seen["INVITE cancelled 487"] + seen["INVITE cancelled 487 local"] >= 0.75 * cancelled


@pytest.mark.parametrize("seed", [20250611])
def test_sixty_percent_loss_timeouts_at_the_predicted_rate(seed):
    """At 60% loss many transactions time out; each outcome is still one the RFC
    allows, the OPTIONS timeout rate is near (1 - 0.4**2)**11 ≈ 15%, and both
    layers still drain to zero."""
    caller, answerer, link, client, server, _ = run(seed, 0.6, n_options=400, n_invites=200)
    seen = outcomes(caller, answerer)
    print(dict(sorted(seen.items())), "sent", link.sent, "dropped", link.dropped)
    assert 0.57 < link.dropped / link.sent < 0.63
    assert client.counts() == server.counts() == {"client": 0, "server": 0}
    assert 0.08 * 400 <= seen["OPTIONS 408 local"] <= 0.23 * 400
    assert seen["server non-2xx no ACK (timer H)"] > 0
