"""What the console shows, as JSON-ready dicts: read from the live switch through
`phpvoip.inspect`, never changing it. The pages render these server-side and the
feed sends the same dicts, so a row looks the same whether the page was loaded or
updated."""

from __future__ import annotations

from itertools import islice
from typing import Any

from phpvoip import inspect

__all__ = ["call_row", "call_rows", "call_window", "media_text", "registration_count", "table_dict"]


def media_text(media: dict | None) -> str:
    """A call's media counters in a few words: packets each way, lost; "-" with
    direct media (the switch does not see the packets)."""
    if not media:
        return inspect.NO_MEDIA
    parts = []
    for direction, counts in sorted(media.items()):
        if ">" in direction and isinstance(counts, dict):
            lost = counts.get("lost", 0)
            text = f"{direction} {counts.get('packets', 0)} pkts"
            parts.append(f"{text}, {lost} lost" if lost else text)
    return "; ".join(parts) or inspect.NO_MEDIA


def call_row(bridge: Any, now: float) -> dict[str, Any]:
    """One live call: its id, parties, state, age and talk time in seconds, legs
    (role, module, far end, state) and media counters."""
    record = bridge.record
    legs = []
    for role, leg, module in inspect.call_legs(bridge):
        legs.append({
            "role": role,
            "module": module,
            "remote": inspect.leg_remote(leg),
            "state": getattr(leg.state, "value", str(leg.state)),
        })
    return {
        "id": record.id,
        "from": record.caller,
        "to": record.routed_to or record.callee,
        "state": getattr(bridge.state, "value", str(bridge.state)),
        "age": round(max(now - record.start, 0.0), 1),
        "talk": None if record.answer is None else round(max(now - record.answer, 0.0), 1),
        "legs": legs,
        "media": media_text(record.media),
    }


def call_rows(engine: Any) -> list[dict[str, Any]]:
    """Every live call, oldest first."""
    now = engine.clock.seconds()
    return [call_row(engine.calls[i], now) for i in sorted(engine.calls, key=_order)]


def call_window(engine: Any, limit: int) -> tuple[list[str], int]:
    """The ids of the calls the /calls page shows, and how many live calls it leaves
    out: the `limit` longest-running, in the order the switch bridged them (the
    engine's dict keeps that order, and a new call only ever joins at its end, so
    this is a prefix: rows already shown never make way for newer ones)."""
    live = engine.calls
    ids = list(islice(live, limit))
    return ids, len(live) - len(ids)


def _order(call_id: str) -> tuple[int, str]:
    """call-9 before call-10."""
    number = call_id.rpartition("-")[2]
    return (int(number) if number.isdigit() else 0, call_id)


def registration_count(engine: Any) -> int:
    """Bindings held by every registrar (lapsed ones awaiting their timer included:
    cheap enough to send every second)."""
    total = 0
    for module in engine.modules:
        bindings = getattr(module, "bindings", None)
        if bindings is not None and hasattr(bindings, "get"):
            total += len(bindings)
    return total


def table_dict(table: inspect.Table) -> dict[str, Any]:
    """An `inspect.Table` as ``{"columns": [...], "rows": [[...]], "empty": "..."}``."""
    return {"columns": list(table.columns), "rows": [list(r) for r in table.rows], "empty": table.empty}
