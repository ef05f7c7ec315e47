"""Calls per second through a B2BUA: phpvoip against the sippy B2BUA, one run.

Run through ``bench/calls.sh`` (``make bench``), or
``.venv/bin/python bench/calls.py [--rates 100,200,...] [--duration 10] [--only phpvoip]``.

phpvoip runs twice: plain (call records, ladders and metrics off) and as
``phpvoip+ops`` (call records in SQLite, ladders on, /metrics scraped every 2 s), so
that the cost of operating it is read off one run.

For each B2BUA the same ladder runs: SIPp's built-in UAC places calls at a fixed
rate for ``--duration`` seconds into the B2BUA, which carries each one to SIPp's
built-in UAS (INVITE, 180, 200, ACK, BYE, 200 on both sides). A step passes when
every call of the UAC and of the UAS succeeded; the ladder stops at the first step
that does not. Per step it prints the calls that succeeded and failed, SIPp's
retransmissions, the call-setup latency (INVITE sent to 200 received, from SIPp's
``-trace_rtt``) at p50 and p99, the B2BUA's CPU (utime+stime over wall time, in % of
one core, from /proc/PID/stat) and its peak resident memory (VmHWM). At the end it
prints the highest passing rate of each and their ratio.

phpvoip runs as the real ``twistd -n phpvoip -c CONFIG`` with a trunk that takes calls
from 127.0.0.1 and carries every number to the UAS. The sippy B2BUA (PyPI ``sippy``)
runs as ``b2bua -f -u -A 0 -l 127.0.0.1 -p PORT -s 127.0.0.1:UAS_PORT`` from its own
virtualenv, ``bench/.venv``, which ``bench/calls.sh`` creates; it is never a
dependency of phpvoip.

Note the failure criterion is strict, and the same for both: SIPp's UAS aborts a
call when the INVITE reaches it twice (it expects the ACK), so a B2BUA that stalls
for more than T1 (500 ms) loses calls.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
BENCH_VENV = ROOT / "bench" / ".venv"
SCENARIOS = ROOT / "bench" / "scenarios"
TICKS = os.sysconf("SC_CLK_TCK")
SIPP_BUFFER = "2097152"  # PEERS.md: below this SIPp drops packets itself under load


_BENCH_PORTS = range(10000, 20000)  # below the tests' 20000-32767 and the ephemeral range
_given: set[int] = set()


def free_port() -> int:
    """A port free for both UDP and TCP on loopback now, never handed out twice by
    this process, and outside the kernel's ephemeral range (where any socket bound
    to port 0 could take it between this choice and its use: the soak's manhole or
    metrics port was once taken so, and the switch exited before binding)."""
    for _ in range(500):
        port = random.choice(_BENCH_PORTS)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                tcp.bind((LOOPBACK, port))
                udp.bind((LOOPBACK, port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError("no free port found")


def udp_bound(port: int) -> bool:
    """Whether some process has a UDP socket bound to 127.0.0.1:`port` (or any address)."""
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        if line.split()[1] in wanted:
            return True
    return False


def wait_bound(port: int, process: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not udp_bound(port):
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before binding port {port}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not bind port {port} within {timeout:.0f} s")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop a child we started: `sig`, then SIGKILL after `timeout` seconds."""
    if process.poll() is not None:
        return
    try:
        process.send_signal(sig)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def sipp_stats(path: Path) -> dict[str, str]:
    """The last row of a SIPp -trace_stat file (semicolon separated)."""
    if not path.exists():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    names = lines[0].rstrip(";").split(";")
    values = lines[-1].rstrip(";").split(";")
    return dict(zip(names, values, strict=False))


def rtt_values(directory: Path) -> list[float]:
    """Every call-setup time (ms) in the SIPp -trace_rtt files of `directory`."""
    values: list[float] = []
    for path in directory.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    values.append(float(parts[1]))
                except ValueError:
                    continue
    return values


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


@dataclass
class Step:
    rate: int
    calls: int
    ok: int = 0
    failed: int = 0
    uas_failed: int = 0
    retransmissions: int = 0
    p50: float | None = None
    p99: float | None = None
    cpu: float = 0.0  # % of one core while the UAC ran
    rss_peak_kib: int = 0
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.ok == self.calls and self.failed == 0 and self.uas_failed == 0 and not self.note


