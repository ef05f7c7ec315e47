"""SIPp calls through the real switch over a link that loses packets at random.

The kernel here has no `netem` queueing discipline, so the loss is made with
nftables inside a network namespace that this tool creates for the run and deletes
afterwards: in the namespace's own loopback, an input rule drops `loss` % of the
UDP datagrams to the switch's port and, separately, `loss` % of those from it.
Every hop (caller → switch, switch → caller, switch → callee, callee → switch) thus
loses at that rate, in both directions. The switch (`twistd -n phpvoip`, RFC timer
defaults), the SIPp caller and the SIPp callee all run inside the namespace
(``ip netns exec``) on its 127.0.0.1: nothing leaves it, and its ports cannot
collide with anything outside.

    bench/loss.py [--calls 2000] [--rate 20] [--loss 20] [--t1 0.5]

prints one JSON line: calls made, completed, failed (with the SIP answers the
failed ones got), the completion rate, how long the slowest call took to set up,
and the switch's calls, legs, dialogs and transactions after the run (all must come
back to zero: no call hangs). The interop test tests/interop/test_faults_loss.py runs
a short version (200 calls at 20/s); bench/loss.sh the long one.

Needs root (for ``ip netns`` and ``nft``), iproute2, nftables and sipp.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
SCENARIOS = Path(__file__).resolve().parents[1] / "tests" / "interop" / "scenarios"
SWITCH_PORT, UAS_PORT, UAC_PORT, METRICS_PORT = 5060, 5070, 5080, 9090
IDLE_GAUGES = ("phpvoip_calls_active", "phpvoip_legs_active", "phpvoip_dialogs_active",
               'phpvoip_transactions_active{side="client"}', 'phpvoip_transactions_active{side="server"}')


def unavailable() -> str | None:
    """Why a lossy namespace cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for program in ("ip", "nft", "sipp"):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    return None


