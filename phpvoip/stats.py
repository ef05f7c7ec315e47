"""The switch-wide figures: what the manhole's ``stats()`` prints and the metrics
endpoint exports beside what it learns from the events.

Nothing here counts: the counters are plain integers kept where things happen (the
transaction layer, the transport's receive path, the GC watch), and this module
only reads them, so a scrape or a ``stats()`` costs the hot path nothing.
"""

from __future__ import annotations

import gc
from typing import Any

__all__ = ["gc_objects", "registrations", "switch_stats"]


def registrations(engine: Any) -> int:
    """Bindings held across the registrar modules (those whose `counts()` says
    ``bindings``)."""
    total = 0
    for module in engine.modules:
        counts = getattr(module, "counts", None)
        if counts is None:
            continue
        bindings = counts().get("bindings")
        if bindings is not None:
            total += bindings
    return total


def gc_objects() -> int:
    """Objects the cyclic collector tracks, in every generation and frozen: what a
    soak watches for leaks (bench/soak.py reads it through the manhole). Not in
    `switch_stats` nor the metrics: it walks the list of every tracked object, about
    150 ms at 10,000 calls, which on the reactor thread delayed call setups."""
    return gc.get_freeze_count() + sum(len(gc.get_objects(generation)) for generation in range(3))


def switch_stats(service: Any) -> dict[str, float | int]:
    """The figures of `service` (a `phpvoip.service.SwitchService`) now.

    Live objects (return to zero when idle): ``calls``, ``legs``, ``dialogs``,
    ``client_transactions``, ``server_transactions``, ``registrations``.
    Totals since start (only grow): ``client_transactions_started``,
    ``server_transactions_started``, ``retransmissions_sent`` (requests and
    responses our timers sent again, and answers repeated to a peer that repeated
    itself), ``retransmissions_received`` (duplicates absorbed or answered again),
    ``parse_errors`` (messages answered 400/513 or dropped because they could not
    be read), ``gc_pauses``, ``gc_pause_seconds``, ``gc_pause_worst_seconds``.
    And ``uptime_seconds``, by the switch's clock.
    """
    engine = service.engine
    stats: dict[str, float | int] = dict(engine.counts())
    stats["registrations"] = registrations(engine)
    totals = engine.layer.totals()
    stats["client_transactions_started"] = totals["client_started"]
    stats["server_transactions_started"] = totals["server_started"]
    stats["retransmissions_sent"] = totals["retransmissions_sent"]
    stats["retransmissions_received"] = totals["retransmissions_received"]
    stats["parse_errors"] = service.transport.parse_errors
    stats.update(service.gc_watch.snapshot())
    stats["uptime_seconds"] = service.reactor.seconds() - service.started_at
    return stats
