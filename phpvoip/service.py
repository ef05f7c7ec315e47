"""Assembly: build the running switch from a validated `Config`.

Thin on purpose (like twisted.names' tap): small `_build_*` helpers that tests can
call without starting anything, and one `MultiService` whose children own the ports.
"""

from __future__ import annotations

from typing import Any

from twisted.application import internet
from twisted.application.service import MultiService
from twisted.logger import Logger

from phpvoip.config import Config
from phpvoip.frontdoor import FrontDoor
from phpvoip.sip.address import Address
from phpvoip.sip.transport import SipTransport

log = Logger()


class SwitchService(MultiService):
    """The whole switch; its children are the listening ports."""

    def __init__(self, config: Config, transport: SipTransport, front_door: FrontDoor) -> None:
        super().__init__()
        self.config = config
        self.transport = transport
        self.front_door = front_door

    def startService(self) -> None:
        super().startService()
        log.info(
            "phpvoip started from {file} on {listen}",
            file=self.config.file,
            listen=", ".join(str(a) for a in self.config.sip.listen),
        )

    def stopService(self) -> Any:
        log.info("phpvoip stopping")
        return super().stopService()


def _build_transport(config: Config, reactor: Any) -> SipTransport:
    return SipTransport(reactor, max_message_size=config.sip.max_message_size)


def _build_ports(config: Config, transport: SipTransport) -> list[internet.UDPServer | internet.TCPServer]:
    ports: list[Any] = []
    for listen in config.sip.listen:
        if listen.transport == "udp":
            ports.append(internet.UDPServer(listen.port, transport.udp_protocol(), interface=listen.host))
        else:
            ports.append(internet.TCPServer(listen.port, transport.tcp_factory(), interface=listen.host))
    return ports


def build_service(config: Config, reactor: Any = None) -> SwitchService:
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    transport = _build_transport(config, reactor)
    addresses = [Address(a.transport, a.host, a.port) for a in config.sip.listen]
    front_door = FrontDoor(transport, domain=config.sip.domain, addresses=addresses)
    transport.sink = front_door
    service = SwitchService(config, transport, front_door)
    for port in _build_ports(config, transport):
        port.setServiceParent(service)
    return service
