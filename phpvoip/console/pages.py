"""The console's HTML, rendered on the server: every page is complete without
script (tables filled, forms that post), and console.js then keeps it live from
the event stream. Everything from the switch goes through `html.escape`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from phpvoip.console.records import DISPOSITIONS, RecordQuery, switch_call_id

__all__ = ["calls_page", "dashboard_page", "layout", "login_page", "records_page", "registrations_page",
           "route_page"]

NAV = (("/", "Dashboard"), ("/calls", "Calls"), ("/registrations", "Registrations"), ("/records", "Records"),
       ("/route", "Route"))


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def layout(title: str, body: str, csrf: str = "", page: str = "", user: str = "") -> str:
    """A whole page: head (CSRF token for scripts, stylesheet, script), the nav,
    and `body` in <main>."""
    current = ' aria-current="page"'
    links = "".join(f'<a href="{href}"{current if href == page else ""}>{label}</a>' for href, label in NAV)
    logout = ""
    if user:
        logout = (f'<form method="post" action="/logout" class="logout">'
                  f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
                  f'<span class="user">{_e(user)}</span> <button type="submit">Log out</button></form>')
    nav = f'<header><nav aria-label="Console">{links}</nav>{logout}</header>'
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="csrf-token" content="{_e(csrf)}">'
        f'<title>{_e(title)} · phpvoip</title>'
        '<link rel="icon" href="data:,">'  # no favicon request (and no 404 in the console log)
        '<link rel="stylesheet" href="/static/console.css">'
        '<script src="/static/console.js" defer></script></head>'
        f'<body data-page="{_e(page)}">{nav}<main><h1>{_e(title)}</h1>{body}</main></body></html>\n'
    )


def login_page(error: str = "", username: str = "") -> str:
    message = f'<p id="login-error" role="alert">{_e(error)}</p>' if error else ""
    body = (
        f'{message}<form id="login" method="post" action="/login">'
        f'<label for="username">User</label>'
        f'<input id="username" name="username" autocomplete="username" required value="{_e(username)}">'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" required>'
        '<button id="login-submit" type="submit">Log in</button></form>'
    )
    return layout("Log in", body, page="/login")


def data_table(table_id: str, table: dict[str, Any], caption: str) -> str:
    """A generic table from `phpvoip.console.data.table_dict`; each cell carries its
    column name for the narrow-screen layout."""
    columns = table["columns"]
    head = "".join(f'<th scope="col">{_e(c)}</th>' for c in columns)
    if table["rows"]:
        rows = "".join(
            "<tr>" + "".join(f'<td data-label="{_e(c)}">{_e(v)}</td>'
                             for c, v in zip(columns, r, strict=False)) + "</tr>"
            for r in table["rows"])
    else:
        rows = f'<tr class="empty"><td colspan="{len(columns)}">{_e(table["empty"])}</td></tr>'
    return (f'<table id="{table_id}" class="data"><caption>{_e(caption)}</caption>'
            f'<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>')


def agent_actions(module: str, agent: str, state: str, paused: str) -> list[tuple[str, str]]:
    """The supervisor's buttons for one agent row: (action, label). console.js
    makes the same ones when it redraws the table."""
    if state == "logged-out":
        return [("login", "Log in")]
    return [("resume", "Resume") if paused == "True" else ("pause", "Pause"), ("logout", "Log out")]


def agent_action_url(module: str, agent: str, action: str) -> str:
    return f"/agents/{quote(agent, safe='')}/{action}?queue={quote(module, safe='')}"


def agents_table(table: dict[str, Any], csrf: str) -> str:
    """The agents table with a last cell of buttons (log in, pause or resume, log
    out), each a form posting to /agents/<agent>/<action>?queue=<module>."""
    columns = table["columns"]
    if not table["rows"] or "AGENT" not in columns:
        return data_table("agents-table", table, "Agents")
    at = {c: columns.index(c) for c in ("MODULE", "AGENT", "STATE", "PAUSED") if c in columns}
    head = "".join(f'<th scope="col">{_e(c)}</th>' for c in columns) + '<th scope="col">Actions</th>'
    rows = []
    for row in table["rows"]:
        module, agent = row[at["MODULE"]], row[at["AGENT"]]
        state, paused = row[at["STATE"]] if "STATE" in at else "", row[at["PAUSED"]] if "PAUSED" in at else ""
        forms = "".join(
            f'<form method="post" action="{_e(agent_action_url(module, agent, action))}" '
            'class="agent-action">'
            f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
            f'<button type="submit" aria-label="{label} {_e(agent)} in {_e(module)}">{label}</button></form>'
            for action, label in agent_actions(module, agent, state, paused))
        cells = "".join(f'<td data-label="{_e(c)}">{_e(v)}</td>' for c, v in zip(columns, row, strict=False))
        rows.append(f'<tr>{cells}<td data-label="Actions">{forms}</td></tr>')
    return (f'<table id="agents-table" class="data"><caption>Agents</caption>'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            '<p id="agents-status" role="status" aria-live="polite"></p>')


def chart(counts: list[int]) -> str:
    """The calls-per-minute bar chart of the last hour (oldest on the left)."""
    top = max(max(counts, default=0), 1)
    bars = []
    for i, count in enumerate(counts):
        height = round(100 * count / top, 1)
        minutes_ago = len(counts) - 1 - i
        bars.append(f'<rect class="bar" x="{i * 10 + 1}" y="{100 - height}" width="8" height="{height}" '
                    f'data-count="{count}"><title>{count} calls, {minutes_ago} min ago</title></rect>')
    return (f'<svg id="calls-per-minute" viewBox="0 0 {len(counts) * 10} 100" preserveAspectRatio="none" '
            f'role="img" aria-label="Calls per minute, last hour; peak {top}">{"".join(bars)}</svg>')


def dashboard_page(stats: dict[str, Any], lines: dict[str, Any], queues: dict[str, Any],
                   agents: dict[str, Any], **common: Any) -> str:
    body = (
        '<section class="counters">'
        f'<p><span class="label">Active calls</span> '
        f'<span id="calls-active">{stats["calls_active"]}</span></p>'
        f'<p><span class="label">Registrations</span> '
        f'<span id="registrations-count">{stats["registrations"]}</span></p></section>'
        f'<section><h2>Calls per minute (last hour)</h2>{chart(stats["calls_per_minute"])}'
        '<p class="axis" aria-hidden="true"><span>60 min ago</span><span>now</span></p></section>'
        f'<section>{data_table("lines-table", lines, "Outside lines")}</section>'
        f'<section>{data_table("queues-table", queues, "Queues")}'
        f'{agents_table(agents, common.get("csrf", ""))}</section>'
    )
    return layout("Dashboard", body, page="/", **common)


CALL_COLUMNS = ("Call", "From", "To", "State", "Duration", "Legs", "Media", "")


def call_tr(row: dict[str, Any], csrf: str) -> str:
    """One live call's row (the same markup console.js builds from a `call` event)."""
    call_id = _e(row["id"])
    legs = "".join(f'<li>{_e(leg["role"])} {_e(leg["module"])} {_e(leg["remote"])} '
                   f'<span class="state">{_e(leg["state"])}</span></li>' for leg in row["legs"])
    talk = "" if row["talk"] is None else f' data-talk="{row["talk"]}"'
    return (
        f'<tr data-call-id="{call_id}">'
        f'<td data-label="Call"><a href="/ladder/{call_id}">{call_id}</a></td>'
        f'<td data-label="From">{_e(row["from"])}</td><td data-label="To">{_e(row["to"])}</td>'
        f'<td data-label="State">{_e(row["state"])}</td>'
        f'<td data-label="Duration" class="duration" data-age="{row["age"]}"{talk}>{_duration(row)}</td>'
        f'<td data-label="Legs"><ul class="legs">{legs}</ul></td>'
        f'<td data-label="Media">{_e(row["media"])}</td>'
        f'<td><form method="post" action="/calls/{call_id}/hangup">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        f'<button type="submit" class="hangup" aria-label="Hang up {call_id}">Hang up</button>'
        '</form></td></tr>'
    )


