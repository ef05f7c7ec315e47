"""The web console over Twisted's real HTTP stack (an HTTPChannel on a
StringTransport, task.Clock): logins, cookies, CSRF, redirects, hang-up, the event
stream, CSV and ladders, against a real engine and transport (tests.unit.test_ladder)."""

from __future__ import annotations

import csv
import io
import re
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.testing import StringTransport
from zope.interface.verify import verifyObject

from phpvoip.console.auth import Sessions
from phpvoip.console.feed import FLUSH_INTERVAL, ConsoleFeed, MinuteRing
from phpvoip.console.passwords import hash_password
from phpvoip.console.web import console_site
from phpvoip.interfaces import ICallObserver
from phpvoip.opsconfig import ConsoleSettings, ConsoleUser, ListenSettings
from tests.unit.test_engine import invite
from tests.unit.test_ladder import BACKEND, Switch, answered_call, full_call

PASSWORD = "correct horse"
SETTINGS = ConsoleSettings(ListenSettings("tcp:0:interface=127.0.0.1", 0, "127.0.0.1"),
                           (ConsoleUser("admin", hash_password(PASSWORD, 1_000)),), 600.0)


class Reply:
    """An HTTP response read back from the wire."""

    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name.strip().lower(), value.strip()))
        self.text = self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]


class Console:
    """A console site on a test switch, spoken to in raw HTTP/1.0."""

    def __init__(self, switch: Switch | None = None, max_rows: int = 500) -> None:
        self.switch = switch or Switch()
        self.clock = self.switch.clock
        self.service = SimpleNamespace(engine=self.switch.engine, ladders=self.switch.ladders, cdr=None,
                                       reactor=self.clock)
        self.feed = ConsoleFeed(self.switch.engine, self.clock, max_rows)
        self.switch.engine.add_observer(self.feed)
        self.sessions = Sessions(SETTINGS, self.clock)
        self.site = console_site(self.service, self.sessions, self.feed)
        self.cookie = ""
        self.csrf = ""

    def open(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
             cookie: bool = True) -> StringTransport:
        """Send a request; the transport keeps what the server writes (streams too)."""
        channel = self.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        lines = [f"{method} {path} HTTP/1.0", "Host: 127.0.0.1"]
        if cookie and self.cookie:
            lines.append(f"Cookie: phpvoip_session={self.cookie}")
        if body:
            lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return transport

    def request(self, method: str, path: str, body: bytes = b"", **kwargs: Any) -> Reply:
        return Reply(self.open(method, path, body, **kwargs).value())

    def login(self) -> Reply:
        reply = self.request("POST", "/login", f"username=admin&password={PASSWORD}".encode())
        self.cookie = re.search(r"phpvoip_session=([^;]+)", reply.header("set-cookie") or "").group(1)
        page = self.request("GET", "/calls")
        self.csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)
        return reply


class Elements(HTMLParser):
    """Tags with their attributes, to check the contract's selectors."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags
                if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())]


def ringing_call(console: Console) -> str:
    """A phone calls 2005 through the trunk; the backend rings. The call's id."""
    console.switch.send(invite(call_id="console-call"))
    [out] = console.switch.sent_to(BACKEND, "INVITE")
    from tests.unit.test_engine import answer

    console.switch.send(answer(out, 180), BACKEND)
    [call_id] = console.switch.engine.calls
    return call_id


# -- logins and sessions ------------------------------------------------------------------------


def test_login_page_has_the_form():
    """GET /login: form#login with username, password and the submit button, labelled."""
    page = Elements(Console().request("GET", "/login").text)
    assert page.find("form", id="login")
    assert page.find("input", name="username") and page.find("input", name="password", type="password")
    assert page.find("button", id="login-submit")
    assert {a["for"] for a in page.find("label")} == {"username", "password"}


