"""SipTransport on real sockets bound to 127.0.0.1 (ports chosen by the OS).

Every wait is bounded (TIMEOUT); every port and connection is closed by the fixture
that opened it.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.defer import DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.logger import LogLevel, globalLogPublisher

from phpvoip.frontdoor import FrontDoor
from phpvoip.sip.address import Address
from phpvoip.sip.message import Request, Response, parse
from phpvoip.sip.transport import MESSAGE, StreamFramer
from phpvoip.transport import SipTransport

TIMEOUT = 5.0
HOST = "127.0.0.1"


@pytest.fixture
def reactor():
    from twisted.internet import reactor

    return reactor


class Recorder:
    """A sink that queues what it gets; `forward` may pass messages on."""

    def __init__(self, forward: object | None = None) -> None:
        self.messages: DeferredQueue = DeferredQueue()
        self.errors: DeferredQueue = DeferredQueue()
        self.forward = forward

    def message_received(self, message, source: Address) -> None:
        self.messages.put((message, source))
        if self.forward is not None:
            self.forward.message_received(message, source)

    def transport_error(self, address: Address) -> None:
        self.errors.put(address)


class UDPPeer(DatagramProtocol):
    """A plain UDP endpoint standing in for a phone."""

    def __init__(self) -> None:
        self.received: DeferredQueue = DeferredQueue()

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put((data, addr))


class StreamPeer(Protocol):
    """A plain TCP client; frames what it reads with the transport's own framer."""

    def __init__(self) -> None:
        self.frames: DeferredQueue = DeferredQueue()
        self.framer = StreamFramer()
        self.lost: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        if data == b"\r\n":
            self.frames.put(("pong", data))
            return
        for frame in self.framer.feed(data):
            self.frames.put(frame)

    def connectionLost(self, reason=None) -> None:
        self.lost.callback(None)


def within(d: defer.Deferred, reactor, seconds: float = TIMEOUT) -> defer.Deferred:
    return d.addTimeout(seconds, reactor)


async def until(reactor, predicate: Callable[[], bool]) -> None:
    """Wait (on the reactor, bounded) until `predicate()` holds."""
    deadline = reactor.seconds() + TIMEOUT
    while not predicate():
        assert reactor.seconds() < deadline, "condition not met in time"
        await task.deferLater(reactor, 0.01, lambda: None)


def options(
    port: int,
    via: str,
    *,
    transport: str = "UDP",
    body: bytes = b"",
    length: int | None = None,
    method: str = "OPTIONS",
    extra: str = "",
) -> bytes:
    length = len(body) if length is None else length
    branch = "z9hG4bK" + uuid.uuid4().hex[:12]
    return (
        f"{method} sip:{HOST}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {via};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"To: <sip:{HOST}:{port}>\r\n"
        f"From: <sip:probe@{HOST}>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\n"
        f"CSeq: 1 {method}\r\n"
        f"{extra}"
        f"Content-Length: {length}\r\n\r\n"
    ).encode() + body


class Switch:
    """A SipTransport with one UDP and one TCP listener on loopback."""

    def __init__(self, reactor, sink=None, **kwargs) -> None:
        self.sink = sink or Recorder()
        self.transport = SipTransport(reactor, self.sink, **kwargs)
        self.udp = self.transport.listen_udp(0, HOST)
        self.udp_port = self.udp.getHost().port
        self.tcp = reactor.listenTCP(0, self.transport.tcp_factory(), interface=HOST)
        self.tcp_port = self.tcp.getHost().port
        self.ports = [self.udp, self.tcp]

    async def close(self) -> None:
        self.transport.disconnect_all()
        for port in self.ports:
            await port.stopListening()


@pytest_twisted.async_yield_fixture
async def switch(reactor):
    s = Switch(reactor)
    yield s
    await s.close()


@pytest_twisted.async_yield_fixture
async def peer(reactor):
    p = UDPPeer()
    port = reactor.listenUDP(0, p, interface=HOST)
    p.port = port.getHost().port
    yield p
    await port.stopListening()


@pytest_twisted.async_yield_fixture
async def frontdoor_switch(reactor):
    s = Switch(reactor, Recorder())
    s.sink.forward = FrontDoor(s.transport, HOST, [HOST])
    yield s
    await s.close()


