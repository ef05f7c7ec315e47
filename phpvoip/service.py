"""Assembly: build the running switch from a validated `Config`.

Thin on purpose (like twisted.names' tap): small `_build_*` helpers that tests can
call without starting anything, and one `MultiService` whose children own the ports.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

from twisted.application import internet
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from phpvoip import config as config_module
from phpvoip.config import Config, ConfigError
from phpvoip.engine import Engine
from phpvoip.gctuning import GcTuning
from phpvoip.gcwatch import GcWatch
from phpvoip.limits import install_limits
from phpvoip.router import Router
from phpvoip.transport import SipTransport

__all__ = ["Child", "SwitchService", "build_engine", "build_service"]

log = Logger()

# How long a stopping switch waits for BYEs, unregistrations and store flushes.
STOP_GRACE = 5.0


@dataclass(frozen=True)
class Child:
    """A child service of the switch and what to call it when it cannot start:
    its `name` ("SIP over udp"), the `address` it binds and the config `key` that
    asked for it."""

    name: str
    address: str
    key: str
    service: Any


class SwitchService(MultiService):
    """The whole switch; its children are the services that bind: the SIP ports now,
    and whatever later features add (manhole, metrics, RTP, console) through
    `add_child`."""

    def __init__(self, config: Config, transport: SipTransport, engine: Engine, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.transport = transport
        self.engine = engine
        self.reactor = reactor
        self.child_specs: list[Child] = []
        self._old_sighup: Any = None
        self.started_at = reactor.seconds()
        self.gc_watch = GcWatch()  # collector pauses, for stats() and metrics; on while running
        self.gc_tuning = GcTuning(self.reactor)  # thresholds, freezing of survivors (phpvoip.gctuning)
        # Operations (issue 12): set by build_service when configured, else None.
        self.cdr: Any = None  # phpvoip.cdr.CallDetailRecords, an observer of the call events
        self.ladders: Any = None  # phpvoip.ladder.Ladders, fed by the transport's message tap
        self.limits: Any = None  # phpvoip.limits.Limits: bans, rates and caps (set by build_service)
        # The media engine (phpvoip.mediaconfig), None for direct media; started before
        # SIP is bound, so no call arrives that the engine cannot take.
        self.media: Any = getattr(engine, "media", None)
        self._media_started: defer.Deferred | None = None
        self._bind_later = False

    def add_child(self, service: Any, name: str, address: str, key: str) -> Child:
        """Make `service` a child, started (and bound) with the switch."""
        child = Child(name, address, key, service)
        self.child_specs.append(child)
        service.setServiceParent(self)
        return child

    # Set by phpvoip.tap for twistd: the observer the application logs to.
    log_observer: Any = None

    def setServiceParent(self, parent: Any) -> None:
        # twistd asks the application (the parent) for an ILogObserver component
        # before it starts logging; offering ours applies the configured level.
        if self.log_observer is not None and isinstance(parent, Componentized):
            if parent.getComponent(ILogObserver, None) is None:
                parent.setComponent(ILogObserver, self.log_observer)
        super().setServiceParent(parent)

    def privilegedStartService(self) -> None:
        """Bind every child; one that cannot bind ends the start-up with a one-line
        message naming the child, its address and its config key (and releases
        those already bound).

        With a media engine, the engine starts first: the relay at once (a port
        range it cannot use ends the start-up here), rtpengine once it answers its
        ping, so the ports are then bound in `startService`."""
        if self.media is not None and self._media_started is None:
            self._media_started = defer.maybeDeferred(self.media.start)
            outcome: list[Any] = []

            def note(result: Any) -> Any:
                outcome.append(result)
                return result

            self._media_started.addBoth(note)
            if not outcome:
                self._bind_later = True
                return
            if isinstance(outcome[0], Failure):
                self._media_started.addErrback(lambda _: None)  # reported here, not when collected
                self._fail_media(outcome[0])
                raise SystemExit(1) from None
        self._bind_children()

    def _fail_media(self, failure: Failure) -> str:
        mode = self.config.media.mode
        message = f"{self.config.file}: media: cannot start {mode}: {failure.getErrorMessage()}"
        log.critical(message)
        return message

    def _bind_children(self) -> None:
        specs = {id(c.service): c for c in self.child_specs}
        started = []
        for service in self:
            try:
                service.privilegedStartService()
            except (CannotListenError, OSError) as e:
                for done in started:
                    done.stopService()
                spec = specs.get(id(service))
                name, address, key = (spec.name, spec.address, spec.key) if spec else (repr(service), "?", "")
                message = f"{self.config.file}: {key}: cannot bind {name} on {address}: {_reason(e)}"
                log.critical(message)
                raise SystemExit(1) from None
            started.append(service)

    def startService(self) -> None:
        if self.media is not None and self._media_started is None:
            # Started without privilegedStartService (embedded, tests): the same
            # order, engine first, then the ports.
            self._media_started = defer.maybeDeferred(self.media.start)
            self._bind_later = True
        if self._bind_later:
            # rtpengine is being asked: bind and start once it answers; if it does
            # not, say so and stop (nothing has been bound).
            self._bind_later = False

            def ready(_: Any) -> None:
                try:
                    self._bind_children()
                except SystemExit:
                    self.reactor.stop()
                    return
                self._start()

            def failed(failure: Failure) -> None:
                self._fail_media(failure)
                self.reactor.stop()

            self._media_started.addCallbacks(ready, failed)  # type: ignore[union-attr]
            return
        self._start()

    def _start(self) -> None:
        super().startService()
        self.gc_watch.start()
        log.info(
            "phpvoip started from {file} on {listen} with modules {modules}",
            file=self.config.file,
            listen=", ".join(str(a) for a in self.config.sip.listen),
            modules=", ".join(f"{m.name}({m.type})" for m in self.config.modules) or "none",
        )
        d = self.engine.start()
        d.addErrback(lambda f: log.failure("a module failed to start", f))
        # What start-up loaded (code, config, bindings) lives as long as the process:
        # keep it out of the cyclic collector's full passes, and from then on what
        # survives the young passes too (phpvoip.gctuning).
        d.addBoth(lambda _: self.gc_tuning.start())
        if hasattr(signal, "SIGHUP"):
            self._old_sighup = signal.signal(signal.SIGHUP, self._sighup)

    def _sighup(self, signum: int, frame: Any) -> None:
        # A signal handler does no work: the reload runs on the reactor.
        self.reactor.callFromThread(self.reload)

    def reload(self) -> Any:  # a phpvoip.reload.Reloaded, or False
        """Re-read the config file and apply routes, users, call settings and
        module changes without dropping calls or bindings (`phpvoip.reload`).
        Returns the applied reload, true and printed as its one-line summary; or
        False, keeping the running config (and saying why) when the file has
        become invalid or a new module cannot be built."""
        from phpvoip.reload import apply

        file = self.config.file
        try:
            fresh = config_module.load(file)
        except ConfigError as e:
            log.error("reload refused, keeping the running config: {error}", error=str(e))
            return False
        try:
            reloaded = apply(self.engine, self.config, fresh)
        except Exception as e:
            log.failure("reload refused, keeping the running config: {error}", error=repr(e))
            return False
        self.config = reloaded.config
        if self.limits is not None and self.limits.settings != self.config.limits:
            self.limits.reconfigure(self.config.limits)
        log.info("{summary}", summary=reloaded.summary, file=file)
        return reloaded

    def stopService(self) -> Any:
        log.info("phpvoip stopping")
        self.gc_watch.stop()
        self.gc_tuning.stop()
        if self._old_sighup is not None:
            signal.signal(signal.SIGHUP, self._old_sighup)
            self._old_sighup = None
        stopping = self.engine.stop()
        timeout = self.reactor.callLater(STOP_GRACE, stopping.cancel)

        def stop_ports(_: Any) -> Any:
            if timeout.active():
                timeout.cancel()
            self.transport.disconnect_all()
            stopped = defer.maybeDeferred(MultiService.stopService, self)
            if self.cdr is not None:
                # The calls just hung up are recorded before the store closes.
                stopped.addBoth(lambda _: self.cdr.stop())
            store = self.engine.store
            if store is not None:
                stopped.addBoth(lambda _: store.close())
            if self.media is not None:
                # The calls are hung up: release their ports (delete them on rtpengine).
                media = self.media
                stopped.addBoth(lambda _: media.stop())
            return stopped

        stopping.addErrback(lambda f: log.failure("while stopping modules", f))
        return stopping.addBoth(stop_ports)


def _reason(error: Exception) -> str:
    """The operating system's words for a failed bind."""
    cause = getattr(error, "socketError", error)
    return str(getattr(cause, "strerror", None) or cause)