def test_right_password_sets_a_strict_http_only_cookie_and_redirects():
    """POST /login with the right password: 303 to /, cookie HttpOnly, SameSite=Strict, Path=/."""
    console = Console()
    reply = console.login()
    assert reply.status == 303 and reply.header("location") == "/"
    [cookie] = reply.all("set-cookie")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert console.request("GET", "/").status == 200
    assert len(console.sessions.open) == 1


@pytest.mark.parametrize("body", [f"username=admin&password={PASSWORD}x",
                                  f"username=root&password={PASSWORD}",
                                  "username=admin&password="])
def test_wrong_password_is_401_without_a_session(body: str):
    """A wrong password or user: 401, #login-error, no cookie, no session."""
    console = Console()
    reply = console.request("POST", "/login", body.encode())
    assert reply.status == 401 and 'id="login-error"' in reply.text
    assert reply.all("set-cookie") == [] and console.sessions.open == {}


@pytest.mark.parametrize("path", ["/", "/calls", "/registrations", "/records", "/route", "/ladder/call-1"])
def test_pages_redirect_to_login_without_a_session(path: str):
    """Every page but /login redirects (303) to /login without a valid session."""
    reply = Console().request("GET", path)
    assert reply.status == 303 and reply.header("location") == "/login"


@pytest.mark.parametrize("path", ["/api/calls", "/api/registrations", "/api/records", "/events",
                                  "/records.csv"])
def test_json_events_and_csv_answer_401_without_a_session(path: str):
    """Scripts and the event stream get 401, not a redirect."""
    assert Console().request("GET", path).status == 401


def test_static_files_need_no_session_and_list_no_directory():
    """The stylesheet and script are served to anybody; the folder is not listed."""
    console = Console()
    css = console.request("GET", "/static/console.css")
    assert css.status == 200 and css.header("content-type").startswith("text/css") and b"@media" in css.body
    assert console.request("GET", "/static/console.js").status == 200
    assert console.request("GET", "/static/").status == 404


def test_an_idle_session_ends():
    """After session_timeout idle seconds the cookie no longer opens pages; use keeps it alive."""
    console = Console()
    console.login()
    console.clock.advance(500)
    assert console.request("GET", "/calls").status == 200
    console.clock.advance(500)
    assert console.request("GET", "/calls").status == 200  # 500 s idle: still alive
    console.clock.advance(601)
    assert console.request("GET", "/calls").status == 303


def test_logout_ends_the_session():
    """POST /logout with the token: 303 to /login and the cookie no longer works."""
    console = Console()
    console.login()
    reply = console.request("POST", "/logout", f"csrf={console.csrf}".encode())
    assert reply.status == 303 and reply.header("location") == "/login"
    assert console.request("GET", "/calls").status == 303


# -- CSRF -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong"])
@pytest.mark.parametrize("path", ["/logout", "/calls/{call}/hangup"])
def test_every_post_without_the_token_is_403_and_does_nothing(path: str, token: str | None):
    """A POST without the session's CSRF token, or with another, is refused with 403:
    the call stays up and the session stays open."""
    console = Console()
    console.login()
    call_id = ringing_call(console)
    body = b"" if token is None else f"csrf={token}".encode()
    reply = console.request("POST", path.format(call=call_id), body)
    assert reply.status == 403
    assert call_id in console.switch.engine.calls
    assert console.request("GET", "/calls").status == 200
    header = console.request("POST", path.format(call=call_id), headers={"X-CSRF-Token": "wrong"})
    assert header.status == 403 and call_id in console.switch.engine.calls


def test_a_post_without_a_session_is_401():
    """No session, no action: hang-up without a cookie is refused before CSRF is looked at."""
    console = Console()
    console.login()
    call_id = ringing_call(console)
    reply = console.request("POST", f"/calls/{call_id}/hangup", f"csrf={console.csrf}".encode(), cookie=False)
    assert reply.status == 401 and call_id in console.switch.engine.calls


# -- calls and hang-up ------------------------------------------------------------------------------


