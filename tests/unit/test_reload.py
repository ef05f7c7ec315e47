"""Full reload: routes, modules, users and call settings change on a running engine
(fake transport, test clock) without dropping calls or bindings."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from phpvoip import config
from phpvoip.config import load_text
from phpvoip.modules.channel import SipChannel
from phpvoip.modules.registrar import Registrar
from phpvoip.reload import compare, summary
from phpvoip.service import SwitchService, build_engine
from phpvoip.sip.address import Address
from phpvoip.sip.message import Request
from phpvoip.store.memory import MemoryStore
from tests.unit.registrar_fakes import Phone
from tests.unit.test_engine import BACKEND, PHONE, FakeTransport, answer, deliver, invite, requests, responses

CARRIER = Address("udp", "127.0.0.1", 5070)
OTHER_CARRIER = Address("udp", "127.0.0.1", 5072)

BASE = """\
sip: {listen: [udp:127.0.0.1:5060], domain: 127.0.0.1}
storage: memory
calls: {keepalive_interval: 0}
modules:
  - {type: trunk, name: backend, address: "127.0.0.1:5080", numbers: ["2*"]}
  - {type: robot, name: robot, number: "9000", dial: {to: "2001", every: 30}}
  - {type: registrar, users: {"1001": secret1, "1002": secret2}, algorithms: [MD5]}
routes:
  - {in_to: "221", out_to: "231"}
"""
ROUTES = "routes:\n"
CHANNEL = BASE.replace(ROUTES, """\
  - {type: channel, name: carrier, user: "3005@carol.example", password: secret, server: "127.0.0.1:5070"}
