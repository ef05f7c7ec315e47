"""The manhole: an SSH server giving a Python shell on the live switch.

Built from twisted.conch's pieces (as `twisted/conch/manhole_tap.py` is), with the
switch's own rules:

- **Keys only.** The one credentials checker takes SSH public keys and reads the
  OpenSSH ``authorized_keys`` file named in the config at every login, so a key
  added or removed there counts at once. Any user name is accepted: the key
  decides, and the name is only written to the log beside the key's fingerprint.
  There is no password checker (so SSH offers no password method), no telnet, and
  the system's user database is never consulted.
- **The server's own key** (`host_key`) is an Ed25519 key written (mode 0600, its
  directory made) on the first start when the file does not exist.
- **The namespace** holds `switch` (the `SwitchService`), `engine` and `config`,
  and helpers that print tables (`phpvoip.inspect` makes them): ``help()`` lists
  them. Each session gets its own copy of the namespace.
- ``ssh -p 2222 127.0.0.1 'calls()'`` runs one command without a terminal and
  exits 1 if it raised; a Deferred it returns is waited for (at most
  `EXEC_TIMEOUT` seconds).

Everything the shell runs runs on the reactor thread: a long loop typed there stops
the switch for as long as it runs.
"""

from __future__ import annotations

import os
import pydoc
import struct
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.conch import manhole, manhole_ssh
from twisted.conch.checkers import SSHPublicKeyChecker, readAuthorizedKeyFile
from twisted.conch.error import ValidPublicKey
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser, ISession
from twisted.conch.ssh import keys
from twisted.conch.ssh.transport import SSHServerTransport
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ISSHPrivateKey
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.logger import Logger
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from zope.interface import implementer

from phpvoip import inspect
from phpvoip.interfaces import Cause
from phpvoip.opsconfig import ManholeSettings
from phpvoip.stats import switch_stats

__all__ = [
    "AuthorizedKeys",
    "KeyChecker",
    "ManholeService",
    "Shell",
    "load_host_key",
    "manhole_service",
    "namespace",
    "ssh_factory",
]

log = Logger()

EXEC_TIMEOUT = 30.0  # seconds an `ssh HOST COMMAND` waits for a Deferred result
HANGUP_CAUSE = Cause(None, "Hung up by an operator", "local")


# -- who gets in ----------------------------------------------------------------------------


class AuthorizedKeys:
    """The public keys of an OpenSSH ``authorized_keys`` file, read again at every
    login (an `IAuthorizedKeysDB` for any user name). Options before a key
    (``from=``, ``command=``) are not understood: such a line is skipped."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def getAuthorizedKeys(self, username: bytes) -> list[keys.Key]:
        try:
            with self.path.open("rb") as f:
                return list(readAuthorizedKeyFile(f))
        except FileNotFoundError:
            return []
        except OSError as e:
            log.error("manhole: cannot read {path}: {error}", path=str(self.path), error=str(e))
            return []


@implementer(ICredentialsChecker)
class KeyChecker:
    """SSH public-key logins against `AuthorizedKeys`; logs who got in, with which
    key, and who was refused. The signature check is conch's."""

    credentialInterfaces = (ISSHPrivateKey,)

    def __init__(self, authorized: AuthorizedKeys) -> None:
        self.authorized = authorized
        self._checker = SSHPublicKeyChecker(authorized)

    def requestAvatarId(self, credentials: Any) -> defer.Deferred:
        d = self._checker.requestAvatarId(credentials)

        def accepted(avatar: bytes) -> bytes:
            log.info("manhole: {user} logged in with key {fingerprint}", user=_name(credentials.username),
                     fingerprint=_fingerprint(credentials.blob))
            return avatar

        def refused(failure: Failure) -> Failure:
            # ValidPublicKey is the client asking whether a key would do, before signing.
            if failure.check(UnauthorizedLogin) and not failure.check(ValidPublicKey):
                log.info("manhole: refused {user} with key {fingerprint}", user=_name(credentials.username),
                         fingerprint=_fingerprint(credentials.blob))
            return failure

        return d.addCallbacks(accepted, refused)


def _name(username: bytes) -> str:
    return username.decode("utf-8", "replace")[:64]


def _fingerprint(blob: bytes) -> str:
    try:
        return keys.Key.fromString(blob).fingerprint(keys.FingerprintFormats.SHA256_BASE64)
    except Exception:
        return "(unreadable key)"


