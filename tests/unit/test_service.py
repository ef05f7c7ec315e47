"""Assembly: the service builds from a config without binding, and reloads routes."""

from __future__ import annotations

from twisted.internet.task import Clock

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
    """Building the service creates the engine, modules and one port per listen
    address, and binds nothing until it starts."""
    _, service = build(tmp_path)
    assert [m.name for m in service.engine.modules] == ["trunk"]
    assert len(list(service)) == 2
    assert not service.running


def test_reload_swaps_routes(tmp_path):
    """reload() re-reads the file and replaces the route table."""
    path, service = build(tmp_path)
    assert [r.out_to for r in service.engine.router.routes] == ["231"]
    path.write_text(TEXT.replace('out_to: "231"', 'out_to: "241"}\n  - {in_to: "5", out_to: "6"'))
    assert service.reload() is True
    assert [r.out_to for r in service.engine.router.routes] == ["241", "6"]


def test_reload_refuses_a_broken_file(tmp_path):
    """An invalid file is refused and the running table kept."""
    path, service = build(tmp_path)
    path.write_text(TEXT.replace('in_to: "221"', 'in_to: "300-200"'))
    assert service.reload() is False
    assert [r.out_to for r in service.engine.router.routes] == ["231"]
