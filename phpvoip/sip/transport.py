"""SIP over UDP and TCP: sockets, framing and where responses go (RFC 3261 §18).

One `SipTransport` owns every socket of a switch. Incoming bytes become messages
(`phpvoip.sip.message.parse`), requests get ``received``/``rport`` stamped on their
top Via (§18.2.1, RFC 3581 §4), and the sink gets ``message_received(message,
source)``. Bytes that do not parse are answered 400 when their Via, From, To,
Call-ID and CSeq can still be read (`phpvoip.sip.uas.error_response`), else dropped.
Outgoing responses go where the top Via says (§18.2.2); outgoing requests go to the
address they are given, over a TCP connection opened on demand and kept for reuse.
Failures to reach a destination (a refused TCP connection, an ICMP error for UDP)
reach the sink as ``transport_error(address)``.

The transport takes its reactor and clock as arguments; it never imports the
global reactor.
"""

from __future__ import annotations

import errno
import re
import socket
import struct
import sys
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.application.service import Service
from twisted.internet import udp
from twisted.internet.error import ConnectionDone, MessageLengthError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ClientFactory, DatagramProtocol, Protocol, ServerFactory
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from phpvoip.sip.address import Address
from phpvoip.sip.errors import ParseError
from phpvoip.sip.headers import Via
from phpvoip.sip.message import Request, Response, parse
from phpvoip.sip.uas import error_response

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "SipTransport",
    "StreamFramer",
    "response_target",
    "stamp_via",
]

log = Logger()

DEFAULT_MAX_MESSAGE_SIZE = 65535
IDLE_TIMEOUT = 300.0  # seconds without traffic before a TCP connection is closed
CONNECT_TIMEOUT = 10.0
_UDP_READ_SIZE = 65536  # a whole datagram, so an oversized one is seen as such
_PEER_MEMORY = 4096  # sources remembered to answer from the socket they used
_PONG = b"\r\n"
# UDP socket buffers. Linux's default receive buffer (208 KiB) holds a few hundred
# datagrams: less than what arrives at a few hundred calls per second while the
# process is busy for a fraction of a second (a garbage collection), and what
# overflows is lost and costs a retransmission after T1. The kernel caps the
# request at net.core.rmem_max / wmem_max.
UDP_BUFFER_SIZE = 4 * 1024 * 1024


class Sink(TypingProtocol):
    """What the transport hands messages and failures to (the transaction layer,
    or the stateless front door until that exists)."""

    def message_received(self, message: Request | Response, source: Address) -> None: ...

    def transport_error(self, address: Address) -> None: ...


# -- pure helpers ------------------------------------------------------------


def _ip(host: str) -> bytes | None:
    """The packed form of an IP literal (brackets allowed), None for anything else."""
    if ":" in host:
        try:
            return socket.inet_pton(socket.AF_INET6, host.strip("[]"))
        except (OSError, ValueError):
            return None
    try:
        return socket.inet_pton(socket.AF_INET, host)
    except (OSError, ValueError):
        return None


def stamp_via(via: Via, host: str, port: int) -> None:
    """Add ``received``/``rport`` to the top Via of a request that came from
    `host`:`port`.

    §18.2.1: "If the host portion of the "sent-by" parameter contains a domain
    name, or if it contains an IP address that differs from the packet source
    address, the server MUST add a "received" parameter". RFC 3581 §4: an empty
    ``rport`` is filled with the source port, and then "received" is added "even if
    it is identical to the value of the "sent-by" component".
    """
    params = via.params
    if "rport" in params and not params["rport"]:
        params["rport"] = str(port)
        params["received"] = host
    elif via.host != host and _ip(via.host) != _ip(host):
        params["received"] = host