def load_host_key(path: str | os.PathLike[str]) -> keys.Key:
    """The server's key from `path`; on first start, a new Ed25519 key written there
    (directory made, file mode 0600). Raises OSError naming the file when it can
    be neither read nor made."""
    path = Path(path)
    try:
        if path.exists():
            return keys.Key.fromFile(str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        key = keys.Key(ed25519.Ed25519PrivateKey.generate())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.toString("openssh"))
    except OSError as e:
        raise OSError(e.errno, f"host key {path}: {e.strerror}") from None
    except keys.BadKeyError as e:
        raise OSError(0, f"host key {path}: {e}") from None
    log.info("manhole: made a new host key {path} ({fingerprint})", path=str(path),
             fingerprint=key.fingerprint(keys.FingerprintFormats.SHA256_BASE64))
    return key


# -- the shell ------------------------------------------------------------------------------


class Shell:
    """The helpers of the manhole's namespace, bound to one switch."""

    def __init__(self, switch: Any) -> None:
        self.switch = switch
        self.engine = switch.engine

    def helpers(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in HELPERS}

    def regs(self) -> None:
        """regs(): registered contacts: AOR, contact, expiry left, source, user agent."""
        print(inspect.registrations(self.engine))

    def calls(self) -> None:
        """calls(): active calls, one line per leg: state, age, talk time, each leg's
        module, far end and state, media counters ("-": no media relay yet)."""
        print(inspect.calls(self.engine))

    def lines(self) -> None:
        """lines(): outside lines (channels): registration state, server, renewal,
        last answer, calls in and out."""
        print(inspect.lines(self.engine))

    def queues(self) -> None:
        """queues(): call queues (from modules offering queue_stats())."""
        print(inspect.queues(self.engine))

    def agents(self) -> None:
        """agents(): queue agents and their states (from modules offering agent_stats())."""
        print(inspect.agents(self.engine))

    def attendants(self) -> None:
        """attendants(): auto attendants, callers in their menus, how calls ended."""
        print(inspect.attendants(self.engine))

    def _supervise(self, agent: Any, action: str, queue: Any) -> None:
        try:
            where = None if queue is None else str(queue)
            print(inspect.supervise_agent(self.engine, str(agent), action, where, by="the manhole"))
        except LookupError as e:
            print(e)

    def agent_login(self, agent: Any, queue: Any = None) -> None:
        """agent_login(agent, queue=None): log agent (an extension) in to `queue` (name
        or number), or to every queue that accepts it; as its *45 would."""
        self._supervise(agent, "login", queue)

    def agent_logout(self, agent: Any, queue: Any = None) -> None:
        """agent_logout(agent, queue=None): log the agent out (of every queue by default)."""
        self._supervise(agent, "logout", queue)

    def agent_pause(self, agent: Any, queue: Any = None) -> None:
        """agent_pause(agent, queue=None): no more offers until agent_resume() or its *47."""
        self._supervise(agent, "pause", queue)

    def agent_resume(self, agent: Any, queue: Any = None) -> None:
        """agent_resume(agent, queue=None): offers again (also clears an automatic pause)."""
        self._supervise(agent, "resume", queue)

    def hangup(self, call: Any) -> None:
        """hangup(call): end a call ("call-17", 17, its SIP Call-ID or its record):
        both legs get a BYE (or CANCEL / error answer before answer) with a Reason."""
        bridge = inspect.find_call(self.engine, call)
        if bridge is None:
            print(f"no active call {call!r}; calls() lists them")
            return
        call_id = bridge.record.id
        self.engine.hangup(call_id, HANGUP_CAUSE)
        print(f"{call_id}: hung up, Reason: {HANGUP_CAUSE.reason_header}")

    def route(self, from_user: Any, to_user: Any) -> None:
        """route(from, to): explain how a call from `from` to `to` would be routed
        and which module would take it out, without placing it."""
        print("\n".join(inspect.explain_route(self.engine, str(from_user), str(to_user))))

    def originate(self, from_user: Any, to_user: Any, app: str | None = None) -> defer.Deferred:
        """originate(from, to, app=None): ring `from` (e.g. a registered phone) and,
        when it answers, connect it to `to`. With `app` (an application module's
        name) the application calls `to`, showing `from` as the caller, and runs the
        call once `to` answers. Shows the call id once connected, or why not."""
        from_user, to_user = str(from_user), str(to_user)
        if app is None:
            print(f"ringing {from_user}, then {to_user}")
            d = self.engine.originate(from_user, to_user)
        else:
            print(f"{app} calls {to_user} as {from_user}")
            d = self.engine.originate(from_user, to_user, app=str(app))

        def connected(call_id: str) -> str:
            if app is not None:
                return f"{call_id}: {to_user} answered {app}"
            return f"{call_id}: {from_user} and {to_user} connected"

        def failed(failure: Failure) -> str:
            value = failure.value
            status = getattr(value, "status", None)
            why = f"{status} {value.reason}" if status is not None else failure.getErrorMessage()
            return f"originate {from_user} -> {to_user} failed: {why}"

        return d.addCallbacks(connected, failed)

    def reload(self) -> None:
        """reload(): re-read the config file and apply it (as SIGHUP does); an
        invalid file keeps the running config, and the log says why."""
        result = self.switch.reload()
        if result is True:
            print("reloaded")
        elif result is False:
            print("reload refused: the running config is kept (the log says why)")
        else:
            print(result)

    def stats(self) -> None:
        """stats(): calls, legs, dialogs, transactions (live and started),
        retransmissions sent and received, parse errors, bindings, GC pauses, uptime."""
        print(_stats_text(switch_stats(self.switch)))

    def trace(self, call: Any, pcap: str | None = None) -> None:
        """trace(call): the SIP messages of a call (live or recent) as a ladder
        diagram; trace(call, pcap=PATH) writes them to a pcap file instead."""
        ladders = getattr(self.switch, "ladders", None)
        if ladders is None:
            print("ladders are off: set `ladders: {enabled: true}` in the config")
            return
        call_id = _call_id(self.engine, call)
        try:
            if pcap is not None:
                count = ladders.write_pcap(call_id, pcap)
                print(f"{count} messages of {call_id} written to {pcap}")
            else:
                print(ladders.ladder_text(call_id))
        except KeyError:
            print(f"no messages kept for {call_id!r} (the ladders keep the last "
                  f"{switch_settings(self.switch)} calls)")

    def bans(self) -> None:
        """bans(): banned sources (over the request rate, repeated failed
        authentications, or by hand): time left and why."""
        limits = self.switch.limits
        if limits is None:
            print("flood protection is off")
            return
        print(inspect.bans(limits))
        print(", ".join(f"{name} {count}" for name, count in limits.stats().items()))

    def ban(self, ip: Any, seconds: float | None = None) -> None:
        """ban(ip, seconds=None): drop everything from `ip` unparsed for `seconds`
        (default: the configured limits.ban)."""
        limits = self.switch.limits
        if limits is None:
            print("flood protection is off")
            return
        entry = limits.ban(str(ip), seconds, "by hand (manhole)")
        print(f"{entry.host}: banned for {inspect.seconds(entry.until - limits.clock.seconds())}")

    def unban(self, ip: Any) -> None:
        """unban(ip): lift `ip`'s ban at once."""
        limits = self.switch.limits
        if limits is not None and limits.unban(str(ip)):
            print(f"{ip}: unbanned")
        else:
            print(f"{ip} is not banned")


