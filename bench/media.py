"""Relayed G.711 calls held at once: phpvoip's in-process relay against rtpengine, one run.

Run through ``bench/media.sh``, or
``.venv/bin/python bench/media.py [--steps 100,200,...] [--duration 10] [--only direct,relay,rtpengine]``.

For each media mode the real switch runs (``twistd -n phpvoip -c CONFIG``, a trunk
carrying every call to SIPp's UAS, ``media: {mode: relay}`` or ``media: {mode:
rtpengine}`` with a real userspace rtpengine started beside it) and a ladder of N
concurrent calls is stepped. Per step: SIPp's UAC places N calls at ``--rate``
through the switch to SIPp's UAS (``bench/scenarios/media_ua[cs].xml``); each side's
SDP names one socket of this script's load generator (an injection file, one port
per call), and the media address the switch gave each side is read back from SIPp's
``-trace_msg`` logs. Once all N are answered the generator streams for
``--duration`` seconds: per call 20 ms PCMU packets (172 bytes, PT 0, its own SSRC,
seq and timestamp) from the caller's and the callee's socket to the switch's media
ports, 50 packets/s each way on each leg, and counts what comes back out of the
relay. The calls are then hung up by SIPp (BYE) and the next step starts. A first
ladder with ``media: direct`` (SDP untouched, so the generator's sockets send to each
other) is the baseline: what the generator and the machine hold with no relay at all.

Per step it prints: packets sent and received (loss %, and the worst stream's), the
added jitter (each packet's send-to-receive time minus its stream's minimum, p50 and
p99 in ms; the send time travels in the payload, so the generator's own lateness in
sending is not counted, its lateness in reading is), the generator's lateness against
its 20 ms schedule, the CPU (% of one core) of the switch, of rtpengine and of the
generator over the streaming, and the peak RSS of the switch and of rtpengine. A step
holds with loss < 1 % and jitter p99 < 5 ms; one that does not is run once more
(``--retries``: the machine is shared, and a stall elsewhere shows up as jitter here),
and the ladder stops at the first that still does not. Then the highest N that held,
for each mode.

Then calls/s with the relay on against off (``media: direct``): ``bench/calls.py``'s
ladder of call rates (setup and teardown with SDP, no RTP) through both, its highest
rate with no failed call, setup p99 and CPU (``--rates``; ``--rates ''`` skips it).

The generator is this process: one epoll loop over plain UDP sockets, one 1 ms tick
sending the streams due in it (phases spread over the 20 ms), nothing allocated per
packet but the received latency. Its CPU is measured: above about 90 % of a core
its figures are its own limit, not the relay's.
"""

from __future__ import annotations

import argparse
import os
import re
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
from array import array
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calls import (  # bench/ is not a package: found through sys.path
    LOOPBACK,
    SCENARIOS,
    SIPP_BUFFER,
    Phpvoip,
    cpu_seconds,
    free_port,
    percentile,
    run_ladder,
    status_kib,
    stop,
    udp_bound,
    wait_bound,
)

# Media ports above the ephemeral range (32768-60999), where neither SIPp, this
# generator's sockets nor the tests' free_port() (20000-32767) land. The relay and
# rtpengine never run at once, so they share it: 4 ports a call, 1125 calls.
MEDIA_PORTS = (61000, 65499)
GOAL_LOSS_PERCENT = 1.0
GOAL_JITTER_P99_MS = 5.0
PTIME = 0.020
PAYLOAD = 160
SSRC_BASE = 0x5EED0000
# RTP header after its first two bytes (seq, timestamp, SSRC), then the send time.
_STAMP = struct.Struct("!HIId")
_READ = struct.Struct("!Id")  # SSRC and send time, from byte 8


class MediaSwitch(Phpvoip):
    """The real switch with a ``media:`` section (and a trunk to the UAS)."""

    def __init__(self, work: Path, uas_port: int, media: str, name: str) -> None:
        self.name = name
        self.media = media
        super().__init__(work, uas_port)

    def operations(self) -> str:
        return super().operations() + f"media: {self.media}\n"