def _build_store(config: Config, reactor: Any) -> Any:
    from phpvoip.store import open_store

    return open_store(config.storage, reactor)


def _build_ports(config: Config, transport: SipTransport) -> list[Child]:
    """One child per SIP listen address."""
    ports: list[Child] = []
    for index, listen in enumerate(config.sip.listen):
        if listen.transport == "udp":
            service = transport.udp_service(listen.port, listen.host)
        else:
            service = internet.TCPServer(listen.port, transport.tcp_factory(listen), interface=listen.host)
        ports.append(Child(f"SIP over {listen.transport}", str(listen), f"sip.listen[{index}]", service))
    return ports


def build_engine(config: Config, transport: Any, reactor: Any, store: Any = None) -> Engine:
    from phpvoip.media import prompts
    from phpvoip.mediaconfig import build_media_engine

    if config.prompts is not None:
        prompts.add_directory(config.prompts)  # before any module plays one
    modules = [config_module.build_module(m) for m in config.modules]
    return Engine(
        transport,
        reactor,
        config.sip.domain,
        modules,
        Router(config.routes),
        config.sip.timers,
        config.calls,
        store,
        config.sip.user_agent,
        build_media_engine(config.media, reactor),
    )


def build_service(config: Config, reactor: Any = None) -> SwitchService:
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    transport = SipTransport(reactor, max_message_size=config.sip.max_message_size)
    transport.receiver.limits = config.sip.limits
    engine = build_engine(config, transport, reactor, _build_store(config, reactor))
    transport.sink = engine.layer
    service = SwitchService(config, transport, engine, reactor)
    for child in _build_ports(config, transport):
        service.add_child(child.service, child.name, child.address, child.key)
    install_limits(config.limits, service)
    _build_operations(config, service)
    return service


def _build_operations(config: Config, service: SwitchService) -> None:
    """Ladders, call records, metrics, the manhole and the console, each when configured; all of
    them watch the switch through the call events and its counters."""
    if config.ladders.enabled:
        from phpvoip.ladder import Ladders

        service.ladders = Ladders(config.ladders, service.reactor)
        service.ladders.attach(service.transport, service.engine)
    if config.cdr.enabled:
        from phpvoip.cdr import CallDetailRecords

        service.cdr = CallDetailRecords(service.engine.store, config.cdr, service.reactor)
        service.engine.add_observer(service.cdr)
    if config.metrics is not None:
        from phpvoip.metrics import metrics_service

        listen = config.metrics.listen.endpoint
        service.add_child(metrics_service(config.metrics, service), "the metrics endpoint", listen,
                          "metrics.listen")
    if config.manhole is not None:
        from phpvoip.manhole import manhole_service

        listen = config.manhole.listen.endpoint
        service.add_child(manhole_service(config.manhole, service), "the manhole", listen, "manhole.listen")
    if config.console is not None:
        from phpvoip.console import console_service

        listen = config.console.listen.endpoint
        service.add_child(console_service(config.console, service), "the web console", listen,
                          "console.listen")

