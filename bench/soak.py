"""Soak: calls and registrations at a steady rate for minutes, then back to idle.

Run through ``bench/soak.sh`` (``--minutes 10`` by default), or
``.venv/bin/python bench/soak.py --minutes 1``; tests/interop/test_soak_smoke.py
runs it for about 25 seconds.

The real switch (``twistd -n phpvoip``) runs with a trunk to SIPp's UAS, a
registrar with digest users (memory storage, call ladders and records on, as
shipped) and its metrics endpoint. SIPp's UAC places ``--call-rate`` calls/s held
``--hold`` seconds each, and a second SIPp registers users at ``--reg-rate``/s
(REGISTER, 401, REGISTER with credentials, 200), for ``--minutes``. Every
``--sample`` seconds it reads the switch's RSS, its open descriptors
(/proc/PID/fd), from /metrics the calls, legs, dialogs, client and server
transactions, and through the manhole's one-shot command (OpenSSH's client, a key
made here) the objects the garbage collector tracks (``phpvoip.stats.gc_objects``,
kept out of the metrics because it walks every object).

Before it, a warm-up (1,100 calls, every user registered once) fills what the switch
keeps on purpose within bounds (ladders of the last 200 calls, records of the last
1,000, one binding per user); idle is sampled after it has settled. After the load stops it
waits for the switch to settle (transactions end 64*T1, 32 s, after their final
answer) and checks each figure against its idle level: counts of live things must
be back to idle exactly (GC objects, counted after a full collection at idle and
after, within 5 %), descriptors back to idle, and RSS
no higher than 10 % above what it was after the first fifth of the run (memory
the allocator keeps once is fine; memory that keeps growing is a leak). It prints
a table (idle, during: median and peak, after, verdict) and exits non-zero if any figure did not come back.
Bindings are not in the table: a registration outlives the load by design.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calls import (  # bench/ is not a package: found through sys.path
    LOOPBACK,
    SCENARIOS,
    SIPP_BUFFER,
    free_port,
    sipp_stats,
    status_kib,
    stop,
    wait_bound,
)
from concurrency import scrape

ROOT = Path(__file__).resolve().parents[1]

# name in the table -> metrics sample it reads
LIVE = {
    "calls": "phpvoip_calls_active",
    "legs": "phpvoip_legs_active",
    "dialogs": "phpvoip_dialogs_active",
    "client transactions": 'phpvoip_transactions_active{side="client"}',
    "server transactions": 'phpvoip_transactions_active{side="server"}',
}
GC_OBJECTS_COMMAND = "from phpvoip.stats import gc_objects; print(gc_objects())"
# Idle and after: a full collection first (what the switch's own sweep does every
# 10 minutes), so that cyclic garbage frozen by the GC tuning since its last sweep
# is not counted as kept; what survives a full collection is what is really kept.
# The registrars' expiry heaps are compacted first too: a refreshed binding leaves a
# stale heap entry (with the old Binding) until the next rebuild, bounded at twice
# the live bindings plus 1,024 (phpvoip.modules.bindings), which is kept by design.
SETTLE_COMMAND = (
    "_ = [m.bindings.compact() for m in engine.modules if hasattr(getattr(m, 'bindings', None), 'compact')]; "
    "_freed = switch.gc_tuning.sweep(); "
)
SWEPT_GC_OBJECTS_COMMAND = SETTLE_COMMAND + GC_OBJECTS_COMMAND


def write_users(work: Path, count: int) -> tuple[Path, Path]:
    users = work / "users.csv"
    inject = work / "inject.csv"
    with users.open("w") as u, inject.open("w") as i:
        u.write("username,ha1_md5\n")
        i.write("SEQUENTIAL\n")
        for n in range(count):
            user, password = f"{200000 + n}", f"pw{n}"
            u.write(f"{user},{hashlib.md5(f'{user}:{LOOPBACK}:{password}'.encode()).hexdigest()}\n")
            i.write(f"{user};[authentication username={user} password={password}]\n")
    return users, inject


class Manhole:
    """The switch's manhole, for one-shot commands over SSH."""

    def __init__(self, work: Path) -> None:
        self.ssh = shutil.which("ssh")
        self.key = work / "operator"
        self.port = free_port()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True,
                       timeout=30)
        self.authorized = work / "manhole_keys"
        self.authorized.write_bytes(self.key.with_suffix(".pub").read_bytes())
        self.host_key = work / "manhole_host_key"

    def config(self) -> str:
        return (f"manhole:\n  listen: 'tcp:{self.port}:interface={LOOPBACK}'\n"
                f"  authorized_keys: {self.authorized}\n  host_key: {self.host_key}\n")

    def run(self, command: str) -> str:
        assert self.ssh is not None
        args = [self.ssh, "-i", str(self.key), "-p", str(self.port), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=10", "-F", "/dev/null", f"operator@{LOOPBACK}", command]  # fmt: skip
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout


def config_text(port: int, uas_port: int, metrics_port: int, users: Path, t1: float = 0.5) -> str:
    # A shorter T1 (the smoke test's) ends transactions sooner (64*T1), so the
    # switch is back to idle within seconds of the load.
    timers = "" if t1 == 0.5 else f"  timers: {{t1: {t1:g}, t2: {8 * t1:g}, t4: {10 * t1:g}}}\n"
    return (
        "sip:\n"
        f"  listen: [udp:{LOOPBACK}:{port}]\n"
        f"  domain: {LOOPBACK}\n"
        + timers +
        "storage: 'memory:'\n"
        f"metrics: {{listen: 'tcp:{metrics_port}:interface={LOOPBACK}'}}\n"
        "log_level: warn\n"
        "calls: {keepalive_interval: 0}\n"
        "modules:\n"
        "  - type: registrar\n"
        f"    users_file: {users}\n"
        "    algorithms: [MD5]\n"
        "    auth_failures: {limit: 0}\n"
        "  - type: trunk\n"
        "    name: backend\n"
        f"    address: {LOOPBACK}:{uas_port}\n"
        f"    allow: [{LOOPBACK}]\n"
        "    numbers: ['*']\n"
    )


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


CENSUS_COMMAND = (
    "import gc, collections, json; "
    "print(json.dumps(collections.Counter(type(o).__qualname__ for o in gc.get_objects())))"
)


def census(manhole: Manhole) -> dict[str, int]:
    """The switch's tracked objects by type (run right after a sweep: the frozen
    ones are unfrozen then, so gc.get_objects() sees them all)."""
    lines = manhole.run(SETTLE_COMMAND + "gc = __import__('gc'); gc.unfreeze(); "
                        + CENSUS_COMMAND + "; gc.freeze()").split("\n")
    for line in reversed(lines):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def sample(pid: int, metrics_port: int, manhole: Manhole, sweep: bool = False) -> dict[str, float]:
    """One row: RSS (MiB), descriptors, the live figures from /metrics, GC objects
    (after a full collection when `sweep`)."""
    row: dict[str, float] = {"RSS MiB": status_kib(pid, "VmRSS") / 1024, "descriptors": fds(pid)}
    metrics = scrape(metrics_port)
    for name, key in LIVE.items():
        row[name] = metrics.get(key, 0.0)
    answer = manhole.run(SWEPT_GC_OBJECTS_COMMAND if sweep else GC_OBJECTS_COMMAND).split()
    row["GC objects"] = float(answer[-1]) if answer and answer[-1].isdigit() else float("nan")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load")
    parser.add_argument("--call-rate", type=float, default=20.0, help="calls placed per second")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds each call is held")
    parser.add_argument("--reg-rate", type=float, default=20.0, help="registrations per second")
    parser.add_argument("--users", type=int, default=1000, help="users registering in turn")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--settle", type=float, default=40.0,
                        help="seconds to wait after the load for transactions to end (64*T1 and a margin)")
    parser.add_argument("--t1", type=float, default=0.5,
                        help="the switch's T1 in seconds (shorter: transactions end sooner after the load)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--census", action="store_true",
                        help="also count the switch's objects by type at idle and after, and print what grew")
    args = parser.parse_args(argv)

    sipp = shutil.which("sipp")
    if sipp is None or shutil.which("ssh") is None:
        print("sipp and ssh are needed (apt-get install sip-tester openssh-client)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="phpvoip-soak-"))
    manhole = Manhole(work)
    port, uas_port, metrics_port = free_port(), free_port(), free_port()
    users, inject = write_users(work, args.users)
    config = work / "phpvoip.yaml"
    config.write_text(config_text(port, uas_port, metrics_port, users, args.t1) + manhole.config())
    twistd = Path(sys.executable).parent / "twistd"
    log = (work / "phpvoip.log").open("wb")
    switch = subprocess.Popen(
        [str(twistd), "-n", "--pidfile=", "phpvoip", "-c", str(config)],
        cwd=work, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    seconds = args.minutes * 60
    calls = max(1, int(args.call_rate * seconds))
    registrations = max(1, int(args.reg_rate * seconds))
    peers: list[subprocess.Popen] = []
    during: list[dict[str, float]] = []
    print(f"soak: {args.minutes:g} min of {args.call_rate:g} calls/s held {args.hold:g} s and "
          f"{args.reg_rate:g} registrations/s (digest) through phpvoip on {LOOPBACK}", flush=True)
    try:
        wait_bound(port, switch, 60, "phpvoip")
        time.sleep(2.0)
        common = ["-i", LOOPBACK, "-buff_size", SIPP_BUFFER, "-nostdin", "-fd", "1",
                  "-trace_stat", "-trace_err"]
        # The phones keep their address: warm-up and load register from one port,
        # so the load refreshes the warm-up's bindings instead of adding a contact
        # per user (which a soak would then count as kept).
        phone_port = free_port()

        def load(name: str, calls: int, call_rate: float, hold: float, registrations: int,
                 reg_rate: float, every: float | None) -> None:
            """SIPp UAS, UAC and registering UAC until both UACs are done;
            sampling into `during` every `every` seconds (None: not at all)."""
            timeout = f"{int(calls / call_rate + registrations / reg_rate + hold + 120)}s"
            uas = subprocess.Popen(
                [sipp, "-sf", str(SCENARIOS / "calls_uas.xml"), "-p", str(uas_port), "-m", str(calls),
                 *common, "-stf", f"{name}_uas.csv"],
                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            peers.append(uas)
            wait_bound(uas_port, uas, 10, "SIPp UAS")
            uac = subprocess.Popen(
                [sipp, f"{LOOPBACK}:{port}", "-sn", "uac", "-s", "2005", "-p", str(free_port()),
                 "-r", str(call_rate), "-m", str(calls), "-d", str(int(hold * 1000)),
                 *common, "-stf", f"{name}_uac.csv", "-timeout", timeout, "-timeout_error"],
                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            reg = subprocess.Popen(
                [sipp, f"{LOOPBACK}:{port}", "-sf", str(ROOT / "bench" / "scenarios" / "register_digest.xml"),
                 "-inf", str(inject), "-p", str(phone_port), "-r", str(reg_rate), "-m", str(registrations),
                 *common, "-stf", f"{name}_reg.csv", "-timeout", timeout, "-timeout_error"],
                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            peers.extend((uac, reg))
            started = time.monotonic()
            limit = calls / call_rate + registrations / reg_rate + hold + 150
            while uac.poll() is None or reg.poll() is None:
                if time.monotonic() - started > limit:
                    break
                time.sleep(every or 0.5)
                if every is not None:
                    during.append(sample(switch.pid, metrics_port, manhole))
            for peer in (uac, reg):
                if peer.poll() is None:
                    stop(peer, signal.SIGKILL)
            try:
                uas.wait(10)
            except subprocess.TimeoutExpired:
                stop(uas, signal.SIGUSR1, 5)

        # Warm-up: the structures kept on purpose and bounded (the ladders of the
        # last 200 calls, the records of the last 1,000, a binding per user) fill up before "idle".
        load("warmup", 1100, max(args.call_rate, 200.0), 0.2, args.users, max(args.reg_rate, 100.0), None)
        time.sleep(args.settle)
        idle = sample(switch.pid, metrics_port, manhole, sweep=True)
        idle_census = census(manhole) if args.census else {}
        load("soak", calls, args.call_rate, args.hold, registrations, args.reg_rate, args.sample)
        time.sleep(args.settle)
        after = sample(switch.pid, metrics_port, manhole, sweep=True)
        if args.census:
            grown = Counter(census(manhole))
            grown.subtract(idle_census)
            print("  objects by type, after minus idle: " + ", ".join(
                f"{name} {count:+d}" for name, count in grown.most_common(12) if count > 0), flush=True)
    finally:
        for peer in peers:
            stop(peer, signal.SIGKILL, 5)
        stop(switch, signal.SIGTERM, 30)
        log.close()

    uac_stats = sipp_stats(work / "soak_uac.csv")
    reg_stats = sipp_stats(work / "soak_reg.csv")
    ok, failed = int(uac_stats.get("SuccessfulCall(C)", 0)), int(uac_stats.get("FailedCall(C)", 0))
    reg_ok, reg_failed = int(reg_stats.get("SuccessfulCall(C)", 0)), int(reg_stats.get("FailedCall(C)", 0))
    print(f"  calls ok / failed          {ok} / {failed} of {calls}")
    print(f"  registrations ok / failed  {reg_ok} / {reg_failed} of {registrations}")
    early = during[: max(1, len(during) // 5)]
    baseline_rss = max(row["RSS MiB"] for row in early) if early else idle["RSS MiB"]
    print(f"  {'':20} {'idle':>10} {'median':>10} {'peak':>10} {'after':>10}  back to idle?")
    good = ok == calls and failed == 0 and reg_ok == registrations and reg_failed == 0
    for name in idle:
        values = [row[name] for row in during] or [idle[name]]
        if name == "RSS MiB":
            back = after[name] <= 1.10 * baseline_rss
            rule = f"<= 110 % of the first fifth's {baseline_rss:.1f}"
        elif name == "GC objects":
            back = after[name] <= 1.05 * idle[name]
            rule = "within 5 %"
        else:
            back = after[name] <= idle[name]
            rule = "exactly"
        good = good and back
        print(f"  {name:20} {idle[name]:10.1f} {statistics.median(values):10.1f} {max(values):10.1f} "
              f"{after[name]:10.1f}  {'yes' if back else 'NO'} ({rule})")
    print(f"  verdict: {'every figure came back' if good else 'NOT everything came back, or calls failed'}")
    if args.keep:
        print(f"  work directory             {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