class Rtpengine:
    """A userspace rtpengine in the foreground on its own ng port, stopped by PID."""

    def __init__(self, work: Path, ports: tuple[int, int]) -> None:
        self.ng_port = free_port()
        self.ports = ports
        self.log = (work / "rtpengine.log").open("wb")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        program = shutil.which("rtpengine")
        if program is None:
            raise RuntimeError("rtpengine is not installed (apt-get install rtpengine-daemon)")
        # --config-file=none: otherwise it reads /etc/rtpengine and binds its CLI ports.
        self.process = subprocess.Popen(
            [program, "--config-file=none", "--foreground", "--log-stderr", "--table=-1",
             f"--interface={LOOPBACK}", f"--listen-ng={LOOPBACK}:{self.ng_port}",
             f"--port-min={self.ports[0]}", f"--port-max={self.ports[1]}", "--log-level=4",
             "--delete-delay=0"],  # free a call's ports at its delete, not 30 s later
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_bound(self.ng_port, self.process, 20, "rtpengine")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, signal.SIGTERM, 10)
        self.log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


# -- the load generator --------------------------------------------------------------


class Generator:
    """2 sockets a call (the caller's and the callee's media), each sending one 50 pps
    stream to the switch and reading the one the switch relays to it."""

    def __init__(self, calls: int) -> None:
        self.caller = [self._socket() for _ in range(calls)]
        self.callee = [self._socket() for _ in range(calls)]

    @staticmethod
    def _socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK, 0))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        return sock

    def ports(self, side: str) -> list[int]:
        return [s.getsockname()[1] for s in (self.caller if side == "caller" else self.callee)]

    def close(self) -> None:
        for sock in self.caller + self.callee:
            sock.close()

    def stream(self, targets: dict[int, int], duration: float) -> Streamed:
        """Send every stream for `duration` seconds (socket port -> switch port), then
        read for a further 0.3 s; returns the counts and latencies."""
        by_port = {s.getsockname()[1]: s for s in self.caller + self.callee}
        streams = [(by_port[port], (LOOPBACK, target)) for port, target in sorted(targets.items())]
        count = len(streams)
        # Which side each socket (by fd) and each stream (by index) is on: a stream
        # must come out on the other side, never back to its own.
        callers = {s.fileno() for s in self.caller}
        stream_side = [sock.fileno() in callers for sock, _ in streams]
        misrouted = 0
        templates = []
        for index in range(count):
            packet = bytearray(b"\xff" * (12 + PAYLOAD))
            packet[0], packet[1] = 0x80, 0  # V=2, PT 0 (PCMU)
            struct.pack_into("!I", packet, 8, SSRC_BASE + index)
            templates.append(packet)
        sent = [0] * count
        received = [0] * count
        latency = [array("d") for _ in range(count)]
        ticks = round(PTIME / 0.001)
        slots: list[list[int]] = [[] for _ in range(ticks)]
        for index in range(count):
            slots[index % ticks].append(index)
        poller = select.epoll()
        socks = {}
        for sock, _ in streams:
            poller.register(sock.fileno(), select.EPOLLIN)
            socks[sock.fileno()] = sock
        buffer = bytearray(2048)
        view = memoryview(buffer)
        read = _READ.unpack_from
        stamp = _STAMP.pack_into
        clock = time.perf_counter
        lateness = array("d")
        usage_before = resource.getrusage(resource.RUSAGE_SELF)
        start = clock() + 0.05
        total = round(duration / 0.001)  # ticks: every stream sends duration / PTIME packets
        next_tick, slot, tick = start, 0, 0
        drain_until = float("inf")
        while True:
            now = clock()
            if now >= next_tick and tick < total:
                lateness.append(now - next_tick)
                rounds = tick // ticks
                for index in slots[slot]:
                    sock, target = streams[index]
                    packet = templates[index]
                    stamp(packet, 2, rounds & 0xFFFF, (rounds * 160) & 0xFFFFFFFF, SSRC_BASE + index, clock())
                    try:
                        sock.sendto(packet, target)
                        sent[index] += 1
                    except BlockingIOError:
                        sent[index] += 1  # dropped on our side: counts as loss
                slot = (slot + 1) % ticks
                tick += 1
                next_tick = start + tick * 0.001
                if tick == total:
                    drain_until = clock() + 0.3  # what is still in flight
                continue
            if now >= drain_until:
                break
            wait = (next_tick if tick < total else drain_until) - now
            for fd, _ in poller.poll(max(wait, 0.0)):
                sock = socks[fd]
                side = fd in callers
                while True:
                    try:
                        size = sock.recv_into(buffer)
                    except BlockingIOError:
                        break
                    if size < 20:
                        continue
                    ssrc, when = read(view, 8)
                    index = ssrc - SSRC_BASE
                    if 0 <= index < count:
                        received[index] += 1
                        latency[index].append(clock() - when)
                        if stream_side[index] == side:
                            misrouted += 1
        usage = resource.getrusage(resource.RUSAGE_SELF)
        poller.close()
        cpu = (usage.ru_utime + usage.ru_stime - usage_before.ru_utime - usage_before.ru_stime)
        wall = clock() - start
        return Streamed(sent, received, latency, lateness, 100.0 * cpu / wall, misrouted)


