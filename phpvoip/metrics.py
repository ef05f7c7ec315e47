"""Prometheus metrics: ``metrics: {listen: "tcp:9090:interface=127.0.0.1"}``.

Two sources, one private `CollectorRegistry` (never prometheus_client's global one,
so two switches in one process, as in the tests, do not mix):

- `SwitchMetrics` observes the switch's events (`phpvoip.events`) and keeps what
  only the events can tell in plain integers: calls ended by outcome and status
  class, call setup times, registrations accepted and refused, bindings removed,
  line state changes. Nothing else keeps counters for it (STYLE habit 14).
- At scrape time the same object, as a prometheus_client collector, reads the live
  figures: calls, legs, dialogs, transactions and bindings in progress, the
  counters the transaction layer, the transport and the GC watch keep
  (`phpvoip.stats`), each outside line's state, the queues and attendants.

Exported (all names ``phpvoip_``; counters end in ``_total``; seconds)::

    phpvoip_build_info{version}                      1
    phpvoip_uptime_seconds                           gauge
    phpvoip_calls_active, _legs_active, _dialogs_active
    phpvoip_calls_total{outcome,status_class}        outcome: answered, busy,
                                                     no_answer, cancelled, failed;
                                                     status_class: 2xx..6xx, none
    phpvoip_call_setup_seconds                       histogram (attempt to answer)
    phpvoip_registrations_active                     bindings held, all registrars
    phpvoip_registrations_accepted_total             bindings made or refreshed
    phpvoip_registrations_refused_total{status}      REGISTERs refused (a plain
                                                     challenge is no refusal)
    phpvoip_unregistrations_total{reason}            unregistered, expired
    phpvoip_transactions_active{side}                client, server
    phpvoip_transactions_total{side}                 started
    phpvoip_retransmissions_total{direction}         sent, received
    phpvoip_parse_errors_total                       unreadable messages
    phpvoip_bans_active                              sources banned now
    phpvoip_requests_dropped_total{reason}           banned (dropped unparsed),
                                                     rate (the request that got its
                                                     source banned), transactions,
                                                     calls (503s), tcp (connections
                                                     refused)
    phpvoip_line_state{line,state}                   1 for the current state, 0 for
                                                     the others (static lines:
                                                     state="static")
    phpvoip_line_state_changes_total{line,state}     entries into each state
    phpvoip_gc_pause_seconds                         histogram of collector pauses
    phpvoip_gc_pause_max_seconds                     the longest so far
    phpvoip_gc_collections_total{generation}
    process_*                                        prometheus_client's
                                                     ProcessCollector (CPU, memory,
                                                     start time, open files)

Applications (`phpvoip.metrics_apps`), read at each scrape from the modules that
offer them, like the manhole's ``queues()``, ``agents()`` and ``attendants()``
tables; absent while no module does. A queue's ``queue_stats()`` and
``agent_stats()`` give::

    phpvoip_queue_callers_waiting{queue}             gauge
    phpvoip_queue_longest_wait_seconds{queue}        gauge, 0 with nobody waiting
    phpvoip_queue_service_level_ratio{queue}         answered within service_level
                                                     s / answered (0..1); no sample
                                                     before the first answer
    phpvoip_queue_holdtime_seconds{queue}            moving average of answered
                                                     callers' waits
    phpvoip_queue_agents_logged_in{queue}, _agents_available{queue}
    phpvoip_queue_agents{queue,state}                agents by state
    phpvoip_queue_callers_total{queue,outcome}       answered, abandoned, timed_out,
                                                     exited, emptied, refused
    phpvoip_queue_agent_calls_total{queue,agent,outcome}  answered, missed
    phpvoip_queue_agent_talk_seconds_total{queue,agent}

An attendant (``attendant_stats()``; read through its ``stats()``), labelled with
the module's name::

    phpvoip_attendant_callers{attendant,menu}        gauge, every menu (0 included)
    phpvoip_attendant_calls_total{attendant,outcome} bridged, transferred, operator,
                                                     goodbye, abandoned, failed
    phpvoip_attendant_events_total{attendant,event}  closed, direct, no_input,
                                                     invalid, unavailable

RTP packets, loss and jitter
are not exported per call (the call records carry them); with ``media: relay`` the
relay's totals are::

    phpvoip_media_port_pairs, _port_pairs_in_use     gauges
    phpvoip_media_sessions_active                    gauge
    phpvoip_media_packets_forwarded_total            counter
    phpvoip_media_packets_dropped_total{reason}      unlatched, unpaired,
                                                     malformed, send_errors
    phpvoip_media_refused_total                      calls refused for want of ports
    phpvoip_media_rtpengine_up                       1 while rtpengine answers

The endpoint is a twisted.web resource whose ``render_GET`` runs
``generate_latest`` on the reactor thread: a scrape reads the switch's objects
between two events, never while one is half done. Other paths get 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from phpvoip import __version__
from phpvoip.events import (
    CallAnswered,
    CallEnded,
    LineStateChanged,
    Registered,
    RegistrationRefused,
    Unregistered,
)
from phpvoip.gcwatch import PAUSE_BUCKETS
from phpvoip.interfaces import ICallObserver
from phpvoip.metrics_apps import attendant_families, queue_families
from phpvoip.modules.channel import SipChannel
from phpvoip.modules.line_state import LineState
from phpvoip.opsconfig import MetricsSettings
from phpvoip.stats import switch_stats

__all__ = ["SETUP_BUCKETS", "MetricsResource", "SwitchMetrics", "metrics_service"]

log = Logger()

# Call setup (attempt to answer) takes from a few milliseconds (an application)
# to a minute of ringing.
SETUP_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)

# What generate_latest writes: the classic text format, which every Prometheus reads
# (prometheus_client's CONTENT_TYPE_LATEST names 1.0.0 in recent versions).
TEXT_FORMAT = b"text/plain; version=0.0.4; charset=utf-8"

# Every state a line can show, so that each line exports all of them (0 or 1).
LINE_STATES: tuple[str, ...] = (
    LineState.UNREGISTERED, LineState.REGISTERING, LineState.REGISTERED, LineState.REFRESHING,
    LineState.RETRYING, LineState.FAILED_AUTH, LineState.UNREGISTERING, "static",
)


def outcome_label(disposition: str) -> str:
    """"NO ANSWER" -> "no_answer": a disposition as a Prometheus label value."""
    return disposition.lower().replace(" ", "_") or "unknown"


def status_class(status: int | None) -> str:
    """486 -> "4xx"; "none" when the call ended without a final status."""
    if status is None or not 100 <= status <= 699:
        return "none"
    return f"{status // 100}xx"


@implementer(ICallObserver)
class SwitchMetrics:
    """The switch's metrics: an observer of its events and, at scrape time, a
    prometheus_client collector of those and its live figures.

    `service` is the `SwitchService` (engine, transport, GC watch, clock). Register
    with ``engine.add_observer(metrics)`` and ``registry.register(metrics)``
    (`metrics_service` does both)."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.calls: dict[tuple[str, str], int] = {}
        # Setup times: one count per bucket (the last: above every bound), and the sum.
        self.setup_buckets = [0] * (len(SETUP_BUCKETS) + 1)
        self.setup_sum = 0.0
        self.accepted = 0
        self.refused: dict[str, int] = {}
        self.unregistered: dict[str, int] = {}
        self.line_changes: dict[tuple[str, str], int] = {}

    # -- the events ------------------------------------------------------------------------

    def call_event(self, event: Any) -> None:
        kind = type(event)
        if kind is CallEnded:
            key = (outcome_label(event.disposition), status_class(event.status))
            self.calls[key] = self.calls.get(key, 0) + 1
        elif kind is CallAnswered:
            self._setup(event.setup_s)
        elif kind is Registered:
            self.accepted += 1
        elif kind is RegistrationRefused:
            status = str(event.status)
            self.refused[status] = self.refused.get(status, 0) + 1
        elif kind is Unregistered:
            self.unregistered[event.reason] = self.unregistered.get(event.reason, 0) + 1
        elif kind is LineStateChanged:
            key = (event.line, event.new)
            self.line_changes[key] = self.line_changes.get(key, 0) + 1

    def _setup(self, seconds: float) -> None:
        self.setup_sum += seconds
        index = 0
        for bound in SETUP_BUCKETS:
            if seconds <= bound:
                break
            index += 1
        self.setup_buckets[index] += 1

    # -- the collector ------------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        # Nothing to check at registration: names are fixed and unique here.
        return []

    def collect(self) -> Iterator[Metric]:
        service = self.service
        engine = service.engine
        stats = switch_stats(service)

        info = InfoMetricFamily("phpvoip_build", "The running phpvoip.")
        info.add_metric([], {"version": __version__})
        yield info
        yield GaugeMetricFamily("phpvoip_uptime_seconds", "Seconds since the switch started.",
                                value=stats["uptime_seconds"])
        yield GaugeMetricFamily("phpvoip_calls_active", "Calls in progress.", value=stats["calls"])
        yield GaugeMetricFamily("phpvoip_legs_active", "Call legs in progress.", value=stats["legs"])
        yield GaugeMetricFamily("phpvoip_dialogs_active", "SIP dialogs held.", value=stats["dialogs"])

        calls = CounterMetricFamily("phpvoip_calls", "Call attempts ended, by outcome and final status "
                                    "class.", labels=["outcome", "status_class"])
        for (outcome, klass), count in sorted(self.calls.items()):
            calls.add_metric([outcome, klass], count)
        yield calls
        yield _histogram("phpvoip_call_setup_seconds", "Time from a call's attempt to its answer.",
                         SETUP_BUCKETS, self.setup_buckets, self.setup_sum)

        yield GaugeMetricFamily("phpvoip_registrations_active", "Bindings held by the registrars.",
                                value=stats["registrations"])
        yield CounterMetricFamily("phpvoip_registrations_accepted", "Bindings made or refreshed.",
                                  value=self.accepted)
        refused = CounterMetricFamily("phpvoip_registrations_refused",
                                      "REGISTERs refused (not counting plain digest challenges), by status.",
                                      labels=["status"])
        for status, count in sorted(self.refused.items()):
            refused.add_metric([status], count)
        yield refused
        gone = CounterMetricFamily("phpvoip_unregistrations", "Bindings removed, by reason.",
                                   labels=["reason"])
        for reason, count in sorted(self.unregistered.items()):
            gone.add_metric([reason], count)
        yield gone

        active = GaugeMetricFamily("phpvoip_transactions_active", "SIP transactions in progress.",
                                   labels=["side"])
        active.add_metric(["client"], stats["client_transactions"])
        active.add_metric(["server"], stats["server_transactions"])
        yield active
        started = CounterMetricFamily("phpvoip_transactions", "SIP transactions started.", labels=["side"])
        started.add_metric(["client"], stats["client_transactions_started"])
        started.add_metric(["server"], stats["server_transactions_started"])
        yield started
        resent = CounterMetricFamily("phpvoip_retransmissions",
                                     "SIP messages sent again by us, or received again from peers.",
                                     labels=["direction"])
        resent.add_metric(["sent"], stats["retransmissions_sent"])
        resent.add_metric(["received"], stats["retransmissions_received"])
        yield resent
        yield CounterMetricFamily("phpvoip_parse_errors", "Messages that could not be read (answered or "
                                  "dropped).", value=stats["parse_errors"])

        yield from _limits(getattr(service, "limits", None))
        yield from self._lines(engine)
        yield from queue_families(engine)
        yield from attendant_families(engine)
        yield from _media(getattr(engine, "media", None))
        yield from self._gc()

    def _lines(self, engine: Any) -> Iterator[Metric]:
        state = GaugeMetricFamily("phpvoip_line_state", "Each outside line's registration state "
                                  "(1: the current one).", labels=["line", "state"])
        for module in engine.modules:
            if isinstance(module, SipChannel):
                current = module.state
                for name in LINE_STATES:
                    state.add_metric([module.name, name], 1 if name == current else 0)
        yield state
        changes = CounterMetricFamily("phpvoip_line_state_changes",
                                      "Times each outside line entered each state.", labels=["line", "state"])
        for (line, new), count in sorted(self.line_changes.items()):
            changes.add_metric([line, new], count)
        yield changes

    def _gc(self) -> Iterator[Metric]:
        watch = self.service.gc_watch
        yield _histogram("phpvoip_gc_pause_seconds", "How long each garbage collection stopped the switch.",
                         PAUSE_BUCKETS, watch.buckets, watch.total)
        yield GaugeMetricFamily("phpvoip_gc_pause_max_seconds", "The longest garbage collection pause "
                                "so far.", value=watch.worst)
        collections = CounterMetricFamily("phpvoip_gc_collections", "Garbage collections, by generation.",
                                          labels=["generation"])
        for generation, count in enumerate(watch.by_generation):
            collections.add_metric([str(generation)], count)
        yield collections


