"""The manhole's pieces without a network: keys, checker, namespace, helpers."""

from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch.error import ValidPublicKey
from twisted.conch.ssh import keys
from twisted.cred.credentials import ISSHPrivateKey, SSHPrivateKey
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import Clock

from phpvoip.apps.robot import Robot, RobotSettings
from phpvoip.manhole import HELPERS, AuthorizedKeys, KeyChecker, load_host_key, namespace, ssh_factory
from phpvoip.opsconfig import ListenSettings, ManholeSettings
from tests.unit.test_engine import BACKEND, answer, deliver, invite, make_engine, requests, trunk


def new_key() -> keys.Key:
    return keys.Key(ed25519.Ed25519PrivateKey.generate())


def signed(key: keys.Key, user: bytes = b"ops") -> SSHPrivateKey:
    data = b"session data the client signs"
    return SSHPrivateKey(user, b"ssh-ed25519", key.public().blob(), data, key.sign(data))


def test_host_key_made_once_private_and_kept(tmp_path):
    """A missing host key is made (directory too) with mode 0600; the next start
    reads the same key."""
    path = tmp_path / "var" / "manhole_host_key"
    key = load_host_key(path)
    assert key.isPublic() is False and key.sshType() == b"ssh-ed25519"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_host_key(path).fingerprint() == key.fingerprint()