""" + ROUTES)


class Switch:
    """A switch service over a fake transport and a test clock, with its config in a
    file the test rewrites."""

    def __init__(self, tmp_path: Path, text: str) -> None:
        self.path = tmp_path / "phpvoip.yaml"
        self.path.write_text(text)
        loaded = config.load(self.path)
        self.transport, self.clock = FakeTransport(), Clock()
        self.engine = build_engine(loaded, self.transport, self.clock, MemoryStore())
        self.engine.start()
        self.service = SwitchService(loaded, self.transport, self.engine, self.clock)

    def module(self, name: str):
        [module] = [m for m in self.engine.modules if m.name == name]
        return module

    def reload(self, text: str):
        self.path.write_text(text)
        return self.service.reload()

    def answer_registers(self, status: int = 200) -> list[tuple[Request, Address]]:
        """Answer every REGISTER sent since the last look (200 grants what was asked)."""
        sent = self.transport.take()
        registers = [(m, a) for m, a in sent if isinstance(m, Request) and m.method == "REGISTER"]
        for request, address in registers:
            response = request.response(status, to_tag="up")
            if status == 200 and request.get("Expires") != "0":
                response.add("Contact", f"{request.get('Contact')};expires={request.get('Expires')}")
            self.engine.layer.message_received(response, address)
        return registers


@pytest.fixture
def logged():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def messages(events: list[dict], level: LogLevel) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_level") == level]


def test_unchanged_file_changes_nothing(tmp_path, logged):
    """Reloading the same file keeps every running module instance and says so."""
    switch = Switch(tmp_path, BASE)
    before = list(switch.engine.modules)
    result = switch.reload(BASE)
    assert result and str(result) == f"reloaded {switch.path}: nothing changed"
    assert all(a is b for a, b in zip(switch.engine.modules, before, strict=True))
    reloads = [m for m in messages(logged, LogLevel.info) if m.startswith("reloaded")]
    assert reloads == [f"reloaded {switch.path}: nothing changed"]
    assert result.done.called


def test_added_route_applies_to_the_next_call(tmp_path):
    """A route added by a reload rewrites the next call; the call already up keeps
    its bridge and hangs up normally afterwards."""
    switch = Switch(tmp_path, BASE)
    engine, transport = switch.engine, switch.transport
    deliver(engine, invite("1001", "2005", call_id="up"))
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, 200, body=b"v=0\r\n"), BACKEND)
    transport.take()
    result = switch.reload(BASE + '  - {in_to: "500", out_to: "2500"}\n')
    assert str(result).endswith(": routes 1 -> 2")
    deliver(engine, invite("1001", "500", call_id="next"))
    [routed] = requests(transport.take(), BACKEND)
    assert routed.to.uri.user == "2500"
    assert len(engine.calls) == 2  # the first call is still bridged
    first = engine.calls[next(iter(engine.calls))]
    assert first.record.call_id == "up" and first.record.answer is not None


def test_modules_added_removed_and_changed(tmp_path):
    """A trunk added is built and started, the robot removed is stopped (its dialer
    with it), a trunk whose numbers changed is the same instance with new settings;
    the summary names each."""
    switch = Switch(tmp_path, BASE)
    backend, robot = switch.module("backend"), switch.module("robot")
    assert robot._dialer is not None and robot._dialer.active()
    text = BASE.replace('numbers: ["2*"]', 'numbers: ["2*", "4*"]').replace(
        '  - {type: robot, name: robot, number: "9000", dial: {to: "2001", every: 30}}\n',
        '  - {type: trunk, name: trunk2, address: "127.0.0.1:5090", numbers: ["7*"]}\n')
    result = switch.reload(text)
    assert str(result) == f"reloaded {switch.path}: modules added: trunk2; removed: robot; changed: backend"
    assert switch.module("backend") is backend and backend.settings.numbers.matches("4001")
    assert [m.name for m in switch.engine.modules] == ["registrar", "backend", "trunk2"]
    assert switch.module("trunk2").engine is switch.engine
    assert robot._dialer is None
    assert [m.name for m in switch.service.config.modules] == ["backend", "trunk2", "registrar"]
    # The added trunk carries calls at once.
    deliver(switch.engine, invite("1001", "7001"))
    [out] = requests(switch.transport.take(), Address("udp", "127.0.0.1", 5090))
    assert out.to.uri.user == "7001"


def test_a_call_through_a_removed_module_stays_up(tmp_path):
    """Removing the trunk a call went through leaves the call bridged; its BYE still
    crosses the switch, and new calls no longer find the trunk."""
    switch = Switch(tmp_path, BASE)
    engine, transport = switch.engine, switch.transport
    deliver(engine, invite("1001", "2005", call_id="up"))
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, 200, body=b"v=0\r\n"), BACKEND)
    [ok] = [r for r in responses(transport.take(), PHONE) if r.status == 200]
    trunk_line = '  - {type: trunk, name: backend, address: "127.0.0.1:5080", numbers: ["2*"]}\n'
    switch.reload(BASE.replace(trunk_line, ""))
    assert "backend" not in [m.name for m in engine.modules]
    bye = Request("BYE", ok.contact[0].uri)
    for name in ("Via", "From", "To", "Call-ID"):
        bye.add(name, ok.get(name))
    bye.add("CSeq", "2 BYE")
    bye.top_via.params["branch"] = "z9hG4bKbye-up"
    deliver(engine, bytes(bye))
    sent = transport.take()
    assert [r.status for r in responses(sent, PHONE)] == [200]
    assert [m.method for m in requests(sent, BACKEND)] == ["BYE"]
    deliver(engine, invite("1001", "2006"))
    # No trunk takes the caller by its address now: the registrar's challenge is the answer.
    assert [r.status for r in responses(transport.take(), PHONE)] == [100, 407]


def test_registrar_users_change_in_place_and_bindings_stay(tmp_path):
    """Users added and removed by a reload: the same registrar keeps its bindings,
    the new user can register, the removed one is challenged again."""
    switch = Switch(tmp_path, BASE)
    registrar = switch.module("registrar")
    assert isinstance(registrar, Registrar)
    ok = Phone("1001", "secret1", host="127.0.0.1").register(registrar, ["<sip:1001@192.0.2.10:5060>"], 600)
    assert ok.status == 200
    result = switch.reload(BASE.replace('"1002": secret2', '"1003": secret3'))
    assert str(result) == f"reloaded {switch.path}: modules changed: registrar; registrar users: +1003 -1002"
    assert switch.module("registrar") is registrar
    assert [b.contact for b in registrar.contacts("1001")] == ["sip:1001@192.0.2.10:5060"]
    added, removed = Phone("1003", "secret3", host="127.0.0.1"), Phone("1002", "secret2", host="127.0.0.1")
    assert added.register(registrar, ["<sip:1003@192.0.2.11>"]).status == 200
    assert removed.register(registrar, ["<sip:1002@192.0.2.12>"]).status == 401


def test_registrar_realm_change_keeps_bindings(tmp_path):
    """A new realm is applied in place: the phone must answer a challenge of the new
    realm, and the bindings are kept."""
    switch = Switch(tmp_path, BASE)
    registrar = switch.module("registrar")
    phone = Phone("1001", "secret1", host="127.0.0.1")
    assert phone.register(registrar, ["<sip:1001@192.0.2.10>"], 600).status == 200
    switch.reload(BASE.replace("algorithms: [MD5]", "algorithms: [MD5], realm: pbx.example"))
    assert registrar.digest.realm == "pbx.example" and len(registrar.bindings) == 1
    fresh = Phone("1001", "secret1", host="127.0.0.1")
    assert fresh.register(registrar, ["<sip:1001@192.0.2.10>"], 600).status == 200
    assert fresh.client.challenge is not None and fresh.client.challenge.realm == "pbx.example"


def test_changed_line_unregisters_then_registers_the_new_one(tmp_path):
    """An outside line whose server changed: the old line sends REGISTER with
    Expires 0 to the old server; once answered, the new line registers at the new
    one and replaces the old in the module list."""
    switch = Switch(tmp_path, CHANNEL)
    [(register, where)] = switch.answer_registers()
    assert where == CARRIER and register.get("Expires") == "3600"
    old = switch.module("carrier")
    assert old.state == "registered"
    result = switch.reload(CHANNEL.replace("5070", "5072"))
    assert str(result) == f"reloaded {switch.path}: modules changed: carrier (re-registering)"
    assert switch.module("carrier") is old  # listed while it unregisters
    [(unregister, where)] = switch.answer_registers()
    assert where == CARRIER and unregister.get("Expires") == "0"
    new = switch.module("carrier")
    assert isinstance(new, SipChannel) and new is not old and old.state == "unregistered"
    [(register, where)] = switch.answer_registers()
    assert where == OTHER_CARRIER and register.get("Expires") == "3600"
    assert new.state == "registered" and result.done.called


def test_line_number_change_needs_no_reregistration(tmp_path):
    """A line whose bound number alone changed is reconfigured in place: no REGISTER."""
    switch = Switch(tmp_path, CHANNEL)
    switch.answer_registers()
    line = switch.module("carrier")
    result = switch.reload(CHANNEL.replace("server:", 'number: "3999", server:'))
    assert str(result).endswith("modules changed: carrier")
    assert switch.module("carrier") is line and line.settings.bound_number == "3999"
    assert switch.answer_registers() == [] and line.state == "registered"


def test_weight_change_reorders_the_modules(tmp_path):
    """A module's new weight takes its place in the order modules are asked."""
    switch = Switch(tmp_path, BASE)
    assert [m.name for m in switch.engine.modules] == ["registrar", "robot", "backend"]
    switch.reload(BASE.replace('numbers: ["2*"]', 'numbers: ["2*"], weight: 200'))
    assert [m.name for m in switch.engine.modules] == ["backend", "registrar", "robot"]