class LossyNamespace:
    """A network namespace of our own whose loopback loses `loss` % of the UDP
    datagrams to and from `port`; deleted (with whatever still runs in it that
    we started) on exit."""

    def __init__(self, loss: float, port: int = SWITCH_PORT) -> None:
        self.name = f"phpvoip-loss-{os.getpid()}"
        self.loss = loss
        self.port = port
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> LossyNamespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        try:
            self._ip("link", "set", "lo", "up")
            # On the input hook, so the sender never hears of it (a drop on output
            # fails its sendto() with EPERM: not a loss, an error). numgen draws
            # a fresh number for each rule a packet meets: each direction loses
            # `loss` % on its own.
            threshold = round(self.loss)
            rules = (
                "table inet phpvoip_loss {\n"
                "  chain lossy {\n"
                "    type filter hook input priority 0; policy accept;\n"
                f"    udp dport {self.port} counter comment \"seen\"\n"
                f"    udp sport {self.port} counter comment \"seen\"\n"
                f"    udp dport {self.port} numgen random mod 100 < {threshold} counter drop\n"
                f"    udp sport {self.port} numgen random mod 100 < {threshold} counter drop\n"
                "  }\n"
                "}\n"
            )
            subprocess.run(self.command("nft", "-f", "-"), input=rules, text=True, check=True,
                           capture_output=True)
        except BaseException:
            self._delete()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(5)
        self._delete()

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.name, *args], check=True, capture_output=True)

    def _delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def start(self, args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
        """Start a process inside the namespace; killed on exit if still running."""
        with open(log, "wb") as out:
            process = subprocess.Popen(self.command(*args), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def counted(self) -> tuple[int, int]:
        """Datagrams to or from the switch so far, and how many of them were dropped."""
        listing = subprocess.run(self.command("nft", "list", "table", "inet", "phpvoip_loss"),
                                 capture_output=True, text=True).stdout
        seen = dropped = 0
        for line in listing.splitlines():
            packets = re.search(r"packets (\d+)", line)
            if packets is None:
                continue
            if "drop" in line:
                dropped += int(packets.group(1))
            else:
                seen += int(packets.group(1))
        return seen, dropped

    def metrics(self) -> dict[str, float]:
        """The switch's figures (name with its labels -> value), read from inside
        the namespace."""
        script = ("import urllib.request as u;"
                  f"print(u.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics', timeout=5).read().decode())")
        text = subprocess.run(self.command(sys.executable, "-c", script), capture_output=True, text=True,
                              timeout=20).stdout
        pairs = re.findall(r"^(phpvoip_\w+(?:\{[^}]*\})?) (\S+)$", text, re.M)
        return {name: float(value) for name, value in pairs}


SWITCH_CONFIG = """\
sip:
  listen: [udp:127.0.0.1:{switch_port}]
  domain: 127.0.0.1
  timers: {{t1: {t1}}}
storage: memory
log_level: {log_level}
calls: {{keepalive_interval: 0}}
metrics: {{listen: "tcp:{metrics_port}:interface=127.0.0.1"}}
modules:
  - type: trunk
    name: backend
    address: 127.0.0.1:{uas_port}
    allow: [127.0.0.1]
    numbers: ['*']
"""


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _final_counts(screen: str) -> tuple[int, int]:
    """Successful and failed calls from SIPp's last statistics screen."""
    def last(name: str) -> int:
        values = re.findall(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", screen)
        return int(values[-1]) if values else 0

    return last("Successful call"), last("Failed call")


def _failure_answers(errors: str) -> dict[str, int]:
    """How SIPp's failed calls ended: the SIP answer that broke the scenario, or
    what SIPp itself gave up on (a timeout, retransmissions exhausted)."""
    found: dict[str, int] = {}
    # SIPp's error log runs its events together: split at each time stamp.
    for event in re.split(r"(?=\d{4}-\d\d-\d\d\t\d\d:\d\d:\d\d\.\d+\t)", errors):
        if "jumping to label" in event or "Dead call" in event:
            continue  # a scenario's own timeout branch, or a late message to an ended call
        if "Aborting call" not in event and "retransmission" not in event.lower():
            continue
        answer = re.search(r"received 'SIP/2\.0 (\d{3})", event)
        if answer:
            key = answer.group(1)
        elif "retransmission" in event.lower():
            key = "retransmissions exhausted"
        elif "unexpected BYE" in event:
            key = "BYE"  # the switch ended the call: its callee had hung up
        elif "unexpected message" in event:
            key = "unexpected request"
        else:
            key = "timeout"
        found[key] = found.get(key, 0) + 1
    return found


def run(calls: int, rate: float, loss: float, workdir: Path, t1: float = 0.5, idle_timeout: float = 40.0
        ) -> dict[str, Any]:
    """One run; returns its figures (see the module docstring)."""
    sipp = shutil.which("sipp") or "sipp"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "phpvoip.yaml").write_text(SWITCH_CONFIG.format(
        switch_port=SWITCH_PORT, metrics_port=METRICS_PORT, uas_port=UAS_PORT,
        log_level=os.environ.get("LOSS_LOG_LEVEL", "info"), t1=t1))
    with LossyNamespace(loss) as ns:
        switch_log = workdir / "switch.log"
        twistd = [str(VENV_BIN / "twistd"), "-n", "--pidfile=", "phpvoip", "--config", "phpvoip.yaml"]
        switch = ns.start(twistd, workdir, switch_log)
        _wait_for(lambda: "phpvoip started" in switch_log.read_text(errors="replace")
                  or switch.poll() is not None, 20, "the switch to start")
        if switch.poll() is not None:
            raise RuntimeError(f"the switch exited:\n{switch_log.read_text(errors='replace')[-3000:]}")
        common = ["-nostdin", "-i", "127.0.0.1", "-trace_err", "-buff_size", "1048576"]
        uas = ns.start([sipp, *common, "-sf", str(SCENARIOS / "fault_uas_lossy.xml"), "-p", str(UAS_PORT)],
                       workdir, workdir / "uas.out")
        time.sleep(0.5)  # bound before the first INVITE reaches it
        started = time.monotonic()
        uac = ns.start([sipp, *common, "-sf", str(SCENARIOS / "fault_uac_lossy.xml"), "-p", str(UAC_PORT),
                        "-s", "9001", "-m", str(calls), "-r", str(rate),
                        "-timeout", f"{int(calls / rate) + 60}s",
                        "-trace_stat", "-fd", "1", f"127.0.0.1:{SWITCH_PORT}"], workdir, workdir / "uac.out")
        try:
            uac.wait(calls / rate + 90)
        except subprocess.TimeoutExpired:
            uac.kill()
            uac.wait(5)
        elapsed = time.monotonic() - started
        ok, failed = _final_counts((workdir / "uac.out").read_text(errors="replace"))
        errors = "".join(p.read_text(errors="replace") for p in workdir.glob("*uac*_errors.log"))
        callee_errors = "".join(p.read_text(errors="replace") for p in workdir.glob("*uas*_errors.log"))
        # No call hangs: the switch's calls, legs, dialogs and transactions all end.
        deadline = time.monotonic() + idle_timeout
        gauges = ns.metrics()
        while any(gauges.get(g, 0) for g in IDLE_GAUGES) and time.monotonic() < deadline:
            time.sleep(0.5)
            gauges = ns.metrics()
        seen, dropped = ns.counted()
        uas.send_signal(signal.SIGTERM)
    return {
        "calls": calls, "rate": rate, "loss_percent": loss, "t1": t1,
        "completed": ok, "failed": failed, "completed_percent": round(100.0 * ok / max(calls, 1), 2),
        "uac_exit": uac.returncode, "seconds": round(elapsed, 1),
        "datagrams": seen, "datagrams_dropped": dropped,
        "loss_measured_percent": round(100.0 * dropped / max(seen, 1), 1),
        "failures": _failure_answers(errors),
        # SIPp's callee gives up on a call when an ACK reaches it between a
        # retransmitted INVITE and the 200 it sends again for it (it takes the
        # ACK as unexpected), and sends BYE: the switch ends the call towards
        # the caller, which the caller counts as failed ("BYE" above).
        "callee_aborted": callee_errors.count("Aborting call on unexpected message"),
        "after": {g: gauges.get(g) for g in IDLE_GAUGES},
        "retransmissions_sent": gauges.get('phpvoip_retransmissions_total{direction="sent"}'),
        "retransmissions_received": gauges.get('phpvoip_retransmissions_total{direction="received"}'),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--loss", type=float, default=20.0, help="percent lost in each direction")
    parser.add_argument("--t1", type=float, default=0.5, help="the switch's T1 (s)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason is not None:
        print(f"loss.py: {reason}", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="phpvoip-loss-"))
    print(json.dumps(run(args.calls, args.rate, args.loss, workdir, args.t1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
