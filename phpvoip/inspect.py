"""What the switch is doing, as tables: for the manhole now and the web console later.

Every function here takes the live objects (the `Engine`, or the `SwitchService`
for what only the service knows) and the time, reads them without changing
anything, and returns a `Table` (or lines of text). Nothing is cached: each call
looks again. Printing is the caller's business; ``str(table)`` lays it out in
aligned columns, and `Table.rows` keeps the cells for a program (a web page) to
render its own way.

What a table shows comes from what the switch already keeps for operators: the
registrar's `BindingTable`, each call's `CallRecord` and `Bridge`, a line's
``snapshot()``, a module's ``queue_stats()``/``agent_stats()``/``attendant_stats()``,
and a module's ``explain_callout(request)`` for `explain_route`. Modules that offer none of
these are simply absent from the tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from phpvoip.sip.headers import CSeq, NameAddr
from phpvoip.sip.ids import new_call_id
from phpvoip.sip.message import Request
from phpvoip.sip.uri import URI

__all__ = [
    "NO_MEDIA",
    "Table",
    "agents",
    "attendants",
    "bans",
    "calls",
    "explain_route",
    "find_call",
    "lines",
    "queues",
    "registrations",
    "routing_request",
]

NO_MEDIA = "-"  # the media column until the switch relays media itself
CANNOT_TELL = "cannot tell without placing a call"


@dataclass
class Table:
    """Rows of text cells under `columns`; `empty` is said when there are none."""

    columns: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    empty: str = "nothing"

    def add(self, *cells: Any) -> None:
        self.rows.append(tuple("" if c is None else str(c) for c in cells))

    def text(self) -> str:
        """The table in aligned columns, a header line and a rule under it; the
        last column is not padded (so long user agents do not widen every line)."""
        if not self.rows:
            return self.empty
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))

        def line(cells: Sequence[str]) -> str:
            padded = [cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])]
            return "  ".join([*padded, cells[-1]]).rstrip()

        out = [line(self.columns), line(["-" * w for w in widths])]
        out.extend(line(row) for row in self.rows)
        return "\n".join(out)

    __str__ = text

    def __repr__(self) -> str:
        # The manhole shows a returned table as itself, not as a dataclass.
        return self.text()


def seconds(value: float | None) -> str:
    """A duration as an operator reads it: 42s, 3m07s, 2h05m; "" for None."""
    if value is None:
        return ""
    total = int(max(value, 0.0))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


# -- registrations ------------------------------------------------------------------------


def registrations(engine: Any, now: float | None = None) -> Table:
    """Every live binding of every registrar: AOR, contact, expiry left, the
    address the REGISTER came from and the phone's User-Agent."""
    if now is None:
        now = engine.clock.seconds()
    table = Table(("MODULE", "AOR", "CONTACT", "EXPIRES", "SOURCE", "USER AGENT"),
                  empty="no registrations")
    for module in engine.modules:
        bindings = getattr(module, "bindings", None)
        if bindings is None or not hasattr(bindings, "get"):
            continue
        for binding in sorted(bindings, key=lambda b: (b.aor, b.contact)):
            if binding.expires_at <= now:
                continue  # lapsed, waiting for the expiry timer
            source = "" if binding.source is None else str(binding.source)
            table.add(module.name, binding.aor, binding.contact, seconds(binding.expires_at - now), source,
                      binding.user_agent or "")
    return table


# -- calls --------------------------------------------------------------------------------


def leg_remote(leg: Any) -> str:
    """Where a leg's far end is: its address for SIP, "local" for an application's
    half of a local pair, every branch's address for a fork still ringing."""
    winner = getattr(leg, "winner", None)
    branches = getattr(leg, "branches", None)
    if branches is not None and winner is None:
        return ",".join(leg_remote(b) for b in branches)
    if winner is not None:
        return leg_remote(winner)
    try:
        address = leg.peer_address
    except (AttributeError, NotImplementedError):
        return "local"
    return str(address)


def _party(leg: Any) -> str:
    party = getattr(leg, "remote_party", None)
    uri = getattr(party, "uri", None)
    if uri is None:
        return ""
    return uri.user or uri.host or ""


def call_legs(bridge: Any) -> list[tuple[str, Any, str]]:
    """``(role, leg, module)`` for each leg a call holds now: caller and callee while
    it is set up and answered, plus the party joining during a re-bridge."""
    record = bridge.record
    modules = {"caller": record.inbound_module, "callee": record.outbound_module}
    state = getattr(bridge.state, "value", str(bridge.state))
    if state == "setup":
        return [("caller", bridge.inbound, modules["caller"]), ("callee", bridge.outbound, modules["callee"])]
    legs: list[tuple[str, Any, str]] = []
    if state == "rebridging":
        for role, leg in (("kept", bridge.kept), ("leaving", bridge.leaving), ("joining", bridge.joining)):
            if leg is not None:
                side = bridge.side_of(leg) if role != "joining" else ""
                legs.append((role, leg, modules.get(side, "")))
        return legs
    for leg in bridge.parties:
        side = bridge.side_of(leg)
        legs.append((side, leg, modules.get(side, "")))
    return legs