def test_calls_page_lists_live_calls_with_a_hangup_button():
    """table#calls-table has one tr[data-call-id] per live call, a button.hangup in it;
    every page has the CSRF meta tag and the nav."""
    console = Console()
    console.login()
    call_id = ringing_call(console)
    page = Elements(console.request("GET", "/calls").text)
    assert page.find("table", id="calls-table")
    assert [a["data-call-id"] for t, a in page.tags if t == "tr" and "data-call-id" in a] == [call_id]
    assert page.find("button", class_="hangup")
    assert page.find("meta", name="csrf-token", content=console.csrf)
    assert {a["href"] for a in page.find("a")} >= {"/", "/calls", "/registrations", "/records", "/route"}


def test_api_calls_gives_the_rows():
    """GET /api/calls: the live calls as JSON rows with id, parties, state and legs."""
    import json

    console = Console()
    console.login()
    call_id = ringing_call(console)
    [row] = json.loads(console.request("GET", "/api/calls").body)
    assert row["id"] == call_id and row["from"] == "1001" and row["to"] == "2005"
    assert [leg["role"] for leg in row["legs"]] == ["caller", "callee"]


def test_hangup_by_form_hangs_up_and_redirects():
    """POST /calls/<id>/hangup with the form token: engine.hangup ends the call (the
    backend gets its CANCEL), 303 back to /calls."""
    console = Console()
    console.login()
    call_id = ringing_call(console)
    reply = console.request("POST", f"/calls/{call_id}/hangup", f"csrf={console.csrf}".encode())
    assert reply.status == 303 and reply.header("location") == "/calls"
    assert call_id not in console.switch.engine.calls
    assert console.switch.sent_to(BACKEND, "CANCEL")


def test_hangup_by_fetch_is_204_and_an_unknown_call_404():
    """With the X-CSRF-Token header (a script's fetch) the answer is 204; a call that
    is not up is 404."""
    console = Console()
    console.login()
    call_id = ringing_call(console)
    headers = {"X-CSRF-Token": console.csrf}
    assert console.request("POST", f"/calls/{call_id}/hangup", headers=headers).status == 204
    assert call_id not in console.switch.engine.calls
    assert console.request("POST", f"/calls/{call_id}/hangup", headers=headers).status == 404


# -- the event stream -----------------------------------------------------------------------------


def events_of(data: bytes) -> list[tuple[str, str]]:
    """(event, data) pairs of an SSE stream."""
    import json

    out = []
    for block in data.split(b"\n\n"):
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line and
                      not line.startswith(b":"))
        if b"event" in fields:
            out.append((fields[b"event"].decode(), json.loads(fields[b"data"])))
    return out


def test_feed_is_a_call_observer():
    """ConsoleFeed provides ICallObserver."""
    assert verifyObject(ICallObserver, ConsoleFeed(Switch().engine, Switch().clock))


def upserted(got: list[tuple[str, Any]]) -> list[str]:
    """The ids of the rows the `calls` batches of `got` carried."""
    return [row["id"] for kind, data in got if kind == "calls" for row in data["upsert"]]


def test_events_send_a_call_when_a_call_starts_and_ended_when_it_ends():
    """GET /events: a `calls` batch with the call's row within a flush of its start,
    its id in a batch's `ended` after it ends; `stats` counters along."""
    console = Console()
    console.login()
    stream = console.open("GET", "/events")
    assert b"text/event-stream" in stream.value()
    stream.clear()
    call_id = ringing_call(console)
    console.clock.advance(FLUSH_INTERVAL)
    got = events_of(stream.value())
    assert upserted(got) == [call_id]
    assert any(kind == "stats" and data["calls_active"] == 1 for kind, data in got)
    stream.clear()
    console.switch.engine.hangup(call_id)
    console.clock.advance(1.0)
    assert ("calls", {"upsert": [], "ended": [call_id], "more": 0}) in events_of(stream.value())


