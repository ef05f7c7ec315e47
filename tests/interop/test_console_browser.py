"""The web console in a real headless browser (Debian's chromium through chromedriver
and selenium), against live SIPp calls through an in-process switch.

The switch and its console run on the test's reactor; every selenium call blocks
(it talks HTTP to chromedriver), so each runs in a thread (``deferToThread``) while
the reactor serves the pages, the Server-Sent Events and the SIP calls. SIPp's
caller and callee wait for the switch's BYE: the console's hang-up button must
make it reach both legs. Screenshots of the dashboard and of a ladder are left in
the test's tmp directory (never committed).
"""

from __future__ import annotations

import csv
import io
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task, threads

from bench.browser import CHROMEDRIVER, CHROMIUM, chromium_driver, new_tab, page_streams, password_hash
from bench.browser import log_in as browser_log_in
from tests.interop.conftest import sipp_args, wait_idle
from tests.interop.test_trunk_flows import received, trunk_config, wait_bound
from tests.support import LOOPBACK, free_port, require_program

pytestmark = pytest.mark.interop

DEADLINE = 45.0  # seconds before a SIPp peer is killed
USER, PASSWORD = "admin", "console-browser-test"
NUMBER = "2005"
SHOW_WITHIN = 2.0  # a live call must be in table#calls-table this soon (issue 13)


@pytest.fixture
def chromium(tmp_path: Path) -> Any:
    """A headless chromium session with a fresh profile; quit at teardown."""
    require_program(CHROMIUM)
    require_program(CHROMEDRIVER)
    driver = chromium_driver(tmp_path / "profile", log=tmp_path / "chromedriver.log")
    yield driver
    driver.quit()


async def on(function: Any, *args: Any) -> Any:
    """Run a blocking selenium step in a thread while the reactor keeps serving."""
    return await threads.deferToThread(function, *args)


async def wait_until(reactor: Any, check: Any, timeout: float, what: str) -> Any:
    deadline = reactor.seconds() + timeout
    while not (value := check()):
        if reactor.seconds() > deadline:
            raise AssertionError(f"no {what} within {timeout}s")
        await task.deferLater(reactor, 0.02, lambda: None)
    return value


def wait_for(driver: Any, condition: Any, timeout: float = 10.0, poll: float = 0.05) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=poll).until(condition)


def wait_shown(driver: Any, row: str) -> None:
    """Wait for a live call's row on /calls; on a timeout say what the page had."""
    from selenium.common.exceptions import TimeoutException

    try:
        wait_for(driver, css(row), SHOW_WITHIN, 0.02)
    except TimeoutException:
        table = driver.find_element("css selector", "table#calls-table").get_attribute("outerHTML")
        raise AssertionError(f"{row} not shown within {SHOW_WITHIN}s; streams {page_streams(driver)}; "
                             f"table {table[:1500]}") from None


def css(selector: str) -> Any:
    from selenium.webdriver.support import expected_conditions

    return expected_conditions.presence_of_element_located(("css selector", selector))


async def console_switch(switch: Any, uas_port: int, extra: str = "") -> tuple[Any, str]:
    """A switch with a trunk to the SIPp callee and the console on a free port
    (`extra`: more lines of its console section)."""
    port = free_port()
    service = await switch(
        trunk_config(uas_port)
        + "console:\n"
        + f"  listen: 'tcp:{port}:interface={LOOPBACK}'\n"
        + f"  users: {{{USER}: {{password_hash: '{password_hash(PASSWORD)}'}}}}\n"
        + extra
    )
    return service, f"http://{LOOPBACK}:{port}"


def log_in(driver: Any, base: str, password: str = PASSWORD) -> None:
    """Log in through the form; a wrong password must leave #login-error on the page."""
    browser_log_in(driver, base, USER, password)
    if password == PASSWORD:
        assert driver.get_cookie("phpvoip_session"), driver.page_source[:500]
    else:
        wait_for(driver, css("#login-error"))


def open_page(driver: Any, base: str, path: str, ready: str) -> None:
    driver.get(base + path)
    wait_for(driver, css(ready))


