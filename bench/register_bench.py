"""Registrations per second with full digest auth, and memory with N live bindings.

Run through ``bench/register.sh`` (or ``.venv/bin/python bench/register_bench.py``).

It writes a users file of N users (HA1 hashes, realm 127.0.0.1), starts the real
switch (``twistd -n phpvoip``) with a registrar and the SQLite store on a free
loopback port, and lets SIPp register every user once with its own contact:
REGISTER, 401, REGISTER with credentials, 200 (two transactions per
registration). SIPp runs closed-loop by default (``--concurrency`` registrations
in flight, as fast as the switch answers), or open-loop at ``--rate``.

It reports the registration rate (successful registrations / SIPp's elapsed
time), failures and retransmissions, the switch's resident memory before and after
(after the transactions have ended, so what remains is bindings, their heap
entries and the digest replay table), the rows in the SQLite store, and exits
non-zero if any registration failed or a binding is missing.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "bench" / "scenarios" / "register_digest.xml"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """bench/calls.py's: free for TCP and UDP, outside the ephemeral range."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from calls import free_port as calls_free_port  # bench/ is not a package

    return calls_free_port()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def options_answered(port: int) -> bool:
    request = (
        f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:9;branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=b\r\n"
        f"To: <sip:{LOOPBACK}>\r\nCall-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        s.settimeout(0.3)
        request = request.replace(b"127.0.0.1:9", f"{LOOPBACK}:{s.getsockname()[1]}".encode())
        s.sendto(request, (LOOPBACK, port))
        try:
            return bool(s.recvfrom(65535)[0])
        except OSError:
            return False


def write_users(directory: Path, count: int) -> tuple[Path, Path]:
    """The switch's users file (HA1 only) and SIPp's injection file."""
    users = directory / "users.csv"
    inject = directory / "inject.csv"
    with users.open("w", newline="") as u, inject.open("w") as i:
        writer = csv.writer(u)
        writer.writerow(["username", "ha1_md5"])
        i.write("SEQUENTIAL\n")
        for n in range(count):
            user = f"{100000 + n}"
            password = f"pw{n}"
            writer.writerow([user, hashlib.md5(f"{user}:{LOOPBACK}:{password}".encode()).hexdigest()])
            i.write(f"{user};[authentication username={user} password={password}]\n")
    return users, inject


def sipp_stats(path: Path) -> dict[str, str]:
    """The last row of SIPp's -trace_stat file (semicolon separated)."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    names = lines[0].rstrip(";").split(";")
    values = lines[-1].rstrip(";").split(";")
    return dict(zip(names, values, strict=False))


def seconds(text: str) -> float:
    """SIPp's ``HH:MM:SS:uuuuuu`` (or ``HH:MM:SS``) as seconds."""
    parts = text.split(":")
    h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
    micro = int(parts[3]) if len(parts) > 3 else 0
    return h * 3600 + m * 60 + s + micro / 1e6


def count_rows(database: Path) -> int:
    import sqlite3

    with sqlite3.connect(database) as db:
        return db.execute("SELECT count(*) FROM bindings").fetchone()[0]


def start_switch(twistd: Path, work: Path, log: Path, profile: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    profiling = [f"--profile={profile}", "--profiler=cprofile", "--savestats"] if profile else []
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(twistd), "-n", "--pidfile=", *profiling, "phpvoip", "--config", str(work / "phpvoip.yaml")],
            cwd=work, stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip


def wait_ready(switch: subprocess.Popen, port: int, log: Path, timeout: float = 120.0) -> bool:
    """Until the switch answers OPTIONS and its registrar has loaded the store."""
    deadline = time.monotonic() + timeout
    while not (options_answered(port) and restored(log) is not None):
        if switch.poll() is not None or time.monotonic() > deadline:
            print(log.read_text()[-3000:], file=sys.stderr)
            return False
        time.sleep(0.2)
    time.sleep(1.0)
    return True


def restored(log: Path) -> int | None:
    """How many bindings the registrar restored at start (from the switch's log)."""
    found = re.findall(r"(\d+) bindings restored", log.read_text(errors="replace"))
    return int(found[-1]) if found else None


def stop_switch(switch: subprocess.Popen) -> None:
    if switch.poll() is None:
        switch.send_signal(signal.SIGTERM)
        try:
            switch.wait(30)
        except subprocess.TimeoutExpired:
            switch.kill()
            switch.wait(5)


KAMAILIO_CONFIG = ROOT / "tests" / "interop" / "kamailio" / "upstream.cfg"
KAMAILIO_PASSWORD = "bench-secret"


def kamailio_side_by_side(sipp: str, work: Path, args: argparse.Namespace, load: list[str]) -> None:
    """The same SIPp load against Kamailio's registrar (usrloc in memory, one
    password for every user: tests/interop/kamailio/upstream.cfg), for the figure
    beside ours. Kamailio runs in the foreground with its own pid file and
    directories (PEERS.md) and is stopped by its PID."""
    binary = shutil.which("kamailio")
    if binary is None:
        print("  kamailio              not installed (apt-get install kamailio): no side-by-side figure")
        return
    directory = work / "kamailio"
    (directory / "run").mkdir(parents=True)
    inject = directory / "inject.csv"
    with inject.open("w") as i:
        i.write("SEQUENTIAL\n")
        for n in range(args.users):
            user = f"{100000 + n}"
            i.write(f"{user};[authentication username={user} password={KAMAILIO_PASSWORD}]\n")
    port = free_port()
    log = (directory / "kamailio.log").open("wb")
    process = subprocess.Popen(
        [binary, "-DD", "-E", "-m", "256", "-M", "8", "-f", str(KAMAILIO_CONFIG),
         "-l", f"udp:{LOOPBACK}:{port}", "-P", str(directory / "run" / "kamailio.pid"),
         "-Y", str(directory / "run"), "-w", str(directory),
         "-A", f'DOMAIN="{LOOPBACK}"', "-A", f'PASSWORD="{KAMAILIO_PASSWORD}"'],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not options_answered(port):
            if process.poll() is not None or time.monotonic() > deadline:
                print("  kamailio              did not start:",
                      (directory / "kamailio.log").read_text()[-500:])
                return
            time.sleep(0.2)
        command = [
            sipp, f"{LOOPBACK}:{port}", "-sf", str(SCENARIO), "-inf", str(inject),
            "-i", LOOPBACK, "-p", str(free_port()), "-m", str(args.users), *load,
            "-buff_size", "2097152", "-nostdin", "-trace_stat", "-stf", "kamailio.csv", "-fd", "1",
            "-timeout", str(max(120, args.users // 100)), "-timeout_error",
        ]  # fmt: skip
        started = time.monotonic()
        subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=3600)
        wall = time.monotonic() - started
        stats = sipp_stats(directory / "kamailio.csv")
        ok = int(stats.get("SuccessfulCall(C)", 0))
        failed = int(stats.get("FailedCall(C)", 0))
        # SIPp's elapsed time comes in whole seconds here: over a run of a few
        # seconds the wall time of the SIPp process is the closer figure.
        print(f"  Kamailio, same load   {ok / wall:.0f} registrations/s, {ok} ok, {failed} failed "
              f"(its registrar, usrloc in memory, {wall:.1f} s wall)")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000, help="registrations (one user each)")
    parser.add_argument("--concurrency", type=int, default=20, help="registrations in flight (closed loop)")
    parser.add_argument("--rate", type=float, default=0, help="open loop: registrations/s (0: closed loop)")
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--settle", type=float, default=40.0,
                        help="seconds to wait after the run for transactions to end before measuring memory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-kamailio", dest="kamailio", action="store_false",
                        help="skip the side-by-side run of Kamailio's registrar on the same SIPp load")
    parser.add_argument("--profile", action="store_true",
                        help="run the switch under cProfile during the load and print its top functions")
    args = parser.parse_args()

    sipp = shutil.which("sipp")
    twistd = Path(sys.executable).parent / "twistd"
    if sipp is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="phpvoip-register-bench-"))
    port = free_port()
    users_file, inject = write_users(work, args.users)
    storage = "sqlite:var/bench.db" if args.store == "sqlite" else "\"memory:\""
    (work / "phpvoip.yaml").write_text(
        "sip:\n"
        f"  listen: [udp:{LOOPBACK}:{port}]\n"
        f"  domain: {LOOPBACK}\n"
        f"storage: {storage}\n"
        "modules:\n"
        "  - type: registrar\n"
        f"    users_file: {users_file}\n"
        "    algorithms: [MD5]\n"
        "    max_expires: 3600\n"
        "    auth_failures: {limit: 0}\n"
    )
    log = work / "switch.log"
    profile = work / "phpvoip.pstats" if args.profile else None
    switch = start_switch(twistd, work, log, profile)
    try:
        if not wait_ready(switch, port, log):
            return 2
        before = rss_kib(switch.pid)
        load = ["-r", str(args.rate), "-l", str(args.concurrency)] if args.rate else \
            ["-r", "1000000", "-l", str(args.concurrency)]
        command = [
            sipp, f"{LOOPBACK}:{port}", "-sf", str(SCENARIO), "-inf", str(inject),
            "-i", LOOPBACK, "-p", str(free_port()), "-m", str(args.users), *load,
            "-buff_size", "2097152", "-nostdin", "-trace_err", "-trace_stat", "-stf", "stats.csv", "-fd", "1",
            "-timeout", str(max(120, args.users // 100)), "-timeout_error",
        ]  # fmt: skip
        started = time.monotonic()
        run = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=3600)
        wall = time.monotonic() - started
        peak = rss_kib(switch.pid)
        stats = sipp_stats(work / "stats.csv")
        ok = int(stats.get("SuccessfulCall(C)", 0))
        failed = int(stats.get("FailedCall(C)", 0))
        retrans = int(stats.get("Retransmissions(C)", 0))
        elapsed = seconds(stats.get("ElapsedTime(C)", "0:0:0")) or wall
        time.sleep(args.settle)
        after = rss_kib(switch.pid)
        rows = count_rows(work / "var" / "bench.db") if args.store == "sqlite" else None
        if profile is not None:
            stop_switch(switch)
            import pstats

            pstats.Stats(str(profile)).sort_stats("tottime").print_stats(25)
        restarted = None
        if args.store == "sqlite":
            # A fresh process that loads every binding from the store holds them
            # without the allocator's leftovers from the run: the true cost.
            stop_switch(switch)
            started = time.monotonic()
            log = work / "switch-restarted.log"
            switch = start_switch(twistd, work, log)
            if not wait_ready(switch, port, log):
                return 2
            restarted = (rss_kib(switch.pid), time.monotonic() - started, restored(log))
        cpus = os.cpu_count()
        mode = f"rate {args.rate:g}/s" if args.rate else f"closed loop, {args.concurrency} in flight"
        print(f"phpvoip registrar benchmark: {args.users} users, digest MD5 (qop=auth), store {args.store}, "
              f"{mode}, {cpus} CPUs")
        print(f"  registrations ok      {ok}")
        print(f"  failed                {failed}")
        print(f"  SIPp retransmissions  {retrans}")
        print(f"  elapsed (SIPp)        {elapsed:.1f} s  (wall {wall:.1f} s)")
        rate = ok / elapsed
        print(f"  rate                  {rate:.0f} registrations/s ({2 * rate:.0f} transactions/s); "
              f"{ok / wall:.0f}/s by the wall time of SIPp's run")
        print(f"  switch RSS before     {before / 1024:.1f} MiB (users loaded, no bindings)")
        print(f"  switch RSS peak       {peak / 1024:.1f} MiB (at the end of the run)")
        print(f"  switch RSS settled    {after / 1024:.1f} MiB after {args.settle:.0f} s: "
              f"{(after - before) * 1024 / max(ok, 1):.0f} bytes of growth per binding, most of it memory")
        print("                        the allocator keeps from the transactions alive at the peak (see the")
        print("                        binding table's own size below)")
        if rows is not None:
            size = sum(f.stat().st_size for f in (work / "var").glob("bench.db*"))
            print(f"  SQLite rows           {rows} ({size / 1e6:.1f} MB with its WAL)")
        if restarted is not None:
            rss, took, count = restarted
            print(f"  restarted switch      {count} bindings restored, ready in {took:.1f} s,"
                  f" RSS {rss / 1024:.1f} MiB")
            per = (rss - before) * 1024 / max(count, 1)
            print(f"                        = {per:.0f} bytes per live binding over the empty switch")
        if args.kamailio:
            kamailio_side_by_side(sipp, work, args, load)
        good = run.returncode == 0 and failed == 0 and ok == args.users and rows in (None, args.users)
        good = good and (restarted is None or restarted[2] == args.users)
        if not good:
            print(run.stdout[-2000:], file=sys.stderr)
            errors = list(work.glob("*_errors.log"))
            if errors:
                print(errors[0].read_text()[-3000:], file=sys.stderr)
        return 0 if good else 1
    finally:
        stop_switch(switch)
        if args.keep:
            print(f"  work directory        {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
