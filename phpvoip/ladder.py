"""Call ladders: every SIP message of the last calls, in and out on every leg.

The transport hands each message it reads or writes to its tap (`MessageTap`), which
here is `Ladders`: it keeps the raw bytes, the direction, both addresses and the
clock time, filed by SIP Call-ID. A call of the switch has several Call-IDs (the
caller's leg, each leg the switch dialled, the legs a transfer added); the bridge
lists them in the call's `CallRecord.sip_call_ids`, and the ladders learn them from
the call events they observe. So a message is filed at once under its call when its
Call-ID is known, and otherwise waits in a "loose" ring of its own Call-ID until a
call claims it (an outbound leg's INVITE is sent before the bridge can name its
Call-ID) or it is pushed out (REGISTER, OPTIONS and other traffic of no call).

Everything is bounded: the messages of the last `calls` calls (the oldest call is
dropped when a new one starts), at most `messages` a call, and as many loose Call-IDs
as calls, each of at most `messages`. A call's ladder outlives the call until newer
calls push it out.

Switched off, no `Ladders` exists and the transport's tap is None: one comparison a
message. On, a message costs one small slotted object and two dict look-ups; it is
not parsed again (the Call-ID comes from the parsed message, or from a scan of the
header lines for bytes that did not parse). Drawing and pcap files are made only
when asked for, from the manhole (``trace(call)``).
"""

from __future__ import annotations

import itertools
import operator
import time as _time
from collections import deque
from typing import Any, NamedTuple

from zope.interface import implementer

from phpvoip.callrecord import CallRecord
from phpvoip.events import CallEvent
from phpvoip.interfaces import ICallObserver
from phpvoip.opsconfig import LadderSettings
from phpvoip.pcap import Packet, PcapWriter
from phpvoip.sip.address import Address
from phpvoip.sip.message import Message
from phpvoip.sip.transport import Drop, Reply

__all__ = ["LadderEntry", "Ladders", "call_id_of", "render_ladder"]

_SEQ = operator.itemgetter(0)  # a kept message's sequence number
_UNKNOWN_LOCAL = ("0.0.0.0", 5060)  # an outgoing TCP message sent before its connection was up


def call_id_of(data: bytes) -> str | None:
    """The Call-ID of raw message bytes (``Call-ID`` or its compact form ``i``), by
    a scan of the header lines; None when there is none. For what did not parse:
    parsed messages give theirs directly."""
    end = data.find(b"\r\n\r\n")
    head = data[:end] if end >= 0 else data[:8192]
    for line in head.split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"call-id", b"i"):
            return value.strip().decode("utf-8", "replace") or None
    return None


class LadderEntry(NamedTuple):
    """One message as it went over a socket: `outgoing` (sent by the switch) or
    not, the raw bytes, the socket's `local` Address (None for a TCP message queued
    before its connection was up), the peer's `remote` Address, the clock `time`;
    `seq` orders the messages of one `Ladders`."""

    seq: int
    time: float
    outgoing: bool
    call_id: str
    data: bytes
    local: Address | None
    remote: Address

    def __repr__(self) -> str:
        arrow = "->" if self.outgoing else "<-"
        return f"<LadderEntry {self.time:.3f} {arrow} {self.remote} {self.label}>"

    @property
    def direction(self) -> str:
        return "out" if self.outgoing else "in"

    @property
    def transport(self) -> str:
        return self.remote.transport

    @property
    def start_line(self) -> str:
        line = self.data.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
        return line.decode("utf-8", "replace")

    @property
    def label(self) -> str:
        """What the arrow says: the method of a request, "200 OK" for a response."""
        line = self.start_line
        if line.startswith("SIP/"):
            return line.partition(" ")[2] or line
        return line.partition(" ")[0] or "?"

    @property
    def cseq(self) -> str:
        """The CSeq header's value ("1 INVITE"), or ""."""
        end = self.data.find(b"\r\n\r\n")
        head = self.data[:end] if end >= 0 else self.data
        for line in head.split(b"\n")[1:]:
            name, colon, value = line.partition(b":")
            if colon and name.strip().lower() == b"cseq":
                return " ".join(value.decode("utf-8", "replace").split())
        return ""

    def as_dict(self) -> dict[str, Any]:
        """The entry in JSON types (for the web console)."""
        local = self.local
        return {
            "time": self.time,
            "direction": self.direction,
            "transport": self.transport,
            "local": None if local is None else [local.host, local.port],
            "remote": [self.remote.host, self.remote.port],
            "call_id": self.call_id,
            "label": self.label,
            "message": self.data.decode("utf-8", "replace"),
        }


