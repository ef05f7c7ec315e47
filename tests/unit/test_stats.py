"""The switch-wide counters: transaction totals and retransmissions, parse errors,
GC pauses, and `switch_stats` that reads them all."""

from __future__ import annotations

import gc

from twisted.internet.task import Clock

from phpvoip import config
from phpvoip.gcwatch import PAUSE_BUCKETS, GcWatch
from phpvoip.service import build_service
from phpvoip.sip.timers import Timers
from phpvoip.stats import switch_stats
from phpvoip.transport._udp import SipDatagramProtocol
from tests.unit.transaction_fakes import UDP_PEER, Responses, advance, answer, make_layer, request

CONFIG = """\
sip: {listen: [udp:127.0.0.1:25160]}
storage: memory
modules:
  - {type: registrar, name: office, users: {"201": {password: secret}}}
"""


class FakeReactor(Clock):
    """The reactor as the service sees it before it binds anything."""


def built(tmp_path):
    path = tmp_path / "phpvoip.yaml"
    path.write_text(CONFIG)
    return build_service(config.load(path), FakeReactor())


# -- the transaction layer's totals -------------------------------------------------


def test_started_transactions_are_counted_on_both_sides():
    """Every client and server transaction started adds one to its total, CANCEL
    included; the totals stay when the transactions end."""
    clock, _, user, layer = make_layer()
    layer.send_request(request("OPTIONS", branch="z9hG4bK-c1"), UDP_PEER, Responses())
    layer.message_received(request("INVITE"), UDP_PEER)
    layer.message_received(request("CANCEL"), UDP_PEER)
    totals = layer.totals()
    assert (totals["client_started"], totals["server_started"]) == (1, 2)
    advance(clock, 64 * Timers().t1 + 1)
    assert layer.counts() == {"client": 0, "server": 0}
    assert layer.totals()["server_started"] == 2


def test_timer_retransmissions_are_counted_as_sent():
    """Timer E resends an unanswered OPTIONS at 0.5, 1.5, 3.5, 7.5 s ...: each one
    counts, the first send does not."""
    clock, wire, _, layer = make_layer()
    layer.send_request(request("OPTIONS", branch="z9hG4bK-c1"), UDP_PEER, Responses())
    advance(clock, 4.0)
    assert len(wire.messages("OPTIONS")) == 4
    assert layer.totals()["retransmissions_sent"] == 3


def test_server_retransmits_final_until_ack_and_counts_duplicates():
    """A 486 resent by timer G counts as sent; the peer's repeated INVITE is a
    duplicate received, answered again (sent); a repeated ACK is a duplicate too."""
    clock, wire, user, layer = make_layer()
    layer.message_received(request("INVITE"), UDP_PEER)
    tx = user.requests[0][1]
    tx.respond(tx.request.response(486, to_tag="t"))
    advance(clock, 0.6)  # timer G once
    layer.message_received(request("INVITE"), UDP_PEER)  # the peer lost our 486
    assert len(wire.messages(486)) == 3
    layer.message_received(request("ACK", to_tag="t"), UDP_PEER)
    layer.message_received(request("ACK", to_tag="t"), UDP_PEER)
    totals = layer.totals()
    assert totals["retransmissions_sent"] == 2
    assert totals["retransmissions_received"] == 2  # the INVITE and the second ACK


def test_repeated_final_to_a_completed_client_is_a_duplicate():
    """A final response that comes again to a completed client transaction is
    counted as received; the INVITE's ACK sent again for it as sent."""
    _, wire, _, layer = make_layer()
    invite = request("INVITE", branch="z9hG4bK-c2")
    layer.send_request(invite, UDP_PEER, Responses())
    busy = answer(invite, 486)
    layer.message_received(busy, UDP_PEER)
    layer.message_received(busy, UDP_PEER)
    options = request("OPTIONS", branch="z9hG4bK-c3")
    layer.send_request(options, UDP_PEER, Responses())
    layer.message_received(answer(options, 200), UDP_PEER)
    layer.message_received(answer(options, 200), UDP_PEER)
    totals = layer.totals()
    assert len(wire.messages("ACK")) == 2
    assert (totals["retransmissions_received"], totals["retransmissions_sent"]) == (2, 1)


# -- the GC watch --------------------------------------------------------------------


class Ticks:
    """A clock that returns the instants it is given, one per call."""

    def __init__(self, *instants: float) -> None:
        self.instants = list(instants)

    def __call__(self) -> float:
        return self.instants.pop(0)


def test_gc_watch_times_each_collection():
    """From the start to the stop callback is one pause: counted, summed, the worst
    kept, and put in its histogram bucket."""
    watch = GcWatch(Ticks(10.0, 10.002, 20.0, 20.3))
    watch._callback("start", {"generation": 0})
    watch._callback("stop", {"generation": 0})
    watch._callback("start", {"generation": 2})
    watch._callback("stop", {"generation": 2})
    assert (watch.count, round(watch.total, 6), round(watch.worst, 6)) == (2, 0.302, 0.3)
    assert watch.by_generation == [1, 0, 1]
    assert watch.buckets[PAUSE_BUCKETS.index(0.0025)] == 1
    assert watch.buckets[PAUSE_BUCKETS.index(0.5)] == 1
    assert sum(watch.buckets) == 2


def test_gc_watch_ignores_a_stop_without_its_start():
    """Started in the middle of a collection, the watch does not invent a pause."""
    watch = GcWatch(Ticks())
    watch._callback("stop", {"generation": 1})
    assert watch.count == 0


def test_gc_watch_listens_only_while_started():
    """start() hangs on gc.callbacks once, stop() takes it off; a real collection
    in between is counted."""
    watch = GcWatch()
    before = len(gc.callbacks)
    watch.start()
    watch.start()
    assert len(gc.callbacks) == before + 1
    gc.collect()
    watch.stop()
    assert len(gc.callbacks) == before
    assert watch.count >= 1 and watch.worst > 0
    gc.collect()
    assert watch.count == sum(watch.buckets)


# -- switch_stats ---------------------------------------------------------------------


def test_switch_stats_reads_every_counter(tmp_path):
    """The figures come from the engine, the layer, the transport and the GC watch;
    uptime from the service's clock."""
    service = built(tmp_path)
    service.reactor.advance(42)
    service.gc_watch.record(0.004, 1)
    socket = SipDatagramProtocol(service.transport)
    service.transport._datagram(socket, b"NOT SIP AT ALL\r\n\r\n", "127.0.0.1", 5999)
    service.engine.layer.message_received(request("OPTIONS"), UDP_PEER)
    stats = switch_stats(service)
    assert stats == {
        "calls": 0, "legs": 0, "dialogs": 0, "registrations": 0,
        "client_transactions": 0, "server_transactions": 1,
        "client_transactions_started": 0, "server_transactions_started": 1,
        "retransmissions_sent": 0, "retransmissions_received": 0,
        "parse_errors": 1,
        "gc_pauses": 1, "gc_pause_seconds": 0.004, "gc_pause_worst_seconds": 0.004,
        "uptime_seconds": 42.0,
    }


def test_service_runs_the_gc_watch_while_it_runs(tmp_path):
    """The switch listens to the collector from startService to stopService."""
    service = built(tmp_path)
    for port in list(service):
        service.removeService(port)  # nothing binds on a Clock
    assert not service.gc_watch.running
    service.startService()
    assert service.gc_watch.running
    service.stopService()
    assert not service.gc_watch.running
