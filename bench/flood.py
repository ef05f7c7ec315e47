"""A request flood from one source while SIPp calls go on through a trunk.

Two uses:

- ``flood.py send --source 127.0.0.3 --rate 5000 --duration 10 --target 127.0.0.1:5060``
  only floods: OPTIONS requests, each with its own branch and Call-ID, from a UDP
  socket bound to `--source` (all of 127/8 is loopback on Linux), paced in 2 ms
  batches. It counts the answers it gets and prints one JSON line:
  ``{"sent": N, "seconds": S, "rate": R, "answers": A}``. The interop test
  tests/interop/test_flood.py runs it against an in-process switch.
- ``flood.py run [--rate 5000] [--duration 30] [--call-rate 50] [--ban 10]`` (what
  bench/flood.sh runs): a twistd switch with a trunk for SIPp on 127.0.0.1 (so that
  source is an exempt peer), SIPp UAS and UAC at `--call-rate` calls/s for the whole
  run, and the flood from 127.0.0.3 at `--rate`. Prints the flood offered and
  answered, what the switch dropped (from its metrics), the calls that succeeded
  and failed, and the switch's CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")
BATCH = 0.002  # seconds between batches of the flood


def flood(source: str, target: tuple[str, int], rate: float, duration: float) -> dict[str, float]:
    """Send OPTIONS from `source` to `target` at `rate` per second for `duration`
    seconds; count the answers that come back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    sent = answers = 0
    start = time.monotonic()
    end = start + duration
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * rate) - sent
        for _ in range(max(due, 0)):
            n = sent
            data = (
                f"OPTIONS sip:flood@{target[0]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bKflood{n}\r\n"
                f"Max-Forwards: 70\r\n"
                f"From: <sip:flood@{source}>;tag=f{n}\r\n"
                f"To: <sip:flood@{target[0]}>\r\n"
                f"Call-ID: flood-{n}@{source}\r\n"
                f"CSeq: 1 OPTIONS\r\n"
                f"Content-Length: 0\r\n\r\n"
            ).encode()
            try:
                sock.sendto(data, target)
            except BlockingIOError:
                break
            sent += 1
        while True:
            try:
                sock.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                break
            answers += 1
        time.sleep(BATCH)
    seconds = time.monotonic() - start
    sock.close()
    return {"sent": sent, "seconds": round(seconds, 3), "rate": round(sent / seconds), "answers": answers}


def options_answered(source: str, target: tuple[str, int], timeout: float = 1.0) -> bool:
    """Whether one OPTIONS from `source` gets an answer (a ban has ended)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        port = sock.getsockname()[1]
        sock.sendto(
            (f"OPTIONS sip:probe@{target[0]} SIP/2.0\r\nVia: SIP/2.0/UDP {source}:{port};branch=z9hG4bKprobe"
             f"{time.monotonic_ns()}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@{source}>;tag=p\r\n"
             f"To: <sip:probe@{target[0]}>\r\nCall-ID: probe-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\n"
             "Content-Length: 0\r\n\r\n").encode(),
            target,
        )
        ready, _, _ = select.select([sock], [], [], timeout)
        return bool(ready)


# -- the whole run (bench/flood.sh) -------------------------------------------------------


def free_port() -> int:
    """bench/calls.py's: free for TCP and UDP, outside the ephemeral range."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from calls import free_port as calls_free_port  # bench/ is not a package

    return calls_free_port()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5).read().decode()
    found = {}
    for line in text.splitlines():
        m = re.match(r'(phpvoip_bans_active|phpvoip_requests_dropped_total\{reason="(\w+)"\}) (\S+)', line)
        if m:
            found[m.group(2) or "bans_active"] = float(m.group(3))
    return found