HELPERS = ("regs", "calls", "lines", "queues", "agents", "agent_login", "agent_logout", "agent_pause",
           "agent_resume", "attendants", "hangup", "route", "originate", "reload", "stats", "trace", "bans",
           "ban", "unban")


def switch_settings(switch: Any) -> str:
    """How many calls the ladders keep, as the config says (or "few" unknown)."""
    ladders = getattr(getattr(switch, "config", None), "ladders", None)
    return str(getattr(ladders, "calls", "few"))


def _call_id(engine: Any, call: Any) -> str:
    """The switch's id for `call`, live or not: a record's id, "call-N" for N."""
    bridge = inspect.find_call(engine, call)
    if bridge is not None:
        return bridge.record.id
    if hasattr(call, "id"):
        return call.id
    if isinstance(call, int):
        return f"call-{call}"
    return str(call)


def _stats_text(stats: Any) -> str:
    """A mapping of numbers (maybe nested one level) as aligned ``name  value`` lines."""
    if isinstance(stats, str):
        return stats
    table = inspect.Table(("NAME", "VALUE"), empty="no statistics")
    for name, value in stats.items():
        if isinstance(value, dict):
            for inner, number in value.items():
                table.add(f"{name}.{inner}", _number(number))
        else:
            table.add(name, _number(value))
    return table.text()


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class Help:
    """help(): the helpers; help(thing): its documentation (the interactive
    help() of the standard library would read the server's stdin)."""

    def __init__(self, helpers: dict[str, Any]) -> None:
        self.helpers = helpers

    def __repr__(self) -> str:
        return "Type help() for the switch's helpers, or help(object) for help about object."

    def __call__(self, *things: Any) -> None:
        if not things:
            print("The live switch: `switch` (the service), `engine`, `config` (as at login; "
                  "`switch.config` follows reloads). Helpers:")
            for function in self.helpers.values():
                summary = pydoc.getdoc(function).split("\n\n")[0]
                print("  " + " ".join(summary.split()))
            print("Everything runs on the reactor thread: keep it short. Ctrl-D leaves.")
            return
        for thing in things:
            print(pydoc.render_doc(thing, title="%s", renderer=pydoc.plaintext))