async def stream_peer(reactor, port: int) -> StreamPeer:
    return await connectProtocol(TCP4ClientEndpoint(reactor, HOST, port), StreamPeer())


def dead_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# -- UDP ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_udp_request_reaches_sink_with_received_and_rport(reactor, switch, peer):
    """§18.2.1/RFC 3581: the sink gets the request with received and rport filled in."""
    peer.transport.write(options(switch.udp_port, "192.0.2.1:5999;rport"), (HOST, switch.udp_port))
    message, source = await within(switch.sink.messages.get(), reactor)
    assert isinstance(message, Request) and message.method == "OPTIONS"
    assert source == Address("udp", HOST, peer.port)
    assert message.top_via.received == HOST
    assert message.top_via.rport == peer.port


@pytest_twisted.ensureDeferred
async def test_udp_response_goes_to_rport(reactor, switch, peer):
    """RFC 3581 §4: the response goes to received:rport, not to the Via's sent-by."""
    peer.transport.write(options(switch.udp_port, "192.0.2.1:5999;rport"), (HOST, switch.udp_port))
    message, source = await within(switch.sink.messages.get(), reactor)
    switch.transport.send(message.response(200, None, "t1"), source)
    data, addr = await within(peer.received.get(), reactor)
    assert addr == (HOST, switch.udp_port)
    response = parse(data)
    assert isinstance(response, Response) and response.status == 200
    assert response.top_via.rport == peer.port


@pytest_twisted.ensureDeferred
async def test_udp_response_without_rport_goes_to_sent_by(reactor, switch, peer):
    """§18.2.2: no rport, same IP: the response goes to the sent-by port."""
    other = UDPPeer()
    other_port = reactor.listenUDP(0, other, interface=HOST)
    try:
        sent_by = f"{HOST}:{other_port.getHost().port}"
        peer.transport.write(options(switch.udp_port, sent_by), (HOST, switch.udp_port))
        message, source = await within(switch.sink.messages.get(), reactor)
        assert message.top_via.received is None
        switch.transport.send(message.response(200, None, "t1"), source)
        data, _ = await within(other.received.get(), reactor)
        assert parse(data).status == 200
    finally:
        await other_port.stopListening()


@pytest_twisted.ensureDeferred
async def test_udp_request_sent_to_an_address(reactor, switch, peer):
    """A request is sent as one datagram to the address given."""
    message = parse(options(peer.port, f"{HOST}:{switch.udp_port}"))
    switch.transport.send(message, Address("udp", HOST, peer.port))
    data, addr = await within(peer.received.get(), reactor)
    assert addr == (HOST, switch.udp_port)
    assert parse(data).call_id == message.call_id


@pytest_twisted.ensureDeferred
async def test_datagram_with_content_length_longer_than_body_gets_400(reactor, switch, peer):
    """§18.3: a datagram shorter than its Content-Length is discarded, answered 400."""
    data = options(switch.udp_port, f"{HOST}:{peer.port}", body=b"abc", length=10)
    peer.transport.write(data, (HOST, switch.udp_port))
    reply, _ = await within(peer.received.get(), reactor)
    response = parse(reply)
    assert response.status == 400
    assert "Content-Length" in response.reason
    assert switch.sink.messages.pending == []


@pytest_twisted.ensureDeferred
async def test_datagram_with_content_length_shorter_than_body_is_truncated(reactor, switch, peer):
    """§18.3: octets past Content-Length in a datagram are discarded."""
    data = options(switch.udp_port, f"{HOST}:{peer.port}", body=b"abcdefgh", length=3)
    peer.transport.write(data, (HOST, switch.udp_port))
    message, _ = await within(switch.sink.messages.get(), reactor)
    assert message.body == b"abc"


@pytest_twisted.ensureDeferred
async def test_oversized_datagram_gets_513(reactor, peer):
    """A datagram over the configured limit with readable headers is answered 513."""
    s = Switch(reactor, max_message_size=1000)
    try:
        data = options(s.udp_port, f"{HOST}:{peer.port}", body=b"x" * 2000)
        peer.transport.write(data, (HOST, s.udp_port))
        reply, _ = await within(peer.received.get(), reactor)
        assert parse(reply).status == 513
        assert s.sink.messages.pending == []
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_large_datagram_is_read_whole(reactor, switch, peer):
    """A 20000-octet datagram (over Twisted's 8192 default read size) arrives intact."""
    data = options(switch.udp_port, f"{HOST}:{peer.port}", body=b"x" * 20000)
    peer.transport.write(data, (HOST, switch.udp_port))
    message, _ = await within(switch.sink.messages.get(), reactor)
    assert len(message.body) == 20000


