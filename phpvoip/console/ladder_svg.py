"""A call's ladder as SVG, from `LadderEntry.as_dict()` dicts.

One vertical line per address (the switch's own sockets first, then the peers in
the order they appear), one ``g.arrow`` per message, top to bottom in time. The
switch's lifelines are headed "phpvoip", a peer's by the party it speaks for (the
From user of the first request it sent, or the To user of the first one it got)
with its address below. Each arrow is focusable (tabindex 0, role button), takes
clicks over its whole row (a transparent ``rect.hit``) and carries its index in
``data-index``: console.js shows that message in ``pre#message`` on click or Enter.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

__all__ = ["ladder_svg"]

COLUMN = 220  # pixels between two lifelines
ROW = 34  # pixels per message
TOP = 62  # room for the names and addresses

_USER = re.compile(r"sips?:([^@;>\s]+)@")


def _address(pair: Any) -> str:
    if not pair:
        return "switch"
    host, port = pair
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _header(message: str, names: tuple[str, ...]) -> str:
    """The value of the first header called one of `names` (lower case), or ""."""
    for line in message.split("\n")[1:]:
        line = line.strip()
        if not line:
            break
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() in names:
            return value.strip()
    return ""


def _party(entry: dict[str, Any]) -> str:
    """Who the peer of a request speaks for: the From user of a request it sent, the
    To user of one the switch sent it; "" for a response or without a user part."""
    message = entry.get("message") or ""
    if message.startswith("SIP/"):
        return ""
    incoming = entry["direction"] != "out"
    match = _USER.search(_header(message, ("from", "f") if incoming else ("to", "t")))
    return match.group(1) if match else ""


def ladder_svg(entries: list[dict[str, Any]]) -> str:
    """The SVG for `entries` (oldest first)."""
    switch_columns: list[str] = []
    peer_columns: list[str] = []
    parties: dict[str, str] = {}
    for entry in entries:
        local, remote = _address(entry["local"]), _address(entry["remote"])
        if local not in switch_columns:
            switch_columns.append(local)
        if remote not in peer_columns:
            peer_columns.append(remote)
        if not parties.get(remote):
            parties[remote] = _party(entry)
    # The first peer (usually the caller) on the left of the switch, the rest right.
    columns = peer_columns[:1] + switch_columns + peer_columns[1:]
    x = {name: 110 + i * COLUMN for i, name in enumerate(columns)}
    width = max(len(columns), 2) * COLUMN
    height = TOP + len(entries) * ROW + 20
    start = entries[0]["time"] if entries else 0.0
    parts = [f'<svg id="ladder" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="group" aria-label="SIP ladder">']
    for name in columns:
        cx = x[name]
        kind = "switch" if name in switch_columns else "peer"
        title = "phpvoip" if kind == "switch" else parties.get(name) or "peer"
        address = "" if name == "switch" else name
        parts.append(f'<g class="lifeline {kind}">'
                     f'<text class="name" x="{cx}" y="18" text-anchor="middle">{escape(title)}</text>'
                     f'<text class="address" x="{cx}" y="34" text-anchor="middle">{escape(address)}</text>'
                     f'<line x1="{cx}" y1="42" x2="{cx}" y2="{height - 10}"/></g>')
    for index, entry in enumerate(entries):
        local, remote = x[_address(entry["local"])], x[_address(entry["remote"])]
        outgoing = entry["direction"] == "out"
        x1, x2 = (local, remote) if outgoing else (remote, local)
        y = TOP + index * ROW + 14
        head = -8 if x2 > x1 else 8
        label = escape(entry["label"])
        offset = entry["time"] - start
        title = escape(f"{entry['label']} {'sent to' if outgoing else 'from'} {_address(entry['remote'])} "
                       f"at +{offset:.3f}s")
        parts.append(
            f'<g class="arrow {"out" if outgoing else "in"}" tabindex="0" role="button" data-index="{index}" '
            f'aria-label="{title}"><title>{title}</title>'
            # The whole row takes the click, not only the thin line and the label.
            f'<rect class="hit" x="0" y="{y - ROW + 10}" width="{width}" height="{ROW}"/>'
            f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}"/>'
            f'<polygon points="{x2},{y} {x2 + head},{y - 4} {x2 + head},{y + 4}"/>'
            f'<text x="{(x1 + x2) / 2}" y="{y - 5}" text-anchor="middle">{label}</text>'
            f'<text class="time" x="4" y="{y + 4}">+{offset:.3f}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