def _histogram(name: str, documentation: str, bounds: tuple[float, ...], counts: list[int],
               total: float) -> HistogramMetricFamily:
    """A histogram family from per-bucket counts (the last one above every bound)."""
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(bounds, counts, strict=False):
        cumulative += count
        buckets.append((repr(float(bound)), cumulative))
    cumulative += counts[-1]
    buckets.append(("+Inf", cumulative))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


def _limits(limits: Any) -> Iterator[Metric]:
    """Flood protection (`phpvoip.limits`): bans in force, and what was not served."""
    if limits is None:
        return
    yield GaugeMetricFamily("phpvoip_bans_active", "Sources banned now (flood, failed authentications, "
                            "by hand).", value=len(limits.banned))
    dropped = CounterMetricFamily("phpvoip_requests_dropped", "Requests and connections not served, "
                                  "by reason: banned, rate, transactions, calls, tcp.", labels=["reason"])
    for reason, count in sorted(limits.dropped.items()):
        dropped.add_metric([reason], count)
    yield dropped


def _media(media: Any) -> Iterator[Metric]:
    """The media engine's figures: the relay's ports and packets (its `totals()`),
    whether rtpengine answers. Nothing with direct media."""
    if media is None:
        return
    engines = [getattr(media, "primary", None), getattr(media, "fallback", None)]
    engines = [e for e in engines if e is not None] or [media]
    for engine in engines:
        totals = getattr(engine, "totals", None)
        if totals is not None:
            figures = totals()
            yield GaugeMetricFamily("phpvoip_media_port_pairs", "The relay's RTP/RTCP port pairs.",
                                    value=figures["port_pairs"])
            yield GaugeMetricFamily("phpvoip_media_port_pairs_in_use",
                                    "The relay's port pairs held by calls.",
                                    value=figures["port_pairs_in_use"])
            yield GaugeMetricFamily("phpvoip_media_sessions_active", "Calls whose media the relay carries.",
                                    value=figures["sessions"])
            yield CounterMetricFamily("phpvoip_media_packets_forwarded", "RTP and RTCP packets the relay "
                                      "forwarded.", value=figures["forwarded"])
            dropped = CounterMetricFamily("phpvoip_media_packets_dropped", "Packets the relay did not "
                                          "forward, by reason.", labels=["reason"])
            for reason in ("unlatched", "unpaired", "malformed", "send_errors"):
                dropped.add_metric([reason], figures[reason])
            yield dropped
            yield CounterMetricFamily("phpvoip_media_refused", "Calls refused for want of relay ports.",
                                      value=figures["refused"])
        elif getattr(engine, "name", "") == "rtpengine":
            yield GaugeMetricFamily("phpvoip_media_rtpengine_up", "1 while rtpengine answers its ng pings.",
                                    value=1 if engine.up else 0)


