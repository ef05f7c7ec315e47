"""Console hardening: login throttling per source address (task.Clock, the real
HTTP stack on a StringTransport) and the /calls page under overload (at most
`max_rows` calls, "N more calls not shown", the event stream keeping it so)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher

from phpvoip.config import ConfigError, load_text
from phpvoip.console import auth
from phpvoip.console.feed import FLUSH_INTERVAL
from phpvoip.console.throttle import LoginThrottle
from phpvoip.console.web import console_site
from tests.unit.test_console import PASSWORD, Console, Elements, Reply, events_of, upserted
from tests.unit.test_console_config import console_yaml
from tests.unit.test_engine import invite

# -- the throttle on its own ---------------------------------------------------------------------


def test_five_failures_shut_an_address_out_for_a_doubling_capped_delay():
    """Four failures: still free. The fifth: 1 s. Each failure after a wait doubles
    it, up to max_delay; other addresses are untouched; a success resets."""
    clock = Clock()
    throttle = LoginThrottle(clock, attempts=5, window=300, max_delay=8)
    for _ in range(4):
        throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 0
    delays = []
    for _ in range(6):
        throttle.failed("192.0.2.1")
        delays.append(throttle.retry_after("192.0.2.1"))
        clock.advance(delays[-1])
        assert throttle.retry_after("192.0.2.1") == 0
    assert delays == [1, 2, 4, 8, 8, 8]
    assert throttle.retry_after("192.0.2.2") == 0
    throttle.succeeded("192.0.2.1")
    throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 0


def test_failures_spread_wider_than_the_window_do_not_add_up():
    """Four failures, a quiet window, four more: never shut out."""
    clock = Clock()
    throttle = LoginThrottle(clock, attempts=5, window=60)
    for _ in range(2):
        for _ in range(4):
            throttle.failed("192.0.2.1")
            clock.advance(1)
        clock.advance(61)
    assert throttle.retry_after("192.0.2.1") == 0


def test_the_table_stays_bounded_and_forgets_quiet_addresses():
    """10,000 guessing addresses against a table of 100: at most 100 kept; once a
    window has passed, the old ones are swept as new ones come."""
    clock = Clock()
    throttle = LoginThrottle(clock, attempts=2, window=10, max_addresses=100)
    for n in range(10_000):
        throttle.failed(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
    assert len(throttle.addresses) == 100
    last = "10.0.39.15"  # the last address, twice now: shut out
    throttle.failed(last)
    assert throttle.retry_after(last) == 1
    clock.advance(20)
    throttle.failed("192.0.2.9")
    assert list(throttle.addresses) == ["192.0.2.9"]


# -- over HTTP -----------------------------------------------------------------------------------


def post_login(console: Console, body: str, peer: str = "192.0.2.7", headers: str = "") -> Reply:
    """POST /login from `peer` (the StringTransport's far end), with `headers`
    (lines ending in CRLF) added."""
    channel = console.site.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
    channel.makeConnection(transport)
    data = body.encode()
    channel.dataReceived(b"POST /login HTTP/1.0\r\nHost: 127.0.0.1\r\n" + headers.encode()
                         + b"Content-Type: application/x-www-form-urlencoded\r\n"
                         + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return Reply(transport.value())


RIGHT = f"username=admin&password={PASSWORD}"


def test_a_guessing_address_gets_429_without_a_password_check(monkeypatch: pytest.MonkeyPatch):
    """Five failures (wrong names count as wrong passwords): 401 each. Then even the
    right password gets 429 with Retry-After, no cookie, and no PBKDF2 run; another
    address logs in meanwhile; after the wait the right password works and the
    count starts again. One warning line per episode, however many attempts."""
    checks: list[str] = []
    verify = auth.verify_password
    monkeypatch.setattr(auth, "verify_password", lambda pw, stored: checks.append(pw) or verify(pw, stored))
    warnings: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if "throttled" in str(event.get("log_format", "")):
            warnings.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        console = Console()
        bodies = ["username=admin&password=no", "username=root&password=x"] * 2
        bodies.append("username=nobody&password=y")
        assert [post_login(console, b).status for b in bodies] == [401] * 5
        assert len(checks) == 5
        for _ in range(3):
            refused = post_login(console, RIGHT)
            assert refused.status == 429 and refused.header("retry-after") == "1"
            assert refused.header("set-cookie") is None and 'id="login-error"' in refused.text
        assert len(checks) == 5 and console.sessions.open == {}
        assert [w["address"] for w in warnings] == ["192.0.2.7"]
        assert post_login(console, RIGHT, peer="192.0.2.8").status == 303
        console.clock.advance(1)
        assert post_login(console, RIGHT).status == 303
        assert [post_login(console, "username=admin&password=no").status for _ in range(5)] == [401] * 5
        assert post_login(console, RIGHT).header("retry-after") == "1"
    finally:
        globalLogPublisher.removeObserver(observe)
    assert [w["address"] for w in warnings] == ["192.0.2.7"] * 2  # one per episode


def test_retry_after_grows_for_an_address_that_keeps_failing():
    """Guessing again after each wait: Retry-After 1, 2, 4, ... capped by login_max_delay."""
    console = Console()
    for _ in range(5):
        post_login(console, "username=admin&password=no")
    waits = []
    for _ in range(4):
        wait = int(post_login(console, RIGHT).header("retry-after") or 0)
        waits.append(wait)
        console.clock.advance(wait)
        assert post_login(console, "username=admin&password=no").status == 401
    assert waits == [1, 2, 4, 8]


def behind_proxy(proxies: str) -> Console:
    """A console whose config trusts `proxies` (YAML list) as reverse proxies."""
    base = "  listen: 'tcp:8080:interface=127.0.0.1'\n  users: {a: {password: x}}\n"
    settings = load_text(console_yaml(base + f"  trusted_proxies: {proxies}\n")).console
    console = Console()
    console.site = console_site(console.service, console.sessions, console.feed, settings.trusted_proxies)
    return console


def test_behind_a_trusted_proxy_each_forwarded_client_is_throttled_on_its_own():
    """Behind nginx on 127.0.0.1 (trusted), the throttle goes by X-Forwarded-For:
    one guessing client is shut out, another behind the same proxy logs in. What a
    client puts in the header itself does not help it: the proxy appends the real
    address, read from the right. From an untrusted peer the header is ignored."""
    console = behind_proxy("[127.0.0.1, '10.0.0.0/8']")
    guesser = "X-Forwarded-For: 198.51.100.9\r\n"
    for _ in range(5):
        assert post_login(console, "username=admin&password=no", "127.0.0.1", guesser).status == 401
    assert post_login(console, RIGHT, "127.0.0.1", guesser).status == 429
    # The same guesser claiming another address first, through two trusted proxies.
    spoofed = "X-Forwarded-For: 203.0.113.1, 198.51.100.9, 10.1.2.3\r\n"
    assert post_login(console, RIGHT, "127.0.0.1", spoofed).status == 429
    assert post_login(console, RIGHT, "127.0.0.1", "X-Forwarded-For: 198.51.100.10\r\n").status == 303
    # An address that is no proxy cannot pick its bucket by the header.
    for _ in range(5):
        post_login(console, "username=admin&password=no", "192.0.2.50", "X-Forwarded-For: 198.51.100.11\r\n")
    assert post_login(console, RIGHT, "192.0.2.50", "X-Forwarded-For: 198.51.100.12\r\n").status == 429
    assert post_login(console, RIGHT, "127.0.0.1", "X-Forwarded-For: 198.51.100.11\r\n").status == 303


def test_https_at_the_proxy_makes_the_session_cookie_secure():
    """X-Forwarded-Proto: https from a trusted proxy: the cookie is Secure; the same
    header from anyone else, or plain http, leaves it as it was."""
    console = behind_proxy("['127.0.0.1']")
    https = "X-Forwarded-For: 198.51.100.9\r\nX-Forwarded-Proto: https\r\n"
    cookie = post_login(console, RIGHT, "127.0.0.1", https).header("set-cookie") or ""
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    plain = post_login(console, RIGHT, "127.0.0.1", "X-Forwarded-Proto: http\r\n").header("set-cookie") or ""
    untrusted = post_login(console, RIGHT, "192.0.2.9", https).header("set-cookie") or ""
    assert plain and untrusted and "Secure" not in plain and "Secure" not in untrusted


def test_login_lines_name_the_client_address():
    """The log says who logged in or was refused, and from which address (the
    forwarded one behind a trusted proxy), for the operator and for fail2ban."""
    lines: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if "console:" in str(event.get("log_format", "")):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        console = behind_proxy("['127.0.0.1']")
        post_login(console, "username=admin&password=no", "127.0.0.1", "X-Forwarded-For: 198.51.100.9\r\n")
        post_login(console, RIGHT, "192.0.2.7")
    finally:
        globalLogPublisher.removeObserver(observe)
    assert "console: login refused for 'admin' from 198.51.100.9" in lines
    assert "console: admin logged in from 192.0.2.7" in lines


def test_login_settings_default_and_their_mistakes_are_named():
    """login_attempts 5, login_window 300, login_max_delay 300, max_rows 500 by
    default; a bad value names file, key and problem."""
    base = "  listen: 'tcp:8080:interface=127.0.0.1'\n  users: {a: {password: x}}\n"
    settings = load_text(console_yaml(base)).console
    assert (settings.login_attempts, settings.login_window, settings.login_max_delay, settings.max_rows) == \
        (5, 300, 300, 500)
    for extra, key, problem in (("login_attempts: 0", "console.login_attempts", "at least 1"),
                                ("login_window: soon", "console.login_window", "number"),
                                ("login_max_delay: 0", "console.login_max_delay", "at least 1"),
                                ("max_rows: 2.5", "console.max_rows", "integer"),
                                ("trusted_proxies: [nginx]", "console.trusted_proxies", "not an IP address"),
                                ("trusted_proxies: [127.0.0.1, 10.0.0.0/33]", "console.trusted_proxies[1]",
                                 "not an IP address")):
        with pytest.raises(ConfigError) as caught:
            load_text(console_yaml(base + f"  {extra}\n"), "switch.yaml")
        assert (caught.value.file, caught.value.key) == ("switch.yaml", key)
        assert problem in caught.value.problem


# -- /calls under overload -----------------------------------------------------------------------


def many_calls(console: Console, count: int, prefix: str = "load") -> list[str]:
    """`count` ringing calls; their switch ids, oldest first."""
    before = set(console.switch.engine.calls)
    for n in range(count):
        console.switch.send(invite(call_id=f"{prefix}-{n}"))
    return [i for i in console.switch.engine.calls if i not in before]


def page_ids(console: Console) -> tuple[list[str], Elements, str]:
    text = console.request("GET", "/calls").text
    page = Elements(text)
    return [a["data-call-id"] or "" for a in page.find("tr") if "data-call-id" in a], page, text


def test_calls_page_shows_the_longest_running_and_says_how_many_more():
    """25 calls, max_rows 10: the 10 oldest rows, #calls-active 25, and a visible
    "15 more calls not shown"; under the limit the line is hidden."""
    console = Console(max_rows=10)
    console.login()
    ids = many_calls(console, 25)
    shown, page, text = page_ids(console)
    assert shown == ids[:10]
    assert re.search(r'id="calls-active">25<', text)
    [line] = page.find("p", id="calls-more")
    assert line["data-more"] == "15" and "hidden" not in line
    assert "15 more calls not shown" in text
    for call_id in ids[3:]:
        console.switch.engine.hangup(call_id)
    shown, page, _ = page_ids(console)
    assert shown == ids[:3] and "hidden" in page.find("p", id="calls-more")[0]


def calls_batches(stream: StringTransport) -> list[dict[str, Any]]:
    got = [data for kind, data in events_of(stream.value()) if kind == "calls"]
    stream.clear()
    return got


def apply_batches(held: set[str], batches: list[dict[str, Any]]) -> set[str]:
    """The calls a page holds after `batches`, applied one by one as console.js does."""
    for batch in batches:
        held = (held - set(batch["ended"])) | {r["id"] for r in batch["upsert"]}
    return held


def test_the_stream_keeps_the_window_as_calls_come_and_go():
    """The first batch is the page's window with "more"; a shown call that ends is
    named ended and the next oldest joins; an unshown one ending or a new call
    beyond the limit only changes "more"; when the load falls, every call is shown."""
    console = Console(max_rows=10)
    console.login()
    ids = many_calls(console, 25)
    stream = console.open("GET", "/events?topics=calls")
    [first] = [data for kind, data in events_of(stream.value().partition(b"\r\n\r\n")[2]) if kind == "calls"]
    stream.clear()
    assert [r["id"] for r in first["upsert"]] == page_ids(console)[0] == ids[:10]
    assert first["more"] == 15 and first["all"] is True

    console.switch.engine.hangup(ids[2])
    console.clock.advance(FLUSH_INTERVAL)
    [batch] = calls_batches(stream)
    assert (batch["ended"], [r["id"] for r in batch["upsert"]], batch["more"]) == ([ids[2]], [ids[10]], 14)

    console.switch.engine.hangup(ids[20])
    console.clock.advance(FLUSH_INTERVAL)
    assert calls_batches(stream) == [{"upsert": [], "ended": [], "more": 13}]

    newer = many_calls(console, 3, "later")
    console.clock.advance(FLUSH_INTERVAL)
    assert calls_batches(stream) == [{"upsert": [], "ended": [], "more": 16}]

    # What a page holds, applied batch by batch as console.js does: always the window.
    held = {r["id"] for r in first["upsert"]} - {ids[2]} | {ids[10]}
    for call_id in ids[:10]:
        console.switch.engine.hangup(call_id)
    console.clock.advance(FLUSH_INTERVAL)
    batches = calls_batches(stream)
    held = apply_batches(held, batches)
    live = list(console.switch.engine.calls)
    assert held == set(live[:10]) and batches[-1]["more"] == len(live) - 10 == 7
    assert len(console.feed._shown) == 10

    for call_id in live[:8]:
        console.switch.engine.hangup(call_id)
    console.clock.advance(FLUSH_INTERVAL)
    batches = calls_batches(stream)
    held = apply_batches(held, batches)
    assert held == set(console.switch.engine.calls) and batches[-1]["more"] == 0
    assert set(newer) <= held


def test_a_flush_builds_rows_only_for_shown_calls():
    """2,000 calls arriving with max_rows 50: the batches carry 50 rows, not 2,000."""
    console = Console(max_rows=50)
    console.login()
    stream = console.open("GET", "/events?topics=calls")
    stream.clear()
    many_calls(console, 2000)
    console.clock.advance(FLUSH_INTERVAL)
    batches = calls_batches(stream)
    assert len(upserted([("calls", b) for b in batches])) == 50 == console.feed.rows_built
    assert batches[-1]["more"] == 1950


# -- a supervisor's buttons on the agents ------------------------------------------------------


def console_with_queue() -> tuple[Console, Any]:
    """A logged-in console over a switch with queue "sales" (700): static agent 1001,
    dynamic 1003."""
    from phpvoip.apps.queue import Queue
    from phpvoip.apps.queue_config import parse_settings as queue_settings
    from phpvoip.settings import Section

    console = Console()
    data = {"number": "700", "agents": ["1001"], "dynamic_agents": ["1003"], "ports": "46110-46119"}
    queue = Queue("sales", queue_settings(Section("t.yaml", "modules[1]", data)), reactor=console.clock)
    engine = console.switch.engine
    engine.modules = [*engine.modules, queue]
    queue.start(engine)
    console.login()
    return console, queue


def agent_rows(queue: Any) -> dict[str, tuple[str, bool]]:
    return {r["agent"]: (r["state"], r["paused"]) for r in queue.agent_stats()}


def test_the_dashboard_offers_each_agent_its_buttons_and_they_act():
    """The agents table has a form per action: Pause and Log out for an agent who is
    in, Log in for one who is out; each posts with the CSRF token. A form post acts
    and goes back to the dashboard (303); a script's (X-CSRF-Token) gets 204."""
    console, queue = console_with_queue()
    page = Elements(console.request("GET", "/").text)
    actions = {a["action"] for a in page.find("form", class_="agent-action")}
    assert actions == {"/agents/1001/pause?queue=sales", "/agents/1001/logout?queue=sales"}
    assert page.find("input", type="hidden", name="csrf", value=console.csrf)
    reply = console.request("POST", "/agents/1001/pause?queue=sales", f"csrf={console.csrf}".encode())
    assert reply.status == 303 and reply.header("location") == "/"
    assert agent_rows(queue)["1001"] == ("paused", True)
    page = Elements(console.request("GET", "/").text)
    forms = {a["action"] for a in page.find("form", class_="agent-action")}
    assert "/agents/1001/resume?queue=sales" in forms
    token = {"X-CSRF-Token": console.csrf}
    fetched = console.request("POST", "/agents/1001/resume?queue=sales", headers=token)
    assert fetched.status == 204 and agent_rows(queue)["1001"] == ("available", False)
    assert console.request("POST", "/agents/1003/login", headers=token).status == 204
    assert agent_rows(queue)["1003"] == ("available", False)
    queue.stop()


def test_agent_buttons_refuse_without_the_token_and_say_why_not():
    """No CSRF token: 403 and nothing changes. An unknown queue 404; an agent who is
    not logged in cannot be paused (409, with why); an unknown action is 404."""
    console, queue = console_with_queue()
    assert console.request("POST", "/agents/1001/logout?queue=sales", b"csrf=wrong").status == 403
    assert agent_rows(queue)["1001"] == ("available", False)
    token = {"X-CSRF-Token": console.csrf}
    assert console.request("POST", "/agents/1001/pause?queue=support", headers=token).status == 404
    refused = console.request("POST", "/agents/1003/pause?queue=sales", headers=token)
    assert refused.status == 409 and "not logged in" in refused.text
    assert console.request("POST", "/agents/1001/lunch?queue=sales", headers=token).status == 404
    assert agent_rows(queue)["1001"] == ("available", False)
    queue.stop()
