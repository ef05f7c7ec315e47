"""Does a browser on the web console slow calls? bench/calls.py's rate search, twice in
one run: without a browser, then with a headless chromium on the live pages.

Run through ``bench/console.sh``, or
``.venv/bin/python bench/console.py [--rates 100,150,...] [--duration 10] [--pause 3] [--pages /,/calls]``.

Both runs start the same switch, ``twistd -n phpvoip -c CONFIG`` with the trunk of
bench/calls.py (SIPp's built-in UAC -> switch -> SIPp UAS) and the console on a free
loopback port; call records, ladders and metrics are off in both, as in calls.py's
plain run, so the browser is the only difference. In the second run, before the
warm-up, chromium (Debian's, through chromedriver: bench/browser.py) logs in and keeps
two tabs open, the dashboard (/) and /calls (``--pages``), each streaming /events; they
stay open through every step, and once a second a tiny script on the last tab times
how busy that page is. Each page subscribes to what it shows (console.js: the
dashboard to stats, lines and queues; /calls to calls). Each run steps up the rate
until a step loses a call (calls.py's strict criterion); the summary gives the
highest passing rate of each, their ratio (the goal: the browser costs at most
10 %), the browser's CPU over the ladder, and per page stream whether it was still
open, how many events of each kind it delivered (``calls`` counts batches, at most
two a second) and how many call rows the page still showed at the end (0: every row
it got was removed when its call ended).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import (  # bench/ is not a package: found through sys.path
    chromium_driver,
    log_in,
    missing_programs,
    new_tab,
    page_streams,
    password_hash,
)
from calls import LOOPBACK, TICKS, Phpvoip, Result, fmt_ms, free_port, run_ladder

USER, PASSWORD = "bench", "console-bench"
STREAM_TYPES = ("calls", "stats", "line", "queue")
ROWS = "return document.querySelectorAll('#calls-table tbody tr').length;"


class PhpvoipConsole(Phpvoip):
    """calls.py's plain phpvoip with the web console listening."""

    name = "no-browser"

    def __init__(self, work: Path, uas_port: int) -> None:
        super().__init__(work, uas_port)
        self.console_port = free_port()

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.console_port}"

    def operations(self) -> str:
        return super().operations() + (
            "console:\n"
            f"  listen: 'tcp:{self.console_port}:interface={LOOPBACK}'\n"
            f"  users: {{{USER}: {{password_hash: '{password_hash(PASSWORD)}'}}}}\n"
        )


class WithBrowser(PhpvoipConsole):
    """The same switch with chromium logged in on the dashboard and /calls."""

    name = "browser"
    pages: tuple[str, ...] = ("/", "/calls")  # one tab each; the probe uses the last

    def __init__(self, work: Path, uas_port: int) -> None:
        super().__init__(work, uas_port)
        self.driver: Any = None
        self.tabs: dict[str, str] = {}
        self.cpu_before = 0.0
        self.browser_cpu = 0.0
        self.wall = 0.0
        self.started = 0.0
        self.streams: dict[str, list[dict[str, Any]] | str] = {}
        self.probe_worst = 0.0  # s: slowest round trip of a script on /calls
        self.probe_rows = 0  # most rows /calls showed at once
        self.probe_failures = 0
        self._probing = threading.Event()
        self._prober: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        self.driver = chromium_driver(self.work / "profile")
        log_in(self.driver, self.base, USER, PASSWORD)
        if not self.driver.get_cookie("phpvoip_session"):
            raise RuntimeError("the console refused the bench's login")
        for n, page in enumerate(self.pages):
            self.tabs[page] = self.driver.current_window_handle if n == 0 else new_tab(self.driver)
            self.driver.get(self.base + page)
        self.cpu_before = browser_cpu(self.driver)
        self.started = time.monotonic()
        self._prober = threading.Thread(target=self._probe, daemon=True)
        self._prober.start()

    def _probe(self) -> None:
        """Every second, how long /calls takes to answer a tiny script (a busy page
        answers late) and how many rows it holds; the only user of the driver meanwhile."""
        from selenium.common.exceptions import WebDriverException

        while not self._probing.wait(1.0):
            began = time.monotonic()
            try:
                rows = self.driver.execute_script(ROWS)
            except WebDriverException:
                self.probe_failures += 1
                continue
            self.probe_worst = max(self.probe_worst, time.monotonic() - began)
            self.probe_rows = max(self.probe_rows, int(rows))

    def stop(self) -> None:
        from selenium.common.exceptions import WebDriverException

        self._probing.set()
        if self._prober is not None:
            self._prober.join(60)
        try:
            if self.driver is not None:
                self.wall = time.monotonic() - self.started
                self.browser_cpu = browser_cpu(self.driver) - self.cpu_before
                time.sleep(1.0)  # the feed's last flush (0.5 s) reaches the pages
                for page, handle in self.tabs.items():
                    try:
                        self.driver.switch_to.window(handle)
                        self.streams[page] = page_streams(self.driver)
                    except WebDriverException as e:
                        self.streams[page] = f"page did not answer ({e.msg})"
        finally:
            if self.driver is not None:
                self.driver.quit()
            super().stop()


