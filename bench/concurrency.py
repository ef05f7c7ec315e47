"""Many calls held at once: 10,000 concurrent calls through phpvoip, with figures.

Run through ``bench/concurrency.sh``, or
``.venv/bin/python bench/concurrency.py [--calls 15000] [--rate 250] [--hold 40]``.

SIPp's built-in UAC places calls at ``--rate`` calls/s and holds each ``--hold``
seconds before its BYE (``-d``), so once the first BYEs go the switch holds
rate x hold calls (10,000 by default) until the last one is placed. phpvoip runs as
the real ``twistd -n phpvoip -c CONFIG`` as it ships (call ladders and call records
on, records in memory storage like ``bench/calls.py``), keepalive off (SIPp's
scenarios do not expect the switch's OPTIONS in the middle of a hold), with a trunk
that carries every call to SIPp's UAS (``bench/scenarios/calls_uas.xml``) and the
metrics endpoint on, which this script scrapes every ``--sample`` seconds.

It prints: the peak of concurrent calls (the switch's ``phpvoip_calls_active``),
calls ok and failed on both sides, retransmissions (SIPp's, UAC and UAS, as a share
of the calls placed: a retransmission is a message one side had to send again
because the switch answered too late), call setup p50/p99 (INVITE sent to 200
received, SIPp ``-trace_rtt``), the switch's peak RSS (VmHWM), its CPU over the
run (% of one core), and its garbage collector's figures from the metrics
endpoint (collections per generation, total and worst pause).

The goal of issue 14: < 1 % retransmissions, setup p99 < 200 ms, peak RSS under
300 MB, on a 2-core machine with SIPp on it. The exit status is 0 when every call
succeeded and those three hold.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calls import (  # bench/ is not a package: found through sys.path
    LOOPBACK,
    SCENARIOS,
    SIPP_BUFFER,
    cpu_seconds,
    free_port,
    percentile,
    rtt_values,
    sipp_stats,
    status_kib,
    stop,
    wait_bound,
)

ROOT = Path(__file__).resolve().parents[1]
GOAL_RETRANS_PERCENT = 1.0
GOAL_P99_MS = 200.0
GOAL_RSS_MB = 300.0


def scrape(port: int) -> dict[str, float]:
    """The metrics endpoint's samples as ``name{labels}`` -> value (comments dropped)."""
    url = f"http://{LOOPBACK}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            samples[name] = float(value)
        except ValueError:
            continue
    return samples