@dataclass
class Result:
    name: str
    steps: list[Step] = field(default_factory=list)
    rss_start_kib: int = 0

    @property
    def best(self) -> Step | None:
        passed = [s for s in self.steps if s.passed]
        return max(passed, key=lambda s: s.rate) if passed else None


class B2bua:
    """A B2BUA under test: started once, stepped through the ladder, stopped."""

    name = ""

    def __init__(self, work: Path, uas_port: int) -> None:
        self.work = work
        self.uas_port = uas_port
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = (work / f"{self.name}.log").open("wb")

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start(self) -> None:
        args, env = self.command()
        self.process = subprocess.Popen(
            args, cwd=self.work, stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        wait_bound(self.port, self.process, 60, self.name)
        time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, signal.SIGTERM, 20)
        self.log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


class Phpvoip(B2bua):
    name = "phpvoip"
    profile: Path | None = None  # cProfile statistics file (--profile)

    def operations(self) -> str:
        """The config's operations sections: all off for the plain run."""
        return "storage: 'memory:'\nladders: {enabled: false}\ncdr: {enabled: false}\n"

    def command(self) -> tuple[list[str], dict[str, str]]:
        config = self.work / f"{self.name}.yaml"
        config.write_text(
            "sip:\n"
            f"  listen: [udp:{LOOPBACK}:{self.port}]\n"
            f"  domain: {LOOPBACK}\n"
            + self.operations() +
            "log_level: warn\n"
            "calls: {keepalive_interval: 0}\n"
            "modules:\n"
            "  - type: trunk\n"
            "    name: backend\n"
            f"    address: {LOOPBACK}:{self.uas_port}\n"
            f"    allow: [{LOOPBACK}]\n"
            "    numbers: ['*']\n"
        )
        twistd = Path(sys.executable).parent / "twistd"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        profiling = []
        if self.profile is not None:
            profiling = [f"--profile={self.profile}", "--profiler=cprofile", "--savestats"]
        return [str(twistd), "-n", "--pidfile=", *profiling, "phpvoip", "-c", str(config)], env


class PhpvoipOps(Phpvoip):
    """phpvoip as an operator runs it: call records in SQLite, ladders kept, and the
    metrics endpoint scraped every `SCRAPE_EVERY` seconds while calls run."""

    name = "phpvoip+ops"
    SCRAPE_EVERY = 2.0

    def __init__(self, work: Path, uas_port: int) -> None:
        super().__init__(work, uas_port)
        self.metrics_port = free_port()
        self.scrapes = 0
        self._scraping = threading.Event()

    def operations(self) -> str:
        return (
            f"storage: sqlite:{self.work / 'ops.db'}\n"
            "ladders: {enabled: true}\n"
            "cdr: {enabled: true}\n"
            f"metrics: {{listen: 'tcp:{self.metrics_port}:interface={LOOPBACK}'}}\n"
        )

    def start(self) -> None:
        super().start()
        thread = threading.Thread(target=self._scrape, daemon=True)
        thread.start()

    def _scrape(self) -> None:
        url = f"http://{LOOPBACK}:{self.metrics_port}/metrics"
        while not self._scraping.wait(self.SCRAPE_EVERY):
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    response.read()
                self.scrapes += 1
            except OSError:
                pass

    def stop(self) -> None:
        self._scraping.set()
        super().stop()
        rows = cdr_rows(self.work / "ops.db")
        print(f"  {self.name}: {self.scrapes} scrapes of /metrics, {rows} call records written", flush=True)


def cdr_rows(database: Path) -> int | str:
    try:
        with sqlite3.connect(database) as db:
            return db.execute("SELECT COUNT(*) FROM cdr").fetchone()[0]
    except sqlite3.Error as e:
        return f"unreadable ({e})"


class Sippy(B2bua):
    name = "sippy"

    def command(self) -> tuple[list[str], dict[str, str]]:
        b2bua = BENCH_VENV / "bin" / "b2bua"
        args = [
            str(b2bua), "-f", "-u", "-A", "0", "-l", LOOPBACK, "-p", str(self.port),
            "-s", f"{LOOPBACK}:{self.uas_port}", "-c", str(self.work / "sippy.sock"),
        ]  # fmt: skip
        # SIPLOG_LVL=WARN: sippy logs every message by default.
        return args, dict(os.environ, SIPLOG_LVL="WARN")


