"""`SipTransport`: every SIP socket of one switch, and the I/O half of RFC 3261 §18.

The decisions (what a datagram or stream frame means, where a response goes) are
`phpvoip.sip.transport`'s; this module only carries them out: it reads and writes
sockets, keeps the connection pool and the per-peer socket memory, arms idle
timers and reports failures to the sink.
"""

from __future__ import annotations

import socket
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.application.service import Service
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol, ServerFactory
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from phpvoip.sip.address import Address
from phpvoip.sip.errors import ParseError
from phpvoip.sip.message import Message, Request, Response
from phpvoip.sip.transport import (
    DEFAULT_MAX_MESSAGE_SIZE,
    IGNORE,
    PONG,
    SEND_PONG,
    Drop,
    Receiver,
    Reply,
    response_target,
)
from phpvoip.transport._tcp import StreamClientFactory, StreamConnection, StreamServerFactory
from phpvoip.transport._udp import PEER_MEMORY, UDP_READ_SIZE, ErrQueuePort, SipDatagramProtocol, UDPService

log = Logger()

IDLE_TIMEOUT = 300.0  # seconds without traffic before a TCP connection is closed
CONNECT_TIMEOUT = 10.0


class Sink(TypingProtocol):
    """What the transport hands messages and failures to (the transaction layer,
    or the stateless front door until that exists)."""

    def message_received(self, message: Request | Response, source: Address) -> None: ...

    def transport_error(self, address: Address) -> None: ...


class MessageTap(TypingProtocol):
    """What watches every SIP message the transport reads or writes (call ladders).

    Called on the reactor thread for each message, so it must be quick and must not
    raise. `local` is the socket's Address (None while an outgoing TCP connection is
    still connecting), `remote` the peer's. `decision` is what `Receiver` made of the
    bytes: a parsed message, or a refusal (`Reply`, `Drop`) when they did not parse,
    or a keepalive marker (to be ignored)."""

    def received(self, decision: Any, data: bytes, local: Address | None, remote: Address) -> None: ...

    def sent(self, message: Request | Response, data: bytes, local: Address | None,
             remote: Address) -> None: ...


class Gate(TypingProtocol):
    """What decides, before parsing, whether to read what a source sent
    (`phpvoip.limits.Limits`): a banned source must cost one dict lookup."""

    def admit(self, host: str, data: bytes) -> bool: ...

    def tcp_opened(self, host: str) -> bool: ...

    def tcp_closed(self, host: str) -> None: ...