def response_target(via: Via | None, source: Address) -> Address:
    """Where a response goes when the request came from `source` and its top Via is
    `via` (§18.2.2, RFC 3581 §4), for when there is no connection to reuse.

    Host names are not resolved here: a request whose sent-by was a name got
    ``received`` stamped, and where nothing usable is left the source is used.
    """
    if via is None:
        return source
    port = via.port or (5061 if via.transport == "TLS" else 5060)
    received = via.received
    if received is not None and _ip(received) is None:
        received = None
    if source.transport == "udp":
        # "if the top Via has a "maddr" parameter, the response MUST be forwarded
        # to the address listed there, using the port indicated in "sent-by"".
        # Multicast TTL is not honoured: we never join a group.
        maddr = via.maddr
        if maddr and _ip(maddr) is not None:
            return Address("udp", maddr.strip("[]"), port)
        rport = via.rport
        if received is not None:
            return Address("udp", received, rport or port)
        host = via.host.strip("[]")
        if _ip(host) is None:
            return source
        return Address("udp", host, rport or port)
    # Reliable transport whose connection is gone: "open a connection to the IP
    # address in the "received" parameter, if present, using the port in the
    # "sent-by" value" (rport named the closed connection's port: useless now).
    host = received if received is not None else via.host.strip("[]")
    if _ip(host) is None:
        host = source.host
    return Address(source.transport, host, port)


# -- stream framing (§18.3) ----------------------------------------------------

# What StreamFramer.feed yields: (kind, octets).
MESSAGE = "message"  # one whole message
PING = "ping"  # RFC 5626 §4.4.1 double-CRLF keepalive: answer with one CRLF
TOO_LARGE = "too-large"  # headers of a message over the limit; its body is skipped
NO_LENGTH = "no-length"  # headers without Content-Length: framing is lost
BAD_LENGTH = "bad-length"  # unreadable or conflicting Content-Length: framing is lost
GARBAGE = "garbage"  # no end of headers within the limit: framing is lost

_FOLDED = re.compile(rb"\r\n[ \t]+")


def _content_length(head: bytes) -> int | None:
    """The Content-Length of a header block, None when absent; ValueError when it
    cannot be trusted for framing."""
    if b"\r\n " in head or b"\r\n\t" in head:
        head = _FOLDED.sub(b" ", head)
    value = None
    for line in head.split(b"\r\n")[1:]:
        name, colon, text = line.partition(b":")
        if not colon:
            continue
        name = name.strip(b" \t").lower()
        if name == b"content-length" or name == b"l":
            text = text.strip(b" \t")
            if not text.isdigit() or len(text) > 10:
                raise ValueError(text)
            length = int(text)
            if value is not None and value != length:
                raise ValueError(text)
            value = length
    return value


class StreamFramer:
    """Cuts a TCP byte stream into SIP messages by their Content-Length (§18.3).

    States (`state`):

    - HEAD: looking for the empty line that ends a header block; CRLFs between
      messages are skipped (§7.5) and a double CRLF is a keepalive ping.
    - BODY: the headers are read, `need` octets make the whole message.
    - SKIP: discarding the body of a message refused as too large.
    - DEAD: framing is lost (no or bad Content-Length, endless headers); the
      connection has to be closed. Everything fed after is ignored.
    """

    HEAD, BODY, SKIP, DEAD = "HEAD", "BODY", "SKIP", "DEAD"

    __slots__ = ("max_size", "state", "_buf", "_scan", "_need", "_skip")

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_size = max_size
        self.state = self.HEAD
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for the end of the headers
        self._need = 0
        self._skip = 0

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        """Take more octets; return the frames they complete, in order."""
        if self.state == self.DEAD:
            return []
        buf = self._buf
        buf += data
        out: list[tuple[str, bytes]] = []
        while True:
            state = self.state
            if state == self.SKIP:
                n = min(self._skip, len(buf))
                del buf[:n]
                self._skip -= n
                if self._skip:
                    break
                self.state = self.HEAD
            elif state == self.HEAD:
                if buf[:2] == b"\r\n":
                    if buf[:4] == b"\r\n\r\n":
                        del buf[:4]
                        out.append((PING, b""))
                    elif len(buf) < 4 and b"\r\n\r\n".startswith(buf):
                        break  # perhaps a ping cut in two
                    else:
                        del buf[:2]
                    continue
                end = buf.find(b"\r\n\r\n", self._scan)
                if end < 0:
                    if len(buf) > self.max_size:
                        self._die()
                        out.append((GARBAGE, b""))
                    else:
                        self._scan = max(0, len(buf) - 3)
                    break
                self._scan = 0
                head = bytes(buf[: end + 4])
                try:
                    length = _content_length(head)
                except ValueError:
                    self._die()
                    out.append((BAD_LENGTH, head))
                    break
                if length is None:
                    self._die()
                    out.append((NO_LENGTH, head))
                    break
                if end + 4 + length > self.max_size:
                    out.append((TOO_LARGE, head))
                    del buf[: end + 4]
                    self._skip = length
                    self.state = self.SKIP
                    continue
                self._need = end + 4 + length
                self.state = self.BODY
            elif state == self.BODY:
                need = self._need
                if len(buf) < need:
                    break
                out.append((MESSAGE, bytes(buf[:need])))
                del buf[:need]
                self.state = self.HEAD
            else:
                break
        return out

    def _die(self) -> None:
        self.state = self.DEAD
        self._buf = bytearray()


