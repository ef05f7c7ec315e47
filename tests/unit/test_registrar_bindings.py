"""The binding table and its single expiry timer; contact comparison keys."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from phpvoip.modules.bindings import BindingTable, contact_key
from phpvoip.modules.throttle import AuthThrottle, ThrottleSettings
from phpvoip.sip.uri import parse_uri
from phpvoip.store import Binding


def make(aor: str, n: int, expires_at: float, q: float | None = None, registered_at: float = 0.0) -> Binding:
    key = f"sip:{aor}@192.0.2.{n}"
    return Binding(aor, key, key, expires_at, "cid", 1, q=q, registered_at=registered_at)


def table() -> tuple[BindingTable, Clock, list[Binding]]:
    clock = Clock()
    lapsed: list[Binding] = []
    return BindingTable(clock, lapsed.append), clock, lapsed


@pytest.mark.parametrize(
    "a, b",
    [
        ("sip:1001@Host.Example", "sip:1001@host.example"),
        ("sip:1001@host:5060;rinstance=1", "sip:1001@host:5060;rinstance=2"),
        ("sip:%31001@host", "sip:1001@host"),
        ("sip:1001@host;transport=UDP", "sip:1001@host;transport=udp"),
    ],
)
def test_equal_contacts_have_one_key(a, b):
    """URIs that §19.1.4 calls equal give the same key."""
    assert contact_key(parse_uri(a)) == contact_key(parse_uri(b))


@pytest.mark.parametrize(
    "a, b",
    [
        ("sip:1001@host", "sip:1001@host:5060"),
        ("sip:1001@host", "sip:1001@host;transport=tcp"),
        ("sip:Alice@host", "sip:alice@host"),
        ("sip:1001@host", "sips:1001@host"),
        ("sip:1001@host;maddr=10.0.0.1", "sip:1001@host"),
    ],
)
def test_different_contacts_have_different_keys(a, b):
    """Port present vs absent, transport, user case, scheme and maddr tell URIs apart."""
    assert contact_key(parse_uri(a)) != contact_key(parse_uri(b))


def test_put_get_remove():
    """put adds or replaces; get lists live bindings best q first; remove takes one out."""
    bindings, _, _ = table()
    bindings.put(make("1001", 1, 100, q=0.1))
    bindings.put(make("1001", 2, 100, q=0.9))
    old = bindings.put(make("1001", 1, 200, q=0.5))
    assert old is not None and old.expires_at == 100
    assert len(bindings) == 2 and bindings.aors == 1 and bindings.count("1001") == 2
    assert [b.q for b in bindings.get("1001")] == [0.9, 0.5]
    assert bindings.remove("1001", "sip:1001@192.0.2.2").q == 0.9
    assert bindings.remove("1001", "nothing") is None and bindings.remove("nobody", "x") is None
    assert len(bindings) == 1


def test_no_q_counts_as_one_and_newer_first():
    """A contact without q ranks as q=1.0; ties go to the most recent registration."""
    bindings, _, _ = table()
    bindings.put(make("1001", 1, 100, q=1.0, registered_at=1))
    bindings.put(make("1001", 2, 100, q=None, registered_at=5))
    bindings.put(make("1001", 3, 100, q=0.7, registered_at=9))
    assert [b.key[-1] for b in bindings.get("1001")] == ["2", "1", "3"]


def test_bindings_lapse_on_the_clock():
    """Each binding lapses at its expiry and is reported to on_expire."""
    bindings, clock, lapsed = table()
    bindings.put(make("1001", 1, 10))
    bindings.put(make("1002", 1, 20))
    clock.advance(10)
    assert [b.aor for b in lapsed] == ["1001"] and bindings.get("1001") == []
    clock.advance(10)
    assert [b.aor for b in lapsed] == ["1001", "1002"] and len(bindings) == 0 and bindings.aors == 0


def test_a_refresh_moves_the_expiry():
    """A binding refreshed before its expiry does not lapse at the old time."""
    bindings, clock, lapsed = table()
    bindings.put(make("1001", 1, 10))
    clock.advance(5)
    bindings.put(make("1001", 1, 30))
    clock.advance(10)
    assert lapsed == [] and len(bindings) == 1
    clock.advance(15)
    assert len(lapsed) == 1


def test_a_removed_binding_is_not_reported():
    """Removing a binding leaves its heap entry stale: nothing is reported later."""
    bindings, clock, lapsed = table()
    bindings.put(make("1001", 1, 10))
    bindings.remove("1001", "sip:1001@192.0.2.1")
    clock.advance(11)
    assert lapsed == [] and clock.getDelayedCalls() == []


def test_get_hides_lapsed_bindings_before_the_timer_runs():
    """get() never returns a binding past its expiry, even between timer runs."""
    bindings, clock, _ = table()
    bindings.put(make("1001", 1, 10))
    assert bindings.get("1001", now=10.5) == []


def test_one_timer_for_many_bindings_and_at_most_one_run_a_second():
    """100,000 bindings arm one DelayedCall; lapsing runs at most once per
    granularity, however the deadlines are spread."""
    bindings, clock, lapsed = table()
    for i in range(100_000):
        bindings.put(make(str(i), 1, 100 + (i % 1000) / 1000))
    assert len(clock.getDelayedCalls()) == 1
    runs = 0
    original = bindings._run

    def counting() -> None:
        nonlocal runs
        runs += 1
        original()

    bindings._run = counting  # type: ignore[method-assign]
    clock.pump([0.25] * 410)
    assert len(lapsed) == 100_000 and runs <= 2


def test_stale_entries_are_compacted():
    """Refreshing the same binding many times does not grow the heap without bound."""
    bindings, clock, _ = table()
    for i in range(5000):
        bindings.put(make("1001", 1, 1000 + i))
    assert bindings.heap_size <= 2 * len(bindings) + 1025


def test_stop_cancels_the_timer():
    """stop() leaves no DelayedCall behind."""
    bindings, clock, _ = table()
    bindings.put(make("1001", 1, 10))
    bindings.stop()
    assert clock.getDelayedCalls() == []


def test_an_earlier_deadline_rearms_the_timer():
    """A new binding that lapses sooner than the armed time pulls the timer in."""
    bindings, clock, lapsed = table()
    bindings.put(make("1001", 1, 100))
    bindings.put(make("1002", 1, 5))
    clock.advance(5)
    assert [b.aor for b in lapsed] == ["1002"]
    assert len(clock.getDelayedCalls()) == 1


def test_throttle_table_is_bounded():
    """Beyond max_sources the least recent source is forgotten."""
    throttle = AuthThrottle(Clock(), ThrottleSettings(limit=5), max_sources=3)
    for host in ("a", "b", "c", "d"):
        throttle.failed(host)
    assert len(throttle) == 3


def test_an_aor_grows_and_shrinks_between_one_and_several_contacts():
    """An AOR's contacts can be added and removed in any order and stay findable
    (one contact is kept without a per-AOR dict)."""
    bindings, clock, lapsed = table()
    first, second, third = make("1001", 1, 100), make("1001", 2, 50), make("1001", 3, 100)
    for b in (first, second, third):
        bindings.put(b)
    assert bindings.count("1001") == 3 and [b for b in bindings] == [first, second, third]
    assert bindings.remove("1001", first.key) is first
    clock.advance(60)
    assert lapsed == [second] and bindings.count("1001") == 1
    assert bindings.lookup("1001", third.key) is third and bindings.lookup("1001", first.key) is None
    assert bindings.remove("1001", first.key) is None
    replacement = make("1001", 3, 200)
    assert bindings.put(replacement) is third and bindings.get("1001") == [replacement]
    assert bindings.remove("1001", third.key) is replacement and bindings.aors == 0 and len(bindings) == 0