@pytest_twisted.ensureDeferred
async def test_unreadable_oversized_datagram_is_dropped(reactor, peer):
    """Over the limit with no end of headers: dropped; the next request is answered first."""
    s = Switch(reactor, Recorder(), max_message_size=1000)
    s.sink.forward = FrontDoor(s.transport, HOST, [HOST])
    try:
        peer.transport.write(b"OPTIONS sip:x SIP/2.0\r\n" + b"X: y\r\n" * 300, (HOST, s.udp_port))
        peer.transport.write(options(s.udp_port, f"{HOST}:{peer.port}"), (HOST, s.udp_port))
        reply, _ = await within(peer.received.get(), reactor)
        assert parse(reply).status == 200
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_udp_crlf_keepalive(reactor, frontdoor_switch, peer):
    """A double-CRLF ping gets a CRLF pong; a single CRLF is ignored; neither is an error."""
    s = frontdoor_switch
    peer.transport.write(b"\r\n", (HOST, s.udp_port))
    peer.transport.write(b"\r\n\r\n", (HOST, s.udp_port))
    peer.transport.write(options(s.udp_port, f"{HOST}:{peer.port}"), (HOST, s.udp_port))
    pong, _ = await within(peer.received.get(), reactor)
    assert pong == b"\r\n"
    reply, _ = await within(peer.received.get(), reactor)
    assert parse(reply).status == 200


@pytest_twisted.ensureDeferred
async def test_icmp_port_unreachable_is_reported_and_the_port_survives(reactor, switch, peer):
    """IP_RECVERR: a datagram to a closed port yields transport_error(address); we keep listening."""
    dead = dead_udp_port()
    request = parse(options(dead, f"{HOST}:{switch.udp_port}"))
    switch.transport.send(request, Address("udp", HOST, dead))
    failed = await within(switch.sink.errors.get(), reactor, 2.0)
    assert failed == Address("udp", HOST, dead)
    # The ICMP error must not have closed the socket (epoll reports it as EPOLLERR).
    peer.transport.write(options(switch.udp_port, f"{HOST}:{peer.port}"), (HOST, switch.udp_port))
    message, _ = await within(switch.sink.messages.get(), reactor)
    assert message.method == "OPTIONS"


@pytest_twisted.ensureDeferred
async def test_responses_leave_from_the_socket_the_request_came_in_on(reactor, switch, peer):
    """With two UDP listeners, the answer comes from the one the request reached."""
    second = switch.transport.listen_udp(0, HOST)
    switch.ports.append(second)
    second_port = second.getHost().port
    peer.transport.write(options(second_port, f"{HOST}:{peer.port}"), (HOST, second_port))
    message, source = await within(switch.sink.messages.get(), reactor)
    switch.transport.send(message.response(200, None, "t"), source)
    _, addr = await within(peer.received.get(), reactor)
    assert addr == (HOST, second_port)
    assert {a.port for a in switch.transport.local_addresses()} >= {switch.udp_port, second_port}