def namespace(switch: Any) -> dict[str, Any]:
    """What a manhole session starts with."""
    helpers = Shell(switch).helpers()
    names: dict[str, Any] = {"switch": switch, "engine": switch.engine, "config": switch.config}
    names.update(helpers)
    names["help"] = Help(helpers)
    return names


class SwitchManhole(manhole.ColoredManhole):
    """The interactive shell: says where it is, and logs what operators type."""

    def __init__(self, namespace: dict[str, Any], user: str = "", banner: str = "") -> None:
        super().__init__(namespace)
        self.user = user
        self.banner = banner

    def initializeScreen(self) -> None:
        self.terminal.reset()
        self.terminal.write(self.banner.encode() + b"\n")
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()

    def lineReceived(self, line: bytes) -> None:
        log.info("manhole {user}: {line}", user=self.user, line=line.decode("utf-8", "replace")[:200])
        super().lineReceived(line)

    def connectionLost(self, reason: Any) -> None:
        log.info("manhole: {user} left", user=self.user)
        super().connectionLost(reason)


class _Output:
    """Collects a one-shot command's output for `_run_command`."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.failed = False
        self.open_line = False  # the last output did not end its line

    def addOutput(self, data: Any, isAsync: Any = None) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        if not data:
            return
        if isAsync and self.open_line:
            data = b"\n" + data
        self.session.write(data)
        self.open_line = not data.endswith(b"\n")

    def end(self) -> None:
        if self.open_line:
            self.session.write(b"\n")
            self.open_line = False


class _CommandInterpreter(manhole.ManholeInterpreter):
    """ManholeInterpreter that remembers whether the command raised."""

    def showtraceback(self) -> None:
        self.handler.failed = True
        super().showtraceback()

    def showsyntaxerror(self, filename: Any = None, **kwargs: Any) -> None:
        self.handler.failed = True
        super().showsyntaxerror(filename, **kwargs)


class _TerminalTransport(manhole_ssh.TerminalSessionTransport):
    """Joins the SSH channel to the terminal; leaving the shell (Ctrl-D) tells the
    client exit status 0 before closing, so ``ssh -tt HOST < commands`` exits 0."""

    def __init__(self, proto: Any, chained: Any, avatar: Any, width: int, height: int) -> None:
        super().__init__(proto, chained, avatar, width, height)
        session = proto.session

        def close() -> None:
            avatar.conn.sendRequest(session, b"exit-status", struct.pack(">L", 0))
            avatar.conn.sendClose(session)

        proto.transport.loseConnection = close


@implementer(ISession)
class _Session(manhole_ssh.TerminalSession):
    """An SSH session: a shell with or without a pty, or one command (exec)."""

    width, height = 80, 24  # when the client asked for no pty
    reactor: Any = None
    namespace_factory: Any = None
    user = ""

    def openShell(self, proto: Any) -> None:
        self.proto = proto
        super().openShell(proto)

    def execCommand(self, proto: Any, cmd: bytes) -> None:
        command = cmd.decode("utf-8", "replace")[:200]
        log.info("manhole {user} runs: {command}", user=self.user, command=command)
        output = _Output(proto)
        interpreter = _CommandInterpreter(output, self.namespace_factory())
        interpreter.push(cmd.rstrip(b"\n"))
        pending = [d for _, d in interpreter._pendingDeferreds.values()]

        def finish(_: Any) -> None:
            output.end()
            code = 1 if output.failed else 0
            reason = ProcessDone(0) if code == 0 else ProcessTerminated(exitCode=code)
            proto.processEnded(Failure(reason))

        if not pending:
            finish(None)
            return
        waiting = defer.DeferredList(pending, consumeErrors=True)
        timer = self.reactor.callLater(EXEC_TIMEOUT, waiting.cancel)

        def stop_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        waiting.addBoth(stop_timer).addBoth(finish)

    def windowChanged(self, newWindowSize: Any) -> None:
        self.height, self.width = newWindowSize[:2]

    def eofReceived(self) -> None:
        # The client's input ended (ssh < file): the session ends with it.
        proto = getattr(self, "proto", None)
        if proto is not None:
            proto.loseConnection()


class _Realm(manhole_ssh.TerminalRealm):
    """Gives each login a terminal session running `SwitchManhole` on a copy of the
    switch's namespace."""

    sessionFactory = _Session
    transportFactory = _TerminalTransport

    def __init__(self, switch: Any, reactor: Any) -> None:
        super().__init__()
        self.switch = switch
        self.reactor = reactor

    def _getAvatar(self, avatarId: bytes) -> Any:
        user = _name(avatarId)
        switch = self.switch
        banner = f"phpvoip manhole on {switch.engine.domain}: `help()` lists the helpers"
        component = Componentized()
        avatar = self.userFactory(component, avatarId)
        session = self.sessionFactory(component)
        session.transportFactory = self.transportFactory
        session.chainedProtocolFactory = lambda: insults.ServerProtocol(
            SwitchManhole, namespace(switch), user, banner)
        session.namespace_factory = lambda: namespace(switch)
        session.reactor = self.reactor
        session.user = user
        component.setComponent(IConchUser, avatar)
        component.setComponent(ISession, session)
        return avatar


