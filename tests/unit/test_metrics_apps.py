"""The applications in /metrics: a real queue and a real attendant, modules of a built
switch on task.Clock, driven with fake calls; their figures read back from the text
exposition of a scrape."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.internet.task import Clock

from phpvoip import config
from phpvoip.apps.attendant import Attendant
from phpvoip.apps.queue import Queue
from phpvoip.metrics import build_registry
from phpvoip.service import build_service
from tests.unit import attendant_fakes, queue_fakes
from tests.unit.test_attendant import run
from tests.unit.test_metrics import scrape

CONFIG = """\
sip: {listen: [udp:127.0.0.1:25174]}
storage: memory
modules:
  - {type: queue, name: sales, number: "700", agents: ["1001", "1002"], strategy: linear,
     service_level: 10, retry_delay: 4, announce_frequency: 0, ports: "46110-46119"}
  - {type: attendant, name: front, number: "800", menu: {"1": "1001", "2": {menu: support}},
     menus: {support: {options: {"1": "1002"}}}, ports: "46120-46129"}
"""


def built(tmp_path, text: str = CONFIG):
    path = tmp_path / "phpvoip.yaml"
    path.write_text(text)
    service = build_service(config.load(path), Clock())
    registry, _ = build_registry(service)
    return service, registry


def sample(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_queue_figures_in_the_exposition(tmp_path):
    """Answered in and out of the service level, a missed offer, an abandoned caller
    and one still waiting: callers by outcome, waits, service level, agents and each
    agent's calls and talk time, as counters and gauges with their units."""
    service, registry = built(tmp_path)
    [queue] = [m for m in service.engine.modules if isinstance(m, Queue)]
    queue.start(service.engine)
    try:
        clock = service.reactor
        switch = queue_fakes.Switch(clock, queue.logic)
        for wait, talk in ((5, 60), (15, 30)):  # 1001 answers both (linear: the first agent)
            call = queue_fakes.join(queue.logic, switch)
            clock.advance(wait)
            call.agent_answers("1001")
            switch.transferred(call.id, "1001", "switch")
            clock.advance(talk)
            switch.end(call.id)
            clock.advance(60)  # past wrap-up
        missed = queue_fakes.join(queue.logic, switch, "2002")
        assert missed.ringing == "1001"
        missed.agents_miss(486)  # 1001 rests; 1002 is offered next
        clock.advance(0)
        missed.gone()
        switch.end(missed.id)
        waiting = queue_fakes.join(queue.logic, switch, "2003")
        clock.advance(7)

        samples = scrape(registry)
        outcomes = {o: sample(samples, "phpvoip_queue_callers_total", queue="sales", outcome=o)
                    for o in ("answered", "abandoned", "timed_out", "exited", "emptied", "refused")}
        assert outcomes == {"answered": 2, "abandoned": 1, "timed_out": 0, "exited": 0, "emptied": 0,
                            "refused": 0}
        assert sample(samples, "phpvoip_queue_callers_waiting", queue="sales") == 1
        assert sample(samples, "phpvoip_queue_longest_wait_seconds", queue="sales") == 7
        assert sample(samples, "phpvoip_queue_service_level_ratio", queue="sales") == 0.5
        assert sample(samples, "phpvoip_queue_holdtime_seconds", queue="sales") == (3 * 5 + 15) / 4
        assert sample(samples, "phpvoip_queue_agents_logged_in", queue="sales") == 2
        assert waiting.ringing == "1002"  # 1001 rested retry_delay after its miss; now free again
        assert sample(samples, "phpvoip_queue_agents_available", queue="sales") == 1
        agent_calls = {(a, o): sample(samples, "phpvoip_queue_agent_calls_total", queue="sales", agent=a,
                                      outcome=o)
                       for a in ("1001", "1002") for o in ("answered", "missed")}
        assert agent_calls == {("1001", "answered"): 2, ("1001", "missed"): 1, ("1002", "answered"): 0,
                               ("1002", "missed"): 0}
        assert sample(samples, "phpvoip_queue_agent_talk_seconds_total", queue="sales", agent="1001") == 90
        assert sample(samples, "phpvoip_queue_agent_talk_seconds_total", queue="sales", agent="1002") == 0
    finally:
        queue.stop()