@pytest_twisted.ensureDeferred
async def test_plain_udpserver_binding_still_works(reactor, peer):
    """A protocol bound by the reactor's own listenUDP (as UDPServer does) carries SIP."""
    sink = Recorder()
    transport = SipTransport(reactor, sink)
    port = reactor.listenUDP(0, transport.udp_protocol(), interface=HOST)
    try:
        number = port.getHost().port
        peer.transport.write(options(number, f"{HOST}:{peer.port}", body=b"y" * 20000), (HOST, number))
        message, _ = await within(sink.messages.get(), reactor)
        assert message.method == "OPTIONS" and len(message.body) == 20000
        assert transport.local_addresses() == [Address("udp", HOST, number)]
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_sink_exception_is_logged_and_the_transport_goes_on(reactor, switch, peer):
    """An exception while handling one message is logged at error level; the next is handled."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    calls = []

    class Exploding(Recorder):
        def message_received(self, message, source):
            calls.append(message)
            if len(calls) == 1:
                raise RuntimeError("boom")
            super().message_received(message, source)

    switch.transport.sink = sink = Exploding()
    try:
        peer.transport.write(options(switch.udp_port, f"{HOST}:{peer.port}"), (HOST, switch.udp_port))
        peer.transport.write(options(switch.udp_port, f"{HOST}:{peer.port}"), (HOST, switch.udp_port))
        await within(sink.messages.get(), reactor)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert len(calls) == 2
    assert any(e.get("log_level") == LogLevel.error and "log_failure" in e for e in events)


# -- TCP -------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tcp_two_messages_in_one_segment(reactor, switch):
    """Two messages written at once reach the sink as two."""
    client = await stream_peer(reactor, switch.tcp_port)
    one = options(switch.tcp_port, f"{HOST}:5060", transport="TCP", body=b"one")
    two = options(switch.tcp_port, f"{HOST}:5060", transport="TCP", body=b"two!")
    client.transport.write(one + two)
    first, source = await within(switch.sink.messages.get(), reactor)
    second, _ = await within(switch.sink.messages.get(), reactor)
    assert (first.body, second.body) == (b"one", b"two!")
    assert source.transport == "tcp"
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_tcp_message_split_over_many_segments(reactor, switch):
    """A message trickled in small writes (body included) arrives once, whole."""
    client = await stream_peer(reactor, switch.tcp_port)
    client.transport.setTcpNoDelay(True)
    data = options(switch.tcp_port, f"{HOST}:5060", transport="TCP", body=b"v=0\r\no=- 1 1 IN IP4 h\r\n")
    for i in range(0, len(data), 7):
        client.transport.write(data[i : i + 7])
        await task.deferLater(reactor, 0, lambda: None)
    message, _ = await within(switch.sink.messages.get(), reactor)
    assert message.body == b"v=0\r\no=- 1 1 IN IP4 h\r\n"
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_tcp_missing_content_length_gets_400_and_close(reactor, switch):
    """§18.3: a stream message without Content-Length is answered 400, then the connection closes."""
    client = await stream_peer(reactor, switch.tcp_port)
    data = options(switch.tcp_port, f"{HOST}:5060", transport="TCP").replace(b"Content-Length: 0\r\n", b"")
    client.transport.write(data)
    kind, reply = await within(client.frames.get(), reactor)
    assert kind == MESSAGE
    response = parse(reply)
    assert response.status == 400 and "Content-Length" in response.reason
    await within(client.lost, reactor)
    assert switch.sink.messages.pending == []


@pytest_twisted.ensureDeferred
async def test_tcp_oversized_message_gets_513_and_the_stream_goes_on(reactor):
    """Over the limit on TCP: 513, its body skipped, the next message delivered."""
    s = Switch(reactor, max_message_size=1000)
    try:
        client = await stream_peer(reactor, s.tcp_port)
        big = options(s.tcp_port, f"{HOST}:5060", transport="TCP", body=b"x" * 3000)
        small = options(s.tcp_port, f"{HOST}:5060", transport="TCP", body=b"ok")
        client.transport.write(big + small)
        kind, reply = await within(client.frames.get(), reactor)
        assert parse(reply).status == 513
        message, _ = await within(s.sink.messages.get(), reactor)
        assert message.body == b"ok"
        client.transport.loseConnection()
    finally:
        await s.close()


@pytest_twisted.ensureDeferred
async def test_tcp_crlf_ping_gets_pong(reactor, switch):
    """RFC 5626 §4.4.1: "\\r\\n\\r\\n" over TCP is answered "\\r\\n"."""
    client = await stream_peer(reactor, switch.tcp_port)
    client.transport.write(b"\r\n\r\n")
    kind, data = await within(client.frames.get(), reactor)
    assert (kind, data) == ("pong", b"\r\n")
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_tcp_response_reuses_the_request_connection(reactor, switch):
    """§18.2.2: the response goes back on the connection the request came on."""
    client = await stream_peer(reactor, switch.tcp_port)
    client.transport.write(options(switch.tcp_port, "192.0.2.1:5999", transport="TCP"))
    message, source = await within(switch.sink.messages.get(), reactor)
    assert message.top_via.received == HOST
    switch.transport.send(message.response(200, None, "t"), source)
    kind, reply = await within(client.frames.get(), reactor)
    assert parse(reply).status == 200
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_outgoing_tcp_connects_on_demand_and_reuses_the_connection(reactor, switch):
    """Requests to a TCP address share one connection; the answer comes back over it."""
    a = Switch(reactor)
    try:
        target = Address("tcp", HOST, switch.tcp_port)
        for _ in range(3):
            a.transport.send(parse(options(switch.tcp_port, f"{HOST}:{a.tcp_port}", transport="TCP")), target)
        sources = set()
        for _ in range(3):
            message, source = await within(switch.sink.messages.get(), reactor)
            sources.add(source)
        assert len(sources) == 1
        assert a.transport.open_connections() == [target]
        assert switch.transport.open_connections() == list(sources)
        # The other direction: the answer travels the same connection back.
        switch.transport.send(message.response(200, None, "t"), source)
        response, came_from = await within(a.sink.messages.get(), reactor)
        assert response.status == 200 and came_from == target
        assert a.transport.open_connections() == [target]
    finally:
        await a.close()


@pytest_twisted.ensureDeferred
async def test_tcp_response_reconnects_to_sent_by_when_the_connection_is_gone(reactor, switch):
    """§18.2.2: with the request's connection closed, the response opens one to sent-by."""
    a = Switch(reactor)
    try:
        target = Address("tcp", HOST, switch.tcp_port)
        a.transport.send(parse(options(switch.tcp_port, f"{HOST}:{a.tcp_port}", transport="TCP")), target)
        message, source = await within(switch.sink.messages.get(), reactor)
        a.transport.disconnect_all()
        await until(reactor, lambda: not switch.transport.open_connections())
        switch.transport.send(message.response(200, None, "t"), source)
        response, came_from = await within(a.sink.messages.get(), reactor)
        assert response.status == 200
        assert switch.transport.open_connections() == [Address("tcp", HOST, a.tcp_port)]
    finally:
        await a.close()


