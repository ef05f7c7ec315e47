"""The real `twistd -n phpvoip` process: how it starts, refuses bad configs, stops,
and answers SIPp's OPTIONS pings over UDP and TCP (issue 2, items 5 and the check
"`make run` starts a switch that answers `sipp -sn uac`-style OPTIONS pings").

Every process started here is stopped in a `finally` (SIGTERM, then SIGKILL) and
every wait is bounded. Only 127.0.0.1 and ports the OS says are free are used.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from phpvoip import tap
from tests.interop._wire import Probe, port_is_free, running_switch
from tests.support import (
    LOOPBACK,
    ROOT,
    VENV_BIN,
    free_port,
    options_ping,
    run_sipp,
    sipp_errors,
)

pytestmark = pytest.mark.interop

SCENARIOS = Path(__file__).parent / "scenarios"
TWISTD = str(VENV_BIN / "twistd")
# twistd shuts down cleanly on SIGTERM and then re-raises the signal on itself
# (twisted.scripts.twistd.runApp → app._exitWithSignal), so a clean stop shows as
# "killed by SIGTERM" to the parent, not as 0.
CLEAN_EXIT = (0, -signal.SIGTERM)


def config_text(port: int) -> str:
    return (
        "sip:\n"
        f"  listen: [udp:{LOOPBACK}:{port}, tcp:{LOOPBACK}:{port}]\n"
        f"  domain: {LOOPBACK}\n"
        "storage: memory\n"
    )


def wait_answering(process: subprocess.Popen, port: int, timeout: float = 20.0) -> bool:
    """Poll with OPTIONS until the switch answers (True) or exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if options_ping(port, 0.3) is not None:
            return True
    return False


def stop(process: subprocess.Popen) -> int:
    """SIGTERM, then SIGKILL after 10 s; the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


def launch(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "phpvoip", *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )


def run_to_exit(args: list[str], cwd: Path, timeout: float = 20.0) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [TWISTD, "-n", "--pidfile=", "phpvoip", *args],
            cwd=cwd, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:  # the process is killed by subprocess.run
        raise AssertionError(f"twistd with a bad config was still running after {timeout}s") from e


# -- starting ------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--config", "-c"])
def test_starts_with_config_flag(tmp_path: Path, flag: str) -> None:
    """`twistd -n phpvoip --config PATH` and `-c PATH` start a switch that answers
    OPTIONS on the configured port, over UDP and TCP."""
    port = free_port()
    (tmp_path / "switch.yaml").write_text(config_text(port))
    process = launch([flag, "switch.yaml"], tmp_path, tmp_path / "out.log")
    try:
        assert wait_answering(process, port), (tmp_path / "out.log").read_text(errors="replace")
        with Probe(port) as probe:
            assert probe.options_alive()
        log = (tmp_path / "out.log").read_text(errors="replace")
        assert f"udp:{LOOPBACK}:{port}" in log and f"tcp:{LOOPBACK}:{port}" in log
        assert "Traceback" not in log
    finally:
        stop(process)


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    """SIGTERM ends the switch at once with a clean shutdown: the log says it is
    stopping, both ports close, no traceback, and the port is free afterwards."""
    port = free_port()
    (tmp_path / "switch.yaml").write_text(config_text(port))
    log_path = tmp_path / "out.log"
    process = launch(["--config", "switch.yaml"], tmp_path, log_path)
    try:
        assert wait_answering(process, port), log_path.read_text(errors="replace")
        started = time.monotonic()
        code = stop(process)
        took = time.monotonic() - started
    finally:
        stop(process)
    log = log_path.read_text(errors="replace")
    assert code in CLEAN_EXIT, f"exit status {code}\n{log}"
    assert took < 6.0, f"stopping took {took:.1f}s"
    assert "phpvoip stopping" in log
    assert f"UDP Port {port} Closed" in log and f"TCP Port {port} Closed" in log
    assert "Main loop terminated" in log
    assert "Traceback" not in log
    assert port_is_free(port)


# -- refusing bad configs -----------------------------------------------------------------

BAD_CONFIGS = {
    "bad-yaml": ("sip: [\n  listen: udp:127.0.0.1:{port}\n", "not valid YAML"),
    "unknown-key": (
        "sip:\n  listen: [udp:127.0.0.1:{port}]\nstorage: memory\nfrobnicate: yes\n",
        "frobnicate: unknown key",
    ),
    "listen-not-an-address": (
        "sip:\n  listen: [udp:localhost:{port}]\nstorage: memory\n",
        "sip.listen[0]:",
    ),
    "listen-bad-transport": (
        "sip:\n  listen: [sctp:127.0.0.1:{port}]\nstorage: memory\n",
        "sip.listen[0]:",
    ),
    "listen-port-out-of-range": (
        "sip:\n  listen: [udp:127.0.0.1:{port}, tcp:127.0.0.1:99999]\nstorage: memory\n",
        "sip.listen[1]:",
    ),
    "unknown-module-type": (
        "sip:\n  listen: [udp:127.0.0.1:{port}, tcp:127.0.0.1:{port}]\nstorage: memory\n"
        "modules:\n  - type: frobnicator\n",
        "modules[0].type: unknown module type 'frobnicator'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_before_binding(tmp_path: Path, case: str) -> None:
    """A bad config (bad YAML, unknown key, bad listen address, unknown module type)
    makes twistd exit non-zero with `FILE: KEY: problem`, having bound nothing."""
    port = free_port()
    text, expected = BAD_CONFIGS[case]
    (tmp_path / "bad.yaml").write_text(text.format(port=port))
    result = run_to_exit(["--config", "bad.yaml"], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"bad.yaml: {expected}" in output, output
    assert "Traceback" not in output
    assert "starting on" not in output and "phpvoip started" not in output
    assert port_is_free(port)


def test_missing_config_file_exits(tmp_path: Path) -> None:
    """A config path that does not exist is refused with the file named."""
    result = run_to_exit(["-c", "nowhere.yaml"], tmp_path)
    assert result.returncode != 0
    assert "nowhere.yaml: cannot read" in result.stdout + result.stderr


def test_busy_port_exits_non_zero(tmp_path: Path) -> None:
    """A listen address another socket holds makes the switch exit non-zero and say
    which address it could not bind (a runtime failure, not a config error)."""
    port = free_port()
    (tmp_path / "switch.yaml").write_text(config_text(port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((LOOPBACK, port))
        result = run_to_exit(["--config", "switch.yaml"], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"{LOOPBACK}:{port}" in output and "Address already in use" in output, output


# -- the default config ---------------------------------------------------------------------


def test_default_config_is_etc_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --config, the options load etc/phpvoip.yaml from the working directory."""
    (tmp_path / "etc").mkdir()
    shutil.copy(ROOT / "etc" / "phpvoip.yaml", tmp_path / "etc" / "phpvoip.yaml")
    monkeypatch.chdir(tmp_path)
    options = tap.Options()
    options.parseOptions([])
    loaded = options["loaded"]
    assert Path(loaded.file) == Path("etc/phpvoip.yaml")
    assert [str(a) for a in loaded.sip.listen] == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]