class _Transport(SSHServerTransport):
    """The server side of one SSH connection, forgotten by its factory when it ends."""

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Any) -> None:
        self.factory.connections.discard(self)
        super().connectionLost(reason)


class _Factory(manhole_ssh.ConchFactory):
    """The SSH server factory with one host key; remembers its connections so that
    stopping the switch closes them."""

    protocol = _Transport

    def __init__(self, portal: Portal, key: keys.Key) -> None:
        super().__init__(portal)
        self.publicKeys = {key.sshType(): key.public()}
        self.privateKeys = {key.sshType(): key}
        self.connections: set[Any] = set()


def ssh_factory(settings: ManholeSettings, switch: Any, reactor: Any) -> _Factory:
    """The SSH server: the host key (made if missing), public keys as the only
    credentials, the shell as the only thing a login gets."""
    checker = KeyChecker(AuthorizedKeys(settings.authorized_keys))
    portal = Portal(_Realm(switch, reactor), [checker])
    return _Factory(portal, load_host_key(settings.host_key))


class ManholeService(Service):
    """The manhole as a child of the switch: makes or reads the host key and binds
    in `privilegedStartService` (or `startService` when nothing bound it first)."""

    def __init__(self, settings: ManholeSettings, switch: Any, reactor: Any) -> None:
        self.settings = settings
        self.switch = switch
        self.reactor = reactor
        self.factory: _Factory | None = None
        self._port_service: StreamServerEndpointService | None = None

    def _bind(self) -> None:
        if self._port_service is not None:
            return
        self.factory = ssh_factory(self.settings, self.switch, self.reactor)
        endpoint = serverFromString(self.reactor, self.settings.listen.endpoint)
        service = StreamServerEndpointService(endpoint, self.factory)
        service._raiseSynchronously = True  # a port in use is an error at start, not a log line
        service.privilegedStartService()
        self._port_service = service

    def privilegedStartService(self) -> None:
        self._bind()
        super().privilegedStartService()

    def startService(self) -> None:
        self._bind()
        super().startService()
        assert self._port_service is not None
        self._port_service.startService()
        log.info("manhole listening on {listen}, keys from {keys}", listen=self.settings.listen.endpoint,
                 keys=self.settings.authorized_keys)
        if not Path(self.settings.authorized_keys).exists():
            log.warn("manhole: {keys} does not exist yet: nobody can log in until a public key is "
                     "added to it (no restart needed)", keys=self.settings.authorized_keys)

    def stopService(self) -> Any:
        super().stopService()
        if self.factory is not None:
            for connection in list(self.factory.connections):
                connection.transport.loseConnection()
        service, self._port_service = self._port_service, None
        if service is None:
            return defer.succeed(None)
        return defer.maybeDeferred(service.stopService)


def manhole_service(settings: ManholeSettings, switch: Any, reactor: Any = None) -> ManholeService:
    """The manhole child service for `switch` (see `phpvoip.service._build_operations`)."""
    return ManholeService(settings, switch, reactor if reactor is not None else switch.reactor)
