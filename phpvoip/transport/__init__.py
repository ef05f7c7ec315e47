"""SIP over UDP and TCP: the sockets (RFC 3261 §18, RFC 3581, RFC 5626 §4.4.1).

One `SipTransport` owns every socket of a switch. It reads datagrams and TCP
streams and acts on what `phpvoip.sip.transport` decides about them: a message
(a request with ``received``/``rport`` stamped on its top Via) goes to the sink as
``message_received(message, source)``; bytes that do not parse are answered 400/505,
oversized ones 513, when their Via, From, To, Call-ID and CSeq can still be read,
else dropped; a double-CRLF keepalive gets its pong. Outgoing responses go where the
top Via says (§18.2.2); outgoing requests go to the address they are given, over a
TCP connection opened on demand and kept for reuse. Failures to reach a destination
(a refused TCP connection, an ICMP error for UDP) reach the sink as
``transport_error(address)``. A `MessageTap` set as ``transport.tap`` sees every
message read or written (call ladders); unset, it costs one comparison a message.

The transport takes its reactor and clock as arguments; it never imports the
global reactor.

- `_core`: `SipTransport` (sending, the receive dispatch, bookkeeping) and `Sink`;
- `_udp`: a UDP port that reads ICMP errors (IP_RECVERR), the datagram protocol,
  the service that binds it;
- `_tcp`: one TCP connection (framing, idle timer) and its factories.
"""

from phpvoip.sip.transport import DEFAULT_MAX_MESSAGE_SIZE
from phpvoip.transport._core import CONNECT_TIMEOUT, IDLE_TIMEOUT, MessageTap, Sink, SipTransport
from phpvoip.transport._udp import UDP_BUFFER_SIZE

__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "IDLE_TIMEOUT",
    "UDP_BUFFER_SIZE",
    "MessageTap",
    "SipTransport",
    "Sink",
]
