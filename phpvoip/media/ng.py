"""A client of rtpengine's ng control protocol over UDP.

One request is one datagram, ``COOKIE SP bencoded-dictionary``; the reply carries
the same cookie first. rtpengine keeps the replies it sent by cookie for a while,
so a retransmission with the *same* cookie is answered from that cache and never
applied twice (an offer resent is not a second offer). That is what makes the
retry here safe: every request gets a fresh cookie, and its retransmissions reuse
it.

Timing uses the clock it is given (`IReactorTime`), so tests drive it with
`task.Clock`. The client does not bind a socket itself: whoever owns it calls
``reactor.listenUDP(0, client, interface=...)``.
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from phpvoip.media import bencode
from phpvoip.sip.ids import new_tag

__all__ = ["NgClient", "NgError", "NgTimeout", "parse_ng_address"]

_log = Logger(namespace="phpvoip.media.ng")


class NgTimeout(Exception):
    """rtpengine did not answer a request, retransmissions included."""


class NgError(Exception):
    """rtpengine answered ``result: error``; `reason` is its ``error-reason``."""

    def __init__(self, reason: str, command: str = "") -> None:
        super().__init__(f"rtpengine refused {command}: {reason}" if command else reason)
        self.reason = reason
        self.command = command


def parse_ng_address(text: str) -> tuple[str, int]:
    """``udp:HOST:PORT`` (HOST an IPv4 literal, or ``[v6]``) as ``(host, port)``;
    ValueError otherwise. No name lookup: the control address is configuration."""
    scheme, sep, rest = text.partition(":")
    if scheme != "udp" or not sep:
        raise ValueError(f"ng address {text!r} is not udp:HOST:PORT")
    host, sep, port_text = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"ng address {text!r} is not udp:HOST:PORT")
    return host, int(port_text)


class _Pending:
    """One request waiting for its reply."""

    __slots__ = ("command", "datagram", "deferred", "timer", "tries_left")

    def __init__(self, command: str, datagram: bytes, deferred: defer.Deferred, tries_left: int) -> None:
        self.command = command
        self.datagram = datagram
        self.deferred = deferred
        self.tries_left = tries_left
        self.timer: IDelayedCall | None = None


class NgClient(DatagramProtocol):
    """Requests to one rtpengine ng address, each answered or timed out.

    `request(dict)` fires with the reply as a dict whose keys are `str` and whose
    string values stay `bytes` (rtpengine's SDP is bytes; compare ``reply["result"]
    == b"ok"``). A request unanswered after `timeout` seconds is sent again, up to
    `retries` more times, then fails with `NgTimeout`; ``result: error`` fails with
    `NgError`. Replies from another address, with an unknown cookie (late or
    duplicate) or malformed are dropped."""

    def __init__(
        self, address: tuple[str, int], clock: IReactorTime, timeout: float = 1.0, retries: int = 2
    ) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError("ng timeout must be > 0 and retries >= 0")
        self.address = address
        self.clock = clock
        self.timeout = timeout
        self.retries = retries
        self._pending: dict[bytes, _Pending] = {}
        # A random prefix per client, so that a restarted switch never reuses a
        # cookie rtpengine still holds a cached reply for.
        self._prefix = new_tag()
        self._counter = itertools.count(1)

    @property
    def pending(self) -> int:
        """How many requests are waiting for a reply."""
        return len(self._pending)

    def request(self, message: dict[str, Any]) -> defer.Deferred:
        """Send `message` (it must have a ``command``); fires with the reply dict."""
        command = str(message.get("command", ""))
        if not command:
            return defer.fail(ValueError("ng request without a command"))
        cookie = f"{self._prefix}_{next(self._counter)}".encode()
        datagram = cookie + b" " + bencode.encode(message)
        deferred: defer.Deferred = defer.Deferred(lambda _: self._forget(cookie))
        pending = _Pending(command, datagram, deferred, self.retries)
        self._pending[cookie] = pending
        self._send(cookie, pending)
        return deferred

    def _send(self, cookie: bytes, pending: _Pending) -> None:
        pending.timer = self.clock.callLater(self.timeout, self._expired, cookie)
        if self.transport is None:
            return  # not listening (yet, or any more): the timer ends the request
        try:
            self.transport.write(pending.datagram, self.address)
        except OSError as e:  # e.g. no route: same as a lost datagram
            _log.debug("ng send to {address} failed: {error}", address=self.address, error=e)

    def _expired(self, cookie: bytes) -> None:
        pending = self._pending.get(cookie)
        if pending is None:
            return
        pending.timer = None
        if pending.tries_left > 0:
            pending.tries_left -= 1
            self._send(cookie, pending)
            return
        del self._pending[cookie]
        host, port = self.address
        pending.deferred.errback(
            NgTimeout(f"no answer from rtpengine at udp:{host}:{port} to {pending.command}"
                      f" after {self.retries + 1} tries")
        )

    def _forget(self, cookie: bytes) -> None:
        """A caller cancelled its request: stop retransmitting it."""
        pending = self._pending.pop(cookie, None)
        if pending is not None and pending.timer is not None and pending.timer.active():
            pending.timer.cancel()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if (addr[0], addr[1]) != self.address:
            return
        cookie, sep, body = datagram.partition(b" ")
        pending = self._pending.get(cookie)
        if pending is None or not sep:
            return  # a late reply to a request that timed out, or a duplicate
        try:
            reply = bencode.decode(body)
        except ValueError as e:
            _log.warn("malformed ng reply to {command}: {error}", command=pending.command, error=e)
            return  # the retransmission may get a good one
        if not isinstance(reply, dict):
            _log.warn("ng reply to {command} is not a dictionary", command=pending.command)
            return
        del self._pending[cookie]
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        reply = _str_keys(reply)
        if reply.get("result") == b"error":
            reason = reply.get("error-reason", b"unknown error")
            text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
            pending.deferred.errback(NgError(text, pending.command))
            return
        pending.deferred.callback(reply)

    def close(self) -> None:
        """Fail every waiting request with NgTimeout (the client is going away)."""
        pending, self._pending = self._pending, {}
        for request in pending.values():
            if request.timer is not None and request.timer.active():
                request.timer.cancel()
            message = f"ng client closed before rtpengine answered {request.command}"
            request.deferred.errback(NgTimeout(message))


def _str_keys(value: Any) -> Any:
    """Dictionary keys as str (ng keys are ASCII names); values unchanged."""
    if isinstance(value, dict):
        return {key.decode("utf-8", "replace"): _str_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_str_keys(item) for item in value]
    return value


def ping_before_start(ng: str, timeout: float = 1.0, retries: int = 2) -> str | None:
    """Ping rtpengine with a plain blocking socket, before the reactor runs.

    twistd has no way to exit non-zero once the reactor is running, so the launcher
    asks here first: None when rtpengine answers ``pong``, else why not (a sentence
    naming the address)."""
    import socket

    from phpvoip.media.bencode import decode, encode
    from phpvoip.sip.ids import new_tag

    host, port = parse_ng_address(ng)
    cookie = new_tag().encode("ascii")
    request = cookie + b" " + encode({"command": "ping"})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        for _ in range(retries + 1):
            try:
                # Connected: the kernel drops datagrams from anyone but rtpengine, so
                # one bounded recv per try is all the waiting there is.
                sock.connect((host, port))
                sock.send(request)
                head, _, body = sock.recv(65535).partition(b" ")
            except (TimeoutError, ConnectionRefusedError):
                continue  # refused: nothing listens (ICMP); asked again like a lost reply
            except OSError as e:
                return f"rtpengine at {ng}: {e.strerror or e}"
            if head != cookie:
                continue  # not an answer to this ping
            try:
                result = decode(body).get(b"result") if body else None
            except (ValueError, AttributeError):
                result = None
            if result == b"pong":
                return None
            return f"rtpengine at {ng} answered ng ping with {result!r}"
    return f"rtpengine at {ng} does not answer ng ping"