def calls(engine: Any, now: float | None = None) -> Table:
    """Active calls, one line per leg: the call's id, who called whom, its state and
    how long it has lasted (talk time once answered), then each leg's role, module,
    far end and state. Media counters are "-": the switch does not relay media yet."""
    if now is None:
        now = engine.clock.seconds()
    table = Table(("CALL", "FROM", "TO", "STATE", "AGE", "TALK", "LEG", "MODULE", "REMOTE", "LEG STATE",
                   "MEDIA"), empty="no active calls")
    for call_id in sorted(engine.calls, key=_call_order):
        bridge = engine.calls[call_id]
        record = bridge.record
        talk = seconds(now - record.answer) if record.answer is not None else ""
        state = getattr(bridge.state, "value", str(bridge.state))
        head = (record.id, record.caller, record.routed_to or record.callee, state,
                seconds(now - record.start), talk)
        for i, (role, leg, module) in enumerate(call_legs(bridge)):
            cells = head if i == 0 else ("",) * len(head)
            leg_state = getattr(leg.state, "value", str(leg.state))
            table.add(*cells, f"{role} {_party(leg)}".strip(), module, leg_remote(leg), leg_state, NO_MEDIA)
    return table


def _call_order(call_id: str) -> tuple[int, str]:
    number = call_id.rpartition("-")[2]
    return (int(number) if number.isdigit() else 0, call_id)


def find_call(engine: Any, call: Any) -> Any:
    """The live `Bridge` for `call`: an id ("call-17" or 17), a `CallRecord`, or a
    SIP Call-ID; None when no such call is up."""
    if hasattr(call, "id") and hasattr(call, "call_id"):
        call = call.id
    if isinstance(call, int):
        call = f"call-{call}"
    bridge = engine.calls.get(call)
    if bridge is not None:
        return bridge
    for bridge in engine.calls.values():
        if bridge.record.call_id == call:
            return bridge
    return None


# -- lines, queues, agents -----------------------------------------------------------------


def lines(engine: Any, now: float | None = None) -> Table:
    """Outside lines (modules whose ``snapshot()`` has a number and a state): their
    registration state, server, time until it must be renewed, the last answer,
    and calls in and out."""
    table = Table(("LINE", "NUMBER", "STATE", "SERVER", "RENEW IN", "LAST ANSWER", "FAILURES", "CALLS IN",
                   "CALLS OUT"), empty="no outside lines")
    for module in engine.modules:
        snapshot = getattr(module, "snapshot", None)
        if snapshot is None:
            continue
        data = snapshot()
        if not isinstance(data, Mapping) or "number" not in data or "state" not in data:
            continue
        reg = data.get("registration") or {}
        counters = data.get("counters") or {}
        last = ""
        if reg.get("last_status") is not None:
            last = f"{reg['last_status']} {reg.get('last_reason') or ''}".strip()
        server = reg.get("server") or str(getattr(getattr(module, "settings", None), "server", ""))
        table.add(data.get("name", module.name), data["number"], data["state"], server,
                  seconds(reg.get("expires_in")), last, reg.get("failures", ""), counters.get("calls_in", ""),
                  counters.get("calls_out", ""))
    return table


def _stats_table(engine: Any, method: str, key: str, empty: str) -> Table:
    """A table of what modules offering `method` report: an iterable of mappings,
    one per row, columns in the order the first row gives them."""
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for module in engine.modules:
        stats = getattr(module, method, None)
        if stats is not None:
            rows.extend((module.name, row) for row in stats())
    if not rows:
        return Table(("MODULE",), empty=empty)
    names: list[str] = []
    for _, row in rows:
        names.extend(k for k in row if k not in names)
    table = Table(("MODULE", *(n.upper().replace("_", " ") for n in names)), empty=empty)
    for module, row in rows:
        table.add(module, *(_cell(row.get(n)) for n in names))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def queues(engine: Any) -> Table:
    """Call queues, from every module offering ``queue_stats()``."""
    return _stats_table(engine, "queue_stats", "queue", "no queues configured")


def agents(engine: Any) -> Table:
    """Queue agents, from every module offering ``agent_stats()``."""
    return _stats_table(engine, "agent_stats", "agent", "no queues configured (so no agents)")