class MetricsResource(Resource):
    """Serves `registry` in the Prometheus text format at `path`; 404 elsewhere."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry, path: str = "/metrics") -> None:
        super().__init__()
        self.registry = registry
        self.path = path.encode()

    def render_GET(self, request: Any) -> bytes:
        if request.path != self.path:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Not Found: metrics are at " + self.path + b"\n"
        try:
            body = generate_latest(self.registry)
        except Exception:
            # A collector that fails must not take the switch down; say so, and 500.
            log.failure("metrics: collecting failed")
            request.setResponseCode(500)
            return b"collecting failed; see the switch's log\n"
        request.setHeader(b"content-type", TEXT_FORMAT)
        return body


class _QuietSite(Site):
    """A Site that writes no access log line per scrape (one every 15 s is noise)."""

    noisy = False

    def log(self, request: Any) -> None:
        return None


def build_registry(service: Any,
                   metrics: SwitchMetrics | None = None) -> tuple[CollectorRegistry, SwitchMetrics]:
    """A private registry holding the switch's collector (observing `service`'s
    engine) and the process collector."""
    if metrics is None:
        metrics = SwitchMetrics(service)
        service.engine.add_observer(metrics)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    ProcessCollector(registry=registry)
    return registry, metrics


def metrics_service(settings: MetricsSettings, service: Any) -> StreamServerEndpointService:
    """The metrics child service of `service` (see `phpvoip.service._build_operations`):
    an HTTP server on ``settings.listen`` answering ``GET settings.path``. The
    observer is subscribed now, so calls made before the port binds are counted."""
    registry, metrics = build_registry(service)
    site = _QuietSite(MetricsResource(registry, settings.path))
    # strports: a port that cannot bind fails the start at once, naming itself.
    child = strports.service(settings.listen.endpoint, site, reactor=service.reactor)
    child.metrics = metrics  # type: ignore[attr-defined]  # for tests and the manhole
    return child