def test_a_client_gets_the_live_calls_when_it_connects():
    """A page opened during a call sees it at once, before any new event, in a
    batch marked as holding every live call."""
    console = Console()
    console.login()
    call_id = ringing_call(console)
    got = events_of(console.open("GET", "/events").value().partition(b"\r\n\r\n")[2])
    assert upserted(got) == [call_id]
    assert [data["all"] for kind, data in got if kind == "calls"] == [True]


def test_bursts_are_coalesced():
    """1,000 call attempts in one instant, then more each tenth of a second: every
    call is shown, a flush window's events become one `calls` message (far fewer
    messages than events), and `stats` goes at most once a second."""
    console = Console(max_rows=2000)
    console.login()
    stream = console.open("GET", "/events")
    stream.clear()
    published: list[Any] = []
    console.switch.engine.add_observer(SimpleNamespace(call_event=published.append))
    for n in range(1000):
        console.switch.send(invite(call_id=f"burst-{n}"))
    for tick in range(20):
        for n in range(10):
            console.switch.send(invite(call_id=f"burst-{tick}-{n}"))
        console.clock.advance(0.1)
    console.clock.advance(FLUSH_INTERVAL)  # the last flush; 2.5 s in all
    got = events_of(stream.value())
    assert 2 <= sum(1 for kind, _ in got if kind == "stats") <= 3
    calls = upserted(got)
    assert len(set(calls)) == 1200 and len(published) >= 2 * 1200
    assert sum(1 for kind, _ in got if kind == "calls") <= 2.0 / FLUSH_INTERVAL + 1
    assert console.feed.messages_sent == len(got)


def test_a_call_that_begins_and_ends_within_a_flush_is_never_sent():
    """A call over before the flush costs no row and no `ended` (no page had it);
    one that was shown gets its `ended`."""
    console = Console()
    console.login()
    stream = console.open("GET", "/events")
    stream.clear()
    shown = ringing_call(console)
    console.clock.advance(FLUSH_INTERVAL)
    console.switch.send(invite(call_id="brief-call"))
    [brief] = set(console.switch.engine.calls) - {shown}
    console.switch.engine.hangup(brief)
    console.switch.engine.hangup(shown)
    console.clock.advance(FLUSH_INTERVAL)
    got = events_of(stream.value())
    assert upserted(got) == [shown]
    assert [data["ended"] for kind, data in got if kind == "calls" and data["ended"]] == [[shown]]
    assert console.feed.rows_built == 1


def test_a_page_gets_only_the_topics_it_asks_for():
    """?topics=stats,lines,queues (the dashboard) gets counters but no call rows and
    notes no call id; ?topics=calls gets rows but no counters; an unknown topic is 400."""
    console = Console()
    console.login()
    dashboard = console.open("GET", "/events?topics=stats,lines,queues")
    dashboard.clear()
    for n in range(20):
        console.switch.send(invite(call_id=f"topics-{n}"))
    assert console.feed._calls == {}
    console.clock.advance(FLUSH_INTERVAL)
    kinds = [kind for kind, _ in events_of(dashboard.value())]
    assert kinds == ["stats"] and console.feed.rows_built == 0
    calls_page = console.open("GET", "/events?topics=calls")
    got = events_of(calls_page.value().partition(b"\r\n\r\n")[2])
    assert [kind for kind, _ in got] == ["calls"] and len(upserted(got)) == 20
    assert console.request("GET", "/events?topics=calls,nonsense").status == 400


def test_calls_per_minute_ring():
    """The chart's ring counts attempts per minute, shifts with the clock and forgets
    what is older than an hour."""
    ring = MinuteRing(0.0)
    ring.count(1.0)
    ring.count(59.0)
    ring.count(61.0)
    assert ring.values(61.0)[-2:] == [2, 1]
    assert ring.values(60 * 59 + 1)[0] == 2
    assert ring.values(60 * 60 + 1)[0] == 1
    assert sum(ring.values(60 * 200)) == 0 and len(ring.values(0)) == 60