def run_step(sipp: str, b2bua: B2bua, rate: int, duration: float, step_dir: Path, hold_ms: int) -> Step:
    calls = max(1, int(rate * duration))
    step = Step(rate, calls)
    step_dir.mkdir(parents=True)
    common = ["-i", LOOPBACK, "-buff_size", SIPP_BUFFER, "-nostdin", "-fd", "1", "-trace_stat", "-trace_err"]
    uas = subprocess.Popen(
        [sipp, "-sf", str(SCENARIOS / "calls_uas.xml"), "-p", str(b2bua.uas_port), "-m", str(calls),
         *common, "-stf", "uas_stat.csv"],
        cwd=step_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_bound(b2bua.uas_port, uas, 10, "SIPp UAS")
        uac_args = [
            sipp, f"{LOOPBACK}:{b2bua.port}", "-sn", "uac", "-s", "2005", "-p", str(free_port()),
            # The sippy B2BUA's 180 can come after its 200 (PEERS.md); the built-in
            # UAC would abort such a call at once, so it ignores unexpected messages.
            "-default_behaviors", "all,-abortunexp",
            "-r", str(rate), "-m", str(calls), "-l", str(max(1000, rate * 20)), "-d", str(hold_ms),
            *common, "-stf", "uac_stat.csv", "-trace_rtt", "-rtt_freq", "100",
            "-timeout", f"{int(duration + 60)}s", "-timeout_error",
        ]  # fmt: skip
        cpu_before = cpu_seconds(b2bua.pid)
        started = time.monotonic()
        uac = subprocess.Popen(uac_args, cwd=step_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # CPU over the seconds the calls are placed (plus one for the last ones to
        # end), not over a tail where SIPp waits for calls that went missing.
        try:
            code: int | None = uac.wait(duration + 1)
        except subprocess.TimeoutExpired:
            code = None
        wall = time.monotonic() - started
        step.cpu = 100.0 * (cpu_seconds(b2bua.pid) - cpu_before) / wall
        if code is None:
            try:
                code = uac.wait(90)
            except subprocess.TimeoutExpired:
                stop(uac, signal.SIGKILL)
                code = -1
        step.rss_peak_kib = status_kib(b2bua.pid, "VmHWM")
        if b2bua.process is not None and b2bua.process.poll() is not None:
            step.note = f"{b2bua.name} exited"
        # The UAS ends by itself after its last BYE unless calls went missing.
        try:
            uas.wait(5)
        except subprocess.TimeoutExpired:
            stop(uas, signal.SIGUSR1, 5)
    finally:
        stop(uas, signal.SIGKILL, 5)
    stats = sipp_stats(step_dir / "uac_stat.csv")
    step.ok = int(stats.get("SuccessfulCall(C)", 0))
    step.failed = int(stats.get("FailedCall(C)", 0))
    step.retransmissions = int(stats.get("Retransmissions(C)", 0))
    uas_stats = sipp_stats(step_dir / "uas_stat.csv")
    step.uas_failed = int(uas_stats.get("FailedCall(C)", 0))
    if code not in (0, 1) and not step.note and step.ok == calls:
        step.note = f"SIPp UAC exit {code}"
    values = rtt_values(step_dir)
    step.p50 = percentile(values, 0.50)
    step.p99 = percentile(values, 0.99)
    return step


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_step(name: str, step: Step) -> None:
    verdict = "pass" if step.passed else "FAIL"
    print(
        f"  {name:11} {step.rate:6d}/s {step.ok:7d} ok {step.failed:5d} failed "
        f"{step.uas_failed:4d} uas-failed {step.retransmissions:5d} retrans  "
        f"setup p50 {fmt_ms(step.p50):>4} ms p99 {fmt_ms(step.p99):>5} ms  "
        f"CPU {step.cpu:5.1f}%  peak RSS {step.rss_peak_kib / 1024:6.1f} MiB  {verdict} {step.note}",
        flush=True,
    )


def run_ladder(sipp: str, b2bua: B2bua, rates: list[int], args: argparse.Namespace) -> Result:
    result = Result(b2bua.name)
    b2bua.start()
    try:
        result.rss_start_kib = status_kib(b2bua.pid, "VmRSS")
        # Warm up (imports, caches, first sockets); not counted.
        run_step(sipp, b2bua, 20, 2, b2bua.work / f"{b2bua.name}-warmup", args.hold)
        time.sleep(args.pause)
        for rate in rates:
            step = run_step(sipp, b2bua, rate, args.duration, b2bua.work / f"{b2bua.name}-{rate}", args.hold)
            result.steps.append(step)
            print_step(b2bua.name, step)
            if not step.passed:
                break
            time.sleep(args.pause)
    finally:
        b2bua.stop()
    return result


def print_profile(path: Path, calls: int, top: int = 25) -> None:
    """The functions phpvoip spent most time in (their own time, cProfile), per call.

    cProfile inflates functions that are small and called often; read the shares,
    not the absolute figures, and compare with the CPU per call of the table."""
    import pstats

    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    busy = {key: value for key, value in stats.items() if "poll" not in key[2]}
    total = sum(value[2] for value in busy.values())
    print()
    print(f"phpvoip under cProfile, {calls} calls: {1e6 * total / calls:.0f} us of own time per call "
          "(reactor idle excluded); top functions by own time:")
    ranked = sorted(busy.items(), key=lambda item: -item[1][2])[:top]
    for (file, line, name), (_, count, own, _cumulative, _) in ranked:
        where = file.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
        print(f"  {100 * own / total:5.1f}% {1e6 * own / calls:7.1f} us/call {count / calls:5.1f}x  "
              f"{name} ({where}:{line})")


def summary(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(f"Highest rate with zero failed calls ({args.duration:g} s per step, {os.cpu_count()} CPUs, "
          f"SIPp on the same machine):")
    print(f"  {'B2BUA':11} {'calls/s':>8} {'setup p50':>10} {'setup p99':>10} {'CPU':>7} {'peak RSS':>10}")
    best: dict[str, int] = {}
    for result in results:
        step = result.best
        if step is None:
            print(f"  {result.name:11} {'none':>8}  (even the first step failed)")
            continue
        best[result.name] = step.rate
        print(f"  {result.name:11} {step.rate:8d} {fmt_ms(step.p50):>7} ms {fmt_ms(step.p99):>7} ms "
              f"{step.cpu:6.1f}% {step.rss_peak_kib / 1024:6.1f} MiB")
    if "phpvoip" in best and "sippy" in best:
        print(f"  ratio phpvoip / sippy: {best['phpvoip'] / best['sippy']:.2f}")
    if "phpvoip" in best and "phpvoip+ops" in best:
        change = 100.0 * (best["phpvoip+ops"] - best["phpvoip"]) / best["phpvoip"]
        print(f"  with call records, ladders and metrics on: {change:+.0f}% calls/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="100,150,200,250,300,350,400,450,500,550,600,700,800,900,1000",
                        help="the ladder of call rates (calls/s), comma separated")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of calls per step")
    parser.add_argument("--hold", type=int, default=0, help="ms between the ACK and the BYE (SIPp -d)")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between steps")
    parser.add_argument("--only", help="run only these B2BUAs: a comma-separated list of phpvoip, "
                                       "phpvoip+ops, sippy")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (SIPp traces, logs)")
    parser.add_argument("--profile", action="store_true",
                        help="run phpvoip under cProfile and print where its time per call goes "
                             "(slower: use it for the shares, not the rate)")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r.strip()]

    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    kinds: list[type[B2bua]] = [Phpvoip, PhpvoipOps, Sippy]
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {k.name for k in kinds}
        if unknown:
            parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
        kinds = [k for k in kinds if k.name in wanted]
    if Sippy in kinds and not (BENCH_VENV / "bin" / "b2bua").exists():
        print("the sippy B2BUA is missing: run bench/calls.sh, which makes bench/.venv", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="phpvoip-calls-bench-"))
    print(f"call benchmark: SIPp uac -> B2BUA -> SIPp uas over UDP on {LOOPBACK}, "
          f"steps of {args.duration:g} s at {args.rates} calls/s", flush=True)
    results: list[Result] = []
    try:
        for kind in kinds:
            b2bua = kind(work, free_port())
            if isinstance(b2bua, Phpvoip) and args.profile:
                b2bua.profile = work / "phpvoip.pstats"
            results.append(run_ladder(sipp, b2bua, rates, args))
        summary(results, args)
        for result in results:
            profile = work / "phpvoip.pstats"
            if result.name.startswith("phpvoip") and args.profile and profile.exists():
                calls = 40 + sum(step.ok for step in result.steps)  # the warm-up placed 40
                print_profile(profile, calls)
    finally:
        if args.keep:
            print(f"work directory: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r.best is not None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