def test_unwritable_host_key_names_the_file(tmp_path):
    """A host key that cannot be made is an OSError naming the file (the switch's
    start-up reports it with the config key)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match=r"host key .*file/key"):
        load_host_key(blocker / "key")


def test_authorized_keys_are_read_at_every_login(tmp_path):
    """No file: nobody; a key added later counts at once; comments are skipped."""
    path = tmp_path / "manhole_keys"
    authorized = AuthorizedKeys(path)
    assert authorized.getAuthorizedKeys(b"ops") == []
    key = new_key()
    path.write_bytes(b"# operators\n" + key.public().toString("openssh") + b" alice@desk\n")
    assert [k.fingerprint() for k in authorized.getAuthorizedKeys(b"anyone")] == [key.fingerprint()]


def test_checker_takes_listed_keys_only(tmp_path):
    """A signature by a listed key logs in under any user name; another key is
    refused; a key offered without signature is only probed (ValidPublicKey)."""
    path = tmp_path / "keys"
    good, bad = new_key(), new_key()
    path.write_bytes(good.public().toString("openssh") + b"\n")
    checker = KeyChecker(AuthorizedKeys(path))
    assert checker.credentialInterfaces == (ISSHPrivateKey,)
    outcomes: list = []
    checker.requestAvatarId(signed(good, b"whoever")).addBoth(outcomes.append)
    checker.requestAvatarId(signed(bad)).addBoth(outcomes.append)
    probe = SSHPrivateKey(b"ops", b"ssh-ed25519", good.public().blob(), None, None)
    checker.requestAvatarId(probe).addBoth(outcomes.append)
    accepted, refused, probed = outcomes
    assert accepted == b"whoever"
    assert refused.check(UnauthorizedLogin) and probed.check(ValidPublicKey)


def test_server_offers_public_keys_only(tmp_path):
    """The portal knows one kind of credentials, SSH keys: no password method; the
    host key is the one made on first start."""
    settings = ManholeSettings(ListenSettings("tcp:2222:interface=127.0.0.1", 2222, "127.0.0.1"),
                               str(tmp_path / "keys"), str(tmp_path / "host_key"))
    engine, _, _ = make_engine(trunk())
    factory = ssh_factory(settings, SimpleNamespace(engine=engine, config=None, ladders=None), Clock())
    assert factory.portal.listCredentialsInterfaces() == [ISSHPrivateKey]
    assert list(factory.privateKeys) == [b"ssh-ed25519"]
    assert factory.publicKeys[b"ssh-ed25519"].isPublic()
    assert factory.privateKeys[b"ssh-ed25519"].fingerprint() == load_host_key(settings.host_key).fingerprint()


def shell(*modules, reloaded=True, ladders=None):
    engine, transport, clock = make_engine(*modules)
    switch = SimpleNamespace(engine=engine, config=SimpleNamespace(ladders=SimpleNamespace(calls=200)),
                             ladders=ladders, reload=lambda: reloaded)
    return namespace(switch), engine, transport, clock


def test_namespace_holds_the_switch_and_documented_helpers(capsys):
    """switch, engine, config and every helper; help() lists them all by their
    docstrings, help(helper) shows its documentation."""
    names, engine, _, _ = shell(trunk())
    assert names["engine"] is engine and names["switch"].engine is engine
    for helper in HELPERS:
        assert names[helper].__doc__.startswith(f"{helper}(")
    names["help"]()
    listing = capsys.readouterr().out
    assert all(f"  {helper}(" in listing for helper in HELPERS)
    names["help"](names["hangup"])
    assert "both legs get a BYE" in capsys.readouterr().out
    assert "help()" in repr(names["help"])


def test_hangup_ends_a_live_call_with_a_reason(capsys):
    """hangup(id) ends both legs (the callee gets CANCEL before answer) and says
    which Reason went out; an unknown id is said to be unknown."""
    names, engine, transport, _ = shell(trunk())
    names["hangup"]("call-999999")
    assert "no active call 'call-999999'" in capsys.readouterr().out
    deliver(engine, invite())
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, 200, body=b"v=0\r\n"), BACKEND)
    transport.take()
    [call_id] = engine.calls
    names["calls"]()
    assert call_id in capsys.readouterr().out
    names["hangup"](call_id)
    assert capsys.readouterr().out.strip() == (
        f"{call_id}: hung up, Reason: Q.850;cause=16;text=\"Hung up by an operator\"")
    byes = [m for m, _ in transport.take() if getattr(m, "method", "") == "BYE"]
    assert len(byes) == 2 and all("Hung up by an operator" in b.get("Reason") for b in byes)
    assert engine.calls == {}


def test_reload_trace_and_originate_report_plainly(capsys, tmp_path):
    """reload() says what happened; trace() says when ladders are off; originate()
    returns a Deferred that fires with a sentence."""
    names, engine, _, clock = shell(Robot("a", RobotSettings("300", answer_after=1)),
                                    Robot("b", RobotSettings("301", answer_after=1)), reloaded=False)
    names["reload"]()
    names["trace"]("call-1")
    out = capsys.readouterr().out.splitlines()
    assert out == ["reload refused: the running config is kept (the log says why)",
                   "ladders are off: set `ladders: {enabled: true}` in the config"]
    said: list = []
    names["originate"](300, 301).addCallback(said.append)
    for _ in range(3):
        clock.advance(1)
    [call_id] = engine.calls
    assert said == [f"{call_id}: 300 and 301 connected"]
    failed: list = []
    names["originate"](300, 999).addCallback(failed.append)
    for _ in range(3):
        clock.advance(1)
    assert failed == ["originate 300 -> 999 failed: 404 Not Found"]


class Ladders:
    """What phpvoip.ladder.Ladders offers trace()."""

    def ladder_text(self, call):
        if call != "call-5":
            raise KeyError(call)
        return "INVITE ->"

    def write_pcap(self, call, path):
        return 7


def test_trace_uses_the_ladders(capsys):
    """trace(call) prints the ladder, trace(call, pcap=PATH) says how many messages
    it wrote, and a call with nothing kept is said so."""
    names, *_ = shell(ladders=Ladders())
    names["trace"](5)
    names["trace"]("call-5", pcap="/tmp/x.pcap")
    names["trace"]("call-6")
    assert capsys.readouterr().out.splitlines() == [
        "INVITE ->", "7 messages of call-5 written to /tmp/x.pcap",
        "no messages kept for 'call-6' (the ladders keep the last 200 calls)"]


def test_stats_prints_a_table(capsys):
    """stats() prints name/value rows (the switch's counters at least)."""
    engine, _, _ = make_engine(trunk())
    switch = SimpleNamespace(engine=engine, config=None, ladders=None,
                             transport=SimpleNamespace(parse_errors=0),
                             gc_watch=SimpleNamespace(snapshot=lambda: {"gc_pauses": 0}),
                             reactor=Clock(), started_at=0.0)
    namespace(switch)["stats"]()
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["NAME", "VALUE"] and "calls" in text