def fetch(driver: Any, method: str, path: str, token: str | None) -> int:
    """fetch() from the page's own context (its cookie goes along), with the CSRF
    header when `token` is given ("page": the page's own token). Returns the status."""
    return driver.execute_async_script(
        """
        const [method, path, token, done] = arguments;
        const headers = {};
        if (token !== null) {
          headers['X-CSRF-Token'] = token === 'page'
            ? document.querySelector('meta[name=csrf-token]').content : token;
        }
        fetch(path, {method: method, headers: headers, credentials: 'same-origin', redirect: 'manual'})
          .then(r => done(r.status), e => done(String(e)));
        """,
        method, path, token,
    )


def download(driver: Any, url: str) -> tuple[int, str, str]:
    """GET `url` with the browser's session cookie (HttpOnly: read through selenium,
    not the page): status, Content-Type and body."""
    cookie = driver.get_cookie("phpvoip_session")
    request = urllib.request.Request(url, headers={"Cookie": f"phpvoip_session={cookie['value']}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()


async def live_call(reactor: Any, sipp: str, service: Any, peers: Any, tmp_path: Path,
                    uas_port: int) -> tuple[Any, Any, str, dict[str, Path]]:
    """SIPp callee and caller that wait for the switch's BYE; returns once the switch
    holds the call (not yet answered), with its id and the peers' message logs."""
    logs = {side: tmp_path / f"{side}_messages.log" for side in ("uac", "uas")}
    common = ("-m", "1", "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error", "-trace_msg")
    uas = peers.start(sipp_args(sipp, "console_uas_hung_up.xml", uas_port, None, *common, "-message_file",
                                str(logs["uas"])), deadline=DEADLINE)
    await wait_bound(reactor, uas, uas_port)
    uac = peers.start(sipp_args(sipp, "console_uac_hung_up.xml", free_port(), service.port, "-s", NUMBER,
                                *common, "-message_file", str(logs["uac"])), deadline=DEADLINE)
    [call_id] = await wait_until(reactor, lambda: list(service.engine.calls), 10, "call in the engine")
    return uac, uas, call_id, logs


async def answered(reactor: Any, service: Any, call_id: str) -> None:
    await wait_until(reactor, lambda: service.engine.calls[call_id].record.answer, 10, "answer")


async def both_legs_got_bye(uac: Any, uas: Any, logs: dict[str, Path]) -> None:
    assert await uac.wait() == 0, uac.output
    assert await uas.wait() == 0, uas.output
    for side, log in logs.items():
        assert len(received(log, "BYE ")) == 1, side


@pytest_twisted.ensureDeferred
async def test_live_call_hangup_record_csv_and_ladder(reactor, sipp, switch, peers, chromium, tmp_path):
    """Logged in on /calls, a SIPp call shows up within 2 s; its hang-up button sends
    BYE to both legs; /records and /records.csv have it; /ladder/<id> draws one arrow
    per traced message and shows a message when one is clicked."""
    uas_port = free_port()
    service, base = await console_switch(switch, uas_port)
    engine = service.engine
    await on(log_in, chromium, base)
    await on(open_page, chromium, base, "/calls", "table#calls-table")

    uac, uas, call_id, logs = await live_call(reactor, sipp, service, peers, tmp_path, uas_port)
    began = time.monotonic()
    row = f"table#calls-table tr[data-call-id='{call_id}']"
    await on(wait_shown, chromium, row)
    shown_after = time.monotonic() - began
    assert shown_after <= SHOW_WITHIN
    await answered(reactor, service, call_id)

    # The dashboard, in a second tab, while the call is live.
    calls_tab = chromium.current_window_handle
    await on(new_tab, chromium)
    await on(open_page, chromium, base, "/", "#calls-active")
    active = lambda d: d.find_element("css selector", "#calls-active").text.strip() == "1"  # noqa: E731
    await on(wait_for, chromium, active)
    assert await on(chromium.find_elements, "css selector", "svg#calls-per-minute")
    await on(chromium.save_screenshot, str(tmp_path / "dashboard.png"))
    dashboard_streams = await on(page_streams, chromium)
    await on(chromium.switch_to.window, calls_tab)

    started = time.monotonic()
    await on(lambda: chromium.find_element("css selector", f"{row} button.hangup").click())
    await both_legs_got_bye(uac, uas, logs)
    bye_after = time.monotonic() - started
    await on(wait_for, chromium, lambda d: not d.find_elements("css selector", row), 5)
    [record] = [r for r in engine.records if r.id == call_id]
    assert record.disposition == "ANSWERED"
    counts = await wait_idle(reactor, engine)
    assert not any(counts.values()), counts
    calls_streams = await on(page_streams, chromium)
    assert any(s["state"] == 1 and s["events"].get("calls") for s in calls_streams), calls_streams
    assert any(s["state"] == 1 for s in dashboard_streams), dashboard_streams

    # Its call record: the search form, then the CSV link with the same query.
    await on(open_page, chromium, base, "/records", "form#records-search")

    def search() -> str:
        field = chromium.find_element("css selector", "form#records-search input[name=number]")
        field.clear()
        field.send_keys(NUMBER)
        chromium.find_element("css selector", "form#records-search button[type=submit]").click()
        wait_for(chromium, css(f"table#records-table tr[data-call-id='{call_id}']"))
        return chromium.find_element("css selector", "a#records-csv").get_attribute("href")

    csv_url = await on(search)
    assert csv_url.startswith(base + "/records.csv") and NUMBER in csv_url, csv_url
    status, kind, body = await on(download, chromium, csv_url)
    assert status == 200 and kind.startswith("text/csv"), (status, kind)
    rows = list(csv.DictReader(io.StringIO(body)))
    [mine] = [r for r in rows if call_id in r.values()]
    assert "ANSWERED" in mine.values() and any(NUMBER in value for value in mine.values()), mine

    # Its ladder: one g.arrow per message in the call's trace.
    messages = service.ladders.messages(call_id)
    await on(open_page, chromium, base, f"/ladder/{call_id}", "svg#ladder")
    arrows = await on(chromium.find_elements, "css selector", "svg#ladder g.arrow")
    assert len(arrows) == len(messages) >= 7, (len(arrows), len(messages))  # INVITE..200 BYE on two legs

    def show(arrow: Any, how: str) -> str:
        """Click the arrow's label (its middle may be bare canvas) or press Enter on it."""
        from selenium.webdriver.common.keys import Keys

        if how == "click":
            arrow.find_element("css selector", "text:not(.time)").click()
        else:
            chromium.execute_script("arguments[0].focus();", arrow)
            arrow.send_keys(Keys.ENTER)
        return chromium.find_element("css selector", "pre#message").text

    for index, how in ((0, "click"), (len(arrows) - 1, "enter")):
        shown = await on(show, arrows[index], how)
        assert shown.startswith(messages[index].start_line), (how, shown[:80], messages[index].start_line)
    await on(chromium.save_screenshot, str(tmp_path / "ladder.png"))
    print(f"call shown {shown_after:.3f}s after it reached the engine; both BYEs {bye_after:.2f}s after "
          f"the click; {len(arrows)} arrows; screenshots in {tmp_path}")


@pytest_twisted.ensureDeferred
async def test_wrong_password_and_missing_csrf_token_are_refused(reactor, sipp, switch, peers, chromium,
                                                                 tmp_path):
    """A wrong password gets #login-error (401) and no session cookie, and without one
    the pages send to /login and JSON/SSE answer 401; a hang-up POSTed by the page
    without its CSRF token, or with a wrong one, gets 403 and the call lives on; with
    the page's token (the control) the same POST ends it (204) and both legs get BYE."""
    uas_port = free_port()
    service, base = await console_switch(switch, uas_port)
    await on(log_in, chromium, base, "not-the-password")
    assert await on(chromium.get_cookie, "phpvoip_session") is None
    status = await on(lambda: chromium.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const form = new URLSearchParams({username: 'admin', password: 'still-wrong'});
        fetch('/login', {method: 'POST', body: form, redirect: 'manual'}).then(r => done(r.status));
        """))
    assert status == 401
    assert await on(chromium.get_cookie, "phpvoip_session") is None
    await on(open_page, chromium, base, "/calls", "form#login")  # no session: sent to the login form
    assert chromium.current_url.endswith("/login")
    for path in ("/api/calls", "/events"):  # JSON and the event stream: 401, no redirect
        assert await on(fetch, chromium, "GET", path, None) == 401, path

    await on(log_in, chromium, base)
    uac, uas, call_id, logs = await live_call(reactor, sipp, service, peers, tmp_path, uas_port)
    await answered(reactor, service, call_id)
    await on(open_page, chromium, base, "/calls", f"tr[data-call-id='{call_id}']")
    assert await on(fetch, chromium, "POST", f"/calls/{call_id}/hangup", None) == 403
    assert await on(fetch, chromium, "POST", f"/calls/{call_id}/hangup", "not-the-token") == 403
    await task.deferLater(reactor, 1.0, lambda: None)
    assert call_id in service.engine.calls and not uac.collect.ended.called
    assert await on(fetch, chromium, "POST", f"/calls/{call_id}/hangup", "page") == 204
    await both_legs_got_bye(uac, uas, logs)


@pytest_twisted.ensureDeferred
async def test_keyboard_hangup_on_a_narrow_window(reactor, sipp, switch, peers, chromium, tmp_path):
    """400 px wide, no page scrolls sideways; Tab reaches the call's hang-up button and
    Enter on it sends BYE to both legs."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    uas_port = free_port()
    service, base = await console_switch(switch, uas_port)
    await on(chromium.set_window_size, 400, 800)
    await on(log_in, chromium, base)
    uac, uas, call_id, logs = await live_call(reactor, sipp, service, peers, tmp_path, uas_port)
    await answered(reactor, service, call_id)
    width = "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];"
    for path, ready in (("/", "#calls-active"), ("/registrations", "table#registrations-table"),
                        ("/records", "form#records-search"), ("/route", "form#route-form"),
                        ("/calls", f"tr[data-call-id='{call_id}'] button.hangup")):
        await on(open_page, chromium, base, path, ready)
        scroll, client = await on(chromium.execute_script, width)
        assert scroll <= client, (path, scroll, client)
    await on(chromium.save_screenshot, str(tmp_path / "calls_narrow.png"))

    def tab_to_hangup() -> int:
        for presses in range(1, 80):
            ActionChains(chromium).send_keys(Keys.TAB).perform()
            if chromium.execute_script(
                    "const e = document.activeElement; return !!(e && e.matches('button.hangup') && "
                    "e.closest('tr[data-call-id]').dataset.callId === arguments[0]);", call_id):
                ActionChains(chromium).send_keys(Keys.ENTER).perform()
                return presses
        raise AssertionError("Tab never reached the hang-up button")

    presses = await on(tab_to_hangup)
    await both_legs_got_bye(uac, uas, logs)
    print(f"hang-up button reached with {presses} Tab presses")


@pytest_twisted.ensureDeferred
async def test_a_supervisor_pauses_and_logs_out_an_agent_from_the_dashboard(reactor, switch, chromium):
    """Queue 700 with static agent 1001: on the dashboard, its Pause button pauses it
    (the page's fetch, then the event stream redraws the row with Resume), and Log
    out logs it out (the row then offers Log in). The queue says the same."""
    port = free_port()
    service = await switch(
        trunk_config(free_port())
        + "  - {type: queue, name: support, number: '700', agents: ['1001'], ports: '46120-46129'}\n"
        + "console:\n"
        + f"  listen: 'tcp:{port}:interface={LOOPBACK}'\n"
        + f"  users: {{{USER}: {{password_hash: '{password_hash(PASSWORD)}'}}}}\n")
    base = f"http://{LOOPBACK}:{port}"
    [queue] = [m for m in service.engine.modules if m.name == "support"]
    await on(log_in, chromium, base)
    button = "#agents-table form.agent-action button[aria-label='{} 1001 in support']"
    await on(open_page, chromium, base, "/", button.format("Pause"))
    await on(lambda: chromium.find_element("css selector", button.format("Pause")).click())
    await on(wait_for, chromium, css(button.format("Resume")))
    assert queue.agent_stats()[0]["state"] == "paused"
    await on(lambda: chromium.find_element("css selector", button.format("Log out")).click())
    await on(wait_for, chromium, css(button.format("Log in")))
    assert queue.agent_stats()[0]["state"] == "logged-out"


@pytest_twisted.ensureDeferred
async def test_calls_beyond_max_rows_are_counted_and_shown_as_room_frees(reactor, sipp, switch, peers,
                                                                         chromium, tmp_path):
    """max_rows 2 and three SIPp calls: /calls has two rows and "1 more call not
    shown"; hanging up a shown call brings the third in and hides the line."""
    uas_port = free_port()
    service, base = await console_switch(switch, uas_port, "  max_rows: 2\n")
    await on(log_in, chromium, base)
    common = ("-m", "3", "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error")
    uas = peers.start(sipp_args(sipp, "console_uas_hung_up.xml", uas_port, None, *common), deadline=DEADLINE)
    await wait_bound(reactor, uas, uas_port)
    uac = peers.start(sipp_args(sipp, "console_uac_hung_up.xml", free_port(), service.port, "-s", NUMBER,
                                *common), deadline=DEADLINE)
    ids = await wait_until(reactor, lambda: len(service.engine.calls) == 3 and list(service.engine.calls),
                           10, "three calls in the engine")
    await on(open_page, chromium, base, "/calls", f"tr[data-call-id='{ids[1]}']")
    state = ("return [Array.from(document.querySelectorAll('#calls-table tr[data-call-id]'), "
             "r => r.dataset.callId), document.getElementById('calls-more').hidden, "
             "document.getElementById('calls-more').textContent, "
             "document.getElementById('calls-active').textContent];")
    shown, hidden, text, count = await on(chromium.execute_script, state)
    assert shown == ids[:2] and not hidden and text.startswith("1 more call not shown") and count == "3"
    await on(chromium.execute_script, "document.querySelector(arguments[0]).click();",
             f"tr[data-call-id='{ids[0]}'] button.hangup")
    await on(wait_for, chromium, css(f"tr[data-call-id='{ids[2]}']"))
    await wait_until(reactor, lambda: ids[0] not in service.engine.calls, 10, "the hang-up")
    shown, hidden, _, count = await on(chromium.execute_script, state)
    assert shown == ids[1:] and hidden and count == "2", (shown, hidden, count)
    for call_id in ids[1:]:
        service.engine.hangup(call_id)
    assert await uac.wait() == 0, uac.output
    assert await uas.wait() == 0, uas.output


def test_console_stays_connected_while_calls_run() -> None:
    """bench/console.py in miniature: calls at 20/s for 3 s with and without the
    browser on the dashboard and /calls; every call passes both ways and the pages'
    event streams stay open and deliver call events throughout."""
    import re
    import subprocess
    import sys

    require_program("sipp")
    require_program(CHROMIUM)
    require_program(CHROMEDRIVER)
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, str(root / "bench" / "console.py"), "--rates", "20", "--duration", "3",
         "--pause", "0"],
        cwd=root, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^\s+no browser\s+20\b", run.stdout, re.M), run.stdout
    assert re.search(r"^\s+browser\s+20\b", run.stdout, re.M), run.stdout
    streams = re.findall(r"^  stream (\S+) open=(\w+) calls=(\d+) stats=(\d+) line=\d+ queue=\d+ rows=(\d+) "
                         r"\(page (\S+)\)", run.stdout, re.M)
    assert {page for *_, page in streams} == {"/", "/calls"}, run.stdout
    for url, open_, calls, stats, rows, page in streams:
        assert open_ == "yes", (page, run.stdout)
        if page == "/":  # the dashboard: counters, never a call row
            assert "topics=" in url and "calls" not in url.partition("topics=")[2], run.stdout
            assert int(stats) > 0 and int(calls) == 0, run.stdout
        else:  # /calls: batches of rows, and every row it got was gone once its call ended
            assert int(calls) >= 2 and int(rows) == 0, run.stdout