# -- UDP with ICMP errors ---------------------------------------------------------

# Linux only; Python does not export these names on every version.
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_SO_EE_ORIGIN_ICMP = 2
_SO_EE_ORIGIN_ICMP6 = 3
_EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err
# ICMP errors that mean "nobody there" (port, host or network unreachable).
_UNREACHABLE = frozenset((errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN))


def _enable_recverr(sock: socket.socket) -> bool:
    """Ask Linux to queue ICMP errors on this unconnected UDP socket; False where
    that is unavailable (then failures are simply not reported)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
    except OSError:
        return False
    return True


def _enlarge_buffers(sock: socket.socket, size: int = UDP_BUFFER_SIZE) -> None:
    """Ask for `size` octets of receive and send buffer (see UDP_BUFFER_SIZE)."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            if sock.getsockopt(socket.SOL_SOCKET, option) < size:
                sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError:
            pass


class _ErrQueuePort(udp.Port):
    """A udp.Port that learns which destinations were unreachable.

    Twisted's udp.Port swallows ECONNREFUSED on unconnected sockets, and Linux
    reports ICMP errors for them only with IP_RECVERR, in the socket's error queue.
    Worse, a socket holding only a queued error polls as EPOLLERR without EPOLLIN,
    which the poll and epoll reactors take for a lost connection: they stop reading
    and close the port (seen on Twisted 26.10). So this port drains MSG_ERRQUEUE
    before every read and, when the reactor reports that event, drains it and
    keeps listening.
    """

    _recverr = False
    _stopping = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._literals: set[str] = set()  # hosts `write` has checked

    def _bindSocket(self) -> None:
        super()._bindSocket()
        self._recverr = _enable_recverr(self.socket)
        _enlarge_buffers(self.socket)

    def doRead(self) -> None:
        if self._recverr:
            self._drain_errors()
        return super().doRead()

    def write(self, datagram: bytes, addr: Any = None) -> None:
        """`udp.Port.write` without its three parses of the address per datagram.

        The transport only sends to IP literals (`response_target`, configured
        addresses, `Hop.address`); a host is checked once, then remembered, so a
        name can still never reach `sendto` (which would resolve it, blocking)."""
        if addr is None or self._connectedAddr:
            return super().write(datagram, addr)
        host = addr[0]
        if host not in self._literals:
            packed = _ip(host)
            if packed is None or (len(packed) == 16) != (self.addressFamily == socket.AF_INET6):
                return super().write(datagram, addr)  # raises InvalidAddressError
            if len(self._literals) >= _PEER_MEMORY:
                self._literals.clear()
            self._literals.add(host)
        try:
            self.socket.sendto(datagram, addr)
        except OSError as e:
            if e.errno == errno.EINTR:
                self.write(datagram, addr)
            elif e.errno == errno.EMSGSIZE:
                raise MessageLengthError("message too long") from e
            elif e.errno != errno.ECONNREFUSED:
                # ECONNREFUSED on an unconnected socket is a stale ICMP error:
                # ignored, as Twisted does; the error queue reports it properly.
                raise

    def stopListening(self) -> Any:
        self._stopping = True
        return super().stopListening()

    def connectionLost(self, reason: Failure | None = None) -> None:
        # The reactor's mistake arrives as ConnectionDone (it was reading the fd);
        # stopListening passes no reason and reactor shutdown passes ConnectionLost.
        if (
            reason is not None
            and reason.check(ConnectionDone)
            and self._recverr
            and not self._stopping
            and self.connected
            and self._drain_errors()
        ):
            self.startReading()
            return
        super().connectionLost(reason)

    def _drain_errors(self) -> int:
        """Read the error queue; report unreachable destinations; return how many
        errors were queued."""
        count = 0
        while True:
            try:
                _data, ancdata, _flags, addr = self.socket.recvmsg(1, 512, _MSG_ERRQUEUE)
            except OSError:
                return count  # EAGAIN: the queue is empty
            count += 1
            for level, kind, payload in ancdata:
                if level not in (socket.IPPROTO_IP, socket.IPPROTO_IPV6):
                    continue
                if kind not in (_IP_RECVERR, _IPV6_RECVERR) or len(payload) < _EXTENDED_ERR.size:
                    continue
                err, origin = _EXTENDED_ERR.unpack_from(payload)[:2]
                if origin in (_SO_EE_ORIGIN_ICMP, _SO_EE_ORIGIN_ICMP6) and err in _UNREACHABLE and addr:
                    self.protocol.unreachable(addr[0], addr[1])