def test_default_config_falls_back_to_packaged_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Started where there is no etc/phpvoip.yaml, the packaged default is used, and
    it is the same file as the repository's etc/phpvoip.yaml (loopback only)."""
    monkeypatch.chdir(tmp_path)
    options = tap.Options()
    options.parseOptions([])
    loaded = options["loaded"]
    assert Path(loaded.file) == tap.PACKAGED_CONFIG
    assert tap.PACKAGED_CONFIG.read_text() == (ROOT / "etc" / "phpvoip.yaml").read_text()
    assert all(a.host == LOOPBACK for a in loaded.sip.listen)


def test_default_config_process_answers_on_5060(tmp_path: Path) -> None:
    """`twistd -n phpvoip` with no --config, run where etc/ is, answers OPTIONS on
    127.0.0.1:5060 (skipped when something else holds 5060)."""
    if not port_is_free(5060):
        pytest.skip("127.0.0.1:5060 is in use here; the default config cannot be started")
    (tmp_path / "etc").mkdir()
    (tmp_path / "var").mkdir()  # the default storage is sqlite:var/phpvoip.db, as `make run` makes
    shutil.copy(ROOT / "etc" / "phpvoip.yaml", tmp_path / "etc" / "phpvoip.yaml")
    process = launch([], tmp_path, tmp_path / "out.log")
    try:
        answering = wait_answering(process, 5060)
    finally:
        code = stop(process)
    log = (tmp_path / "out.log").read_text(errors="replace")
    if not answering and "Address already in use" in log:
        pytest.skip("something else took 127.0.0.1:5060 while the switch was starting")
    assert answering, log
    assert "etc/phpvoip.yaml" in log
    assert code in CLEAN_EXIT, log


# -- SIPp OPTIONS pings ------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sipp_options_pings_real_process(tmp_path: Path, transport: str) -> None:
    """SIPp's 50 OPTIONS pings (scenarios/options.xml, expecting 200 with Allow) to
    the real twistd process all succeed over UDP and over TCP."""
    with running_switch(tmp_path) as switch:
        result = run_sipp(
            [
                f"{LOOPBACK}:{switch.port}",
                "-sf", str(SCENARIOS / "options.xml"),
                "-t", transport,
                "-i", LOOPBACK,
                "-p", str(free_port()),
                "-m", "50", "-r", "100",
                "-timeout", "20s", "-timeout_error",
            ],
            tmp_path,
            timeout=40,
        )
        assert switch.alive(), switch.log()
    report = f"sipp exited {result.returncode}\n{result.stdout[-2000:]}\n{sipp_errors(tmp_path)}"
    assert result.returncode == 0, report
