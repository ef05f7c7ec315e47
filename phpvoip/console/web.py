"""The console's HTTP side: one twisted.web resource that checks the session and
dispatches by method and path, and the static files.

Rules, in one place (`ConsoleResource.render`): /login and /static/ are open;
everything else needs a live session, else 303 to /login (pages) or 401 (JSON,
events); every POST but /login needs the session's CSRF token (form field ``csrf``
or header ``X-CSRF-Token``), else 403 and nothing is done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from phpvoip import inspect
from phpvoip.console import pages
from phpvoip.console.auth import COOKIE, Busy, Session, Sessions, Throttled
from phpvoip.console.clients import Network, client_of
from phpvoip.console.data import call_rows, table_dict
from phpvoip.console.feed import TOPICS, ConsoleFeed, parse_topics
from phpvoip.console.ladder_svg import ladder_svg
from phpvoip.console.records import CSV_LIMIT, PAGE_LIMIT, QueryError, RecordQuery, csv_text, find_records

__all__ = ["ConsoleResource", "StaticFiles", "console_site"]

log = Logger()

STATIC = Path(__file__).parent / "static"
HTML = b"text/html; charset=utf-8"
SECURITY_HEADERS = (
    # No inline script anywhere: the pages load /static/console.js only.
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; "
                                 b"img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)


class StaticFiles(resource.Resource):
    """/static/: the console's own few files, read once at start (so a request
    never touches the disk) and served to anybody: they hold nothing secret."""

    isLeaf = True
    TYPES = {".css": b"text/css; charset=utf-8", ".js": b"text/javascript; charset=utf-8"}

    def __init__(self, folder: Path = STATIC) -> None:
        super().__init__()
        self.files = {path.name: (self.TYPES[path.suffix], path.read_bytes())
                      for path in folder.iterdir() if path.suffix in self.TYPES}

    def render_GET(self, request: Any) -> bytes:
        name = "/".join(p.decode("utf-8", "replace") for p in request.postpath)
        found = self.files.get(name)
        request.setHeader(b"x-content-type-options", b"nosniff")
        if found is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found\n"
        request.setHeader(b"content-type", found[0])
        request.setHeader(b"cache-control", b"no-cache")
        return found[1]


AGENT_ACTIONS = ("login", "logout", "pause", "resume")  # phpvoip.apps.queue.SUPERVISOR_ACTIONS


def _arg(request: Any, name: str) -> str:
    values = request.args.get(name.encode()) or [b""]
    return values[0].decode("utf-8", "replace")


class ConsoleResource(resource.Resource):
    """Everything under / but /static/. `service` is the `SwitchService` (engine,
    ladders, call records)."""

    isLeaf = True

    def __init__(self, service: Any, sessions: Sessions, feed: ConsoleFeed,
                 proxies: tuple[Network, ...] = ()) -> None:
        super().__init__()
        self.proxies = proxies  # trusted reverse proxies (`clients`)
        self.service = service
        self.engine = service.engine
        self.sessions = sessions
        self.feed = feed
        feed.session_alive = sessions.alive

    # -- the rules ---------------------------------------------------------------------------

    def render(self, request: Any) -> Any:
        for name, value in SECURITY_HEADERS:
            request.setHeader(name, value)
        request.setHeader(b"cache-control", b"no-store")
        path = request.path.decode("utf-8", "replace").rstrip("/") or "/"
        method = request.method.decode("ascii", "replace")
        if path == "/login":
            if method == "GET":
                return self._html(request, pages.login_page())
            if method == "POST":
                return self.login(request)
            return self._not_allowed(request)
        session = self.sessions.find(request.getCookie(COOKIE))
        api = path.startswith("/api/") or path == "/events" or path.endswith(".csv")
        if session is None:
            if api or method != "GET":
                return self._plain(request, 401, "log in first (POST /login)")
            request.setResponseCode(303)
            request.setHeader(b"location", b"/login")
            return b""
        if method == "POST":
            sent = request.getHeader(b"x-csrf-token") or (request.args.get(b"csrf") or [None])[0]
            if not session.csrf_ok(sent):
                log.warn("console: POST {path} by {user} without its CSRF token: refused", path=path,
                         user=session.user)
                return self._plain(request, 403, "missing or wrong CSRF token")
            return self.post(request, session, path)
        if method not in ("GET", "HEAD"):
            return self._not_allowed(request)
        return self.get(request, session, path)

    # -- responses ---------------------------------------------------------------------------

    def _html(self, request: Any, text: str, code: int = 200) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", HTML)
        return text.encode("utf-8")

    def _plain(self, request: Any, code: int, text: str) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return text.encode("utf-8") + b"\n"

    def _json(self, request: Any, data: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(data).encode()

    def _not_allowed(self, request: Any) -> bytes:
        return self._plain(request, 405, "method not allowed")

    def _common(self, session: Session) -> dict[str, Any]:
        return {"csrf": session.csrf, "user": session.user}

    # -- POST ----------------------------------------------------------------------------------

    def login(self, request: Any) -> Any:
        user, password = _arg(request, "username"), _arg(request, "password")
        client = client_of(request, self.proxies)
        d = self.sessions.login(user, password, client.address)

        def checked(session: Session | None) -> None:
            if session is None:
                body = self._html(request, pages.login_page("Wrong user name or password.", user), 401)
            else:
                request.addCookie(COOKIE, session.token.encode(), path=b"/", httpOnly=True, sameSite="strict",
                                  secure=client.secure)
                request.setResponseCode(303)
                request.setHeader(b"location", b"/")
                body = b""
            self._finish(request, body)

        def busy(failure: Failure) -> None:
            if failure.trap(Busy, Throttled) is Busy:
                wait, text = 1, "Busy: try again in a moment."
            else:
                wait = failure.value.retry_after
                text = f"Too many failed logins: try again in {wait} s."
            request.setHeader(b"retry-after", str(wait).encode())
            self._finish(request, self._html(request, pages.login_page(text, user), 429))

        d.addCallback(checked).addErrback(busy).addErrback(
            lambda f: log.failure("console: login failed", f))
        return server.NOT_DONE_YET

    def _finish(self, request: Any, body: bytes) -> None:
        """End a deferred answer, unless the browser has gone meanwhile."""
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.write(body)
        request.finish()

    def post(self, request: Any, session: Session, path: str) -> bytes:
        if path == "/logout":
            self.sessions.logout(session)
            self.feed.end_session(session)
            request.addCookie(COOKIE, b"", path=b"/", httpOnly=True, sameSite="strict", max_age="0")
            request.setResponseCode(303)
            request.setHeader(b"location", b"/login")
            return b""
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "calls" and parts[3] == "hangup":
            call_id = parts[2]
            if not self.engine.hangup(call_id):
                return self._plain(request, 404, f"no live call {call_id}")
            log.info("console: {user} hung up {call}", user=session.user, call=call_id)
            if request.getHeader(b"x-csrf-token") is not None:
                request.setResponseCode(204)  # a script's fetch(): the feed says the rest
                return b""
            request.setResponseCode(303)
            request.setHeader(b"location", b"/calls")
            return b""
        if len(parts) == 4 and parts[1] == "agents" and parts[3] in AGENT_ACTIONS:
            return self._supervise(request, session, parts[2], parts[3])
        return self._plain(request, 404, "not found")

    def _supervise(self, request: Any, session: Session, agent: str, action: str) -> bytes:
        """POST /agents/<agent>/<action>?queue=<name>: a supervisor's button on the
        dashboard (log in, log out, pause, resume); 204 to a script, 303 to the
        dashboard for a plain form, 404/409 with why not."""
        queue = _arg(request, "queue") or None
        try:
            results = inspect.supervise(self.engine, agent, action, queue, by=f"console user {session.user}")
        except LookupError as e:
            return self._plain(request, 404, str(e))
        if not results:
            return self._plain(request, 404, "no queues configured")
        refused = [why for _, done, why in results if not done]
        if refused:
            return self._plain(request, 409, "; ".join(refused))
        if request.getHeader(b"x-csrf-token") is not None:
            request.setResponseCode(204)  # the feed redraws the agents table
            return b""
        request.setResponseCode(303)
        request.setHeader(b"location", b"/")
        return b""

    # -- GET -----------------------------------------------------------------------------------

    def get(self, request: Any, session: Session, path: str) -> Any:
        common = self._common(session)
        engine = self.engine
        if path == "/":
            return self._html(request, pages.dashboard_page(
                self.feed.stats(), table_dict(inspect.lines(engine)), table_dict(inspect.queues(engine)),
                table_dict(inspect.agents(engine)), **common))
        if path == "/calls":
            rows, more = self.feed.window_rows()
            return self._html(request, pages.calls_page(rows, more=more, **common))
        if path == "/registrations":
            return self._html(request, pages.registrations_page(self._registrations(), **common))
        if path == "/events":
            if request.method != b"GET":
                return self._not_allowed(request)
            topics = parse_topics(_arg(request, "topics"))
            if topics is None:
                known = ", ".join(sorted(TOPICS))
                return self._plain(request, 400, f"topics: one or more of {known}, comma separated")
            self.feed.attach(request, session, topics)
            return server.NOT_DONE_YET
        if path == "/api/calls":
            return self._json(request, call_rows(engine))
        if path == "/api/registrations":
            return self._json(request, self._registrations())
        if path in ("/records", "/records.csv", "/api/records"):
            return self.records(request, path, common)
        if path == "/route":
            from_user, to_user = _arg(request, "from").strip(), _arg(request, "to").strip()
            result = inspect.explain_route(engine, from_user, to_user) if from_user and to_user else []
            return self._html(request, pages.route_page(from_user, to_user, result, **common))
        if path.startswith("/ladder/"):
            return self.ladder(request, path[len("/ladder/"):], common)
        return self._html(request, pages.message_page("Not found", f"Nothing at {path}.", **common), 404)

    def _registrations(self) -> dict[str, Any]:
        return table_dict(inspect.registrations(self.engine))

    def ladder(self, request: Any, call_id: str, common: dict[str, Any]) -> bytes:
        ladders = getattr(self.service, "ladders", None)
        if ladders is None:
            return self._html(request, pages.message_page(
                "Ladders are off", "Set ladders: {enabled: true} in the config to keep SIP messages.",
                **common), 404)
        try:
            entries = [e.as_dict() for e in ladders.messages(call_id)]
        except KeyError:
            return self._html(request, pages.message_page(
                "No ladder", f"No messages are kept for {call_id} (only the last calls are).", **common), 404)
        return self._html(request, pages.ladder_page(call_id, ladder_svg(entries), entries, **common))

    def records(self, request: Any, path: str, common: dict[str, Any]) -> Any:
        try:
            query = RecordQuery.from_args(request.args)
        except QueryError as e:
            if path != "/records":
                return self._plain(request, 400, str(e))
            return self._html(request, pages.records_page([], RecordQuery(), "", str(e), **common), 400)
        d = find_records(self.service, query, CSV_LIMIT if path == "/records.csv" else PAGE_LIMIT)

        def done(rows: list[dict[str, Any]]) -> None:
            if path == "/records.csv":
                request.setHeader(b"content-type", b"text/csv; charset=utf-8")
                request.setHeader(b"content-disposition", b'attachment; filename="phpvoip-records.csv"')
                body = csv_text(rows).encode("utf-8")
            elif path == "/api/records":
                body = self._json(request, rows)
            else:
                body = self._html(request, pages.records_page(rows, query, _query_string(query), **common))
            self._finish(request, body)

        def failed(failure: Failure) -> None:
            log.failure("console: searching the call records failed", failure)
            self._finish(request, self._plain(request, 500, "searching the call records failed; see the log"))

        d.addCallbacks(done, failed)
        return server.NOT_DONE_YET


def _query_string(query: RecordQuery) -> str:
    """The search as a query string for the CSV link (times as epoch seconds)."""
    pairs = [("number", query.number), ("disposition", query.disposition)]
    pairs += [(name, repr(value)) for name, value in (("since", query.since), ("until", query.until))
              if value is not None]
    return "&".join(f"{k}={quote(v)}" for k, v in pairs if v)


class _Root(resource.Resource):
    """/static/ to the files, everything else to the console."""

    def __init__(self, console: ConsoleResource) -> None:
        super().__init__()
        self.console = console
        self.putChild(b"static", StaticFiles())

    def getChild(self, path: bytes, request: Any) -> resource.Resource:
        # Not a leaf: put the segment back so the console sees the whole path.
        request.postpath.insert(0, path)
        request.prepath.pop()
        return self.console

    def render(self, request: Any) -> Any:
        return self.console.render(request)


class _QuietSite(server.Site):
    """No access log line per request: the console's own log says what matters."""

    def log(self, request: Any) -> None:
        return None


def console_site(service: Any, sessions: Sessions, feed: ConsoleFeed,
                 proxies: tuple[Network, ...] = ()) -> server.Site:
    """The console's Site: its clock (idle connection timeouts) is the service's reactor;
    `proxies` are the reverse proxies whose X-Forwarded-For is believed."""
    site = _QuietSite(_Root(ConsoleResource(service, sessions, feed, proxies)), reactor=service.reactor)
    site.sessionFactory = None  # type: ignore[assignment]  # ours are in Sessions
    return site