class _DatagramProtocol(DatagramProtocol):
    """One bound UDP socket of a SipTransport."""

    noisy = False

    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.local: Address | None = None
        self.family = socket.AF_INET

    def startProtocol(self) -> None:
        port = self.transport
        # UDPServer binds with an 8192-octet read buffer; read whole datagrams so an
        # oversized one is refused as such rather than parsed truncated.
        port.maxPacketSize = max(port.maxPacketSize, _UDP_READ_SIZE)
        host = port.getHost()
        self.local = Address("udp", host.host, host.port)
        self.family = socket.AF_INET6 if ":" in host.host else socket.AF_INET
        if not isinstance(port, _ErrQueuePort):
            log.info(
                "UDP {local}: ICMP errors are not reported; bind with SipTransport.listen_udp",
                local=self.local,
            )
        self.owner._udp_started(self)

    def stopProtocol(self) -> None:
        self.owner._udp_stopped(self)

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.owner._datagram(self, data, addr[0], addr[1])
        except Exception:
            log.failure("error handling a datagram from {host}:{port}", host=addr[0], port=addr[1],
                        level=LogLevel.error)

    def unreachable(self, host: str, port: int) -> None:
        self.owner._report(Address("udp", host, port))

    def write(self, data: bytes, address: Address) -> None:
        self.transport.write(data, (address.host, address.port))


class _UDPService(Service):
    """Binds one UDP socket of a SipTransport while running (like UDPServer)."""

    def __init__(self, owner: SipTransport, port: int, interface: str) -> None:
        self.owner = owner
        self.port = port
        self.interface = interface
        self._listening: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        # Bound here, like Twisted's TCPServer: before privileges are dropped, and
        # before the reactor runs, so a port in use stops the start-up at once.
        super().privilegedStartService()
        self._listening = self.owner.listen_udp(self.port, self.interface)

    def startService(self) -> None:
        super().startService()
        if self._listening is None:
            self._listening = self.owner.listen_udp(self.port, self.interface)

    def stopService(self) -> Any:
        super().stopService()
        listening, self._listening = self._listening, None
        if listening is not None:
            return listening.stopListening()
        return None


# -- TCP ----------------------------------------------------------------------------


class _StreamConnection(Protocol):
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
        self._idle: Any = None

    def connectionMade(self) -> None:
        self.is_open = True
        self.connector = None
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
        self.owner._connection_lost(self)

    def _touch(self) -> None:
        idle = self._idle
        if idle is not None and idle.active():
            idle.reset(self.owner.idle_timeout)

    def _idle_expired(self) -> None:
        self._idle = None
        log.debug("closing idle connection {peer}", peer=self.peer)
        self.close()