def test_call_settings_apply_to_new_calls(tmp_path):
    """calls: a new ring timeout is used by the next call."""
    switch = Switch(tmp_path, BASE)
    result = switch.reload(BASE.replace("calls: {keepalive_interval: 0}",
                                        "calls: {keepalive_interval: 0, ring_timeout: 5}"))
    assert str(result).endswith(": calls: ring_timeout 60 -> 5")
    deliver(switch.engine, invite("1001", "2005"))
    assert [r.status for r in responses(switch.transport.take(), PHONE)] == [100]
    switch.clock.advance(4.9)
    assert responses(switch.transport.take(), PHONE) == []
    switch.clock.advance(0.2)
    assert [r.status for r in responses(switch.transport.take(), PHONE)] == [480]


def test_sections_that_need_a_restart_are_named_and_kept(tmp_path):
    """A new listen address and storage (and with it the call records' default) are
    not applied (the running config keeps them); routes in the same file are."""
    switch = Switch(tmp_path, BASE)
    text = BASE.replace("udp:127.0.0.1:5060", "udp:127.0.0.1:5099").replace(
        "storage: memory", "storage: sqlite:x.db").replace('out_to: "231"', 'out_to: "232"')
    result = switch.reload(text)
    assert str(result) == f"reloaded {switch.path}: routes 1 -> 1; needs a restart: sip.listen, storage, cdr"
    running = switch.service.config
    assert str(running.sip.listen[0]) == "udp:127.0.0.1:5060" and running.storage.kind == "memory"
    assert [r.out_to for r in running.routes] == ["232"]
    # Still pending: the next reload says so again.
    assert str(switch.reload(text)).endswith("needs a restart: sip.listen, storage, cdr")