class _CallLadder:
    """The kept messages of one call of the switch."""

    __slots__ = ("record", "ring", "call_ids")

    def __init__(self, record: CallRecord, size: int) -> None:
        self.record = record
        self.ring: deque[tuple] = deque(maxlen=size)  # LadderEntry fields
        self.call_ids: list[str] = []


@implementer(ICallObserver)
class Ladders:
    """The message rings of the last calls, fed by the transport's tap and told
    which Call-IDs make a call by the call events. `clock` provides IReactorTime
    (``seconds()`` stamps each message)."""

    def __init__(self, settings: LadderSettings, clock: Any) -> None:
        self.settings = settings
        self.clock = clock
        self._per_call = settings.messages
        self._max_calls = settings.calls
        self._loose_limit = max(settings.calls, 8)
        self._calls: dict[str, _CallLadder] = {}  # by CallRecord.id, oldest first
        self._owner: dict[str, _CallLadder] = {}  # SIP Call-ID -> its call's ladder
        self._loose: dict[str, deque[tuple]] = {}  # Call-IDs no call has claimed yet
        self._seq = itertools.count()
        self._transport: Any = None
        self._engine: Any = None

    def __repr__(self) -> str:
        return f"<Ladders calls={len(self._calls)} loose={len(self._loose)}>"

    def attach(self, transport: Any, engine: Any) -> None:
        """Tap `transport` (a `SipTransport`) and observe `engine`'s call events."""
        self._transport, self._engine = transport, engine
        transport.tap = self
        engine.add_observer(self)

    def detach(self) -> None:
        """Stop recording; what was kept stays readable."""
        if self._transport is not None and self._transport.tap is self:
            self._transport.tap = None
        if self._engine is not None:
            self._engine.remove_observer(self)
        self._transport = self._engine = None

    # -- the tap (MessageTap): called for every message -----------------------------------------

    def received(self, decision: Any, data: bytes, local: Address | None, remote: Address) -> None:
        if isinstance(decision, Message):
            call_id = decision.call_id
        elif decision.__class__ is Reply or decision.__class__ is Drop:
            call_id = call_id_of(data)  # did not parse: the 400 we answer is kept too
        else:
            return  # a keepalive
        if call_id:
            self._keep(False, call_id, data, local, remote)

    def sent(self, message: Any, data: bytes, local: Address | None, remote: Address) -> None:
        call_id = message.call_id
        if call_id:
            self._keep(True, call_id, data, local, remote)

    def _keep(self, outgoing: bool, call_id: str, data: bytes, local: Address | None,
              remote: Address) -> None:
        # A plain tuple (the fields of a LadderEntry, made when read): a third of the
        # cost of an object, and the garbage collector soon stops tracking it.
        entry = (next(self._seq), self.clock.seconds(), outgoing, call_id, data, local, remote)
        ladder = self._owner.get(call_id)
        if ladder is not None:
            ladder.ring.append(entry)
            return
        ring = self._loose.get(call_id)
        if ring is None:
            if len(self._loose) >= self._loose_limit:
                self._trim_loose()
                ladder = self._owner.get(call_id)
                if ladder is not None:
                    ladder.ring.append(entry)
                    return
            ring = self._loose[call_id] = deque(maxlen=self._per_call)
        ring.append(entry)

    def _trim_loose(self) -> None:
        """Make room among the loose Call-IDs: first let every kept call claim its
        own (a leg's messages may wait here until its call's next event), then drop
        the oldest quarter, so that this runs once per many new Call-IDs."""
        for ladder in self._calls.values():
            self._claim(ladder)
        loose = self._loose
        keep = self._loose_limit * 3 // 4
        while len(loose) > keep:
            del loose[next(iter(loose))]

    # -- the call events (ICallObserver) -------------------------------------------------------

    def call_event(self, event: Any) -> None:
        if not isinstance(event, CallEvent):  # registrations and line states carry no call
            return
        record = event.call
        ladder = self._calls.get(record.id)
        if ladder is None:
            ladder = self._calls[record.id] = _CallLadder(record, self._per_call)
            while len(self._calls) > self._max_calls:
                self._drop(next(iter(self._calls)))
        self._claim(ladder)

    def _claim(self, ladder: _CallLadder) -> None:
        """File under `ladder` the Call-IDs its record names that it has not yet
        claimed, with the messages they gathered while loose."""
        ids = ladder.record.sip_call_ids
        if len(ids) == len(ladder.call_ids):
            return
        for call_id in ids:
            if call_id in ladder.call_ids:
                continue
            ladder.call_ids.append(call_id)
            self._owner[call_id] = ladder
            waiting = self._loose.pop(call_id, None)
            if waiting:
                merged = sorted((*ladder.ring, *waiting), key=_SEQ)
                ladder.ring = deque(merged, maxlen=self._per_call)

    def _drop(self, call: str) -> None:
        ladder = self._calls.pop(call)
        for call_id in ladder.call_ids:
            if self._owner.get(call_id) is ladder:
                del self._owner[call_id]

    # -- reading -----------------------------------------------------------------------------------

    def kept_calls(self) -> list[CallRecord]:
        """The records of the calls whose ladders are kept, oldest first."""
        return [ladder.record for ladder in self._calls.values()]

    def counts(self) -> dict[str, int]:
        """How much is kept: calls, loose Call-IDs, messages."""
        messages = sum(len(c.ring) for c in self._calls.values()) + sum(len(r) for r in self._loose.values())
        return {"calls": len(self._calls), "loose_call_ids": len(self._loose), "messages": messages}

    def _find(self, call: CallRecord | str) -> tuple[CallRecord | None, list[LadderEntry]]:
        key = call.id if isinstance(call, CallRecord) else str(call)
        ladder = self._calls.get(key) or self._owner.get(key)
        if ladder is not None:
            self._claim(ladder)
            return ladder.record, [LadderEntry._make(fields) for fields in ladder.ring]
        ring = self._loose.get(key)
        if ring is not None:
            return None, [LadderEntry._make(fields) for fields in ring]
        raise KeyError(f"no messages kept for {key!r} (a call id such as 'call-17', or a SIP Call-ID)")

    def messages(self, call: CallRecord | str) -> list[LadderEntry]:
        """The kept messages of `call` (a CallRecord, its id "call-17" or one of its
        SIP Call-IDs), oldest first; KeyError when nothing is kept for it."""
        return self._find(call)[1]

    def ladder_text(self, call: CallRecord | str) -> str:
        """A ladder diagram of `call` (as `messages` takes it) for a terminal."""
        record, entries = self._find(call)
        return render_ladder(entries, record, str(call) if record is None else record.id)

    def write_pcap(self, call: CallRecord | str, path: str) -> int:
        """Write `call`'s kept messages to a libpcap file at `path` (Wireshark,
        tshark); the number of messages written."""
        entries = self.messages(call)
        with open(path, "wb") as out:
            return PcapWriter(out).write_all(_packets(entries))


