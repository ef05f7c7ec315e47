"""The blocklist module type: found as a plugin, validated like phpvoip's own, and
refusing listed callers while passing every other call on."""

from __future__ import annotations

from pathlib import Path

import pytest
from phpvoip_blocklist import Blocklist
from twisted.logger import capturedLogs
from zope.interface.verify import verifyObject

from phpvoip.config import ConfigError, build_module, load, load_text
from phpvoip.interfaces import CallRejected, IModule, IModuleType, IncomingCall, NotMine
from phpvoip.moduletypes import find_module_types
from phpvoip.sip.address import Address
from phpvoip.sip.message import parse

PHONE = Address("udp", "127.0.0.1", 5062)
# The smallest section of each built-in type, to compare default weights with.
BUILTINS = (
    "{type: registrar, users: {'1001': {password: x}}}",
    "{type: channel, user: '2005@carrier', password: x, server: '127.0.0.1:5070'}",
    "{type: trunk, address: '127.0.0.1:5080'}",
    "{type: robot, number: '9000'}",
)


def blocklist(entry: str) -> Blocklist:
    """The module a ``modules:`` entry (YAML flow mapping) builds."""
    return build_module(load_text(f"modules: [{entry}]").modules[0])


def call_from(user: str | None, call_id: str = "call-1@phone",
              source: Address | None = PHONE) -> IncomingCall:
    """An IncomingCall for an INVITE whose From has `user` (None: no user part)."""
    sender = f"{user}@127.0.0.1" if user is not None else "127.0.0.1"
    data = (
        "INVITE sip:5000@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKblocklist1\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{sender}>;tag=caller\r\n"
        "To: <sip:5000@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:127.0.0.1:5062>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    invite = parse(data)
    return IncomingCall(invite, source, None, invite.call_id)


def config_error(tmp_path: Path, entry: str) -> ConfigError:
    """The error loading a file whose only module is `entry`."""
    path = tmp_path / "switch.yaml"
    path.write_text(f"modules:\n  - {entry}\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.file == str(path)
    assert str(info.value) == f"{path}: {info.value.key}: {info.value.problem}"
    return info.value


# -- the plugin and the module it builds ------------------------------------------------


def test_plugin_provides_imoduletype():
    """``blocklist`` is found through twisted.plugin and provides IModuleType."""
    plugin = find_module_types()["blocklist"]
    assert verifyObject(IModuleType, plugin)
    assert plugin.name == "blocklist"
    assert plugin.description


def test_built_module_provides_imodule():
    """The type builds an IModule with the documented defaults."""
    module = blocklist("{type: blocklist, numbers: ['666']}")
    assert verifyObject(IModule, module)
    assert isinstance(module, Blocklist)
    assert module.name == "blocklist"
    assert (module.weight, module.settings.status, module.settings.reason) == (1000, 603, None)
    assert module.start(None) is None and module.stop() is None


def test_default_weight_is_above_every_builtin():
    """With default weights the engine asks the blocklist before any built-in module."""
    entries = ", ".join((*BUILTINS, "{type: blocklist, numbers: ['666']}"))
    modules = [build_module(m) for m in load_text(f"modules: [{entries}]").modules]
    first = max(modules, key=lambda m: m.weight)
    assert first.name == "blocklist"
    assert sorted(m.weight for m in modules)[-2] < first.weight


def test_settings_are_read():
    """status, reason and weight are taken from the section; numbers join into one pattern."""
    module = blocklist("{type: blocklist, name: spam, numbers: ['666', '1900-1999'], "
                       "status: 486, reason: Go away, weight: 5}")
    assert module.name == "spam"
    assert (module.weight, module.settings.status, module.settings.reason) == (5, 486, "Go away")
    assert module.settings.numbers.text == "666,1900-1999"


# -- config errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "key", "problem"),
    [
        ("{type: blocklist, numbers: ['666'], status: 200}", "modules[0].status",
         "must be a final error status (4xx, 5xx or 6xx), not 200"),
        ("{type: blocklist, numbers: ['666'], status: 700}", "modules[0].status",
         "must be a final error status (4xx, 5xx or 6xx), not 700"),
        ("{type: blocklist, numbers: ['666'], status: busy}", "modules[0].status",
         "must be an integer, not a string"),
        ("{type: blocklist, numbers: []}", "modules[0].numbers",
         "must list at least one number or pattern"),
        ("{type: blocklist}", "modules[0].numbers", "is required"),
        ("{type: blocklist, numbers: ['666', '19-10']}", "modules[0].numbers[1]",
         "range '19-10' runs backwards"),
        ("{type: blocklist, numbers: ['666'], reason: \"Go\\r\\naway\"}", "modules[0].reason",
         "must be one line of printable text"),
    ],
)
def test_bad_values_name_file_key_and_problem(tmp_path, entry, key, problem):
    """A wrong value is refused with the file, its key path and what is wrong."""
    error = config_error(tmp_path, entry)
    assert (error.key, error.problem) == (key, problem)


def test_unknown_key_is_refused(tmp_path):
    """A key the type does not read (a typo) is refused and the known keys listed."""
    error = config_error(tmp_path, "{type: blocklist, numbers: ['666'], statuss: 486}")
    assert error.key == "modules[0].statuss"
    assert error.problem.startswith("unknown key (known here: ")
    for known in ("numbers", "reason", "status", "weight"):
        assert known in error.problem


# -- calls ------------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["666", "1900", "1950", "1999"])
def test_listed_callers_are_refused(caller):
    """A caller matching a literal or the inclusive range gets a final 603."""
    module = blocklist("{type: blocklist, numbers: ['666', '1900-1999']}")
    with pytest.raises(CallRejected) as info:
        module.callin(call_from(caller))
    assert (info.value.status, info.value.reason, info.value.final) == (603, None, True)


@pytest.mark.parametrize("caller", ["66", "6666", "1899", "2000", "19500", "alice", None])
def test_other_callers_pass_on(caller):
    """Any other caller (or none) is NotMine: the engine asks the next module."""
    module = blocklist("{type: blocklist, numbers: ['666', '1900-1999']}")
    with pytest.raises(NotMine):
        module.callin(call_from(caller))


def test_status_and_reason_from_config():
    """The refusal carries the configured status and reason phrase; prefixes match."""
    module = blocklist("{type: blocklist, numbers: ['0900*'], status: 403, reason: Premium blocked}")
    with pytest.raises(CallRejected) as info:
        module.callin(call_from("09001234"))
    assert (info.value.status, info.value.reason, info.value.final) == (403, "Premium blocked", True)


def test_callout_and_request_are_never_taken():
    """The blocklist carries no calls out and answers no requests."""
    module = blocklist("{type: blocklist, numbers: ['*']}")
    call = call_from("666")
    with pytest.raises(NotMine):
        module.callout(call.invite, call)
    with pytest.raises(NotMine):
        module.request(call.invite, None, PHONE)


def test_each_refusal_is_logged_once_with_caller_and_call_id():
    """One info event per refused call, with caller, Call-ID and module as fields;
    calls passed on log nothing."""
    module = blocklist("{type: blocklist, name: spam, numbers: ['666']}")
    with capturedLogs() as events:
        with pytest.raises(CallRejected):
            module.callin(call_from("666", "abc@phone"))
        with pytest.raises(NotMine):
            module.callin(call_from("1001", "def@phone"))
    assert len(events) == 1
    event = events[0]
    assert event["log_level"].name == "info"
    fields = (event["callID"], event["caller"], event["module"], event["status"])
    assert fields == ("abc@phone", "666", "spam", 603)
    assert event["source"] == PHONE


def test_local_calls_are_checked_too():
    """A call an application places (no source address) is refused the same way."""
    module = blocklist("{type: blocklist, numbers: ['666']}")
    with capturedLogs() as events, pytest.raises(CallRejected):
        module.callin(call_from("666", source=None))
    assert events[0]["source"] == "local"
