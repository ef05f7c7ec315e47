"""The queue as a module of a built switch: found through the plugin, started on the
engine, observing its events, read by the metrics and the manhole's tables."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
from twisted.internet.task import Clock

from phpvoip import config
from phpvoip.apps.queue import Queue
from phpvoip.apps.queue_events import AgentStateChanged
from phpvoip.inspect import agents, queues, supervise_agent
from phpvoip.metrics import build_registry
from phpvoip.service import build_service
from tests.unit.test_metrics import scrape

CONFIG = """\
sip: {listen: [udp:127.0.0.1:25172]}
storage: memory
modules:
  - {type: queue, name: sales, number: "700", agents: ["1001", "1002"], dynamic_agents: ["1003"],
     ports: "46100-46109"}
"""


class FakeReactor(Clock):
    """The reactor as the service sees it before it binds anything."""


def built(tmp_path):
    path = tmp_path / "phpvoip.yaml"
    path.write_text(CONFIG)
    return build_service(config.load(path), FakeReactor())


def started(tmp_path):
    """The built switch, its queue started on the engine, and the events seen since."""
    service = built(tmp_path)
    [queue] = [m for m in service.engine.modules if isinstance(m, Queue)]
    seen: list = []
    service.engine.add_observer(SimpleNamespace(call_event=seen.append))
    queue.start(service.engine)
    return service, queue, seen


def test_config_builds_a_queue_module_through_the_plugin(tmp_path):
    """`type: queue` in the YAML makes a Queue answering 700 and the feature codes."""
    service = built(tmp_path)
    [queue] = [m for m in service.engine.modules if isinstance(m, Queue)]
    assert (queue.name, queue.number, queue.settings.strategy) == ("sales", "700", "ring-all")
    invite = SimpleNamespace(to=SimpleNamespace(uri=SimpleNamespace(user="*45700")))
    assert queue.handles(invite)
    invite.to.uri.user = "701"
    assert not queue.handles(invite)


def test_started_queue_observes_and_reports(tmp_path):
    """Started on the engine, the queue publishes its static agents' first state on
    the event stream; metrics and the manhole's tables read its figures."""
    service, queue, seen = started(tmp_path)
    try:
        assert [(e.agent, e.new) for e in seen if isinstance(e, AgentStateChanged)] == [
            ("1001", "available"), ("1002", "available")]
        registry, _ = build_registry(service)
        samples = scrape(registry)
        assert samples[("phpvoip_queue_callers_waiting", (("queue", "sales"),))] == 0
        assert samples[("phpvoip_queue_agents", (("queue", "sales"), ("state", "available")))] == 2
        table = queues(service.engine).text()
        assert "CALLERS WAITING" in table and "SERVICE LEVEL" in table
        assert agents(service.engine).text().count("available") == 2
        changed = replace(queue.settings, strategy="linear")
        assert queue.reconfigure(changed) and queue.logic.settings is changed  # in place: a reload
    finally:
        queue.stop()
    assert queue not in service.engine.events.observers


def test_a_supervisor_logs_agents_in_and_out_and_pauses_them(tmp_path):
    """inspect.supervise_agent (the manhole's agent_login/logout/pause/resume and the
    console's buttons): the agent's state after each action, per queue; why not when
    it cannot be done; a state change on the event stream for the console."""
    service, queue, seen = started(tmp_path)
    try:
        def result(*args, **kw):
            return supervise_agent(service.engine, *args, by="test", **kw).rows

        assert result("1001", "pause") == [("sales", "1001", "paused")]
        assert ("1001", "available", "paused") in [
            (e.agent, e.old, e.new) for e in seen if isinstance(e, AgentStateChanged)]
        assert result("1001", "pause") == [("sales", "1001", "paused")]  # already: no change
        assert result("1001", "resume", queue="700") == [("sales", "1001", "available")]
        assert result("1003", "pause") == [("sales", "1003", "agent 1003 is not logged in to queue sales")]
        assert result("1003", "login", queue="sales") == [("sales", "1003", "available")]
        assert result("1003", "logout") == [("sales", "1003", "logged-out")]
        assert result("1004", "login") == [("sales", "1004", "1004 is not an agent of queue sales")]
        assert "no action 'lunch'" in result("1001", "lunch")[0][2]
        with pytest.raises(LookupError):
            supervise_agent(service.engine, "1001", "pause", queue="701")
        rows = {r["agent"]: r for r in queue.agent_stats()}
        assert (rows["1001"]["state"], rows["1003"]["state"]) == ("available", "logged-out")
    finally:
        queue.stop()
