"""The example plugin package as a user meets it: a fresh virtualenv, phpvoip and
examples/phpvoip-blocklist installed with pip (not editable), `twistd -n phpvoip`
with ``type: blocklist`` in its config, and SIPp calls through it.

The virtualenv is built once per module (it downloads Twisted and friends, or takes
them from pip's cache). pip builds a project inside its source directory (build/,
*.egg-info), so each project is copied to the temporary directory first and
installed from there: the checkout stays clean and two test runs never share a
build directory. Every process is stopped in a `finally` and every wait is bounded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import (
    LOOPBACK,
    free_port,
    options_ping,
    require_program,
    run_sipp,
    sipp_errors,
    wait_udp_bound,
)

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "phpvoip-blocklist"
SCENARIOS = Path(__file__).parent / "scenarios"
BUILTIN = {"registrar", "channel", "trunk", "robot"}
# What pip would also pick up from a working tree: never part of a package.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache",
    ".ruff_cache", ".hypothesis", "var", "dropin.cache", "examples",
)
# phpvoip's own files that installing or removing the plugin must leave alone.
OWN_FILES = ("phpvoip/__init__.py", "phpvoip/plugins/__init__.py", "phpvoip/plugins/phpvoip_builtin.py")
# twistd re-raises SIGTERM on itself after a clean shutdown.
CLEAN_EXIT = (0, -signal.SIGTERM)


@dataclass
class Installed:
    """A fresh virtualenv with phpvoip and (unless removed) the blocklist plugin."""

    root: Path
    venv: Path
    site: Path  # its site-packages
    sources: Path  # the plugin package's copy that pip installs from
    env: dict[str, str]
    hashes: dict[str, str]  # OWN_FILES as phpvoip's install left them
    plugin_installed: bool = True

    @property
    def twistd(self) -> str:
        return str(self.venv / "bin" / "twistd")

    def run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        """Run a command of the venv from the temporary directory (not the checkout)."""
        try:
            return subprocess.run(args, cwd=self.root, env=self.env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"{' '.join(args)} did not finish within {timeout}s") from e

    def pip(self, *args: str, timeout: float = 600.0) -> None:
        command = [str(self.venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args]
        done = self.run(command, timeout)
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    def python(self, code: str) -> str:
        done = self.run([str(self.venv / "bin" / "python"), "-c", textwrap.dedent(code)], 60)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def own_hashes(self) -> dict[str, str]:
        return {name: hashlib.sha256((self.site / name).read_bytes()).hexdigest() for name in OWN_FILES}

    def ensure_plugin(self) -> None:
        """Reinstall the plugin if a test before removed it."""
        if not self.plugin_installed:
            self.pip("install", "-q", str(self.sources))
            self.plugin_installed = True


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the virtualenv and install phpvoip, then the plugin, as a user would."""
    root = tmp_path_factory.mktemp("plugin-package")
    shutil.copytree(REPO, root / "src" / "phpvoip", ignore=NOT_SOURCES)
    shutil.copytree(EXAMPLE, root / "src" / "phpvoip-blocklist", ignore=NOT_SOURCES)
    venv = root / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], cwd=root, env=env, capture_output=True,
                          text=True, timeout=180)
    assert made.returncode == 0, made.stderr
    box = Installed(root, venv, Path(), root / "src" / "phpvoip-blocklist", env, {})
    box.pip("install", "-q", str(root / "src" / "phpvoip"))
    box.site = Path(box.python("import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    box.hashes = box.own_hashes()
    box.pip("install", "-q", str(box.sources))
    return box


# -- the install --------------------------------------------------------------------------


def test_drop_in_lands_beside_phpvoip(installed: Installed) -> None:
    """pip puts the drop-in into site-packages/phpvoip/plugins/ without touching
    phpvoip's own files, and the venv's phpvoip (not the checkout) finds the type."""
    installed.ensure_plugin()
    site = installed.site
    assert (site / "phpvoip" / "plugins" / "phpvoip_blocklist.py").is_file()
    assert installed.own_hashes() == installed.hashes
    record = next(site.glob("phpvoip_blocklist-*.dist-info")) / "RECORD"
    files = {line.split(",")[0] for line in record.read_text().splitlines()}
    assert "phpvoip/plugins/phpvoip_blocklist.py" in files
    assert not {f for f in files if f.endswith("__init__.py") and f.startswith("phpvoip/")}
    found = json.loads(installed.python("""
        import json, phpvoip, phpvoip_blocklist
        from phpvoip.moduletypes import find_module_types
        print(json.dumps({"phpvoip": phpvoip.__file__, "plugin": phpvoip_blocklist.__file__,
                          "types": sorted(find_module_types())}))
    """))
    assert Path(found["phpvoip"]).is_relative_to(site)
    assert Path(found["plugin"]).is_relative_to(site)
    assert BUILTIN | {"blocklist"} <= set(found["types"])


# -- calls through the installed switch ----------------------------------------------------


def switch_config(port: int, caller_port: int, callee_port: int, blocklist: bool = True) -> str:
    blocked = (
        "  - type: blocklist            # from examples/phpvoip-blocklist\n"
        "    numbers: ['666', '1900-1999']\n"
    ) if blocklist else ""
    return (
        "sip:\n"
        f"  listen: [udp:{LOOPBACK}:{port}]\n"
        f"  domain: {LOOPBACK}\n"
        "storage: memory\n"
        "calls: {keepalive_interval: 0}\n"
        "modules:\n" + blocked +
        "  - type: trunk                # the callers come in on it\n"
        "    name: callers\n"
        f"    address: {LOOPBACK}:{caller_port}\n"
        f"    allow: [{LOOPBACK}]\n"
        "    numbers: ['00*']\n"
        "  - type: trunk                # the callee is reached through it\n"
        "    name: callees\n"
        f"    address: {LOOPBACK}:{callee_port}\n"
        "    allow: [127.0.0.2]\n"
        "    numbers: ['5000']\n"
    )


class Twistd:
    """`<venv>/bin/twistd -n phpvoip --config FILE` in a directory of its own."""

    def __init__(self, installed: Installed, workdir: Path, config: str, port: int) -> None:
        self.port = port
        self.config = workdir / "switch.yaml"
        self.config.write_text(config)
        self.log_path = workdir / "switch.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [installed.twistd, "-n", "--pidfile=", "phpvoip", "--config", str(self.config)],
                cwd=workdir, env=installed.env, stdout=log, stderr=subprocess.STDOUT,
            )

    def wait_answering(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited with {self.process.returncode}:\n{self.log()}")
            if options_ping(self.port, 0.3) is not None:
                return
        raise AssertionError(f"twistd did not answer OPTIONS within {timeout}s:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 10 s; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]



def call(workdir: Path, scenario: str, caller: str, call_id: str, port: int, switch_port: int) -> None:
    """One SIPp call From `caller` to 5000 through the switch; fails on SIPp's error."""
    done = run_sipp(
        ["-sf", str(SCENARIOS / scenario), "-i", LOOPBACK, "-p", str(port), "-m", "1", "-s", "5000",
         "-key", "caller", caller, "-cid_str", call_id, f"{LOOPBACK}:{switch_port}"],
        workdir, timeout=30,
    )
    assert done.returncode == 0, f"{scenario} from {caller}: {done.stdout[-2000:]}\n{sipp_errors(workdir)}"


def test_blocklist_declines_listed_callers_and_passes_others(installed: Installed, tmp_path: Path) -> None:
    """Callers 666 and 1950 get 603 Decline (logged with caller and Call-ID); caller
    2001 reaches the SIPp callee through the trunks: 200, ACK, BYE."""
    sipp = require_program("sipp")
    installed.ensure_plugin()
    port, caller_port, callee_port = free_port(), free_port(), free_port()
    switch = Twistd(installed, tmp_path, switch_config(port, caller_port, callee_port), port)
    callee = None
    try:
        switch.wait_answering()
        call(tmp_path, "uac_caller_declined.xml", "666", "declined-%u@blocklist", caller_port, port)
        call(tmp_path, "uac_caller_declined.xml", "1950", "range-%u@blocklist", free_port(), port)
        with open(tmp_path / "callee.log", "wb") as out:
            callee = subprocess.Popen(
                [sipp, "-nostdin", "-i", LOOPBACK, "-p", str(callee_port),
                 "-sf", str(SCENARIOS / "uas_answer.xml"), "-m", "1", "-trace_err"],
                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            )
        wait_udp_bound(callee, callee_port)
        call(tmp_path, "uac_caller_call.xml", "2001", "passed-%u@blocklist", free_port(), port)
        assert callee.wait(15) == 0, (tmp_path / "callee.log").read_text(errors="replace")[-2000:]
        log = switch.log()
        assert "blocklist: refused call declined-1@blocklist from 666" in log, log
        assert "blocklist: refused call range-1@blocklist from 1950" in log, log
        assert "passed-1@blocklist" not in log, log
        assert "Traceback" not in log, log
    finally:
        if callee is not None and callee.poll() is None:
            callee.kill()
            callee.wait(5)
        code = switch.stop()
    assert code in CLEAN_EXIT, switch.log()


# -- removing the plugin -----------------------------------------------------------------------


def test_uninstalling_the_plugin_leaves_phpvoip_working(installed: Installed, tmp_path: Path) -> None:
    """After `pip uninstall phpvoip-blocklist` phpvoip's files are intact, the type is
    gone (a config naming it is refused) and the switch starts without it."""
    installed.ensure_plugin()
    installed.pip("uninstall", "-y", "-q", "phpvoip-blocklist")
    installed.plugin_installed = False
    assert not (installed.site / "phpvoip" / "plugins" / "phpvoip_blocklist.py").exists()
    assert installed.own_hashes() == installed.hashes
    types = installed.python("import json; from phpvoip.moduletypes import find_module_types as f; "
                             "print(json.dumps(sorted(f())))")
    assert BUILTIN <= set(json.loads(types)) and "blocklist" not in json.loads(types)
    port = free_port()
    (tmp_path / "with.yaml").write_text(switch_config(port, free_port(), free_port()))
    refused = installed.run([installed.twistd, "-n", "--pidfile=", "phpvoip", "--config",
                             str(tmp_path / "with.yaml")], timeout=30)
    assert refused.returncode != 0
    assert "modules[0].type: unknown module type 'blocklist'" in refused.stdout + refused.stderr
    switch = Twistd(installed, tmp_path, switch_config(port, free_port(), free_port(), blocklist=False), port)
    try:
        switch.wait_answering()
    finally:
        code = switch.stop()
    assert code in CLEAN_EXIT, switch.log()
