"""TCP connections of a SipTransport, accepted or opened, each framing its stream
with a `StreamFramer` (§18.3) and closing itself after an idle timeout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from phpvoip.sip.address import Address
from phpvoip.sip.transport import StreamFramer

if TYPE_CHECKING:
    from phpvoip.transport._core import SipTransport

log = Logger()


class StreamConnection(Protocol):
    """One TCP connection, accepted or opened, carrying SIP in both directions."""

    def __init__(self, owner: SipTransport, peer: Address, outbound: bool) -> None:
        self.owner = owner
        self.peer = peer
        self.outbound = outbound
        self.framer = StreamFramer(owner.max_message_size)
        self.is_open = False
        self.closing = False
        self.connector: Any = None  # an outbound connection's, while it connects
        self.queue: list[bytes] = []  # written once connected
        self.local: Address | None = None  # our end, once connected
        self._idle: Any = None
        self.counted = False  # an inbound connection the owner's gate let in

    def connectionMade(self) -> None:
        self.is_open = True
        self.connector = None
        try:
            host = self.transport.getHost()
            self.local = Address("tcp", host.host, host.port)
        except Exception:  # a test's fake transport may not say
            self.local = None
        try:
            self.transport.setTcpNoDelay(True)
        except Exception:  # not every transport has the option (tests' fakes)
            pass
        self.owner._connection_made(self)
        self._idle = self.owner.clock.callLater(self.owner.idle_timeout, self._idle_expired)
        queue, self.queue = self.queue, []
        for data in queue:
            self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        self._touch()
        try:
            frames = self.framer.feed(data)
        except Exception:
            log.failure("framing error on {peer}", peer=self.peer, level=LogLevel.error)
            self.close()
            return
        for kind, payload in frames:
            try:
                self.owner._frame(self, kind, payload)
            except Exception:
                log.failure("error handling a message from {peer}", peer=self.peer, level=LogLevel.error)

    def send(self, data: bytes) -> None:
        if self.is_open:
            self.transport.write(data)
            self._touch()
        else:
            self.queue.append(data)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.loseConnection()
        elif self.connector is not None:
            self.connector.stopConnecting()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.is_open = False
        self.queue = []
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if self.counted:
            self.counted = False
            gate = self.owner.gate
            if gate is not None:
                gate.tcp_closed(self.peer.host)
        self.owner._connection_lost(self)

    def _touch(self) -> None:
        idle = self._idle
        if idle is not None and idle.active():
            idle.reset(self.owner.idle_timeout)

    def _idle_expired(self) -> None:
        self._idle = None
        log.debug("closing idle connection {peer}", peer=self.peer)
        self.close()


class StreamServerFactory(ServerFactory):
    noisy = False

    def __init__(self, owner: SipTransport, local: Address | None) -> None:
        self.owner = owner
        self._local = local

    @property
    def local(self) -> Address | None:
        return self._local

    @local.setter
    def local(self, address: Address | None) -> None:
        self._local = address
        self.owner._local_addresses = None

    def buildProtocol(self, addr: Any) -> StreamConnection | None:
        gate = self.owner.gate
        if gate is not None and not gate.tcp_opened(addr.host):
            return None  # banned, or too many connections from there: Twisted closes it
        connection = StreamConnection(self.owner, Address("tcp", addr.host, addr.port), outbound=False)
        connection.factory = self
        connection.counted = gate is not None
        return connection


class StreamClientFactory(ClientFactory):
    noisy = False

    def __init__(self, connection: StreamConnection) -> None:
        self.connection = connection

    def buildProtocol(self, addr: Any) -> StreamConnection:
        self.connection.factory = self
        return self.connection

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.connection.owner._connect_failed(self.connection, reason)
