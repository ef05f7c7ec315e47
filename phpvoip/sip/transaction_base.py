"""What the four RFC 3261 §17 transaction machines share.

Each machine is one class whose transitions are a literal table, ``{state: {event:
handler name}}``, written out at the top of the class; `_Transaction._event` looks the
pair up and raises `TransactionStateError` naming machine, state and event when the
table has no entry (an event the machine cannot take in that state is a bug, not
something to ignore silently). Timers are named after the RFC's letters and kept by the
layer's `TimerQueue` on one reactor timer; a firing timer is just another event
(``timer_A`` ...).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from heapq import heapify, heappop, heappush
from typing import TYPE_CHECKING, Any, ClassVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from phpvoip.sip.address import Address
from phpvoip.sip.errors import LocalProtocolError
from phpvoip.sip.ids import MAGIC_COOKIE, new_branch, new_tag
from phpvoip.sip.message import Request, Response

if TYPE_CHECKING:
    from phpvoip.sip.transaction import TransactionLayer

__all__ = [
    "MAGIC_COOKIE",
    "TRYING_DELAY",
    "LocalResponse",
    "TimerQueue",
    "TransactionState",
    "TransactionStateError",
    "is_local",
    "local_response",
    "new_branch",
    "new_tag",
]

# §17.2.1: the server INVITE transaction answers 100 Trying itself when the TU has
# not answered within 200 ms.
TRYING_DELAY = 0.2


class TransactionState(Enum):
    """Every state any of the four machines can be in (each uses a subset)."""

    HELD = "held"  # a CANCEL waiting for its INVITE's first provisional (§9.1)
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"  # RFC 6026
    TERMINATED = "terminated"


class TransactionStateError(LocalProtocolError):
    """A machine was given an event its table has no entry for in its current state."""

    def __init__(self, machine: str, state: TransactionState, event: str) -> None:
        super().__init__(f"{machine} in state {state.name} cannot take event {event!r}")
        self.machine = machine
        self.state = state
        self.event = event


class LocalResponse(Response):
    """A response the transaction layer made up and handed to its user: 408 on
    timeout, 503 on a transport error, 481/487 around CANCEL. Never on the wire."""

    __slots__ = ()

    local = True


def is_local(response: Response) -> bool:
    """True for a response synthesized by this side rather than received."""
    return isinstance(response, LocalResponse)


def local_response(request: Request, status: int, reason: str | None = None) -> LocalResponse:
    """A `LocalResponse` with the headers a real answer to `request` would carry."""
    response = LocalResponse(status, reason)
    response.fields = request.response(status).fields
    return response


def is_reliable(address: Address) -> bool:
    """Everything but UDP retransmits by itself (§17.1.1.2, §17.2.1)."""
    return address.transport != "udp"


_NO_TRANSITIONS: dict[str, str] = {}

# A timer of the queue: [deadline, sequence number, transaction or None once
# cancelled or fired, timer name]. A list, so that cancelling is one store.
_Entry = list


class TimerQueue:
    """All the RFC timers of one transaction layer, on a single reactor timer.

    Why: a `callLater` is a DelayedCall with its own dict, arguments and three
    bound methods, and it stays in the reactor's heap until its time even when
    cancelled. Every call through the switch starts about nine transaction timers,
    three of which run for 64*T1; at a few hundred calls per second that is tens
    of thousands of live objects, every one walked by each full garbage collection
    (which then paused the switch past T1) and compared in Python by the reactor's
    heap. Here a timer is one small list in a heap of our own, and the reactor
    holds one call, for the earliest deadline.

    Cancelling marks the entry dead; dead entries leave when they reach the top,
    or all at once when they outnumber the live ones. When nothing is left the
    reactor call is cancelled too, so an idle layer leaves no delayed call behind.
    """

    __slots__ = ("_clock", "_heap", "_seq", "_call", "_live", "_dead", "_firing")

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._heap: list[_Entry] = []
        self._seq = 0
        self._call: IDelayedCall | None = None
        self._live = 0
        self._dead = 0
        self._firing = False  # inside _fire, which places the next call itself

    def __len__(self) -> int:
        """Timers armed and not yet fired or cancelled."""
        return self._live

    def arm(self, delay: float, transaction: _Transaction, name: str) -> _Entry:
        """Call ``transaction._timer_fired(name)`` `delay` seconds from now."""
        when = self._clock.seconds() + delay
        self._seq += 1
        entry = [when, self._seq, transaction, name]
        heappush(self._heap, entry)
        self._live += 1
        call = self._call
        if self._firing:
            pass
        elif call is None:
            self._call = self._clock.callLater(delay, self._fire)
        elif when < call.getTime():
            call.reset(delay)
        return entry

    def cancel(self, entry: _Entry) -> None:
        if entry[2] is None:
            return
        entry[2] = None
        self._live -= 1
        self._dead += 1
        if self._live == 0:
            self._heap.clear()
            self._dead = 0
            if self._call is not None:
                self._call.cancel()
                self._call = None
        elif self._dead > 64 and self._dead > self._live:
            heap = self._heap  # in place: _fire may be walking it
            heap[:] = [e for e in heap if e[2] is not None]
            heapify(heap)
            self._dead = 0

    def _fire(self) -> None:
        self._call = None
        self._firing = True
        heap = self._heap
        now = self._clock.seconds()
        try:
            # Every due timer, earliest first; a handler may arm new ones.
            while heap and heap[0][0] <= now:
                entry = heappop(heap)
                transaction = entry[2]
                if transaction is None:
                    self._dead -= 1
                    continue
                entry[2] = None
                self._live -= 1
                transaction._timer_fired(entry[3])
        finally:
            # An exception goes to the reactor, which logs it; the rest still run.
            self._firing = False
            while heap and heap[0][2] is None:
                heappop(heap)
                self._dead -= 1
            if heap:
                when = heap[0][0]
                call = self._clock.callLater(max(0.0, when - now), self._fire)
                if when > now and call.getTime() != when:
                    # now + (when - now) can round off `when`, and a clock that
                    # stops exactly at a deadline must see its timer fire then.
                    call.time = when  # type: ignore[attr-defined]
                self._call = call


class _Transaction:
    """Dispatch, timers and termination; subclasses bring the table and handlers."""

    __slots__ = ("_layer", "_calls", "state", "request", "reliable", "branch", "method", "call_id")

    # {state: {event: handler method name}}; the handler takes the event's argument.
    TABLE: ClassVar[dict[TransactionState, dict[str, str]]] = {}

    def __init__(self, layer: TransactionLayer, request: Request, address: Address) -> None:
        self._layer = layer
        self._calls: dict[str, _Entry] = {}
        # `request` becomes None once the machine only absorbs retransmissions
        # (`_let_go`); method and Call-ID stay for logs and the layer's tables.
        self.request: Request | None = request
        self.method: str = request.method
        self.call_id: str = request.call_id
        self.reliable = is_reliable(address)
        self.branch: str | None = request.top_via.branch if request.top_via is not None else None
        self.state = TransactionState.TERMINATED  # subclasses set the initial state

    @property
    def terminated(self) -> bool:
        return self.state is TransactionState.TERMINATED

    def _event(self, event: str, arg: Any = None) -> None:
        handler = self.TABLE.get(self.state, _NO_TRANSITIONS).get(event)
        if handler is None:
            raise TransactionStateError(type(self).__name__, self.state, event)
        getattr(self, handler)(arg)

    def _arm(self, timer: str, delay: float) -> None:
        """Start RFC timer `timer` (a letter, or a name for the extra ones).

        Handlers send last, but a transport may still report an error from inside
        `send` and terminate us midway; a terminated machine arms nothing."""
        if self.state is TransactionState.TERMINATED:
            return
        queue = self._layer.timer_queue
        old = self._calls.get(timer)
        if old is not None:
            queue.cancel(old)
        self._calls[timer] = queue.arm(delay, self, timer)

    def _disarm(self, *timers: str) -> None:
        for timer in timers:
            entry = self._calls.pop(timer, None)
            if entry is not None:
                self._layer.timer_queue.cancel(entry)

    def _timer_fired(self, timer: str) -> None:
        del self._calls[timer]
        self._event("timer_" + timer)

    def _terminate(self) -> None:
        """Enter Terminated: stop every timer and leave the layer's tables."""
        self.state = TransactionState.TERMINATED
        queue = self._layer.timer_queue
        for entry in self._calls.values():
            queue.cancel(entry)
        self._calls.clear()
        self._layer._forget(self)

    def _wait_then_terminate(self, timer: str, delay: float) -> None:
        """Timers D, I, J, K are zero over reliable transports (§17.1.1.2,
        §17.1.2.2, §17.2.1, §17.2.2): terminate at once instead of arming one."""
        if self.reliable or delay <= 0:
            self._terminate()
        else:
            self._arm(timer, delay)

    def _let_go(self) -> None:
        """Drop the request: the machine has entered a state where it only absorbs
        retransmissions or waits for a timer, often for 64*T1. Every message still
        reachable then is walked by each full garbage collection; at a few hundred
        calls per second those walks paused the switch longer than T1."""
        self.request = None

    def _absorb(self, arg: Any) -> None:
        """The event changes nothing in this state (a duplicate, a late message)."""

    def _absorb_duplicate(self, arg: Any) -> None:
        """A retransmission of what already came: counted, nothing else."""
        self._layer.retransmissions_received += 1

    def _end(self, arg: Any) -> None:
        self._terminate()

    def _send(self, message: Request | Response, address: Address) -> None:
        self._layer.send_stateless(message, address)

    def _resend(self, message: Request | Response, address: Address) -> None:
        """Send `message` again (a timer fired, or the peer repeated itself): counted."""
        self._layer.retransmissions_sent += 1
        self._layer.send_stateless(message, address)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self.branch} {self.state.name}>"


# A callback that receives every response a client transaction delivers.
ResponseCallback = Callable[[Response], None]
