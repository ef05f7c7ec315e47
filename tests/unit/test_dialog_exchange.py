"""A UAC dialog and a UAS dialog talking through two record-routing proxies over an
in-memory link: every request one side builds is accepted by the other."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.task import Clock

from phpvoip.sip.address import Address
from phpvoip.sip.dialog import (
    Dialog,
    DialogState,
    DialogTable,
    UacDialogs,
    UacEvent,
    dialog_response,
    new_branch,
    next_hop,
)
from phpvoip.sip.headers import NameAddr, Via
from phpvoip.sip.message import Message, Request, Response, parse
from phpvoip.sip.timers import Timers
from phpvoip.sip.uri import URI, parse_uri

TIMERS = Timers(t1=0.5, t2=4.0, t4=5.0)
ALICE = Address("udp", "127.0.0.1", 5062)
P1 = Address("udp", "127.0.0.2", 5060)
P2 = Address("udp", "127.0.0.3", 5060)
BOB = Address("udp", "127.0.0.4", 5064)


class Link:
    """Delivers messages, as bytes and parsed again, to whoever listens at the
    destination, in order; `drop` may discard some."""

    def __init__(self) -> None:
        self.nodes: dict[Address, Callable[[Message], None]] = {}
        self.queue: deque[tuple[Address, bytes]] = deque()
        self.trace: list[tuple[Address, str]] = []
        self.drop: Callable[[Message, Address], bool] = lambda message, destination: False

    def sender(self) -> Callable[[Message, Address], None]:
        def send(message: Message, destination: Address) -> None:
            if not self.drop(message, destination):
                self.queue.append((destination, bytes(message)))

        return send

    def run(self) -> None:
        while self.queue:
            destination, data = self.queue.popleft()
            message = parse(data)
            self.trace.append((destination, message.start_line()))
            self.nodes[destination](message)


def via_address(message: Message) -> Address:
    via = message.top_via
    return Address(via.transport.lower(), via.host, via.port or 5060)


class Proxy:
    """A loose-routing, record-routing proxy with one fixed next hop for
    dialog-creating requests (its 'location service')."""

    def __init__(self, link: Link, address: Address, onward: Address | None) -> None:
        self.link, self.address, self.onward = link, address, onward
        self.send = link.sender()
        link.nodes[address] = self.receive

    def is_me(self, uri: URI) -> bool:
        return uri.host == self.address.host and (uri.port or 5060) == self.address.port

    def receive(self, message: Message) -> None:
        if isinstance(message, Response):
            message.pop_via()
            self.send(message, via_address(message))
            return
        request: Request = message  # type: ignore[assignment]
        routes = request.route
        if routes and self.is_me(routes[0].uri):
            # §16.4: a loose router removes the Route that names it.
            if routes[1:]:
                request.set("Route", routes[1:])
            else:
                request.remove("Route")
        if request.method == "INVITE" and request.to.tag is None:
            me = URI("sip", None, self.address.host, self.address.port, {"lr": None})
            request.add("Record-Route", NameAddr(me), first=True)
            destination = self.onward
        else:
            destination = None
        request.max_forwards = request.max_forwards - 1
        request.add(
            "Via", Via("UDP", self.address.host, self.address.port, {"branch": new_branch()}), first=True
        )
        if destination is None:
            destination = next_hop(request).address()
        self.send(request, destination)


class Phone:
    """One user agent: answers in-dialog requests with 200 and follows its dialogs."""

    def __init__(self, link: Link, clock: Clock, address: Address, contact: str) -> None:
        self.link, self.clock, self.address = link, clock, address
        self.contact = parse_uri(contact)
        self.send = link.sender()
        self.table = DialogTable()
        self.requests: list[Request] = []
        self.responses: list[Response] = []
        self.uac: UacDialogs | None = None
        self.on_invite: Callable[[Request], None] | None = None
        self.acks: list[bool] = []
        link.nodes[address] = self.receive

    def receive(self, message: Message) -> None:
        if isinstance(message, Response):
            self.responses.append(message)
            if self.uac is not None and message.cseq.seq == self.uac.request.cseq.seq:
                update = self.uac.on_response(message)
                if update.event is UacEvent.CONFIRMED:
                    self.ack(update.dialog, message)
                return
            dialog = self.table.find(message.call_id, message.from_.tag, message.to.tag)
            if dialog is not None and dialog.receive_response(message) and message.cseq.method == "INVITE":
                if 200 <= message.status < 300:
                    self.ack(dialog, message)
            return
        request: Request = message  # type: ignore[assignment]
        self.requests.append(request)
        if request.to.tag is None:
            self.on_invite(request)
            return
        dialog = self.table.match(request)
        accepted = dialog.receive_request(request)
        if request.method == "ACK":
            self.acks.append(accepted)
            return
        if request.method == "INVITE":
            answer = dialog_response(request, 200, dialog.local_tag, self.contact)
            dialog.answer(answer, via_address(request), self.clock, TIMERS, lambda: None)
        else:
            self.send(request.response(200), via_address(request))

    def ack(self, dialog: Dialog, ok: Response) -> None:
        ack = dialog.build_ack(ok, self.address.host, self.address.port)
        dialog.send_ack(ack, dialog.next_hop().address())

    def request(self, dialog: Dialog, method: str) -> Request:
        request = dialog.new_request(method, self.address.host, self.address.port)
        self.send(request, dialog.next_hop().address())
        return request


def call_setup(link: Link, clock: Clock) -> tuple[Phone, Phone, Dialog, Dialog]:
    Proxy(link, P1, onward=P2)
    Proxy(link, P2, onward=None)
    alice = Phone(link, clock, ALICE, "sip:alice@127.0.0.1:5062")
    bob = Phone(link, clock, BOB, "sip:bob@127.0.0.4:5064")
    bob_dialogs: list[Dialog] = []

    def answer_call(invite: Request) -> None:
        ringing = dialog_response(invite, 180, "bob1", bob.contact)
        dialog = Dialog.uas(invite, ringing, bob.send)
        bob.table.add(dialog)
        bob_dialogs.append(dialog)
        bob.send(ringing, via_address(invite))
        ok = dialog_response(invite, 200, "bob1", bob.contact)
        dialog.answer(ok, via_address(invite), clock, TIMERS, lambda: None)

    bob.on_invite = answer_call
    invite = Request("INVITE", "sip:bob@127.0.0.4:5064")
    invite.add("Via", Via("UDP", "127.0.0.1", 5062, {"branch": new_branch()}))
    invite.add("Max-Forwards", 70)
    invite.add("From", '"Alice" <sip:alice@127.0.0.1>;tag=alice1')
    invite.add("To", "<sip:bob@example.test>")
    invite.add("Call-ID", "exchange-1@127.0.0.1")
    invite.add("CSeq", "1 INVITE")
    invite.add("Contact", "<sip:alice@127.0.0.1:5062>")
    invite = parse(bytes(invite))
    alice.uac = UacDialogs(invite, clock, TIMERS, alice.send, alice.table)
    alice.send(invite, P1)
    link.run()
    (alice_dialog,) = alice.uac.dialogs
    return alice, bob, alice_dialog, bob_dialogs[0]


def test_call_through_two_proxies():
    """INVITE/180/200/ACK, INFO, a re-INVITE from the callee that moves both targets, and BYE."""
    link, clock = Link(), Clock()
    alice, bob, a, b = call_setup(link, clock)
    assert a.state is b.state is DialogState.CONFIRMED
    assert a.id == (b.id.call_id, b.id.remote_tag, b.id.local_tag)
    assert [str(r) for r in a.route_set] == ["<sip:127.0.0.2:5060;lr>", "<sip:127.0.0.3:5060;lr>"]
    assert [str(r) for r in b.route_set] == ["<sip:127.0.0.3:5060;lr>", "<sip:127.0.0.2:5060;lr>"]
    assert bob.acks == [True]
    assert not b.answer_pending
    ack_path = [dest for dest, line in link.trace if line.startswith("ACK")]
    assert ack_path == [P1, P2, BOB]

    info = alice.request(a, "INFO")
    link.run()
    assert info.cseq.seq == 2
    assert bob.requests[-1].method == "INFO" and b.remote_seq == 2
    assert alice.responses[-1].status == 200 and alice.responses[-1].cseq.method == "INFO"

    bob.contact = parse_uri("sip:bob2@127.0.0.4:5064")
    b.local_target = bob.contact
    alice.contact = parse_uri("sip:alice2@127.0.0.1:5062")
    reinvite = bob.request(b, "INVITE")
    link.run()
    assert str(a.remote_target) == "sip:bob2@127.0.0.4:5064"
    assert str(b.remote_target) == "sip:alice2@127.0.0.1:5062"
    assert alice.acks == [True]
    assert a.remote_seq == reinvite.cseq.seq
    reinvite_path = [dest for dest, line in link.trace if line.startswith("INVITE sip:alice")]
    assert reinvite_path == [P2, P1, ALICE]

    info = alice.request(a, "INFO")
    link.run()
    assert info.cseq.seq == 3
    assert str(bob.requests[-1].uri) == "sip:bob2@127.0.0.4:5064"

    bye = bob.request(b, "BYE")
    link.run()
    assert bye.cseq.seq == reinvite.cseq.seq + 1
    assert str(alice.requests[-1].uri) == "sip:alice2@127.0.0.1:5062"
    assert a.state is b.state is DialogState.TERMINATED
    assert alice.table.count() == bob.table.count() == 0
    clock.advance(TIMERS.b)
    assert clock.getDelayedCalls() == []
    assert [line for _, line in link.trace].count("SIP/2.0 200 OK") >= 4


def test_lost_ack_is_recovered_by_2xx_retransmission():
    """When the first ACK is lost, Bob's 2xx retransmission at T1 draws the stored ACK again."""
    link, clock = Link(), Clock()
    lost: list[Message] = []

    def drop_first_ack(message: Message, destination: Address) -> bool:
        if isinstance(message, Request) and message.method == "ACK" and not lost:
            lost.append(message)
            return True
        return False

    link.drop = drop_first_ack
    alice, bob, a, b = call_setup(link, clock)
    assert lost and bob.acks == []
    assert b.answer_pending
    clock.advance(TIMERS.t1)
    link.run()
    assert bob.acks == [True]
    assert not b.answer_pending
    oks = [line for dest, line in link.trace if dest == ALICE and line == "SIP/2.0 200 OK"]
    assert len(oks) == 2
    clock.advance(TIMERS.b)
    link.run()
    assert len([line for dest, line in link.trace if dest == ALICE and line == "SIP/2.0 200 OK"]) == 2
    assert clock.getDelayedCalls() == []
