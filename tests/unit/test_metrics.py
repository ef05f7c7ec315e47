"""Prometheus metrics: what the events and the live counters become, the text
format, the resource's paths, and the wiring from the config."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from phpvoip import __version__, config
from phpvoip.callrecord import CallRecord
from phpvoip.events import (
    CallAnswered,
    CallAttempted,
    CallEnded,
    LineStateChanged,
    Registered,
    RegistrationRefused,
    Unregistered,
)
from phpvoip.interfaces import ICallObserver
from phpvoip.metrics import MetricsResource, SwitchMetrics, build_registry, outcome_label, status_class
from phpvoip.service import build_service
from phpvoip.transport._udp import SipDatagramProtocol
from tests.unit.transaction_fakes import UDP_PEER, request

CONFIG = """\
sip: {listen: [udp:127.0.0.1:25162]}
storage: memory
modules:
  - {type: registrar, name: office, users: {"201": {password: secret}}}
  - {type: channel, name: carrier, user: "2005@carol.example", password: secret, server: "127.0.0.1:25163"}
  - {type: channel, name: fixed, user: "2006@carol.example", server: "127.0.0.1:25164", register: false}
"""


class FakeReactor(Clock):
    """The reactor as the service sees it before it binds anything."""


def built(tmp_path, text: str = CONFIG):
    path = tmp_path / "phpvoip.yaml"
    path.write_text(text)
    service = build_service(config.load(path), FakeReactor())
    registry, metrics = build_registry(service)
    return service, registry, metrics


def scrape(registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed back from the text format, by name and labels."""
    from prometheus_client.exposition import generate_latest

    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def record(number: int, now: float = 0.0) -> CallRecord:
    return CallRecord(f"call-{number}", f"cid-{number}@test", "201", "2005", now)


def ended(number: int, disposition: str, status: int | None, now: float = 10.0) -> CallEnded:
    call = record(number)
    call.disposition, call.status, call.end = disposition, status, now
    return CallEnded.of(call, now)


def test_metrics_observe_the_events():
    """SwitchMetrics is an ICallObserver."""
    assert verifyObject(ICallObserver, SwitchMetrics(None))


@pytest.mark.parametrize(("disposition", "label"), [
    ("ANSWERED", "answered"), ("NO ANSWER", "no_answer"), ("BUSY", "busy"), ("CANCELLED", "cancelled"),
    ("FAILED", "failed"), ("", "unknown"),
])
def test_outcome_labels(disposition, label):
    """Dispositions become lower-case label values without spaces."""
    assert outcome_label(disposition) == label


@pytest.mark.parametrize(("status", "label"), [(200, "2xx"), (486, "4xx"), (503, "5xx"), (603, "6xx"),
                                               (None, "none"), (0, "none")])
def test_status_classes(status, label):
    """Final statuses become their class; no status is "none"."""
    assert status_class(status) == label


def test_calls_by_outcome_and_status_class_and_setup_time(tmp_path):
    """Each CallEnded counts once under its outcome and status class; CallAnswered
    puts its setup time in the histogram; other call events change nothing."""
    service, registry, _ = built(tmp_path)
    events = service.engine.events
    events.publish(CallAttempted(record(1), 0.0))
    events.publish(CallAnswered(record(1), 0.3, 0.3))
    events.publish(CallAnswered(record(2), 4.0, 4.0))
    for number, disposition, status in [(1, "ANSWERED", 200), (2, "ANSWERED", 200), (3, "BUSY", 486),
                                        (4, "NO ANSWER", 480), (5, "BUSY", 600)]:
        events.publish(ended(number, disposition, status))
    samples = scrape(registry)
    calls = {labels: value for (name, labels), value in samples.items() if name == "phpvoip_calls_total"}
    assert calls == {
        (("outcome", "answered"), ("status_class", "2xx")): 2,
        (("outcome", "busy"), ("status_class", "4xx")): 1,
        (("outcome", "busy"), ("status_class", "6xx")): 1,
        (("outcome", "no_answer"), ("status_class", "4xx")): 1,
    }
    assert samples[("phpvoip_call_setup_seconds_bucket", (("le", "0.25"),))] == 0
    assert samples[("phpvoip_call_setup_seconds_bucket", (("le", "0.5"),))] == 1
    assert samples[("phpvoip_call_setup_seconds_bucket", (("le", "5.0"),))] == 2
    assert samples[("phpvoip_call_setup_seconds_bucket", (("le", "+Inf"),))] == 2
    assert samples[("phpvoip_call_setup_seconds_count", ())] == 2
    assert samples[("phpvoip_call_setup_seconds_sum", ())] == pytest.approx(4.3)