class Sampler(threading.Thread):
    """Every `every` seconds: the switch's RSS and its metrics, keeping the peaks."""

    def __init__(self, pid: int, metrics_port: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.metrics_port = metrics_port
        self.every = every
        self.done = threading.Event()
        self.peak_calls = 0
        self.peak_rss_kib = 0
        self.last: dict[str, float] = {}
        self.failed_scrapes = 0
        self.slowest_scrape = 0.0

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.sample()

    def sample(self) -> None:
        try:
            self.peak_rss_kib = max(self.peak_rss_kib, status_kib(self.pid, "VmRSS"))
        except OSError:
            return
        started = time.monotonic()
        try:
            samples = scrape(self.metrics_port)
        except OSError:
            self.failed_scrapes += 1
            return
        self.slowest_scrape = max(self.slowest_scrape, time.monotonic() - started)
        self.last = samples
        self.peak_calls = max(self.peak_calls, int(samples.get("phpvoip_calls_active", 0)))


def config_text(port: int, uas_port: int, metrics_port: int) -> str:
    return (
        "sip:\n"
        f"  listen: [udp:{LOOPBACK}:{port}]\n"
        f"  domain: {LOOPBACK}\n"
        "storage: 'memory:'\n"
        f"metrics: {{listen: 'tcp:{metrics_port}:interface={LOOPBACK}'}}\n"
        "log_level: warn\n"
        "calls: {keepalive_interval: 0}\n"
        "modules:\n"
        "  - type: trunk\n"
        "    name: backend\n"
        f"    address: {LOOPBACK}:{uas_port}\n"
        f"    allow: [{LOOPBACK}]\n"
        "    numbers: ['*']\n"
    )


def peak_current_calls(path: Path) -> int:
    """The highest CurrentCall of a SIPp -trace_stat file (one row per period)."""
    if not path.exists():
        return 0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        return 0
    names = lines[0].rstrip(";").split(";")
    if "CurrentCall" not in names:
        return 0
    column = names.index("CurrentCall")
    best = 0
    for line in lines[1:]:
        values = line.split(";")
        if column < len(values) and values[column].isdigit():
            best = max(best, int(values[column]))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=15000, help="calls placed in all (SIPp -m)")
    parser.add_argument("--rate", type=int, default=250, help="calls placed per second (SIPp -r)")
    parser.add_argument("--hold", type=float, default=40.0, help="seconds each call is held (SIPp -d)")
    parser.add_argument("--limit", type=int, default=12000, help="SIPp's cap on its calls in progress (-l)")
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between samples of the switch")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (SIPp traces, logs)")
    parser.add_argument("--profile", action="store_true",
                        help="run the switch under cProfile and print its top functions")
    args = parser.parse_args()

    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="phpvoip-concurrency-bench-"))
    port, uas_port, metrics_port = free_port(), free_port(), free_port()
    config = work / "phpvoip.yaml"
    config.write_text(config_text(port, uas_port, metrics_port))
    twistd = Path(sys.executable).parent / "twistd"
    profile = work / "phpvoip.pstats"
    profiling = [f"--profile={profile}", "--profiler=cprofile", "--savestats"] if args.profile else []
    log = (work / "phpvoip.log").open("wb")
    switch = subprocess.Popen(
        [str(twistd), "-n", "--pidfile=", *profiling, "phpvoip", "-c", str(config)],
        cwd=work, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    uas = uac = None
    sampler: Sampler | None = None
    hold_ms = int(args.hold * 1000)
    expected = min(args.calls, int(args.rate * args.hold))
    print(f"concurrency benchmark: SIPp uac -r {args.rate} -d {hold_ms} -m {args.calls} -> phpvoip -> "
          "SIPp uas, "
          f"UDP on {LOOPBACK}, {os.cpu_count()} CPUs (about {expected} calls held at the peak)", flush=True)
    try:
        wait_bound(port, switch, 60, "phpvoip")
        time.sleep(1.0)
        rss_idle = status_kib(switch.pid, "VmRSS")
        common = ["-i", LOOPBACK, "-buff_size", SIPP_BUFFER, "-nostdin", "-fd", "1",
                  "-trace_stat", "-trace_err"]
        timeout = int(args.calls / args.rate + args.hold + 120)
        uas = subprocess.Popen(
            [sipp, "-sf", str(SCENARIOS / "calls_uas.xml"), "-p", str(uas_port), "-m", str(args.calls),
             *common, "-stf", "uas_stat.csv"],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_bound(uas_port, uas, 10, "SIPp UAS")
        sampler = Sampler(switch.pid, metrics_port, args.sample)
        sampler.sample()
        gc_before = dict(sampler.last)
        cpu_before = cpu_seconds(switch.pid)
        started = time.monotonic()
        uac = subprocess.Popen(
            [sipp, f"{LOOPBACK}:{port}", "-sn", "uac", "-s", "2005", "-p", str(free_port()),
             "-r", str(args.rate), "-m", str(args.calls), "-l", str(args.limit), "-d", str(hold_ms),
             *common, "-stf", "uac_stat.csv", "-trace_rtt", "-rtt_freq", "100",
             "-timeout", f"{timeout}s", "-timeout_error"],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        sampler.start()
        try:
            code = uac.wait(timeout + 30)
        except subprocess.TimeoutExpired:
            stop(uac, signal.SIGKILL)
            code = -1
        wall = time.monotonic() - started
        cpu = 100.0 * (cpu_seconds(switch.pid) - cpu_before) / wall
        sampler.done.set()
        sampler.join(10)
        sampler.sample()
        rss_peak = status_kib(switch.pid, "VmHWM")
        try:
            uas.wait(10)
        except subprocess.TimeoutExpired:
            stop(uas, signal.SIGUSR1, 5)
    finally:
        for process in (uac, uas):
            if process is not None:
                stop(process, signal.SIGKILL, 5)
        stop(switch, signal.SIGTERM, 30)
        log.close()

    uac_stats = sipp_stats(work / "uac_stat.csv")
    uas_stats = sipp_stats(work / "uas_stat.csv")
    ok = int(uac_stats.get("SuccessfulCall(C)", 0))
    failed = int(uac_stats.get("FailedCall(C)", 0))
    uas_failed = int(uas_stats.get("FailedCall(C)", 0))
    uac_retrans = int(uac_stats.get("Retransmissions(C)", 0))
    uas_retrans = int(uas_stats.get("Retransmissions(C)", 0))
    retrans_percent = 100.0 * (uac_retrans + uas_retrans) / max(args.calls, 1)
    values = rtt_values(work)
    p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
    last = sampler.last if sampler is not None else {}

    def delta(name: str) -> float:
        return last.get(name, 0.0) - gc_before.get(name, 0.0)

    collections = [int(delta(f'phpvoip_gc_collections_total{{generation="{g}"}}')) for g in range(3)]
    pauses = delta("phpvoip_gc_pause_seconds_count")
    pause_total = delta("phpvoip_gc_pause_seconds_sum")
    worst = last.get("phpvoip_gc_pause_max_seconds", 0.0)
    peak_sipp = max(peak_current_calls(work / "uac_stat.csv"), 0)
    peak_switch = sampler.peak_calls if sampler is not None else 0

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f} ms"

    print(f"  calls ok / failed        {ok} / {failed} (UAS failed {uas_failed}); SIPp UAC exit {code}")
    print(f"  peak concurrent calls    {peak_switch} (switch's phpvoip_calls_active), "
          f"{peak_sipp} (SIPp UAC's CurrentCall)")
    print(f"  retransmissions          {retrans_percent:.2f} % of calls "
          f"(UAC {uac_retrans}, UAS {uas_retrans})")
    print(f"  setup p50 / p99          {ms(p50)} / {ms(p99)}  ({len(values)} samples, INVITE to 200)")
    print(f"  switch RSS               idle {rss_idle / 1024:.1f} MiB, peak {rss_peak / 1024:.1f} MiB "
          f"({rss_peak * 1024 / 1e6:.0f} MB)")
    print(f"  switch CPU               {cpu:.1f} % of one core over {wall:.0f} s")
    print(f"  GC                       {collections[0]}/{collections[1]}/{collections[2]} collections "
          f"(gen 0/1/2), {pauses:.0f} pauses totalling {1000 * pause_total:.0f} ms, worst "
          f"{1000 * worst:.1f} ms")
    if sampler is not None and sampler.failed_scrapes:
        print(f"  metrics scrapes failed   {sampler.failed_scrapes}")
    good = (
        ok == args.calls and failed == 0 and uas_failed == 0
        and retrans_percent < GOAL_RETRANS_PERCENT
        and p99 is not None and p99 < GOAL_P99_MS
        and rss_peak * 1024 / 1e6 < GOAL_RSS_MB
    )
    print(f"  goal (< {GOAL_RETRANS_PERCENT:g} % retransmissions, p99 < {GOAL_P99_MS:g} ms, "
          f"RSS < {GOAL_RSS_MB:g} MB, no failed call): {'met' if good else 'NOT met'}")
    if args.profile and profile.exists():
        from calls import print_profile

        print_profile(profile, ok)
    if args.keep:
        print(f"  work directory           {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