def _duration(row: dict[str, Any]) -> str:
    seconds = int(row["talk"] if row["talk"] is not None else row["age"])
    return f"{seconds // 60}:{seconds % 60:02d}"


def more_text(more: int) -> str:
    """The line under overload (console.js writes the same)."""
    return f"{more} more call{'' if more == 1 else 's'} not shown (the longest-running are)"


def calls_page(rows: list[dict[str, Any]], csrf: str, more: int = 0, **common: Any) -> str:
    """The shown calls (`data.call_window`) and, when some are left out, how many."""
    head = "".join(f'<th scope="col">{_e(c)}</th>' for c in CALL_COLUMNS)
    body_rows = "".join(call_tr(r, csrf) for r in rows)
    hidden = "" if more else " hidden"
    body = (f'<p id="calls-more" class="notice" data-more="{more}"{hidden}>{_e(more_text(more))}</p>'
            f'<table id="calls-table" class="data"><caption>Live calls (<span id="calls-active">'
            f'{len(rows) + more}</span>)</caption><thead><tr>{head}</tr></thead><tbody>{body_rows}</tbody>'
            '</table>')
    return layout("Calls", body, csrf=csrf, page="/calls", **common)


def registrations_page(table: dict[str, Any], **common: Any) -> str:
    return layout("Registrations", data_table("registrations-table", table, "Registered phones"),
                  page="/registrations", **common)


