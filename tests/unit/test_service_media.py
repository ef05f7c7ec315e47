"""The media engine in the assembled switch: built from `media:`, started before SIP
binds (a failing start stops the switch with its reason), stopped after the calls,
and read by the metrics."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from phpvoip import config
from phpvoip.media.relay import RelayEngine
from phpvoip.metrics import build_registry
from phpvoip.service import build_service
from tests.unit.test_media_relay import FakeReactor, result, sdp

TEXT = """\
sip: {listen: [udp:127.0.0.1:25260]}
storage: memory
"""


class StoppingReactor(FakeReactor):
    """The fake reactor, noting that the switch asked it to stop."""

    stopped = False

    def stop(self) -> None:
        self.stopped = True


class Binds:
    """Stands in for a SIP port: says whether and when it was bound."""

    def __init__(self) -> None:
        self.bound = 0

    def bind(self) -> None:
        self.bound += 1


class SlowEngine:
    """A media engine whose start the test completes (rtpengine answering its ping)."""

    name = "rtpengine"

    def __init__(self) -> None:
        self.started: defer.Deferred = defer.Deferred()
        self.stops = 0

    def start(self) -> defer.Deferred:
        return self.started

    def stop(self) -> defer.Deferred:
        self.stops += 1
        return defer.succeed(None)


def build(tmp_path, text: str = TEXT, reactor: Any = None):
    path = tmp_path / "phpvoip.yaml"
    path.write_text(text)
    return build_service(config.load(path), reactor or StoppingReactor())


def watch_binding(service) -> Binds:
    """Replace the SIP ports by a note of when they would be bound."""
    for child in list(service):
        child.disownServiceParent()
    service.child_specs.clear()
    binds = Binds()
    service._bind_children = binds.bind
    return binds


def critical_lines(run) -> list[str]:
    logged: list = []
    globalLogPublisher.addObserver(logged.append)
    try:
        run()
    finally:
        globalLogPublisher.removeObserver(logged.append)
    return [formatEvent(e) for e in logged if e.get("log_level") == LogLevel.critical]


def test_direct_media_builds_no_engine(tmp_path):
    """Without `media:` the engine is None and ports bind as before."""
    service = build(tmp_path)
    assert service.media is None and service.engine.media is None


def test_relay_is_built_and_given_to_the_engine(tmp_path):
    """`media: relay` gives the engine (and so every bridge) a RelayEngine."""
    service = build(tmp_path, TEXT + 'media: {mode: relay, ports: "40100-40199"}\n')
    assert isinstance(service.engine.media, RelayEngine) and service.media is service.engine.media
    assert service.engine.media.port_range == (40100, 40199)


def test_ports_bind_once_the_engine_answers(tmp_path):
    """While rtpengine is asked, nothing is bound; its answer binds and starts."""
    service = build(tmp_path)
    service.media = engine = SlowEngine()
    binds = watch_binding(service)
    service.privilegedStartService()
    service.startService()
    assert binds.bound == 0 and not service.running
    engine.started.callback(None)
    assert binds.bound == 1 and service.running
    result(defer.maybeDeferred(service.stopService))
    assert engine.stops == 1


def test_engine_that_does_not_answer_stops_the_switch(tmp_path):
    """rtpengine not answering: one critical line naming file, key and reason, no
    port bound, and the reactor is stopped."""
    reactor = StoppingReactor()
    service = build(tmp_path, TEXT + "media: {mode: rtpengine}\n", reactor)
    service.media = engine = SlowEngine()
    binds = watch_binding(service)
    service.privilegedStartService()
    service.startService()

    def fail() -> None:
        engine.started.errback(Exception("rtpengine at udp:127.0.0.1:2223 does not answer ng ping"))

    [line] = critical_lines(fail)
    assert line == (f"{tmp_path / 'phpvoip.yaml'}: media: cannot start rtpengine: "
                    "rtpengine at udp:127.0.0.1:2223 does not answer ng ping")
    assert binds.bound == 0 and reactor.stopped


def test_engine_failing_at_once_exits_before_binding(tmp_path):
    """An engine whose start fails at once ends start-up like a port that cannot bind."""
    service = build(tmp_path, TEXT + "media: {mode: relay}\n")
    service.media = failing = SlowEngine()
    failing.started.errback(ValueError("media relay: no ports"))
    binds = watch_binding(service)
    exits: list = []

    def start() -> None:
        with pytest.raises(SystemExit) as info:
            service.privilegedStartService()
        exits.append(info.value.code)

    [line] = critical_lines(start)
    assert line.endswith("phpvoip.yaml: media: cannot start relay: media relay: no ports")
    assert exits == [1] and binds.bound == 0


def test_relay_figures_in_the_metrics(tmp_path):
    """Port pairs in use and total, packets forwarded and dropped by reason."""
    reactor = StoppingReactor()
    service = build(tmp_path, TEXT + 'media: {mode: relay, ports: "40100-40119"}\n', reactor)
    relay = service.engine.media
    result(relay.start())
    session = relay.session("call-1", lambda: None)
    result(session.offer("a", "b", sdp("192.0.2.10", 4000)))
    registry, _ = build_registry(service)
    from prometheus_client.exposition import generate_latest

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}
    assert samples[("phpvoip_media_port_pairs", ())] == 10
    assert samples[("phpvoip_media_port_pairs_in_use", ())] == 2
    assert samples[("phpvoip_media_packets_forwarded_total", ())] == 0
    assert samples[("phpvoip_media_packets_dropped_total", (("reason", "unlatched"),))] == 0
    assert ("phpvoip_media_rtpengine_up", ()) not in samples
