"""Assembly: the service builds from a config without binding, and reloads routes."""

from __future__ import annotations

import pytest
from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from phpvoip import config
from phpvoip.service import build_service

TEXT = """\
sip: {listen: [udp:127.0.0.1:25060, tcp:127.0.0.1:25060]}
storage: memory
modules:
  - {type: trunk, address: "127.0.0.1:5080", numbers: ["1*"]}
routes:
  - {in_to: "221", out_to: "231"}
"""


class FakeReactor(Clock):
    """A clock that stands in for the reactor: building must not touch sockets."""


def build(tmp_path, text=TEXT):
    path = tmp_path / "phpvoip.yaml"
    path.write_text(text)
    return path, build_service(config.load(path), FakeReactor())


def test_build_does_not_bind(tmp_path):
    """Building the service creates the engine, modules, one port per listen
    address and the flood protection, and binds nothing until it starts."""
    _, service = build(tmp_path)
    assert [m.name for m in service.engine.modules] == ["trunk"]
    assert len(service.child_specs) == 2
    assert list(service)[2:] == [service.limits]
    assert not service.running


def test_reload_swaps_routes(tmp_path):
    """reload() re-reads the file and replaces the route table."""
    path, service = build(tmp_path)
    assert [r.out_to for r in service.engine.router.routes] == ["231"]
    path.write_text(TEXT.replace('out_to: "231"', 'out_to: "241"}\n  - {in_to: "5", out_to: "6"'))
    assert service.reload()
    assert [r.out_to for r in service.engine.router.routes] == ["241", "6"]


def test_reload_refuses_a_broken_file(tmp_path):
    """An invalid file is refused and the running table kept."""
    path, service = build(tmp_path)
    path.write_text(TEXT.replace('in_to: "221"', 'in_to: "300-200"'))
    assert service.reload() is False
    assert [r.out_to for r in service.engine.router.routes] == ["231"]


class Unbindable(Service):
    """A child whose address is taken."""

    def privilegedStartService(self):
        raise CannotListenError("127.0.0.1", 2222, OSError(98, "Address already in use"))


class Binds(Service):
    """A child that binds fine, and says when it is released."""

    def __init__(self) -> None:
        self.bound = self.released = False

    def privilegedStartService(self):
        self.bound = True

    def stopService(self):
        self.released = True


def test_children_are_named_when_they_cannot_bind(tmp_path):
    """Any child may be added; one that cannot bind names itself, its address and its
    config key, and the children bound before it are released."""
    _, service = build(tmp_path)
    for child in list(service):
        child.disownServiceParent()
    service.child_specs.clear()
    first = Binds()
    service.add_child(first, "SIP over udp", "udp:127.0.0.1:25060", "sip.listen[0]")
    service.add_child(Unbindable(), "the manhole", "tcp:2222:interface=127.0.0.1", "manhole.listen")
    logged: list = []
    globalLogPublisher.addObserver(logged.append)
    try:
        with pytest.raises(SystemExit):
            service.privilegedStartService()
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert first.bound and first.released
    [message] = [formatEvent(e) for e in logged if e.get("log_level") == LogLevel.critical]
    assert message == (f"{tmp_path / 'phpvoip.yaml'}: manhole.listen: cannot bind the manhole on "
                       "tcp:2222:interface=127.0.0.1: Address already in use")


def test_sip_ports_are_named_children(tmp_path):
    """Each SIP listen address is one named child with its config key."""
    _, service = build(tmp_path)
    assert [(c.name, c.address, c.key) for c in service.child_specs] == [
        ("SIP over udp", "udp:127.0.0.1:25060", "sip.listen[0]"),
        ("SIP over tcp", "tcp:127.0.0.1:25060", "sip.listen[1]"),
    ]