class SipTransport:
    """All the SIP sockets of one switch, following the RFC 3261 §18 rules of
    `phpvoip.sip.transport` (its `Receiver` decides about everything that arrives).

    `reactor` provides IReactorTCP (outgoing connections) and IReactorUDP and
    IReactorFDSet (for `listen_udp`); `clock` (default: the reactor) provides
    IReactorTime for idle timeouts. `sink` may be set later.
    """

    def __init__(
        self,
        reactor: Any,
        sink: Sink | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        clock: Any = None,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.sink = sink
        self.receiver = Receiver(max_message_size)
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self._udp: list[SipDatagramProtocol] = []
        self._udp_by_peer: dict[Address, SipDatagramProtocol] = {}
        self._tcp_factories: list[StreamServerFactory] = []
        self._connections: dict[Address, StreamConnection] = {}
        self._local_addresses: list[Address] | None = None  # local_addresses(), cached
        # Sees every message in and out when set (phpvoip.ladder); None costs one
        # comparison per message.
        self.tap: MessageTap | None = None
        # Asked about every datagram and frame before it is parsed, and about every
        # inbound TCP connection (phpvoip.limits.Limits: bans, rates, caps); None
        # costs one comparison.
        self.gate: Gate | None = None
        self.parse_errors = 0  # what arrived and could not be read (answered or dropped)

    @property
    def max_message_size(self) -> int:
        """The largest message taken (513 above it); connections opened after a
        change frame with the new limit."""
        return self.receiver.max_message_size

    @max_message_size.setter
    def max_message_size(self, size: int) -> None:
        self.receiver.max_message_size = size

    # -- binding ------------------------------------------------------------------

    def udp_protocol(self) -> DatagramProtocol:
        """A protocol for one UDP socket, e.g. ``UDPServer(port, proto, interface=host)``.

        Bound that way ICMP errors are not reported (Twisted's own port would close
        on them); `listen_udp` or `udp_service` bind a port that reports them."""
        return SipDatagramProtocol(self)

    def listen_udp(self, port: int, interface: str = "") -> IListeningPort:
        """Bind a UDP socket now, with ICMP error reporting where the OS has it."""
        listening = ErrQueuePort(port, self.udp_protocol(), interface, UDP_READ_SIZE, self.reactor)
        listening.startListening()
        return listening

    def udp_service(self, port: int, interface: str = "") -> Service:
        """A service that binds `listen_udp(port, interface)` while it runs: the
        drop-in for ``UDPServer(port, self.udp_protocol(), interface=interface)``."""
        return UDPService(self, port, interface)

    def tcp_factory(self, local: Address | None = None) -> ServerFactory:
        """A factory for ``TCPServer(port, factory, interface=host)``. `local` (or
        the factory's `local` attribute, settable once the port is known) is
        what `local_addresses` reports for it."""
        factory = StreamServerFactory(self, local)
        self._tcp_factories.append(factory)
        self._local_addresses = None
        return factory

    def local_addresses(self) -> list[Address]:
        """Where we listen: bound UDP sockets, then TCP factories that know their
        address."""
        # Asked for every Via and Contact the switch writes: kept until a socket
        # or a factory's address changes.
        addresses = self._local_addresses
        if addresses is None:
            addresses = [p.local for p in self._udp if p.local is not None]
            addresses += [f.local for f in self._tcp_factories if f.local is not None]
            self._local_addresses = addresses
        return list(addresses)

    def open_connections(self) -> list[Address]:
        """Peers with a TCP connection in the pool (connected or connecting)."""
        return list(self._connections)

    def disconnect_all(self) -> None:
        """Close every TCP connection (at shutdown)."""
        for connection in list(self._connections.values()):
            connection.close()

    # -- sending --------------------------------------------------------------------

    def send(self, message: Request | Response, address: Address) -> None:
        """Send a request to `address`, or a response to the request that came from
        `address` (the transport applies §18.2.2 to find where it goes)."""
        data = bytes(message)
        if isinstance(message, Response):
            self._send_response(message, data, address)
        elif address.transport == "udp":
            self._write_udp(self._udp_for(address.host), data, address, message)
        elif address.transport == "tcp":
            self._write_stream(address, data, message)
        else:
            log.error("cannot send over {transport}: not supported", transport=address.transport)
            self._report_later(address)

    def send_response(self, response: Response, source: Address) -> None:
        """Send `response` to the request that came from `source`."""
        self.send(response, source)

    def _send_response(self, response: Response, data: bytes, source: Address) -> None:
        try:
            via = response.top_via
        except ParseError:
            via = None  # a 400 echoing a broken Via: answer whoever sent it
        if source.transport == "tcp":
            # §18.2.2: "If the "sent-protocol" is a reliable transport protocol ...
            # the response MUST be sent using the existing connection to the source
            # of the original request that created the transaction, if that
            # connection is still open."
            connection = self._connections.get(source)
            if connection is not None and connection.is_open:
                connection.send(data)
                tap = self.tap
                if tap is not None:
                    tap.sent(response, data, connection.local, source)
                return
            self._write_stream(response_target(via, source), data, response)
        elif source.transport == "udp":
            # maddr is followed only to our own addresses (or loopback): these are
            # looked up only for the rare Via that has one.
            own = [a.host for a in self.local_addresses()] if via is not None and via.maddr else ()
            target = response_target(via, source, own)
            protocol = self._udp_by_peer.get(source) or self._udp_for(target.host)
            self._write_udp(protocol, data, target, response)
        else:
            log.error("cannot send over {transport}: not supported", transport=source.transport)

    def _udp_for(self, host: str) -> SipDatagramProtocol | None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for protocol in self._udp:
            if protocol.family == family:
                return protocol
        return None

    def _write_udp(self, protocol: SipDatagramProtocol | None, data: bytes, address: Address,
                   message: Request | Response) -> None:
        if protocol is None:
            log.error("no UDP socket to send to {address}", address=address)
            self._report_later(address)
            return
        try:
            protocol.write(data, address)
        except Exception:
            log.failure("cannot send {size} octets to {address}", size=len(data), address=address,
                        level=LogLevel.error)
            self._report_later(address)
            return
        tap = self.tap
        if tap is not None:
            tap.sent(message, data, protocol.local, address)

    def _write_stream(self, address: Address, data: bytes, message: Request | Response) -> None:
        connection = self._connections.get(address)
        if connection is None:
            connection = self._connect(address)
            if connection is None:
                return
        connection.send(data)
        tap = self.tap
        if tap is not None:
            tap.sent(message, data, connection.local, address)

    def _connect(self, address: Address) -> StreamConnection | None:
        connection = StreamConnection(self, address, outbound=True)
        self._connections[address] = connection
        try:
            connection.connector = self.reactor.connectTCP(
                address.host, address.port, StreamClientFactory(connection), timeout=self.connect_timeout
            )
        except Exception:
            log.failure("cannot connect to {address}", address=address, level=LogLevel.error)
            del self._connections[address]
            self._report_later(address)
            return None
        return connection

    # -- receiving: the decisions are sip.transport.Receiver's -----------------------------

    def _datagram(self, protocol: SipDatagramProtocol, data: bytes, host: str, port: int) -> None:
        gate = self.gate
        if gate is not None and not gate.admit(host, data):
            return  # banned, or just went over its rate: never parsed
        source = Address("udp", host, port)
        if len(self._udp) > 1:
            # Answer from the socket the request came in on: remember it, a while.
            peers = self._udp_by_peer
            peers.pop(source, None)
            peers[source] = protocol
            if len(peers) > PEER_MEMORY:
                del peers[next(iter(peers))]
        decision = self.receiver.receive(data, source)
        tap = self.tap
        if tap is not None:
            tap.received(decision, data, protocol.local, source)
        if isinstance(decision, Message):
            # `_deliver`, inlined: this is the hot path.
            sink = self.sink
            if sink is None:
                log.debug("no sink: dropped {message!r} from {source}", message=decision, source=source)
                return
            sink.message_received(decision, source)
        elif decision is SEND_PONG:
            protocol.write(PONG, source)
        elif decision is not IGNORE:
            self._refuse(decision, source)

    def _frame(self, connection: StreamConnection, kind: str, data: bytes) -> None:
        source = connection.peer
        gate = self.gate
        if gate is not None and not gate.admit(source.host, data):
            connection.close()
            return
        decision = self.receiver.frame(kind, data, source)
        tap = self.tap
        if tap is not None:
            tap.received(decision, data, connection.local, source)
        if isinstance(decision, Message):
            self._deliver(decision, source)
        elif decision is SEND_PONG:
            connection.send(PONG)
        elif decision is not IGNORE:
            self._refuse(decision, source)
            if decision.close:
                connection.close()

    def _deliver(self, message: Request | Response, source: Address) -> None:
        sink = self.sink
        if sink is None:
            log.debug("no sink: dropped {message!r} from {source}", message=message, source=source)
            return
        sink.message_received(message, source)

    def _refuse(self, decision: Reply | Drop, source: Address) -> None:
        self.parse_errors += 1
        if decision.__class__ is Reply:
            response = decision.response
            log.debug("answering {status} to {source}: {reason}", status=response.status, source=source,
                      reason=decision.reason)
            self.send(response, source)
        else:
            log.debug("dropped what came from {source}: {reason}", source=source, reason=decision.reason)

    # -- bookkeeping ---------------------------------------------------------------------

    def _udp_started(self, protocol: SipDatagramProtocol) -> None:
        self._udp.append(protocol)
        self._local_addresses = None

    def _udp_stopped(self, protocol: SipDatagramProtocol) -> None:
        self._local_addresses = None
        if protocol in self._udp:
            self._udp.remove(protocol)
        for peer in [p for p, proto in self._udp_by_peer.items() if proto is protocol]:
            del self._udp_by_peer[peer]

    def _connection_made(self, connection: StreamConnection) -> None:
        self._connections[connection.peer] = connection

    def _connection_lost(self, connection: StreamConnection) -> None:
        if self._connections.get(connection.peer) is connection:
            del self._connections[connection.peer]

    def _connect_failed(self, connection: StreamConnection, reason: Failure) -> None:
        address = connection.peer
        connection.queue = []
        connection.connector = None
        if self._connections.get(address) is connection:
            del self._connections[address]
        if connection.closing:
            return  # we gave up on it ourselves (disconnect_all)
        log.info("cannot connect to {address}: {why}", address=address, why=reason.getErrorMessage())
        self._report(address)

    def _report_later(self, address: Address) -> None:
        # Failures found while sending are reported on a later turn, so the sender's
        # state machine is not re-entered from inside its own send.
        self.clock.callLater(0, self._report, address)

    def _report(self, address: Address) -> None:
        sink = self.sink
        if sink is None:
            return
        try:
            sink.transport_error(address)
        except Exception:
            log.failure("sink failed on transport error for {address}", address=address, level=LogLevel.error)