@dataclass
class Streamed:
    sent: list[int]
    received: list[int]
    latency: list[array]
    lateness: array
    cpu: float
    misrouted: int  # packets that came back to the side that sent them

    def loss_percent(self) -> float:
        total = sum(self.sent)
        return 100.0 * (total - sum(self.received)) / total if total else 100.0

    def worst_stream_loss(self) -> float:
        return max((100.0 * (s - r) / s for s, r in zip(self.sent, self.received, strict=True) if s),
                   default=0.0)

    def jitter_ms(self) -> list[float]:
        """Every packet's send-to-receive time minus its stream's fastest, in ms."""
        values: list[float] = []
        for stream in self.latency:
            if stream:
                low = min(stream)
                values.extend((x - low) * 1000.0 for x in stream)
        return values


# -- SIPp traces ---------------------------------------------------------------------

_CHUNK = re.compile(r"^-{10,}.*$", re.M)
_CALL_ID = re.compile(r"^Call-ID:\s*(\S+)", re.M | re.I)
_AUDIO = re.compile(r"^m=audio (\d+) ", re.M)


def media_pairs(trace: Path) -> dict[int, int]:
    """generator port -> switch media port, from one SIPp -trace_msg log: per Call-ID
    the SDP port SIPp sent (ours: the caller's offer, the callee's answer) and the one
    it received (the switch's)."""
    if not trace.exists():
        return {}
    sent: dict[str, int] = {}
    got: dict[str, int] = {}
    for chunk in _CHUNK.split(trace.read_text(errors="replace")):
        body = chunk.strip()
        audio = _AUDIO.search(body)
        call_id = _CALL_ID.search(body)
        if audio is None or call_id is None:
            continue
        outgoing = "message sent" in body.split("\n", 1)[0]
        (sent if outgoing else got)[call_id.group(1)] = int(audio.group(1))
    return {sent[c]: got[c] for c in sent if c in got}


def traces(step_dir: Path, scenario: str) -> list[Path]:
    return list(step_dir.glob(f"{scenario}_*_messages.log"))


def answered(step_dir: Path) -> dict[int, int]:
    """generator port -> switch port for every call answered so far, both sides."""
    pairs: dict[int, int] = {}
    for path in traces(step_dir, "media_uac") + traces(step_dir, "media_uas"):
        pairs.update(media_pairs(path))
    return pairs


# -- one step ------------------------------------------------------------------------