def test_invalid_file_keeps_everything(tmp_path, logged):
    """A broken file is refused with its reason logged; modules, routes and config
    stay as they were."""
    switch = Switch(tmp_path, BASE)
    before, routes, running = list(switch.engine.modules), switch.engine.router.routes, switch.service.config
    assert switch.reload(BASE.replace("type: robot", "type: robt")) is False
    assert switch.engine.modules == before and switch.engine.router.routes is routes
    assert switch.service.config is running
    [error] = messages(logged, LogLevel.error)
    assert error.startswith("reload refused, keeping the running config: ")
    assert "unknown module type 'robt'" in error


def test_summary_of_everything():
    """The one log line lists routes, modules, users, calls and restarts in order."""
    old = load_text(CHANNEL, "etc/phpvoip.yaml")
    text = CHANNEL.replace('"1002": secret2', '"1003": secret3').replace(
        '  - {type: robot, name: robot, number: "9000", dial: {to: "2001", every: 30}}\n',
        '  - {type: trunk, name: trunk2, address: "127.0.0.1:5090"}\n').replace(
        "5070", "5072").replace("udp:127.0.0.1:5060", "udp:127.0.0.1:5061") + '  - {in_to: "5"}\n'
    changes = compare(old, load_text(text, "etc/phpvoip.yaml"))
    assert summary(changes, ["registrar", "carrier (re-registering)"]) == (
        "routes 1 -> 2; modules added: trunk2; removed: robot; changed: registrar, carrier (re-registering); "
        "registrar users: +1003 -1002; needs a restart: sip.listen")


def test_console_is_a_restart_section_and_a_plaintext_password_is_no_change():
    """Two loads of one plaintext console password hash it with two salts; that is
    no change. A new password or listen address is, and only a restart applies it."""
    console = '\nconsole: {listen: "tcp:8080:interface=127.0.0.1", users: {admin: {password: %s}}}\n'
    first, again = load_text(BASE + console % "pw1"), load_text(BASE + console % "pw1")
    assert first.console.users[0].password_hash != again.console.users[0].password_hash
    assert summary(compare(first, again)) == "nothing changed"
    changed = load_text(BASE + console % "pw2")
    assert summary(compare(first, changed)) == "needs a restart: console"
    moved = load_text(BASE + (console % "pw1").replace("8080", "8081"))
    assert summary(compare(first, moved)) == "needs a restart: console"
