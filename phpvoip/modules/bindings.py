"""The registrar's table of live bindings, and the one timer that lapses them.

Bindings are kept per address-of-record in a dict keyed by `contact_key`. Expiry
runs on a single heap of ``(expires_at, sequence, binding)`` entries and a single
`DelayedCall` armed for the earliest deadline, never sooner than `granularity`
seconds after the previous run: 100,000 bindings cost one timer, and lapsing them
costs O(log n) each. A refresh does not search the heap; it pushes a new entry and
the old one is recognised as stale when it comes up (its binding is no longer the
one in the table). When stale entries outnumber live ones, the heap is rebuilt.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from phpvoip.sip.uri import URI, unescape
from phpvoip.store import Binding

__all__ = ["BindingTable", "contact_key"]

# §19.1.4: these URI parameters must match when either URI has them; any other
# parameter takes part only when both have it, which a key cannot express, so
# the key leaves the others out (a phone's changing ;rinstance= does not make a
# second binding).
_COMPARED_PARAMS = ("transport", "user", "ttl", "method", "maddr")


def contact_key(uri: URI) -> str:
    """A text that is equal for contact URIs that RFC 3261 §19.1.4 calls equal:
    scheme and host without case, user part unescaped and with case, the port as
    written (an omitted port does not equal an explicit 5060), and the
    parameters that must always match."""
    if not uri.is_sip:
        return f"{uri.scheme}:{unescape(uri.opaque or '')}"
    user = unescape(uri.user) if uri.user is not None else ""
    port = "" if uri.port is None else f":{uri.port}"
    key = f"{uri.scheme}:{user}@{uri.host.lower()}{port}"
    params = uri.params
    for name in _COMPARED_PARAMS:
        value = params.get(name)
        if value is not None:
            key += f";{name}={value.lower() if name != 'user' else value}"
    return key


class BindingTable:
    """Live bindings by address-of-record, lapsed by one timer on `clock`.

    `on_expire` hears each binding that lapses (to delete it from the store)."""

    def __init__(
        self,
        clock: Any,
        on_expire: Callable[[Binding], None] | None = None,
        granularity: float = 1.0,
    ) -> None:
        self.clock = clock
        self.on_expire = on_expire
        self.granularity = granularity
        # aor -> its one Binding, or {key: Binding} when it has several (a dict
        # per AOR would cost more than the binding itself)
        self._aors: dict[str, Binding | dict[str, Binding]] = {}
        self._heap: list[tuple[float, int, Binding]] = []
        self._sequence = itertools.count()
        self._count = 0
        self._timer: Any = None
        self._timer_at = float("inf")
        self._last_run = float("-inf")

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<BindingTable aors={len(self._aors)} bindings={self._count}>"

    @property
    def aors(self) -> int:
        return len(self._aors)

    @property
    def heap_size(self) -> int:
        return len(self._heap)

    # -- reading -----------------------------------------------------------------

    def _all(self, aor: str) -> Iterable[Binding]:
        entry = self._aors.get(aor)
        if entry is None:
            return ()
        if entry.__class__ is Binding:
            return (entry,)  # type: ignore[return-value]
        return entry.values()  # type: ignore[union-attr]

    def get(self, aor: str, now: float | None = None) -> list[Binding]:
        """The live bindings of `aor`, highest q first (no q counts as 1.0), then
        the most recently registered first."""
        if aor not in self._aors:
            return []
        if now is None:
            now = self.clock.seconds()
        live = [b for b in self._all(aor) if b.expires_at > now]
        if len(live) > 1:
            live.sort(key=lambda b: (-(1.0 if b.q is None else b.q), -b.registered_at))
        return live

    def lookup(self, aor: str, key: str) -> Binding | None:
        entry = self._aors.get(aor)
        if entry is None:
            return None
        if entry.__class__ is Binding:
            return entry if entry.key == key else None  # type: ignore[union-attr,return-value]
        return entry.get(key)  # type: ignore[union-attr]

    def __iter__(self) -> Iterator[Binding]:
        for entry in self._aors.values():
            if entry.__class__ is Binding:
                yield entry  # type: ignore[misc]
            else:
                yield from entry.values()  # type: ignore[union-attr]

    def count(self, aor: str) -> int:
        entry = self._aors.get(aor)
        if entry is None:
            return 0
        return 1 if entry.__class__ is Binding else len(entry)  # type: ignore[arg-type]

    # -- changing ------------------------------------------------------------------

    def put(self, binding: Binding) -> Binding | None:
        """Add or replace a binding; returns the one it replaced."""
        aors = self._aors
        aor, key = binding.aor, binding.key
        entry = aors.get(aor)
        old = None
        if entry is None:
            aors[aor] = binding
        elif entry.__class__ is Binding:
            if entry.key == key:  # type: ignore[union-attr]
                old = entry
                aors[aor] = binding
            else:
                aors[aor] = {entry.key: entry, key: binding}  # type: ignore[union-attr,dict-item]
        else:
            old = entry.get(key)  # type: ignore[union-attr]
            entry[key] = binding  # type: ignore[index]
        if old is None:
            self._count += 1
        heapq.heappush(self._heap, (binding.expires_at, next(self._sequence), binding))
        if len(self._heap) > 2 * self._count + 1024:
            self._rebuild()
        self._arm(binding.expires_at)
        return old  # type: ignore[return-value]

    def remove(self, aor: str, key: str) -> Binding | None:
        """Remove one binding (its heap entry turns stale); returns it, if any."""
        aors = self._aors
        entry = aors.get(aor)
        if entry is None:
            return None
        if entry.__class__ is Binding:
            if entry.key != key:  # type: ignore[union-attr]
                return None
            del aors[aor]
            self._count -= 1
            return entry  # type: ignore[return-value]
        binding = entry.pop(key, None)  # type: ignore[union-attr]
        if binding is not None:
            self._count -= 1
            if len(entry) == 1:  # type: ignore[arg-type]
                aors[aor] = next(iter(entry.values()))  # type: ignore[union-attr]
        return binding

    def expire(self, now: float | None = None) -> list[Binding]:
        """Take out every binding lapsed at `now`; tell `on_expire` of each."""
        if now is None:
            now = self.clock.seconds()
        heap = self._heap
        lapsed = []
        while heap and heap[0][0] <= now:
            binding = heapq.heappop(heap)[2]
            if self.lookup(binding.aor, binding.key) is not binding:
                continue  # refreshed or removed since this entry was pushed
            self.remove(binding.aor, binding.key)
            lapsed.append(binding)
        if self.on_expire is not None:
            for binding in lapsed:
                self.on_expire(binding)
        return lapsed

    def stop(self) -> None:
        """Cancel the timer (the table keeps its contents)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timer_at = float("inf")

    # -- the timer -------------------------------------------------------------------

    def _arm(self, deadline: float) -> None:
        # Never run more often than every `granularity` seconds.
        deadline = max(deadline, self._last_run + self.granularity)
        if deadline >= self._timer_at:
            return
        delay = max(deadline - self.clock.seconds(), 0.0)
        if self._timer is not None and self._timer.active():
            self._timer.reset(delay)
        else:
            self._timer = self.clock.callLater(delay, self._run)
        self._timer_at = deadline

    def _run(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        now = self.clock.seconds()
        self._last_run = now
        self.expire(now)
        while self._heap:
            head = self._heap[0][2]
            if self.lookup(head.aor, head.key) is head:
                self._arm(self._heap[0][0])
                break
            heapq.heappop(self._heap)  # stale: no need to wake up for it

    def compact(self) -> int:
        """Drop the heap's stale entries now (refreshed or removed bindings, which
        otherwise wait for the next rebuild); returns how many went. For a soak
        that counts what the switch really keeps."""
        before = len(self._heap)
        self._rebuild()
        return before - len(self._heap)

    def _rebuild(self) -> None:
        self._heap = [(b.expires_at, next(self._sequence), b) for b in self]
        heapq.heapify(self._heap)
