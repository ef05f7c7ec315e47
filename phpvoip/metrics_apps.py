"""The applications' metrics: queues and auto attendants, read at each scrape.

The figures live in the applications (their counters, their callers); this module
keeps none. A module offering ``queue_stats()`` / ``agent_stats()`` (the queue,
`phpvoip.apps.queue`) or ``attendant_stats()`` (the attendant,
`phpvoip.apps.attendant`) is read at scrape time, the same methods the manhole's
tables read, and its families are absent while no module offers them.
`phpvoip.metrics` lists the names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["QUEUE_OUTCOMES", "attendant_families", "queue_families"]

# What became of a queue's callers: the keys of a queue_stats() row (its counters).
QUEUE_OUTCOMES: tuple[str, ...] = ("answered", "abandoned", "timed_out", "exited", "emptied", "refused")

# Per agent: the counters of an agent_stats() row that count offers.
AGENT_OUTCOMES: tuple[str, ...] = ("answered", "missed")

# An attendant's counted events other than the outcome (see Attendant.stats()).
ATTENDANT_EVENTS: tuple[str, ...] = ("closed", "direct", "no_input", "invalid", "unavailable")


def _rows(engine: Any, method: str) -> tuple[bool, list[tuple[Any, Mapping[str, Any]]]]:
    """Whether any module offers `method`, and its rows with the module."""
    offered = False
    rows: list[tuple[Any, Mapping[str, Any]]] = []
    for module in engine.modules:
        stats = getattr(module, method, None)
        if stats is not None:
            offered = True
            rows.extend((module, row) for row in stats())
    return offered, rows


def queue_families(engine: Any) -> Iterator[Metric]:
    """Each queue's callers, waits, agents and outcomes, and each agent's calls and
    talk time. A row lacking a figure (a module reporting less) has no sample
    there; the families are there whenever a module offers the method."""
    offered, queues = _rows(engine, "queue_stats")
    if offered:
        yield from _queue_rows([row for _, row in queues])
    offered, agents = _rows(engine, "agent_stats")
    if offered:
        yield from _agent_rows([row for _, row in agents])


def _queue_rows(rows: list[Mapping[str, Any]]) -> Iterator[Metric]:
    waiting = GaugeMetricFamily("phpvoip_queue_callers_waiting", "Callers waiting in each queue.",
                                labels=["queue"])
    longest = GaugeMetricFamily("phpvoip_queue_longest_wait_seconds", "How long the caller waiting "
                                "longest in each queue has waited (0 with nobody waiting).", labels=["queue"])
    level = GaugeMetricFamily("phpvoip_queue_service_level_ratio", "Share (0..1) of each queue's answered "
                              "callers answered within its service_level seconds; no sample before the "
                              "first answered caller.", labels=["queue"])
    hold = GaugeMetricFamily("phpvoip_queue_holdtime_seconds", "Moving average of the waits of each "
                             "queue's answered callers (as app_queue's holdtime: 3/4 old, 1/4 new).",
                             labels=["queue"])
    logged_in = GaugeMetricFamily("phpvoip_queue_agents_logged_in", "Each queue's agents logged in "
                                  "(paused or not).", labels=["queue"])
    available = GaugeMetricFamily("phpvoip_queue_agents_available", "Each queue's agents that may be "
                                  "offered a caller now.", labels=["queue"])
    callers = CounterMetricFamily("phpvoip_queue_callers", "Callers that left each queue (or were "
                                  "refused), by outcome: answered, abandoned, timed_out (max_wait), "
                                  "exited (exit digit), emptied (the last agent left), refused (full, or "
                                  "join_empty with no agent).", labels=["queue", "outcome"])
    gauges = ((waiting, "callers_waiting", 1.0), (longest, "longest_wait", 1.0),
              (level, "service_level", 0.01), (hold, "holdtime", 1.0), (logged_in, "agents_logged_in", 1.0),
              (available, "agents_available", 1.0))
    for row in rows:
        queue = str(row["queue"])
        for family, key, scale in gauges:
            value = row.get(key)
            if value is not None:
                family.add_metric([queue], value * scale)
        for outcome in QUEUE_OUTCOMES:
            if row.get(outcome) is not None:
                callers.add_metric([queue, outcome], row[outcome])
    yield waiting
    for family, _, _ in gauges[1:]:
        yield family
    yield callers


def _agent_rows(rows: list[Mapping[str, Any]]) -> Iterator[Metric]:
    by_state: dict[tuple[str, str], int] = {}
    calls = CounterMetricFamily("phpvoip_queue_agent_calls", "Queue callers offered to each agent, by "
                                "outcome: answered, missed (not answered, or refused).",
                                labels=["queue", "agent", "outcome"])
    talk = CounterMetricFamily("phpvoip_queue_agent_talk_seconds", "Seconds each agent spent talking to "
                               "its queue's callers (the call in progress included).",
                               labels=["queue", "agent"])
    for row in rows:
        queue = str(row["queue"])
        key = (queue, str(row["state"]))
        by_state[key] = by_state.get(key, 0) + 1
        agent = row.get("agent")
        if agent is None:
            continue
        for outcome in AGENT_OUTCOMES:
            if row.get(outcome) is not None:
                calls.add_metric([queue, str(agent), outcome], row[outcome])
        if row.get("talk_time") is not None:
            talk.add_metric([queue, str(agent)], row["talk_time"])
    family = GaugeMetricFamily("phpvoip_queue_agents", "Queue agents, by queue and state.",
                               labels=["queue", "state"])
    for (queue, state), count in sorted(by_state.items()):
        family.add_metric([queue, state], count)
    yield family
    yield calls
    yield talk


def attendant_families(engine: Any) -> Iterator[Metric]:
    """Each attendant's callers in its menus (every menu, 0 included) and what its
    calls ended with. Read from the module's ``stats()`` (the structured figures its
    ``attendant_stats()`` row is made of), labelled with the module's name."""
    offered, _ = _rows(engine, "attendant_stats")
    if not offered:
        return
    in_menu = GaugeMetricFamily("phpvoip_attendant_callers", "Callers in each attendant's menus now, "
                                "by menu.", labels=["attendant", "menu"])
    ended = CounterMetricFamily("phpvoip_attendant_calls", "Calls each attendant finished, by outcome: "
                                "bridged, transferred, operator, goodbye, abandoned, failed.",
                                labels=["attendant", "outcome"])
    events = CounterMetricFamily("phpvoip_attendant_events", "What happened in each attendant's calls: "
                                 "closed (out-of-hours menu), direct (a number dialled directly), "
                                 "no_input, invalid (wrong key), unavailable (a target that failed).",
                                 labels=["attendant", "event"])
    for module in engine.modules:
        if getattr(module, "attendant_stats", None) is None:
            continue
        stats = module.stats()
        name = str(module.name)
        by_menu: dict[str, int] = dict(stats.get("by_menu", {}))
        menus = getattr(getattr(module, "settings", None), "menus", None) or {}
        for menu in sorted(set(menus) | set(by_menu)):
            in_menu.add_metric([name, str(menu)], by_menu.get(menu, 0))
        for outcome, count in stats.get("outcomes", {}).items():
            ended.add_metric([name, outcome], count)
        for event in ATTENDANT_EVENTS:
            if event in stats:
                events.add_metric([name, event], stats[event])
    yield in_menu
    yield ended
    yield events