def wait_answering(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the switch exited with {process.returncode}")
        if options_answered(LOOPBACK, (LOOPBACK, port), 0.3):
            return
    raise SystemExit("the switch did not answer OPTIONS")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def run(args: argparse.Namespace) -> int:
    sipp = shutil.which("sipp")
    if sipp is None:
        raise SystemExit("sipp is not installed (apt-get install sip-tester)")
    work = Path(tempfile.mkdtemp(prefix="phpvoip-flood-"))
    port, uas_port, metrics_port = free_port(), free_port(), free_port()
    (work / "phpvoip.yaml").write_text(
        f"sip: {{listen: [udp:{LOOPBACK}:{port}], domain: {LOOPBACK}}}\n"
        "storage: memory\nlog_level: warn\nladders: {enabled: false}\n"
        f"metrics: {{listen: 'tcp:{metrics_port}:interface={LOOPBACK}'}}\n"
        f"limits: {{per_source: {{requests: 30, window: 2}}, ban: {args.ban}}}\n"
        "calls: {keepalive_interval: 0}\n"
        "modules:\n"
        f"  - {{type: trunk, name: backend, address: '{LOOPBACK}:{uas_port}', allow: [{LOOPBACK}],"
        " numbers: ['*']}\n"
    )
    twistd = Path(sys.executable).parent / "twistd"
    switch = subprocess.Popen([str(twistd), "-n", "--pidfile=", "phpvoip", "--config", "phpvoip.yaml"],
                              cwd=work, stdout=open(work / "switch.log", "wb"), stderr=subprocess.STDOUT)
    calls = int(args.call_rate * args.duration)
    common = ["-i", LOOPBACK, "-nostdin", "-trace_err", "-trace_stat"]
    procs = [switch]
    try:
        wait_answering(port, switch)
        uas = subprocess.Popen([sipp, "-sn", "uas", "-p", str(uas_port), *common], cwd=work,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(uas)
        time.sleep(0.5)
        cpu_before = cpu_seconds(switch.pid)
        started = time.monotonic()
        uac = subprocess.Popen([sipp, "-sn", "uac", "-s", "2005", "-p", str(free_port()), "-r",
                                str(args.call_rate), "-m", str(calls), *common, f"{LOOPBACK}:{port}"],
                               cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(uac)
        time.sleep(0.5)
        offered = flood(args.source, (LOOPBACK, port), args.rate, args.duration - 1.0)
        during = metrics(metrics_port)
        uac.wait(args.duration + 60)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(switch.pid) - cpu_before
        stats = sorted(work.glob("*_uac_*.csv")) or sorted(work.glob("*.csv"))
        ok = failed = "?"
        if stats:
            last = stats[0].read_text().strip().splitlines()
            head, row = last[0].split(";"), last[-1].split(";")
            values = dict(zip(head, row, strict=False))
            ok, failed = values.get("SuccessfulCall(C)", "?"), values.get("FailedCall(C)", "?")
        time.sleep(args.ban + 1.0)
        unbanned = options_answered(args.source, (LOOPBACK, port))
        after = metrics(metrics_port)
    finally:
        for process in reversed(procs):
            stop(process)
    print(f"flood: {offered['sent']} OPTIONS from {args.source} in {offered['seconds']}s "
          f"({offered['rate']}/s offered), {offered['answers']} answered")
    print(f"dropped by the switch: banned {after.get('banned', 0):.0f}, over the rate "
          f"{after.get('rate', 0):.0f}; bans active during the flood: {during.get('bans_active', 0):.0f}")
    print(f"calls from {LOOPBACK} at {args.call_rate}/s: {ok} ok, {failed} failed (SIPp uac, {calls} placed)")
    print(f"switch CPU: {cpu:.1f} s in {elapsed:.1f} s ({100 * cpu / elapsed:.0f}% of one core)")
    print(f"after the ban ({args.ban}s): {args.source} {'answered again' if unbanned else 'STILL DROPPED'}")
    print(f"(work directory: {work})")
    return 0 if failed == "0" and unbanned else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    send = sub.add_parser("send", help="only flood")
    send.add_argument("--source", default="127.0.0.3")
    send.add_argument("--rate", type=float, default=5000)
    send.add_argument("--duration", type=float, default=5)
    send.add_argument("--target", required=True, help="HOST:PORT")
    whole = sub.add_parser("run", help="switch, SIPp calls and the flood")
    whole.add_argument("--source", default="127.0.0.3")
    whole.add_argument("--rate", type=float, default=5000)
    whole.add_argument("--duration", type=float, default=30)
    whole.add_argument("--call-rate", type=int, default=50)
    whole.add_argument("--ban", type=int, default=10)
    args = parser.parse_args()
    if args.command == "send":
        host, _, port = args.target.rpartition(":")
        print(json.dumps(flood(args.source, (host, int(port)), args.rate, args.duration)), flush=True)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