class _StreamServerFactory(ServerFactory):
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

    def buildProtocol(self, addr: Any) -> _StreamConnection:
        connection = _StreamConnection(self.owner, Address("tcp", addr.host, addr.port), outbound=False)
        connection.factory = self
        return connection


class _StreamClientFactory(ClientFactory):
    noisy = False

    def __init__(self, connection: _StreamConnection) -> None:
        self.connection = connection

    def buildProtocol(self, addr: Any) -> _StreamConnection:
        self.connection.factory = self
        return self.connection

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.connection.owner._connect_failed(self.connection, reason)


# -- the transport ------------------------------------------------------------------


class SipTransport:
    """All the SIP sockets of one switch, and the rules of RFC 3261 §18 for them.

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
        self.max_message_size = max_message_size
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self._udp: list[_DatagramProtocol] = []
        self._udp_by_peer: dict[Address, _DatagramProtocol] = {}
        self._tcp_factories: list[_StreamServerFactory] = []
        self._connections: dict[Address, _StreamConnection] = {}
        self._local_addresses: list[Address] | None = None  # local_addresses(), cached

    # -- binding ------------------------------------------------------------------

    def udp_protocol(self) -> DatagramProtocol:
        """A protocol for one UDP socket, e.g. ``UDPServer(port, proto, interface=host)``.

        Bound that way ICMP errors are not reported (Twisted's own port would close
        on them); `listen_udp` or `udp_service` bind a port that reports them."""
        return _DatagramProtocol(self)

    def listen_udp(self, port: int, interface: str = "") -> IListeningPort:
        """Bind a UDP socket now, with ICMP error reporting where the OS has it."""
        listening = _ErrQueuePort(port, self.udp_protocol(), interface, _UDP_READ_SIZE, self.reactor)
        listening.startListening()
        return listening

    def udp_service(self, port: int, interface: str = "") -> Service:
        """A service that binds `listen_udp(port, interface)` while it runs: the
        drop-in for ``UDPServer(port, self.udp_protocol(), interface=interface)``."""
        return _UDPService(self, port, interface)

    def tcp_factory(self, local: Address | None = None) -> ServerFactory:
        """A factory for ``TCPServer(port, factory, interface=host)``. `local` (or
        the factory's `local` attribute, settable once the port is known) is
        what `local_addresses` reports for it."""
        factory = _StreamServerFactory(self, local)
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
            self._write_udp(self._udp_for(address.host), data, address)
        elif address.transport == "tcp":
            self._write_stream(address, data)
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
                return
            self._write_stream(response_target(via, source), data)
        elif source.transport == "udp":
            target = response_target(via, source)
            protocol = self._udp_by_peer.get(source) or self._udp_for(target.host)
            self._write_udp(protocol, data, target)
        else:
            log.error("cannot send over {transport}: not supported", transport=source.transport)

    def _udp_for(self, host: str) -> _DatagramProtocol | None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for protocol in self._udp:
            if protocol.family == family:
                return protocol
        return None

    def _write_udp(self, protocol: _DatagramProtocol | None, data: bytes, address: Address) -> None:
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

    def _write_stream(self, address: Address, data: bytes) -> None:
        connection = self._connections.get(address)
        if connection is None:
            connection = self._connect(address)
            if connection is None:
                return
        connection.send(data)

    def _connect(self, address: Address) -> _StreamConnection | None:
        connection = _StreamConnection(self, address, outbound=True)
        self._connections[address] = connection
        try:
            connection.connector = self.reactor.connectTCP(
                address.host, address.port, _StreamClientFactory(connection), timeout=self.connect_timeout
            )
        except Exception:
            log.failure("cannot connect to {address}", address=address, level=LogLevel.error)
            del self._connections[address]
            self._report_later(address)
            return None
        return connection

    # -- receiving --------------------------------------------------------------------

    def _datagram(self, protocol: _DatagramProtocol, data: bytes, host: str, port: int) -> None:
        source = Address("udp", host, port)
        if len(self._udp) > 1:
            # Answer from the socket the request came in on: remember it, a while.
            peers = self._udp_by_peer
            peers.pop(source, None)
            peers[source] = protocol
            if len(peers) > _PEER_MEMORY:
                del peers[next(iter(peers))]
        if len(data) > self.max_message_size:
            if data.find(b"\r\n\r\n") >= 0:
                self._refuse_too_large(data, source)
            else:
                log.debug("dropped an oversized datagram from {source}", source=source)
            return
        if data[:2] == b"\r\n" and not data.strip(b"\r\n"):
            # CRLF keepalives (RFC 5626 §4.4.1 defines them for streams; phones send
            # them over UDP too): a double CRLF gets its pong, nothing is an error.
            if data == b"\r\n\r\n":
                protocol.write(_PONG, source)
            return
        self._message(data, source)

    def _frame(self, connection: _StreamConnection, kind: str, data: bytes) -> None:
        source = connection.peer
        if kind == MESSAGE:
            self._message(data, source)
        elif kind == PING:
            connection.send(_PONG)  # RFC 5626 §4.4.1: "\r\n\r\n" ping, "\r\n" pong
        elif kind == TOO_LARGE:
            self._refuse_too_large(data, source)
        elif kind == NO_LENGTH or kind == BAD_LENGTH:
            # §18.3: over a stream "the Content-Length header field MUST be used";
            # without a usable one the stream cannot be framed: answer, then close.
            reason = (
                "missing Content-Length header (required over TCP)"
                if kind == NO_LENGTH
                else "bad Content-Length header"
            )
            self._answer_unparseable(ParseError(reason), data, source)
            connection.close()
        else:
            log.debug("closing {peer}: no end of headers within {limit} octets", peer=source,
                      limit=self.max_message_size)
            connection.close()

    def _message(self, data: bytes, source: Address) -> None:
        try:
            message = parse(data)
        except ParseError as e:
            self._answer_unparseable(e, data, source)
            return
        if message.__class__ is Request:
            via = message.top_via
            if via is not None:
                stamp_via(via, source.host, source.port)
        sink = self.sink
        if sink is None:
            log.debug("no sink: dropped {message!r} from {source}", message=message, source=source)
            return
        sink.message_received(message, source)

    def _refuse_too_large(self, data: bytes, source: Address) -> None:
        error = ParseError(f"message too large (limit {self.max_message_size} octets)", 513)
        self._answer_unparseable(error, data, source)

    def _answer_unparseable(self, error: ParseError, data: bytes, source: Address) -> None:
        answer = error_response(error, data)
        if answer is None:
            log.debug("dropped unreadable message from {source}: {reason}", source=source,
                      reason=error.reason)
            return
        try:
            via = answer.top_via
        except ParseError:
            via = None
        if via is not None:
            # Route it like the answer to a well-formed request would go.
            stamp_via(via, source.host, source.port)
        log.debug("answering {status} to {source}: {reason}", status=answer.status, source=source,
                  reason=error.reason)
        self.send(answer, source)

    # -- bookkeeping ---------------------------------------------------------------------

    def _udp_started(self, protocol: _DatagramProtocol) -> None:
        self._udp.append(protocol)
        self._local_addresses = None

    def _udp_stopped(self, protocol: _DatagramProtocol) -> None:
        self._local_addresses = None
        if protocol in self._udp:
            self._udp.remove(protocol)
        for peer in [p for p, proto in self._udp_by_peer.items() if proto is protocol]:
            del self._udp_by_peer[peer]

    def _connection_made(self, connection: _StreamConnection) -> None:
        self._connections[connection.peer] = connection

    def _connection_lost(self, connection: _StreamConnection) -> None:
        if self._connections.get(connection.peer) is connection:
            del self._connections[connection.peer]

    def _connect_failed(self, connection: _StreamConnection, reason: Failure) -> None:
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
