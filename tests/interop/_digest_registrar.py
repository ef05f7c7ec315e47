"""A stand-in registrar for interop tests of `phpvoip.sip.digest` with real clients.

It answers REGISTER on a loopback UDP port from a thread: 401 with the challenges of
a `DigestServer`, then 200 or 403 after verifying, and records each outcome. It
pins down what the client itself does with the challenges the switch sends.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from twisted.internet.task import Clock

from phpvoip.sip.digest import DigestServer, Outcome, ha1
from phpvoip.sip.message import parse

REALM = "127.0.0.1"
USER = "1001"
PASSWORD = "secret1"


class Registrar(threading.Thread):
    """Answers REGISTERs on a loopback UDP port; records each verify outcome."""

    def __init__(self, algorithms: tuple[str, ...]) -> None:
        super().__init__(daemon=True)
        self.server = DigestServer(REALM, b"interop-secret", Clock(), algorithms=algorithms)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.outcomes: list[tuple[Outcome, str | None]] = []
        self.stopping = threading.Event()

    def lookup(self, username: str, realm: str, algorithm: str) -> str | None:
        return ha1(username, realm, PASSWORD, algorithm) if username == USER else None

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            request = parse(data)
            values = [v for n, v in request.headers() if n.lower() == "authorization"]
            cred = self.server.find_credentials(values)
            if cred is None:
                response = request.response(401, to_tag="reg")
                for value in self.server.challenge():
                    response.add("WWW-Authenticate", value)
            else:
                result = self.server.verify(cred, request.method, self.lookup)
                self.outcomes.append((result.outcome, result.algorithm))
                response = request.response(200 if result.ok else 403, to_tag="reg")
            response.add("Content-Length", "0")
            self.sock.sendto(bytes(response), peer)

    def stop(self) -> None:
        self.stopping.set()
        self.join(2)
        self.sock.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_registrar(algorithms: tuple[str, ...]) -> Iterator[Registrar]:
    """A started `Registrar`, stopped (socket closed) on the way out."""
    registrar = Registrar(algorithms)
    registrar.start()
    try:
        yield registrar
    finally:
        registrar.stop()