def _utc(value: float | None) -> str:
    return "" if value is None else datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _field_time(value: float | None) -> str:
    return "" if value is None else datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M")


RECORD_COLUMNS = (("Start (UTC)", "start_time"), ("From", "caller"), ("To", "callee"),
                  ("Routed to", "routed_to"), ("Disposition", "disposition"), ("Status", "status"),
                  ("Talk s", "billsec"), ("Hung up by", "hangup_by"), ("Cause", "cause"))


def records_page(rows: list[dict[str, Any]], query: RecordQuery, query_string: str, error: str = "",
                 **common: Any) -> str:
    options = "".join(f'<option value="{d}"{" selected" if d == query.disposition else ""}>{d}</option>'
                      for d in DISPOSITIONS)
    form = (
        '<form id="records-search" method="get" action="/records">'
        f'<label for="r-number">Number</label><input id="r-number" name="number" value="{_e(query.number)}">'
        f'<label for="r-since">Since (UTC)</label><input id="r-since" name="since" type="datetime-local" '
        f'value="{_field_time(query.since)}">'
        f'<label for="r-until">Until (UTC)</label><input id="r-until" name="until" type="datetime-local" '
        f'value="{_field_time(query.until)}">'
        f'<label for="r-disposition">Disposition</label><select id="r-disposition" name="disposition">'
        f'<option value="">any</option>{options}</select>'
        '<button type="submit">Search</button></form>'
    )
    problem = f'<p id="records-error" role="alert">{_e(error)}</p>' if error else ""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h, _ in RECORD_COLUMNS) + '<th scope="col">Ladder</th>'
    trs = []
    for row in rows:
        call_id = switch_call_id(str(row["id"]))
        cells = "".join(
            f'<td data-label="{_e(h)}">{_e(_utc(row[c]) if c == "start_time" else row[c])}</td>'
            for h, c in RECORD_COLUMNS)
        trs.append(f'<tr data-call-id="{_e(call_id)}" data-record-id="{_e(row["id"])}">{cells}'
                   f'<td data-label="Ladder"><a href="/ladder/{_e(call_id)}">ladder</a></td></tr>')
    if not trs:
        trs.append(f'<tr class="empty"><td colspan="{len(RECORD_COLUMNS) + 1}">no records</td></tr>')
    csv_href = "/records.csv" + (f"?{query_string}" if query_string else "")
    body = (f'{form}{problem}<p><a id="records-csv" href="{_e(csv_href)}" download>Download CSV</a></p>'
            f'<table id="records-table" class="data"><caption>Call records, newest first</caption>'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(trs)}</tbody></table>')
    return layout("Records", body, page="/records", **common)


def route_page(from_user: str, to_user: str, result: list[str], **common: Any) -> str:
    form = (
        '<form id="route-form" method="get" action="/route">'
        f'<label for="route-from">From</label><input id="route-from" name="from" value="{_e(from_user)}">'
        f'<label for="route-to">To</label><input id="route-to" name="to" value="{_e(to_user)}">'
        '<button type="submit">Explain</button></form>'
    )
    text = "\n".join(result) if result else "Give a caller and a number: the switch says how it would go."
    return layout("Route", f'{form}<pre id="route-result">{_e(text)}</pre>', page="/route", **common)


def ladder_page(call_id: str, svg: str, entries: list[dict[str, Any]], **common: Any) -> str:
    """The ladder SVG, the messages as JSON for the script, and pre#message."""
    data = json.dumps([e["message"] for e in entries]).replace("</", "<\\/")
    body = (f'<p>{len(entries)} SIP messages. Select an arrow (click, or Tab then Enter) to read it.</p>'
            f'<div class="ladder">{svg}</div>'
            f'<script type="application/json" id="messages">{data}</script>'
            f'<pre id="message" tabindex="-1" aria-live="polite"></pre>')
    return layout(f"Ladder of {call_id}", body, page="/ladder", **common)


def message_page(title: str, text: str, **common: Any) -> str:
    return layout(title, f'<p class="notice">{_e(text)}</p>', **common)