def test_registration_events_and_live_bindings(tmp_path):
    """Registered, RegistrationRefused and Unregistered events are counted by kind,
    status and reason; bindings held are read live from the registrars."""
    service, registry, _ = built(tmp_path)
    events = service.engine.events
    for _ in range(3):
        events.publish(Registered(1.0, "office", "201", "sip:201@192.0.2.1", 600, UDP_PEER))
    events.publish(RegistrationRefused(1.0, "office", "201", 401, "Unauthorized"))
    events.publish(RegistrationRefused(1.0, "office", "202", 403, "Forbidden"))
    events.publish(RegistrationRefused(1.0, "office", "202", 403, "Forbidden"))
    events.publish(Unregistered(2.0, "office", "201", "sip:201@192.0.2.1", "expired"))
    [office] = [m for m in service.engine.modules if m.name == "office"]
    service.engine.start()
    office.bindings.put(_binding("201"))
    samples = scrape(registry)
    assert samples[("phpvoip_registrations_accepted_total", ())] == 3
    assert samples[("phpvoip_registrations_refused_total", (("status", "401"),))] == 1
    assert samples[("phpvoip_registrations_refused_total", (("status", "403"),))] == 2
    assert samples[("phpvoip_unregistrations_total", (("reason", "expired"),))] == 1
    assert samples[("phpvoip_registrations_active", ())] == 1


def _binding(aor: str):
    from phpvoip.store import Binding

    return Binding(aor=aor, key=f"sip:{aor}@192.0.2.1", contact=f"sip:{aor}@192.0.2.1", expires_at=600.0,
                   call_id="reg@test", cseq=1, q=None, source=UDP_PEER, registered_at=0.0, user_agent=None)


def test_line_states_one_series_per_state(tmp_path):
    """Each line exports every state, 1 for its current one (a static line:
    "static"); state changes are counted per line and state entered."""
    service, registry, _ = built(tmp_path)
    service.engine.start()  # the carrier line sends its REGISTER (nowhere: no socket)
    events = service.engine.events
    events.publish(LineStateChanged(1.0, "carrier", "unregistered", "registering"))
    events.publish(LineStateChanged(2.0, "carrier", "registering", "retrying"))
    events.publish(LineStateChanged(7.0, "carrier", "retrying", "registering"))
    samples = scrape(registry)
    states = {labels: value for (name, labels), value in samples.items() if name == "phpvoip_line_state"}
    current = {labels for labels, value in states.items() if value == 1}
    assert current == {(("line", "carrier"), ("state", "registering")),
                       (("line", "fixed"), ("state", "static"))}
    assert len(states) == 2 * 8
    # The start's own change was published too: three entries into registering.
    assert samples[("phpvoip_line_state_changes_total", (("line", "carrier"), ("state", "registering")))] == 3
    assert samples[("phpvoip_line_state_changes_total", (("line", "carrier"), ("state", "retrying")))] == 1


def test_live_counters_uptime_gc_and_build_info(tmp_path):
    """Transactions, retransmissions, parse errors, GC pauses and uptime come from
    the switch's own counters at scrape time; build info names the version."""
    service, registry, _ = built(tmp_path)
    service.reactor.advance(90)
    service.engine.layer.message_received(request("OPTIONS"), UDP_PEER)
    service.engine.layer.message_received(request("OPTIONS"), UDP_PEER)  # a retransmission
    service.transport._datagram(SipDatagramProtocol(service.transport), b"garbage\r\n\r\n", "127.0.0.1", 5999)
    service.gc_watch.record(0.003, 0)
    service.gc_watch.record(0.2, 2)
    samples = scrape(registry)
    assert samples[("phpvoip_build_info", (("version", __version__),))] == 1
    assert samples[("phpvoip_uptime_seconds", ())] == 90
    assert samples[("phpvoip_transactions_active", (("side", "server"),))] == 1
    assert samples[("phpvoip_transactions_total", (("side", "server"),))] == 1
    assert samples[("phpvoip_transactions_total", (("side", "client"),))] == 0
    assert samples[("phpvoip_retransmissions_total", (("direction", "received"),))] == 1
    assert samples[("phpvoip_parse_errors_total", ())] == 1
    assert samples[("phpvoip_calls_active", ())] == 0
    assert samples[("phpvoip_gc_pause_seconds_count", ())] == 2
    assert samples[("phpvoip_gc_pause_seconds_bucket", (("le", "0.005"),))] == 1
    assert samples[("phpvoip_gc_pause_max_seconds", ())] == 0.2
    assert samples[("phpvoip_gc_collections_total", (("generation", "2"),))] == 1