def test_dashboard_shows_counters_chart_and_tables():
    """GET /: #calls-active, the 60-bar chart, #registrations-count, lines and queues tables."""
    console = Console()
    console.login()
    ringing_call(console)
    text = console.request("GET", "/").text
    page = Elements(text)
    assert re.search(r'id="calls-active">1<', text)
    assert page.find("svg", id="calls-per-minute") and len(page.find("rect", class_="bar")) == 60
    assert page.find("span", id="registrations-count")
    assert page.find("table", id="lines-table") and page.find("table", id="queues-table")


# -- records, CSV, ladders, route ------------------------------------------------------------------


def test_records_page_and_csv_with_filters():
    """/records finds ended calls (from memory without a CDR store) by number and
    disposition; /records.csv is a text/csv attachment with the same rows."""
    console = Console()
    console.login()
    record = full_call(console.switch)
    page = console.request("GET", "/records?number=2005&disposition=ANSWERED")
    elements = Elements(page.text)
    assert [a["data-call-id"] for t, a in elements.tags if t == "tr" and "data-call-id" in a] == [record.id]
    assert elements.find("form", id="records-search") and elements.find("a", id="records-csv")
    assert console.request("GET", "/records?number=9999").text.count("data-call-id") == 0
    assert console.request("GET", "/records?disposition=BUSY").text.count("data-call-id") == 0
    reply = console.request("GET", "/records.csv?number=2005")
    assert reply.header("content-type").startswith("text/csv")
    assert reply.header("content-disposition").startswith("attachment")
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert [(r["id"], r["caller"], r["callee"], r["disposition"], r["billsec"]) for r in rows] == [
        (record.id, "1001", "2005", "ANSWERED", "10.0")]


def test_a_bad_search_field_is_400_naming_it():
    """A date that is not one: 400 and the field named."""
    console = Console()
    console.login()
    reply = console.request("GET", "/records?since=yesterday")
    assert reply.status == 400 and "since" in reply.text


def test_ladder_has_one_focusable_arrow_per_message():
    """/ladder/<id>: svg#ladder with one g.arrow per message of the call's trace, each
    focusable, and the messages for pre#message."""
    console = Console()
    console.login()
    record = full_call(console.switch)
    text = console.request("GET", f"/ladder/{record.id}").text
    arrows = Elements(text).find("g")
    arrows = [a for a in arrows if (a.get("class") or "").split()[0] == "arrow"]
    assert len(arrows) == len(console.switch.ladders.messages(record)) == len(console.switch.wire)
    assert all(a["tabindex"] == "0" and a["role"] == "button" for a in arrows)
    assert 'id="ladder"' in text and 'id="message"' in text and "INVITE sip:" in text
    assert console.request("GET", "/ladder/call-999").status == 404


def test_route_explains_without_placing_a_call():
    """/route?from=&to=: the explanation in pre#route-result, nothing sent."""
    console = Console()
    console.login()
    reply = console.request("GET", "/route?from=1001&to=2005")
    assert reply.status == 200
    result = re.search(r'<pre id="route-result">(.*?)</pre>', reply.text, re.S).group(1)
    assert "call from 1001 to 2005" in result
    assert console.switch.wire == [] and not console.switch.engine.calls


def test_answered_call_row_shows_talk_time():
    """Once answered, the row's state is answered and the talk time counts."""
    import json

    console = Console()
    console.login()
    answered_call(console.switch)
    console.clock.advance(30)
    [row] = json.loads(console.request("GET", "/api/calls").body)
    assert row["state"] == "answered" and row["talk"] == 30.0


class QueueModule:
    """A module as the queue app shows itself: stats tables only."""

    name, weight = "support", 10

    def queue_stats(self) -> list[dict[str, Any]]:
        return [{"queue": "support", "callers_waiting": 2, "longest_wait": 31.5}]

    def agent_stats(self) -> list[dict[str, Any]]:
        return [{"queue": "support", "agent": "1001", "state": "idle"}]