def browser_cpu(driver: Any) -> float:
    """CPU seconds (utime+stime) of chromedriver and every process under it."""
    root = driver.service.process.pid
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def summary(plain: Result, browsed: Result, with_browser: WithBrowser, args: argparse.Namespace) -> bool:
    """Print both highest rates, their ratio and the streams; True when both found one."""
    print()
    print(f"Highest rate with zero failed calls ({args.duration:g} s per step), console on in both:")
    best = {}
    for label, result in (("no browser", plain), ("browser", browsed)):
        step = result.best
        if step is None:
            print(f"  {label:10} none (even the first step failed)")
            continue
        best[label] = step.rate
        print(f"  {label:10} {step.rate:6d} calls/s  setup p50 {fmt_ms(step.p50)} ms "
              f"p99 {fmt_ms(step.p99)} ms  switch CPU {step.cpu:5.1f}%")
    if len(best) == 2:
        ratio = best["browser"] / best["no browser"]
        verdict = "within" if ratio >= 0.9 else "NOT within"
        print(f"  ratio browser / no browser: {ratio:.2f} ({verdict} 10 %)")
    if with_browser.wall:
        print(f"  browser CPU over its ladder: {100 * with_browser.browser_cpu / with_browser.wall:.1f}% "
              f"of one core ({with_browser.browser_cpu:.1f} s in {with_browser.wall:.0f} s)")
    if with_browser.wall:
        worst = 1000 * with_browser.probe_worst
        print(f"  {with_browser.pages[-1]} answered a script within {worst:.0f} ms at worst "
              f"({with_browser.probe_failures} probes failed), {with_browser.probe_rows} rows at most")
    for page, streams in with_browser.streams.items():
        if isinstance(streams, str):
            print(f"  stream {page} open=unknown: {streams}")
            continue
        if not streams:
            print(f"  stream {page} open=no (the page opened no EventSource)")
        for stream in streams:
            counts = " ".join(f"{kind}={stream['events'].get(kind, 0)}" for kind in STREAM_TYPES)
            state = "yes" if stream["state"] == 1 else "no"
            print(f"  stream {stream['url']} open={state} {counts} rows={stream['rows']} (page {page})")
    return len(best) == 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="100,150,200,250,300,350,400,450,500,550,600,700,800",
                        help="the ladder of call rates (calls/s), comma separated")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of calls per step")
    parser.add_argument("--hold", type=int, default=0, help="ms between the ACK and the BYE (SIPp -d)")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between steps")
    parser.add_argument("--pages", default="/,/calls",
                        help="the console pages the browser keeps open, one tab each (comma separated)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (SIPp traces, logs)")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    if missing_programs():
        print(f"missing {', '.join(missing_programs())} (apt-get install chromium chromium-driver)",
              file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="phpvoip-console-bench-"))
    print(f"console benchmark: SIPp uac -> phpvoip (console on) -> SIPp uas over UDP on {LOOPBACK}, "
          f"steps of {args.duration:g} s at {args.rates} calls/s; without, then with a browser", flush=True)
    try:
        plain = run_ladder(sipp, PhpvoipConsole(work, free_port()), rates, args)
        with_browser = WithBrowser(work, free_port())
        with_browser.pages = tuple(page for page in args.pages.split(",") if page)
        browsed = run_ladder(sipp, with_browser, rates, args)
        found = summary(plain, browsed, with_browser, args)
    finally:
        if args.keep:
            print(f"work directory: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