def test_service_level_has_no_sample_before_the_first_answer(tmp_path):
    """A fresh queue: zero counts and waits, but no service level (0 would read as bad)."""
    service, registry = built(tmp_path)
    [queue] = [m for m in service.engine.modules if isinstance(m, Queue)]
    queue.start(service.engine)
    try:
        samples = scrape(registry)
        assert sample(samples, "phpvoip_queue_callers_total", queue="sales", outcome="answered") == 0
        assert sample(samples, "phpvoip_queue_longest_wait_seconds", queue="sales") == 0
        assert sample(samples, "phpvoip_queue_agents_available", queue="sales") == 2
        assert not any(name == "phpvoip_queue_service_level_ratio" for name, _ in samples)
    finally:
        queue.stop()


def test_attendant_figures_in_the_exposition(tmp_path):
    """Callers by menu (every menu, 0 included), calls by outcome and the counted
    events, labelled with the attendant's module name."""
    service, registry = built(tmp_path)
    [front] = [m for m in service.engine.modules if isinstance(m, Attendant)]
    front.start(service.engine)
    clock = front.reactor
    samples = scrape(registry)
    assert sample(samples, "phpvoip_attendant_callers", attendant="front", menu="main") == 0
    assert sample(samples, "phpvoip_attendant_callers", attendant="front", menu="support") == 0

    bridged = attendant_fakes.FakeCall(clock, reachable=("1001",))
    done = defer.ensureDeferred(front.run(bridged))
    staying = attendant_fakes.FakeCall(clock, caller="2002")
    defer.ensureDeferred(front.run(staying))
    leaving = attendant_fakes.FakeCall(clock, caller="2003")
    gone = defer.ensureDeferred(front.run(leaving))
    clock.advance(0.5)
    staying.press("2")
    leaving.press("7")  # no such option: invalid
    bridged.press("1")
    run(front, 2 + attendant_fakes.RING_SECONDS)  # "transferring" (a second), then the ring
    assert done.called
    leaving.caller_hangs_up()
    assert gone.called

    samples = scrape(registry)
    assert sample(samples, "phpvoip_attendant_callers", attendant="front", menu="main") == 0
    assert sample(samples, "phpvoip_attendant_callers", attendant="front", menu="support") == 1
    outcomes = {o: sample(samples, "phpvoip_attendant_calls_total", attendant="front", outcome=o)
                for o in ("bridged", "transferred", "operator", "goodbye", "abandoned", "failed")}
    assert outcomes == {"bridged": 1, "transferred": 0, "operator": 0, "goodbye": 0, "abandoned": 1,
                        "failed": 0}
    assert sample(samples, "phpvoip_attendant_events_total", attendant="front", event="invalid") == 1
    assert sample(samples, "phpvoip_attendant_events_total", attendant="front", event="direct") == 0
    staying.caller_hangs_up()


def test_application_families_say_what_they_are(tmp_path):
    """Every queue and attendant family has HELP text and its type; counters' samples
    end in _total, gauges of time in _seconds, the service level in _ratio."""
    service, registry = built(tmp_path)
    started = [m for m in service.engine.modules if isinstance(m, Queue | Attendant)]
    for module in started:
        module.start(service.engine)
    try:
        text = generate_latest(registry).decode()
    finally:
        for module in started:
            module.stop()
    families = {f.name: f for f in text_string_to_metric_families(text)
                if f.name.startswith(("phpvoip_queue", "phpvoip_attendant"))}
    assert len(families) == 13  # 10 queue, 3 attendant (counters named without _total), sorted(families)
    for name, family in families.items():
        assert family.documentation and f"# TYPE {name}" in text, name
        for one in family.samples:
            assert one.name.endswith("_total") == (family.type == "counter"), one.name
    gauges = ("phpvoip_queue_longest_wait_seconds", "phpvoip_queue_holdtime_seconds",
              "phpvoip_queue_service_level_ratio", "phpvoip_attendant_callers")
    assert {families[n].type for n in gauges} == {"gauge"}


def test_no_application_families_without_the_modules(tmp_path):
    """A switch with neither module has no queue or attendant family at all."""
    service, registry = built(tmp_path, "sip: {listen: [udp:127.0.0.1:25174]}\nstorage: memory\n")
    names = {name for name, _ in scrape(registry)}
    assert names and not any(n.startswith(("phpvoip_queue", "phpvoip_attendant")) for n in names)