@pytest_twisted.ensureDeferred
async def test_refused_tcp_connect_is_reported(reactor, switch):
    """A refused outgoing connection reaches the sink as transport_error(address)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        closed = s.getsockname()[1]
    target = Address("tcp", HOST, closed)
    switch.transport.send(parse(options(closed, f"{HOST}:{switch.tcp_port}", transport="TCP")), target)
    failed = await within(switch.sink.errors.get(), reactor)
    assert failed == target
    assert switch.transport.open_connections() == []


@pytest_twisted.ensureDeferred
async def test_idle_connection_is_closed_by_the_injected_clock(reactor, switch):
    """A connection without traffic for idle_timeout (on the injected clock) is closed."""
    clock = task.Clock()
    a = SipTransport(reactor, Recorder(), clock=clock, idle_timeout=30)
    target = Address("tcp", HOST, switch.tcp_port)
    a.send(parse(options(switch.tcp_port, f"{HOST}:5060", transport="TCP")), target)
    await within(switch.sink.messages.get(), reactor)
    clock.advance(29)
    assert a.open_connections() == [target]
    clock.advance(2)
    await until(reactor, lambda: not a.open_connections() and not switch.transport.open_connections())


@pytest_twisted.ensureDeferred
async def test_disconnect_all_abandons_pending_connects_quietly(reactor, switch):
    """disconnect_all stops a connection still connecting, without a transport error."""
    other = Switch(reactor)
    try:
        target = Address("tcp", HOST, other.tcp_port)
        switch.transport.send(parse(options(other.tcp_port, f"{HOST}:5060", transport="TCP")), target)
        # The reactor has not run yet, so the connection is still being made.
        assert switch.transport.open_connections() == [target]
        switch.transport.disconnect_all()
        await until(reactor, lambda: not switch.transport.open_connections())
        assert other.sink.messages.pending == []
    finally:
        await other.close()
    assert switch.sink.errors.pending == []


@pytest_twisted.ensureDeferred
async def test_udp_service_binds_while_running(reactor, peer):
    """udp_service binds a reporting UDP port on start and unbinds it on stop."""
    sink = Recorder()
    transport = SipTransport(reactor, sink)
    service = transport.udp_service(0, HOST)
    service.startService()
    try:
        (local,) = transport.local_addresses()
        peer.transport.write(options(local.port, f"{HOST}:{peer.port}"), (HOST, local.port))
        message, _ = await within(sink.messages.get(), reactor)
        assert message.method == "OPTIONS"
    finally:
        await service.stopService()
    assert transport.local_addresses() == []