def test_queue_line_and_registration_events_redraw_their_tables():
    """A queue module's events (any Event named Queue*/Agent*) send `queue` with its
    tables as the inspect functions give them; line state changes send `line`;
    registrations send `registration` with the count."""
    from dataclasses import dataclass

    from phpvoip.events import Event, LineStateChanged, Registered

    @dataclass(frozen=True)
    class QueueCallerJoined(Event):
        time: float
        queue: str

    console = Console()
    console.switch.engine.modules.append(QueueModule())
    console.login()
    page = console.request("GET", "/").text
    assert ">support<" in page and ">31.5<" in page  # queue rows rendered generically
    stream = console.open("GET", "/events")
    stream.clear()
    events = console.switch.engine.events
    events.publish(QueueCallerJoined(0.0, "support"))
    events.publish(LineStateChanged(0.0, "carrier", "registering", "registered"))
    events.publish(Registered(0.0, "phones", "1001", "sip:1001@127.0.0.1"))
    console.clock.advance(1.0)
    got = dict(events_of(stream.value()))
    assert got["queue"]["queues"]["rows"] == [["support", "support", "2", "31.5"]]
    assert got["queue"]["agents"]["columns"] == ["MODULE", "QUEUE", "AGENT", "STATE"]
    assert got["line"]["empty"] == "no outside lines" and got["registration"] == {"count": 0}


def test_streams_end_with_their_session():
    """Logging out closes that session's event streams; an expired session's stream
    is closed at the next keepalive."""
    console = Console()
    console.login()
    first = console.open("GET", "/events")
    console.request("POST", "/logout", f"csrf={console.csrf}".encode())
    assert first.disconnecting and console.feed.clients == []
    console.login()
    second = console.open("GET", "/events")
    console.clock.advance(SETTINGS.session_timeout + 1)
    assert second.disconnecting and console.feed.clients == []


def test_an_unknown_user_costs_as_many_iterations_as_a_known_one():
    """The decoy checked for an unknown name has the users' iteration count, so the
    answer's time does not tell which names exist."""
    from phpvoip.console.passwords import check_hash

    sessions = Console().sessions
    assert check_hash(sessions.decoy)[0] == check_hash(SETTINGS.users[0].password_hash)[0] == 1_000


def test_nothing_is_kept_while_nobody_watches():
    """Without a connected page the feed notes no call (only the chart counts), so
    a console nobody opens holds no memory per call."""
    console = Console()
    for n in range(50):
        console.switch.send(invite(call_id=f"unwatched-{n}"))
    assert console.feed._calls == {} and len(console.switch.engine.calls) == 50
    assert sum(console.feed.per_minute.values(console.clock.seconds())) == 50


def test_ladder_lifelines_name_the_switch_and_the_parties():
    """The switch's lifeline is headed "phpvoip", each peer's by the user it speaks
    for (the caller's From, the callee's To), each with its address below; every
    arrow has a row-wide click target."""
    from phpvoip.console.ladder_svg import ladder_svg

    console = Console()
    record = full_call(console.switch)
    entries = [entry.as_dict() for entry in console.switch.ladders.messages(record)]
    svg = ladder_svg(entries)
    names = re.findall(r'<text class="name"[^>]*>([^<]*)</text>', svg)
    invite_in = next(e for e in entries if e["direction"] == "in" and e["label"].startswith("INVITE"))
    invite_out = next(e for e in entries if e["direction"] == "out" and e["label"].startswith("INVITE"))
    caller = re.search(r"^From:.*?sips?:([^@;>]+)@", invite_in["message"], re.M | re.I).group(1)
    callee = re.search(r"^To:.*?sips?:([^@;>]+)@", invite_out["message"], re.M | re.I).group(1)
    assert names[0] == caller and names[-1] == callee and "phpvoip" in names[1:-1]
    addresses = re.findall(r'<text class="address"[^>]*>([^<]*)</text>', svg)
    assert len(addresses) == len(names) and all(":" in a for a in addresses)
    assert svg.count('<rect class="hit"') == len(entries)