def _packets(entries: list[LadderEntry]) -> list[Packet]:
    """Each entry as a packet between its two addresses. An outgoing TCP message
    sent while its connection was opening has no local address: it borrows the one
    the same peer's later messages used."""
    known = {(e.remote, e.transport): (e.local.host, e.local.port) for e in entries if e.local is not None}
    packets = []
    for e in entries:
        local = (e.local.host, e.local.port) if e.local is not None else known.get(
            (e.remote, e.transport), _UNKNOWN_LOCAL)
        remote = (e.remote.host, e.remote.port)
        source, destination = (local, remote) if e.outgoing else (remote, local)
        packets.append(Packet(e.transport, source, destination, e.data, e.time))
    return packets


# -- drawing ------------------------------------------------------------------------------------------

_TIME_WIDTH = 15  # "     1234.5 ms "
_MIN_COLUMN = 22
_MAX_COLUMN = 34


def _address_text(address: Address | None) -> str:
    if address is None:
        return "?"
    host = f"[{address.host}]" if ":" in address.host else address.host
    text = f"{host}:{address.port}"
    return text if address.transport == "udp" else f"{text} {address.transport}"


def _clock_text(seconds: float) -> str:
    whole = int(seconds)
    millis = round((seconds - whole) * 1000)
    if millis == 1000:
        whole, millis = whole + 1, 0
    return _time.strftime("%Y-%m-%d %H:%M:%S", _time.gmtime(whole)) + f".{millis:03d} UTC"