@dataclass
class MediaStep:
    calls: int
    set_up: int = 0
    sent: int = 0
    received: int = 0
    loss: float = 100.0
    worst_loss: float = 100.0
    p50: float | None = None
    p99: float | None = None
    late_p99: float | None = None
    switch_cpu: float = 0.0
    engine_cpu: float | None = None
    generator_cpu: float = 0.0
    switch_rss_kib: int = 0
    engine_rss_kib: int | None = None
    note: str = ""
    streamed: Streamed | None = None  # the generator's raw figures

    @property
    def held(self) -> bool:
        return (self.set_up == self.calls and not self.note and self.loss < GOAL_LOSS_PERCENT
                and self.p99 is not None and self.p99 < GOAL_JITTER_P99_MS)


def write_injection(path: Path, ports: list[int]) -> None:
    path.write_text("SEQUENTIAL\n" + "".join(f"{port}\n" for port in ports))


def media_step(sipp: str, switch: MediaSwitch, engine: Rtpengine | None, calls: int, rate: int,
               duration: float, step_dir: Path) -> MediaStep:
    step = MediaStep(calls)
    step_dir.mkdir(parents=True)
    generator = Generator(calls)
    write_injection(step_dir / "uac.csv", generator.ports("caller"))
    write_injection(step_dir / "uas.csv", generator.ports("callee"))
    # Every call is held from its answer until the streaming is over: the calls are
    # placed over setup_s seconds and given half as long again (plus 1.5 s) to answer.
    setup_s = calls / rate
    slack = 0.5 * setup_s + 1.5
    hold_ms = int(1000 * (setup_s + slack + duration + 1))
    timeout = int(2 * setup_s + slack + duration + 60)
    common = ["-i", LOOPBACK, "-buff_size", SIPP_BUFFER, "-nostdin", "-fd", "1", "-trace_msg",
              "-trace_err", "-m", str(calls), "-timeout", f"{timeout}s", "-timeout_error"]
    uas = subprocess.Popen(
        [sipp, "-sf", str(SCENARIOS / "media_uas.xml"), "-p", str(switch.uas_port),
         "-inf", str(step_dir / "uas.csv"), *common],
        cwd=step_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    uac = None
    try:
        wait_bound(switch.uas_port, uas, 10, "SIPp UAS")
        uac = subprocess.Popen(
            [sipp, f"{LOOPBACK}:{switch.port}", "-sf", str(SCENARIOS / "media_uac.xml"), "-s", "2005",
             "-p", str(free_port()), "-inf", str(step_dir / "uac.csv"), "-r", str(rate),
             "-l", str(calls), "-d", str(hold_ms), *common],
            cwd=step_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + setup_s + slack
        pairs: dict[int, int] = {}
        while time.monotonic() < deadline:
            time.sleep(0.25)
            pairs = answered(step_dir)
            if len(pairs) >= 2 * calls or uac.poll() is not None:
                break
        step.set_up = min(len(pairs) // 2, calls)
        if step.set_up < calls:
            step.note = f"only {len(pairs)} of {2 * calls} sides answered within {setup_s + slack:.0f} s"
            return step
        switch_cpu = cpu_seconds(switch.pid)
        engine_cpu = cpu_seconds(engine.pid) if engine is not None else 0.0
        started = time.monotonic()
        streamed = generator.stream(pairs, duration)
        wall = time.monotonic() - started
        step.switch_cpu = 100.0 * (cpu_seconds(switch.pid) - switch_cpu) / wall
        if engine is not None:
            step.engine_cpu = 100.0 * (cpu_seconds(engine.pid) - engine_cpu) / wall
            step.engine_rss_kib = status_kib(engine.pid, "VmHWM")
        step.switch_rss_kib = status_kib(switch.pid, "VmHWM")
        step.generator_cpu = streamed.cpu
        step.streamed = streamed
        step.sent, step.received = sum(streamed.sent), sum(streamed.received)
        if streamed.misrouted:
            step.note = f"{streamed.misrouted} packets came back to their sender's side"
        step.loss, step.worst_loss = streamed.loss_percent(), streamed.worst_stream_loss()
        jitter = streamed.jitter_ms()
        step.p50, step.p99 = percentile(jitter, 0.50), percentile(jitter, 0.99)
        step.late_p99 = 1000.0 * (percentile(list(streamed.lateness), 0.99) or 0.0)
        code = uac.wait(timeout)
        if code != 0:
            step.note = step.note or f"SIPp UAC exit {code}"
        try:
            uas.wait(10)
        except subprocess.TimeoutExpired:
            step.note = step.note or "SIPp UAS did not end"
        if switch.process is not None and switch.process.poll() is not None:
            step.note = step.note or "switch exited"
    finally:
        for process in (uac, uas):
            if process is not None:
                stop(process, signal.SIGKILL, 5)
        generator.close()
    return step


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_step(name: str, step: MediaStep) -> None:
    engine = "" if step.engine_cpu is None else (
        f" rtpengine CPU {step.engine_cpu:5.1f}% RSS {(step.engine_rss_kib or 0) / 1024:5.1f} MiB")
    print(f"  {name:9} {step.calls:5d} calls {step.sent:8d} sent {step.received:8d} recv "
          f"loss {step.loss:5.2f}% (worst stream {step.worst_loss:5.1f}%)  jitter p50 {fmt(step.p50)} "
          f"p99 {fmt(step.p99)} ms  gen late p99 {fmt(step.late_p99)} ms  switch CPU {step.switch_cpu:5.1f}% "
          f"RSS {step.switch_rss_kib / 1024:5.1f} MiB{engine}  gen CPU {step.generator_cpu:5.1f}%  "
          f"{'held' if step.held else 'FAIL'} {step.note}", flush=True)


def media_ladder(sipp: str, mode: str, work: Path, steps: list[int],
                 args: argparse.Namespace) -> list[MediaStep]:
    low, high = args.ports
    engine = Rtpengine(work, args.ports) if mode == "rtpengine" else None
    if engine is not None:
        media = f'{{mode: rtpengine, ng: "udp:{LOOPBACK}:{engine.ng_port}", timeout: 2}}'
    elif mode == "relay":
        media = f'{{mode: relay, ports: "{low}-{high}", rtp_timeout: 60}}'
    else:  # the baseline: SDP untouched, the generator's sockets talk to each other
        media = "{mode: direct}"
    switch = MediaSwitch(work, free_port(), media, mode)
    results: list[MediaStep] = []
    try:
        if engine is not None:
            engine.start()
        switch.start()
        for calls in steps:
            for attempt in range(1 + args.retries):
                if attempt:
                    print(f"  {mode:9} {calls:5d} calls: once more (another process may have stalled "
                          f"the machine), load average {load_average()}", flush=True)
                step = media_step(sipp, switch, engine, calls, args.rate, args.duration,
                                  work / f"{mode}-{calls}-{attempt}")
                print_step(mode, step)
                wait_released(low, high)
                time.sleep(args.pause)
                if step.held:
                    break
            results.append(step)
            if not step.held:
                break
    finally:
        switch.stop()
        if engine is not None:
            engine.stop()
    return results


def wait_released(low: int, high: int, timeout: float = 15.0) -> None:
    """Until no media port of the range is bound (the last step's calls are gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(udp_bound(port) for port in range(low, min(high, low + 8) + 1)):
            return
        time.sleep(0.5)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="100,200,300,400,500,600,800,1000",
                        help="the ladder of concurrent calls, comma separated")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of RTP per step")
    parser.add_argument("--rate", type=int, default=200, help="calls/s at which each step's calls are placed")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between steps")
    parser.add_argument("--retries", type=int, default=1,
                        help="times a step that did not hold is run again before the ladder stops")
    parser.add_argument("--only", default="direct,relay,rtpengine",
                        help="media modes: direct (the baseline: RTP straight between the generator's "
                             "sockets, what the generator and the machine hold alone), relay, rtpengine")
    parser.add_argument("--rates", default="200,400,600,700,800,900,1000,1200",
                        help="calls/s ladder with the relay on and off ('' skips it)")
    parser.add_argument("--rate-duration", type=float, default=5.0, help="seconds per calls/s step")
    parser.add_argument("--ports", default=f"{MEDIA_PORTS[0]}-{MEDIA_PORTS[1]}",
                        help="media port range of the relay and of rtpengine (4 ports a call)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (SIPp traces, logs)")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    low, _, high = args.ports.partition("-")
    args.ports = (int(low), int(high))
    if max(steps) * 4 > args.ports[1] - args.ports[0] + 1:
        parser.error(f"--ports {low}-{high} is too small for {max(steps)} calls (4 ports a call)")
    modes = [m for m in args.only.split(",") if m]
    if not modes or set(modes) - {"direct", "relay", "rtpengine"}:
        parser.error("--only: direct, relay and/or rtpengine")
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    work = Path(tempfile.mkdtemp(prefix="phpvoip-media-bench-"))
    print(f"media benchmark: SIPp uac -> phpvoip -> SIPp uas, RTP from one generator process, "
          f"{args.duration:g} s of 50 pps each way on each leg per step, {os.cpu_count()} CPUs, "
          f"load average {load_average()}", flush=True)
    held: dict[str, MediaStep | None] = {}
    rate_results = []
    try:
        for mode in modes:
            results = media_ladder(sipp, mode, work, steps, args)
            passing = [s for s in results if s.held]
            held[mode] = max(passing, key=lambda s: s.calls) if passing else None
        rates = [int(r) for r in args.rates.split(",") if r.strip()]
        if rates:
            print(f"calls/s with the relay off and on ({args.rate_duration:g} s per step, no RTP), "
                  f"load average {load_average()}", flush=True)
            ladder = argparse.Namespace(duration=args.rate_duration, hold=0, pause=args.pause)
            low, high = args.ports
            for name, media in (("direct", "{mode: direct}"),
                                ("relay", f'{{mode: relay, ports: "{low}-{high}"}}')):
                switch = MediaSwitch(work, free_port(), media, f"calls-{name}")
                rate_results.append(run_ladder(sipp, switch, rates, ladder))
    finally:
        if args.keep:
            print(f"work directory: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"Highest concurrent calls held (loss < {GOAL_LOSS_PERCENT:g} %, jitter p99 < "
          f"{GOAL_JITTER_P99_MS:g} ms), load average {load_average()}:")
    for mode, step in held.items():
        if step is None:
            print(f"  {mode:9} none (the first step failed)")
        else:
            engine = "" if step.engine_cpu is None else f", rtpengine CPU {step.engine_cpu:.0f}%"
            print(f"  {mode:9} {step.calls:5d} calls  loss {step.loss:.2f}%  jitter p99 {fmt(step.p99)} ms  "
                  f"switch CPU {step.switch_cpu:.0f}%{engine}, generator CPU {step.generator_cpu:.0f}%")
    for result in rate_results:
        best = result.best
        if best is None:
            print(f"  {result.name:12} calls/s: none passed")
        else:
            print(f"  {result.name:12} {best.rate:5d} calls/s  setup p99 {fmt(best.p99, 0)} ms  "
                  f"CPU {best.cpu:.0f}%  peak RSS {best.rss_peak_kib / 1024:.0f} MiB")
    if len(rate_results) == 2:
        direct = {s.rate: s for s in rate_results[0].steps if s.passed}
        relay = {s.rate: s for s in rate_results[1].steps if s.passed}
        for rate in sorted(set(direct) & set(relay)):
            off, on = direct[rate], relay[rate]
            print(f"  at {rate:5d} calls/s: CPU {off.cpu:.0f}% relay off, {on.cpu:.0f}% on; setup p99 "
                  f"{fmt(off.p99, 0)} ms off, {fmt(on.p99, 0)} ms on")
    good = all(step is not None for step in held.values()) and all(r.best for r in rate_results)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
