"""A headless Debian chromium driven through Debian's chromedriver, for the console's
browser tests (tests/interop/test_console_browser.py) and bench/console.py.

Both programs are named by path, so Selenium Manager (which would look for, and
download, a browser and a driver over the network) never runs: `chromium_driver`
also replaces its entry point with one that raises, so a Selenium that tried would
fail the caller instead of reaching out. Chromium runs as root here, so without its
sandbox; every background service that phones home is switched off, and each driver
gets a fresh profile directory.

``PAGE_STREAMS`` is a script installed before any page script runs: it wraps the
page's own ``EventSource`` so that a test can ask how many streams the page opened,
their state and how many events each delivered, without changing the page.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
    "--disable-dev-shm-usage", "--metrics-recording-only", "--password-store=basic",
    # No name but loopback resolves, and chromium's own DNS client (which probes the
    # system's name servers) stays off: nothing leaves the machine by name.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--disable-features=AsyncDns,MediaRouter,OptimizationHints,Translate,DialMediaRouteProvider",
)  # fmt: skip

PAGE_STREAMS = """
(() => {
  const Real = window.EventSource;
  if (!Real || window.__phpvoipStreams) { return; }
  const streams = [];
  window.__phpvoipStreams = streams;
  const Counted = function (url, init) {
    const source = new Real(url, init);
    const entry = {url: String(url), source: source, events: {}};
    for (const type of ['calls', 'registration', 'line', 'queue', 'stats', 'message']) {
      source.addEventListener(type, () => { entry.events[type] = (entry.events[type] || 0) + 1; });
    }
    streams.push(entry);
    return source;
  };
  Counted.prototype = Real.prototype;
  Counted.CONNECTING = 0; Counted.OPEN = 1; Counted.CLOSED = 2;
  window.EventSource = Counted;
})();
"""

STREAMS_STATE = (
    "return (window.__phpvoipStreams || []).map(s => ({url: s.url, state: s.source.readyState, "
    "events: s.events, rows: document.querySelectorAll('#calls-table tbody tr[data-call-id]').length}));"
)


def password_hash(password: str, iterations: int = 1000) -> str:
    """A console password hash in the contract's form (``pbkdf2_sha256$iterations$salt$hash``,
    base64), made here rather than by the console so a test checks the format too;
    few iterations, since a test's password guards nothing."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def log_in(driver: Any, base: str, user: str, password: str) -> None:
    """Fill and send the console's login form; on success wait for the session cookie."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/login")
    form = driver.find_element("css selector", "form#login")
    form.find_element("css selector", "input[name=username]").send_keys(user)
    form.find_element("css selector", "input[name=password]").send_keys(password)
    driver.find_element("css selector", "button#login-submit").click()
    WebDriverWait(driver, 10, poll_frequency=0.05).until(
        lambda d: d.find_elements("css selector", "#login-error")
        or (d.get_cookie("phpvoip_session") and not d.current_url.endswith("/login")))


def missing_programs() -> list[str]:
    """The programs of the pair that are not installed (Debian: chromium, chromium-driver)."""
    return [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]


def _no_selenium_manager(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("Selenium Manager was asked for a browser: it must never run (paths are given)")


def chromium_driver(profile: Path, width: int = 1280, height: int = 900, log: Path | None = None) -> Any:
    """A new headless chromium session with a fresh profile under `profile`.

    The caller quits it (``driver.quit()`` stops chromium and chromedriver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common import selenium_manager

    selenium_manager.SeleniumManager.binary_paths = _no_selenium_manager  # type: ignore[method-assign]
    profile.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    service = Service(executable_path=CHROMEDRIVER, log_output=str(log) if log else None)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(20)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PAGE_STREAMS})
    return driver


def new_tab(driver: Any) -> str:
    """Open a tab, switch to it and count its page's streams too (the script the
    driver installed at start applies to its first tab only); returns its handle."""
    driver.switch_to.new_window("tab")
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PAGE_STREAMS})
    return driver.current_window_handle


def page_streams(driver: Any) -> list[dict[str, Any]]:
    """The page's EventSource streams: url, readyState (1 = open), events per type and
    the call rows the page shows (``rows``, 0 on a page without the calls table)."""
    return driver.execute_script(STREAMS_STATE)
