"""UDP sockets of a SipTransport: a port that reports ICMP errors, the protocol that
hands datagrams to the transport, and the service that binds it while running."""

from __future__ import annotations

import errno
import socket
import struct
import sys
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet import udp
from twisted.internet.error import ConnectionDone, MessageLengthError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from phpvoip.sip.address import Address
from phpvoip.sip.transport import packed_ip

if TYPE_CHECKING:
    from phpvoip.transport._core import SipTransport

log = Logger()

UDP_READ_SIZE = 65536  # a whole datagram, so an oversized one is seen as such
PEER_MEMORY = 4096  # sources remembered to answer from the socket they used
# UDP socket buffers. Linux's default receive buffer (208 KiB) holds a few hundred
# datagrams: less than what arrives at a few hundred calls per second while the
# process is busy for a fraction of a second (a garbage collection), and what
# overflows is lost and costs a retransmission after T1. The kernel caps the
# request at net.core.rmem_max / wmem_max.
UDP_BUFFER_SIZE = 4 * 1024 * 1024

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


class ErrQueuePort(udp.Port):
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
            packed = packed_ip(host)
            if packed is None or (len(packed) == 16) != (self.addressFamily == socket.AF_INET6):
                return super().write(datagram, addr)  # raises InvalidAddressError
            if len(self._literals) >= PEER_MEMORY:
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


class SipDatagramProtocol(DatagramProtocol):
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
        port.maxPacketSize = max(port.maxPacketSize, UDP_READ_SIZE)
        host = port.getHost()
        self.local = Address("udp", host.host, host.port)
        self.family = socket.AF_INET6 if ":" in host.host else socket.AF_INET
        if not isinstance(port, ErrQueuePort):
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


class UDPService(Service):
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