class QueueModule:
    """A module offering the queue hooks with the least a row may hold (a queue
    and its callers waiting; an agent's queue and state): the other figures are absent."""

    name = "sales-queue"
    weight = 0

    def queue_stats(self):
        return [{"queue": "sales", "callers_waiting": 3}, {"queue": "support", "callers_waiting": 0}]

    def agent_stats(self):
        return [{"agent": "a1", "queue": "sales", "state": "busy"},
                {"agent": "a2", "queue": "sales", "state": "idle"},
                {"agent": "a3", "queue": "sales", "state": "busy"}]


def test_queues_appear_only_when_a_module_offers_them(tmp_path):
    """Without a queue module there is no queue family at all; with one, callers
    waiting per queue and agents per queue and state."""
    service, registry, _ = built(tmp_path)
    assert not any(name.startswith("phpvoip_queue") for name, _ in scrape(registry))
    service.engine.modules.append(QueueModule())
    samples = scrape(registry)
    assert samples[("phpvoip_queue_callers_waiting", (("queue", "sales"),))] == 3
    assert samples[("phpvoip_queue_callers_waiting", (("queue", "support"),))] == 0
    assert samples[("phpvoip_queue_agents", (("queue", "sales"), ("state", "busy")))] == 2
    assert samples[("phpvoip_queue_agents", (("queue", "sales"), ("state", "idle")))] == 1


def test_every_name_follows_the_conventions(tmp_path):
    """Every family is phpvoip_ or process_; counters end in _total; no label holds
    a Call-ID or a number."""
    service, registry, _ = built(tmp_path)
    service.engine.events.publish(ended(1, "ANSWERED", 200))
    from prometheus_client.exposition import generate_latest

    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    assert families
    for family in families:
        assert family.name.startswith(("phpvoip_", "process_")), family.name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name
            assert not any("cid-" in value or "2005" in value for value in sample.labels.values())


def render(resource: MetricsResource, path: bytes) -> tuple[int, bytes, bytes | None]:
    request = DummyRequest(path.strip(b"/").split(b"/"))
    request.path = path
    body = resource.render_GET(request)
    kind = request.responseHeaders.getRawHeaders(b"content-type", [None])[0]
    return request.responseCode or 200, body, kind


def test_resource_serves_its_path_and_404s_the_rest(tmp_path):
    """GET on the configured path gives the text format; any other path 404."""
    _, registry, _ = built(tmp_path)
    resource = MetricsResource(registry, "/stats/prom")
    code, body, kind = render(resource, b"/stats/prom")
    assert code == 200 and kind.startswith(b"text/plain; version=0.0.4")
    assert b"phpvoip_calls_active 0.0" in body
    for other in (b"/metrics", b"/", b"/stats/prom/x"):
        assert render(resource, other)[0] == 404


def test_config_adds_the_metrics_endpoint(tmp_path):
    """A metrics: section makes a child service on its listen address whose
    observer hears the engine's events."""
    text = CONFIG + 'metrics: {listen: "tcp:0:interface=127.0.0.1", path: /m}\n'
    path = tmp_path / "phpvoip.yaml"
    path.write_text(text)
    service = build_service(config.load(path), FakeReactor())
    [child] = [c for c in service.child_specs if c.key == "metrics.listen"]
    assert child.address == "tcp:0:interface=127.0.0.1"
    metrics = child.service.metrics
    assert metrics in service.engine.events.observers
    service.engine.events.publish(ended(1, "FAILED", 404))
    assert metrics.calls == {("failed", "4xx"): 1}
