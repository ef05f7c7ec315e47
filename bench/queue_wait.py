"""Callers waiting at once, each hearing music on hold the switch generates: one run.

Run as ``.venv/bin/python bench/queue_wait.py [--steps 100,200,...] [--duration 10]``
(``--app echo`` measures the echo's paced stream instead, for a build without the queue).

The real switch runs (``twistd -n phpvoip -c CONFIG``) with one application on
number 700: by default a ``type: queue`` with no agents that lets callers join when
it is empty (``join_empty: true``, no announcements, no wait limit), so every caller
waits and hears the music on hold (phpvoip.media.music) as RTP the switch generates
and paces itself. A ladder of N callers is stepped: SIPp's UAC places N calls at
``--rate`` (``bench/scenarios/media_uac.xml``), each offering one socket of this
process (an injection file, one port per call). Once all N are answered and
``--settle`` seconds have passed (by default long enough for the last caller's
welcome prompt, 5 s, to end: what is measured is callers on music on hold), every
socket's packets are read for
``--duration`` seconds, each stamped by the kernel on arrival (SO_TIMESTAMPNS), so
this process's own lateness in reading does not count (it reads in batches 5 ms
apart, so as not to wake at every packet and take the CPU from the switch). Then
SIPp hangs the calls up (BYE) and the next step starts.

Jitter is the plain inter-arrival deviation, per packet: the time between two packets
of one caller minus the time their RTP timestamps say should pass (20 ms for
consecutive packets; a lost packet does not count twice), absolute, in ms. Its p50
and p99 over every packet of every caller are printed, and the pass criterion is
p99 < 5 ms. Beside it, the RFC 3550 A.8 interarrival jitter J of each caller (the
same D, smoothed by 1/16) at the end of the step: the median and worst caller.
Loss is expected minus received packets, expected from the span of the RTP
timestamps (the endpoint skips frames it is too late for without a sequence gap, and
a caller misses those as much as lost ones).
Per step also: the switch's CPU (% of one core over the measurement) and peak RSS
(VmHWM), this receiver's CPU (near 100 % its own figures would be suspect), the
switch's longest garbage-collector pause so far (from its /metrics), how often the
kernel preempted it and the load average: the machine is shared, and a switch
waiting for a CPU sends late however well it paces.

A step holds when every caller is answered and hears music, loss < 1 % and jitter
p99 < 5 ms; one that does not is run once more (``--retries``; the machine is shared)
and the ladder stops at the first that still does not. At the end: the largest N
that held, against the goal of issue 11 (300).
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calls import (  # bench/ is not a package: found through sys.path
    LOOPBACK,
    ROOT,
    SCENARIOS,
    SIPP_BUFFER,
    cpu_seconds,
    free_port,
    percentile,
    status_kib,
    stop,
    wait_bound,
)
from media import media_pairs, traces, wait_released, write_injection

GOAL_CALLERS = 300
GOAL_JITTER_P99_MS = 5.0
GOAL_LOSS_PERCENT = 1.0
NUMBER = "700"
# Above the kernel's ephemeral range, where SIPp's and this process's sockets do not land.
APP_PORTS = (61000, 65499)
# Linux's values (asm-generic/socket.h); Python's socket module does not name them.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
_RTP = struct.Struct("!BBHI")  # flags, marker+PT, sequence, timestamp
_SILENT = bytes((0xFF, 0x7F, 0xD5, 0x55))  # PCMU and PCMA zero, both signs
PTIME = 0.020
_BATCH = 0.005  # seconds between the receiver's reads when it only listens
RATE = 8000


class Switch:
    """The real switch with one application on `NUMBER` and no other module."""

    def __init__(self, work: Path, app: str, ports: tuple[int, int], nice: int = 0) -> None:
        self.work = work
        self.nice = nice
        self.app = app
        self.ports = ports
        self.port = free_port()
        self.metrics_port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = (work / "phpvoip.log").open("wb")

    def gc_pause_max(self) -> float | None:
        """The switch's longest garbage-collector pause so far (s), from /metrics: a
        stall it explains is the collector's, not the pacing's."""
        try:
            url = f"http://{LOOPBACK}:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("phpvoip_gc_pause_max_seconds "):
                return float(line.split()[1])
        return None

    def config(self) -> str:
        low, high = self.ports
        if self.app == "queue":
            module = (
                "  - type: queue\n"
                "    name: waiting\n"
                "    join_empty: true\n"
                "    announce_frequency: 0\n"
                "    max_wait: 0\n"
                "    max_callers: 0\n"
            )
        else:
            module = "  - type: echo\n    name: echo\n"
        return (
            "sip:\n"
            f"  listen: [udp:{LOOPBACK}:{self.port}]\n"
            f"  domain: {LOOPBACK}\n"
            "storage: 'memory:'\nladders: {enabled: false}\ncdr: {enabled: false}\n"
            f"metrics: {{listen: 'tcp:{self.metrics_port}:interface={LOOPBACK}'}}\n"
            "log_level: warn\n"
            "calls: {keepalive_interval: 0}\n"
            "modules:\n"
            # A trunk only to let SIPp's calls in (a trusted source); it carries no number we dial.
            "  - type: trunk\n"
            "    name: callers\n"
            f"    address: {LOOPBACK}:9\n"
            f"    allow: [{LOOPBACK}]\n"
            "    numbers: ['9999*']\n"
            + module +
            f"    number: '{NUMBER}'\n"
            f"    ports: '{low}-{high}'\n"
            "    max_duration: 3600\n"
        )

    def start(self) -> None:
        config = self.work / "phpvoip.yaml"
        config.write_text(self.config())
        twistd = Path(sys.executable).parent / "twistd"
        # A media server is often given a higher priority than the processes around it
        # (Asterisk's -p, rtpengine's packaged units); --nice does that for the switch.
        priority = ["nice", "-n", str(self.nice)] if self.nice else []
        self.process = subprocess.Popen(
            [*priority, str(twistd), "-n", "--pidfile=", "phpvoip", "-c", str(config)],
            cwd=self.work, stdout=self.log, stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )  # fmt: skip
        wait_bound(self.port, self.process, 60, "phpvoip")
        time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, signal.SIGTERM, 20)
        self.log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


# -- the callers' receiving side -----------------------------------------------------


def open_socket() -> socket.socket:
    """A caller's RTP socket: non-blocking, a roomy buffer, kernel arrival stamps."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