def supervise(engine: Any, number: str, action: str, queue: str | None = None,
              by: str = "") -> list[tuple[str, bool, str]]:
    """Log agent `number` in or out, pause or resume it (`action`), in `queue` (a
    queue module's name or number) or in every queue it belongs to. Per queue:
    (queue, done, the agent's state after it or why not). Raises LookupError for
    a `queue` that no module is."""
    modules = [m for m in engine.modules if getattr(m, "supervise", None) is not None]
    if queue is not None:
        modules = [m for m in modules if str(queue) in (m.name, str(getattr(m, "number", "")))]
        if not modules:
            raise LookupError(f"no queue {queue!r}")
    results = []
    for module in modules:
        try:
            results.append((module.name, True, module.supervise(number, action, by)))
        except ValueError as e:
            results.append((module.name, False, str(e)))
    # Once it worked somewhere, the queues the agent has nothing to do with are noise.
    return [r for r in results if r[1]] or results


def supervise_agent(engine: Any, number: str, action: str, queue: str | None = None, by: str = "") -> Table:
    """`supervise` as a table: one row per queue."""
    table = Table(("QUEUE", "AGENT", "RESULT"), empty="no queues configured")
    for name, _, result in supervise(engine, number, action, queue, by):
        table.add(name, number, result)
    return table


def attendants(engine: Any) -> Table:
    """Auto attendants: callers in their menus and how calls ended, from every
    module offering ``attendant_stats()``."""
    return _stats_table(engine, "attendant_stats", "attendant", "no attendants configured")


# -- routing explained ----------------------------------------------------------------------


def routing_request(from_user: str, to_user: str, domain: str) -> Request:
    """The INVITE the switch would route for a call from `from_user` to `to_user`
    at its own domain (never sent)."""
    invite = Request("INVITE", URI("sip", to_user, domain))
    invite.add("From", NameAddr(URI("sip", from_user, domain), None, {"tag": "explain"}))
    invite.add("To", NameAddr(URI("sip", to_user, domain)))
    invite.add("Call-ID", new_call_id(domain))
    invite.add("CSeq", CSeq(1, "INVITE"))
    return invite


def explain_route(engine: Any, from_user: str, to_user: str) -> list[str]:
    """How a call from `from_user` to `to_user` would go, without placing it: the
    route that matches and why, the From and To it leaves, then each module the
    engine would ask for the outbound leg, in order, with what it says."""
    from_user, to_user = str(from_user), str(to_user)
    out = [f"call from {from_user} to {to_user}"]
    router = engine.router
    routes: Iterable[Any] = getattr(router, "routes", ())
    invite = routing_request(from_user, to_user, engine.domain)
    routed, route = router.route_with(invite)
    matched = None
    for index, candidate in enumerate(routes, 1):
        if candidate is route:
            matched = index
            break
    if route is None:
        out.append(f"route: none of the {len(tuple(routes))} routes matches; From and To stay as they are")
    else:
        out.append(f"route #{matched}: in_from {route.in_from.text!r} matches {from_user!r}, "
                   f"in_to {route.in_to.text!r} matches {to_user!r}")
    new_from = routed.from_.uri.user or ""
    new_to = routed.to.uri.user or ""
    changes = [f"{name} {old} -> {new}" for name, old, new in
               (("From", from_user, new_from), ("To", to_user, new_to)) if old != new]
    if changes:
        out.append("rewritten: " + ", ".join(changes))
    elif route is not None:
        out.append("rewritten: nothing (the route keeps From and To)")
    out.append("modules asked for the call out, highest weight first:")
    taken = False
    for module in engine.modules:
        explain = getattr(module, "explain_callout", None)
        if explain is None:
            out.append(f"  {module.name} (weight {module.weight}): {CANNOT_TELL}")
            continue
        try:
            answer = explain(routed)
        except Exception as e:  # an explanation must never break the shell
            out.append(f"  {module.name} (weight {module.weight}): could not explain ({e!r})")
            continue
        if answer is None:
            out.append(f"  {module.name} (weight {module.weight}): not its call")
            continue
        out.append(f"  {module.name} (weight {module.weight}): TAKES IT: {answer}")
        taken = True
        break
    if not taken:
        out.append("no module said it takes the call: the caller would get 404 Not Found "
                   "(unless a module that cannot tell takes it)")
    return out


# -- bans -----------------------------------------------------------------------------------


def bans(limits: Any, now: float | None = None) -> Table:
    """The sources the flood protection (`phpvoip.limits`) bans now: source, time
    left, how long ago, why."""
    if now is None:
        now = limits.clock.seconds()
    table = Table(("SOURCE", "LEFT", "SINCE", "REASON"), empty="no bans")
    for ban in limits.bans():
        table.add(ban.host, seconds(ban.until - now), seconds(now - ban.since) + " ago", ban.reason)
    return table