def _call_summary(record: CallRecord) -> str:
    text = f"{record.id}: {record.caller or '?'} -> {record.callee or '?'}"
    if record.routed_to and record.routed_to != record.callee:
        text += f" (routed to {record.routed_to})"
    if record.end is None:
        return text + ", in progress" + (", answered" if record.answer is not None else "")
    return f"{text}, {record.disposition} {record.status}, hung up by {record.hangup_by or '?'}"


def render_ladder(entries: list[LadderEntry], record: CallRecord | None = None, name: str = "") -> str:
    """The ladder diagram of `entries`: a column per party (the caller left, the
    switch, then every other peer in the order it appeared), an arrow per message
    labelled with its method or status, its time since the first message on the
    left, and its leg and CSeq on the right."""
    lines = [_call_summary(record) if record is not None else f"{name}:"]
    if not entries:
        lines.append("(no messages kept)")
        return "\n".join(lines) + "\n"
    legs: list[str] = list(record.sip_call_ids) if record is not None else []
    for e in entries:
        if e.call_id not in legs:
            legs.append(e.call_id)
    start = entries[0].time
    lines.append(f"started {_clock_text(start)}, {len(entries)} messages")
    for number, call_id in enumerate(legs, 1):
        lines.append(f"leg {number}: Call-ID {call_id}")
    first_leg = legs[0]
    caller = next((e.remote for e in entries if e.call_id == first_leg), entries[0].remote)
    parties: list[Address] = [caller]
    for e in entries:
        if e.remote not in parties:
            parties.append(e.remote)
    switch_local = next((e.local for e in entries if e.local is not None), None)
    # Columns: caller, switch, the rest; None stands for the switch.
    columns: list[Address | None] = [parties[0], None, *parties[1:]]
    names = ["caller", "switch"] + ["callee" if i == 0 else f"party {i + 2}" for i in range(len(parties) - 1)]
    # The switch may answer on several sockets: its column names the first.
    switch_text = "?" if switch_local is None else _address_text(switch_local._replace(transport="udp"))
    addresses = [switch_text if c is None else _address_text(c) for c in columns]
    labels = [e.label for e in entries]
    width = max(_MIN_COLUMN, min(_MAX_COLUMN, max(len(t) for t in (*labels, *addresses)) + 6))
    centre = [_TIME_WIDTH + i * width + width // 2 for i in range(len(columns))]
    index = {c: i for i, c in enumerate(columns) if c is not None}
    total = _TIME_WIDTH + len(columns) * width
    lines.append(_centred(names, centre, total))
    lines.append(_centred(addresses, centre, total))
    for e, label in zip(entries, labels, strict=True):
        row = [" "] * total
        for x in centre:
            row[x] = "|"
        far = centre[index[e.remote]]
        here = centre[1]
        source, target = (here, far) if e.outgoing else (far, here)
        left, right = min(source, target), max(source, target)
        for x in range(left + 1, right):
            row[x] = "-"
        if target > source:
            row[right - 1] = ">"
        else:
            row[left + 1] = "<"
        room = right - left - 5
        text = f" {label[:room]} " if room > 0 else ""
        at = left + 1 + (right - left - 1 - len(text)) // 2
        row[at:at + len(text)] = text
        stamp = f"{(e.time - start) * 1000:11.1f} ms "
        row[:len(stamp)] = stamp
        leg = legs.index(e.call_id) + 1
        lines.append("".join(row).rstrip() + f"   leg {leg}  {e.cseq}")
    return "\n".join(lines) + "\n"


def _centred(texts: list[str], centres: list[int], total: int) -> str:
    row = [" "] * (total + _MAX_COLUMN)
    for text, x in zip(texts, centres, strict=True):
        at = max(0, x - len(text) // 2)
        row[at:at + len(text)] = text
    return "".join(row).rstrip()