class Caller:
    """One caller's socket and what arrived on it: counts, the inter-arrival
    deviations and RFC 3550's running jitter J (the arithmetic needs no socket:
    tests give `arrived` packets and times)."""

    __slots__ = ("sock", "received", "span", "last_arrival", "last_ts", "jitter", "deviations", "markers",
                 "audible")

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock
        self.reset()

    def reset(self) -> None:
        """Forget what arrived before the measurement starts."""
        self.received = 0
        self.span = 0  # RTP timestamp units from the first packet to the latest
        self.last_arrival: float | None = None
        self.last_ts = 0
        self.jitter = 0.0  # RFC 3550 A.8 J, in seconds
        self.deviations = array("d")  # |D| in ms, one a packet after the first
        self.markers = 0
        self.audible = 0  # packets whose payload is not digital silence

    @property
    def port(self) -> int:
        assert self.sock is not None
        return self.sock.getsockname()[1]

    def arrived(self, arrival: float, packet: bytes) -> None:
        """One packet read at kernel time `arrival` (seconds)."""
        if len(packet) < 12:
            return
        _flags, marker_pt, _seq, ts = _RTP.unpack_from(packet)
        self.received += 1
        if packet[12:].strip(_SILENT):
            self.audible += 1
        if self.last_arrival is None:
            self.last_arrival, self.last_ts = arrival, ts
            return
        elapsed = ((ts - self.last_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        if elapsed > 0:
            self.span += elapsed
        if not marker_pt & 0x80:
            # RFC 3550 A.8: D(i,j) = (Rj - Ri) - (Sj - Si), both in seconds here.
            d = abs((arrival - self.last_arrival) - elapsed / RATE)
            self.jitter += (d - self.jitter) / 16
            self.deviations.append(1000.0 * d)
        else:
            self.markers += 1
        if elapsed > 0:  # a late, reordered packet does not move the reference back
            self.last_arrival, self.last_ts = arrival, ts

    def expected(self) -> int:
        """20 ms packets the timestamps span: a frame the switch skipped (the endpoint
        drops frames it is too late for, without a sequence gap) counts as lost."""
        return self.span // 160 + 1 if self.received else 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def receive(callers: list[Caller], duration: float, send_to: dict[int, int] | None) -> float:
    """Read every caller's socket for `duration` seconds; returns this process's CPU
    (% of one core). With `send_to` (caller port -> switch port, for the echo) each
    caller also sends a 20 ms PCMU packet every 20 ms, phases spread over 1 ms ticks."""
    poller = select.epoll()
    by_fd = {c.sock.fileno(): c for c in callers}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    space = socket.CMSG_SPACE(_TIMESPEC.size)
    outgoing = []
    if send_to:
        for index, caller in enumerate(callers):
            target = send_to.get(caller.port)
            if target is not None:
                packet = bytearray(b"\x80\x00" + bytes(10) + b"\xff" * 160)
                struct.pack_into("!I", packet, 8, 0x5EED0000 + index)
                outgoing.append((caller.sock, (LOOPBACK, target), packet))
    ticks = round(PTIME / 0.001)
    slots: list[list[int]] = [list(range(i, len(outgoing), ticks)) for i in range(ticks)]
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    clock = time.monotonic
    start = clock()
    end = start + duration
    tick = 0
    next_tick = start
    while True:
        now = clock()
        if now >= end:
            break
        if outgoing and now >= next_tick:
            rounds = tick // ticks
            for index in slots[tick % ticks]:
                sock, target, packet = outgoing[index]
                struct.pack_into("!HI", packet, 2, rounds & 0xFFFF, (rounds * 160) & 0xFFFFFFFF)
                try:
                    sock.sendto(packet, target)
                except BlockingIOError:
                    pass
            tick += 1
            next_tick = start + tick * 0.001
        if outgoing:
            wait = min(end, next_tick) - clock()
        else:
            # Read in batches, 5 ms apart, rather than waking at every packet: the
            # kernel's stamps keep each arrival time, and a receiver woken 15,000
            # times a second would take the CPU from the switch it measures.
            time.sleep(max(0.0, min(end, now + _BATCH) - clock()))
            wait = 0.0
        for fd, _ in poller.poll(max(wait, 0.0)):
            caller = by_fd[fd]
            while True:
                try:
                    data, ancillary, _flags, _addr = caller.sock.recvmsg(2048, space)
                except BlockingIOError:
                    break
                arrival = None
                for level, kind, value in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                        sec, nsec = _TIMESPEC.unpack_from(value)
                        arrival = sec + nsec * 1e-9
                if arrival is None:  # no kernel stamp: our own reading time
                    arrival = time.time()
                caller.arrived(arrival, data)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    poller.close()
    cpu = usage.ru_utime + usage.ru_stime - usage_before.ru_utime - usage_before.ru_stime
    return 100.0 * cpu / max(1e-9, clock() - start)


def drain(callers: list[Caller]) -> None:
    """Read and drop what is queued on every socket (the packets before the measurement)."""
    for caller in callers:
        while True:
            try:
                caller.sock.recv(2048)
            except BlockingIOError:
                break


# -- one step ------------------------------------------------------------------------


@dataclass
class WaitStep:
    callers: int
    answered: int = 0
    silent: int = 0  # answered callers that heard nothing (with the queue: no music)
    received: int = 0
    expected: int = 0
    p50: float | None = None
    p99: float | None = None
    j_median: float | None = None
    j_worst: float | None = None
    switch_cpu: float = 0.0
    switch_rss_kib: int = 0
    receiver_cpu: float = 0.0
    gc_pause_ms: float = 0.0  # the switch's longest collector pause so far
    preempted: int = 0  # times the kernel took the CPU from the switch while measuring
    load: str = ""  # the machine's load average after the step (other processes share it)
    note: str = ""

    @property
    def loss(self) -> float:
        return 100.0 * (self.expected - self.received) / self.expected if self.expected else 100.0

    @property
    def held(self) -> bool:
        return (self.answered == self.callers and not self.silent and not self.note
                and self.loss < GOAL_LOSS_PERCENT and self.p99 is not None and self.p99 < GOAL_JITTER_P99_MS)


def wait_step(sipp: str, switch: Switch, n: int, args: argparse.Namespace, step_dir: Path) -> WaitStep:
    step = WaitStep(n)
    step_dir.mkdir(parents=True)
    callers = [Caller(open_socket()) for _ in range(n)]
    write_injection(step_dir / "uac.csv", [c.port for c in callers])
    setup_s = n / args.rate
    slack = 0.5 * setup_s + 2.0
    hold_ms = int(1000 * (setup_s + slack + args.settle + args.duration + 1))
    timeout = int(2 * setup_s + slack + args.settle + args.duration + 60)
    uac = subprocess.Popen(
        [sipp, f"{LOOPBACK}:{switch.port}", "-sf", str(SCENARIOS / "media_uac.xml"), "-s", NUMBER,
         "-i", LOOPBACK, "-p", str(free_port()), "-inf", str(step_dir / "uac.csv"), "-r", str(args.rate),
         "-l", str(n), "-m", str(n), "-d", str(hold_ms), "-buff_size", SIPP_BUFFER, "-nostdin", "-fd", "1",
         "-trace_msg", "-trace_err", "-timeout", f"{timeout}s", "-timeout_error"],
        cwd=step_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + setup_s + slack
        pairs: dict[int, int] = {}
        while time.monotonic() < deadline:
            time.sleep(0.25)
            drain(callers)
            pairs = {}
            for path in traces(step_dir, "media_uac"):
                pairs.update(media_pairs(path))
            if len(pairs) >= n or uac.poll() is not None:
                break
        step.answered = min(len(pairs), n)
        if step.answered < n:
            step.note = f"only {step.answered} of {n} callers answered within {setup_s + slack:.0f} s"
            return step
        time.sleep(args.settle)
        drain(callers)
        for caller in callers:
            caller.reset()
        before = cpu_seconds(switch.pid)
        preempted = status_kib(switch.pid, "nonvoluntary_ctxt_switches")
        started = time.monotonic()
        step.receiver_cpu = receive(callers, args.duration, pairs if switch.app == "echo" else None)
        step.switch_cpu = 100.0 * (cpu_seconds(switch.pid) - before) / (time.monotonic() - started)
        step.switch_rss_kib = status_kib(switch.pid, "VmHWM")
        step.load = load_average().split()[0]
        step.gc_pause_ms = 1000.0 * (switch.gc_pause_max() or 0.0)
        step.preempted = status_kib(switch.pid, "nonvoluntary_ctxt_switches") - preempted
        step.silent = sum(1 for c in callers if not (c.audible if switch.app == "queue" else c.received))
        step.received = sum(c.received for c in callers)
        step.expected = sum(c.expected() for c in callers)
        deviations: list[float] = []
        for caller in callers:
            deviations.extend(caller.deviations)
        step.p50, step.p99 = percentile(deviations, 0.50), percentile(deviations, 0.99)
        jitters = [1000.0 * c.jitter for c in callers if c.received]
        step.j_median, step.j_worst = percentile(jitters, 0.50), max(jitters, default=None)
        code = uac.wait(timeout)
        if code != 0:
            step.note = f"SIPp UAC exit {code}"
        if switch.process is not None and switch.process.poll() is not None:
            step.note = step.note or "switch exited"
    finally:
        stop(uac, signal.SIGKILL, 5)
        for caller in callers:
            caller.close()
    return step


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_step(step: WaitStep) -> None:
    print(f"  {step.callers:5d} callers {step.answered:5d} answered {step.silent:4d} silent "
          f"{step.received:8d} recv loss {step.loss:5.2f}%  "
          f"jitter p50 {fmt(step.p50)} p99 {fmt(step.p99)} ms  "
          f"J median {fmt(step.j_median)} worst {fmt(step.j_worst)} ms  switch CPU {step.switch_cpu:5.1f}% "
          f"RSS {step.switch_rss_kib / 1024:5.1f} MiB  receiver CPU {step.receiver_cpu:5.1f}%  "
          f"gc max {step.gc_pause_ms:.0f} ms  "
          f"preempted {step.preempted}  load {step.load}  {'held' if step.held else 'FAIL'} {step.note}",
          flush=True)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="100,200,300,400,500,600,800,1000",
                        help="the ladder of callers waiting at once, comma separated")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per step")
    parser.add_argument("--settle", type=float, default=6.5,
                        help="seconds after the last answer before measuring")
    parser.add_argument("--rate", type=int, default=100, help="calls/s at which each step's callers arrive")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between steps")
    parser.add_argument("--retries", type=int, default=1, help="times a failed step is run again")
    parser.add_argument("--app", choices=("queue", "echo"), default="queue",
                        help="what the callers reach: the queue (music on hold) or the echo (fed by us)")
    parser.add_argument("--ports", default=f"{APP_PORTS[0]}-{APP_PORTS[1]}",
                        help="the application's RTP port range")
    parser.add_argument("--keep-going", action="store_true",
                        help="run every step even after one failed (CPU and RSS further up the ladder)")
    parser.add_argument("--nice", type=int, default=0,
                        help="the switch's niceness (negative: ahead of other processes; needs root)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (SIPp traces, switch log)")
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    low, _, high = args.ports.partition("-")
    ports = (int(low), int(high))
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    work = Path(tempfile.mkdtemp(prefix="phpvoip-queue-bench-"))
    print(f"waiting callers: SIPp uac -> phpvoip {args.app} on {NUMBER}, RTP read by one receiver, "
          f"{args.duration:g} s measured per step, {os.cpu_count()} CPUs, switch niceness {args.nice}, "
          f"load average {load_average()}",
          flush=True)
    switch = Switch(work, args.app, ports, args.nice)
    results: list[WaitStep] = []
    try:
        switch.start()
        for n in steps:
            for attempt in range(1 + args.retries):
                if attempt:
                    print(f"  {n:5d} callers: once more, load average {load_average()}", flush=True)
                step = wait_step(sipp, switch, n, args, work / f"{n}-{attempt}")
                print_step(step)
                wait_released(*ports)
                time.sleep(args.pause)
                if step.held:
                    break
            results.append(step)
            if not step.held and not args.keep_going:
                break
    finally:
        switch.stop()
        if args.keep:
            print(f"work directory: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    passing = [s for s in results if s.held]
    best = max(passing, key=lambda s: s.callers) if passing else None
    print()
    if best is None:
        print(f"Largest number of callers waiting with jitter p99 < {GOAL_JITTER_P99_MS:g} ms: none "
              f"(the first step failed); goal {GOAL_CALLERS}")
        return 1
    print(f"Largest number of callers waiting with jitter p99 < {GOAL_JITTER_P99_MS:g} ms and loss < "
          f"{GOAL_LOSS_PERCENT:g} %: {best.callers} (jitter p99 {fmt(best.p99)} ms, switch CPU "
          f"{best.switch_cpu:.0f}%, RSS {best.switch_rss_kib / 1024:.0f} MiB); goal {GOAL_CALLERS}: "
          f"{'met' if best.callers >= GOAL_CALLERS else 'NOT met'}, load average {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
