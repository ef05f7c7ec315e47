"""Scanners we did not write: sipvicious (Debian's `svmap`, `svwar`, `svcrack`) against
a switch with a registrar, on loopback (issue 14, item 7).

- svwar walks extensions 1000-1100 with REGISTER, INVITE and OPTIONS and finds none,
  although 1050 and 1077 exist: the switch answers every extension alike.
- svcrack guessing 1050's password is shut out before its 50th guess, with the right
  password further down its list; once the block is over it gets in again.
- svmap reports the software the switch names in `sip.user_agent`, or nothing.

The switch runs in this process (so the tests read the registrar's counters); the
scanners are child processes on free loopback ports, killed at their deadline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task

from phpvoip import __version__
from phpvoip.config import Config
from tests.support import LOOPBACK, free_port, require_program

pytestmark = pytest.mark.interop

DEADLINE = 60.0
KNOWN = {"1050": "tiger-7-lamp", "1077": "otter-3-rope"}
USERS = "    users: {" + ", ".join(f'"{u}": {{password: {p}}}' for u, p in KNOWN.items()) + "}\n"
BLOCK = 8  # seconds a guesser stays shut out in these tests


def scanner_config(auth_failures: str = f"{{limit: 10, window: 60, block: {BLOCK}}}") -> str:
    # When the flood-protection ban list is in (phpvoip/limits.py, `limits:`), the
    # registrar's auth-failure block bans the source there: keep its ban short too.
    limits = f"limits: {{ban: {BLOCK}}}\n" if "limits" in getattr(Config, "__dataclass_fields__", {}) else ""
    return (
        "calls: {keepalive_interval: 0}\n" + limits + "modules:\n"
        "  - type: registrar\n" + USERS + "    algorithms: [MD5]\n"
        f"    auth_failures: {auth_failures}\n"
    )


async def start_switch(switch: Any, extra: str, sip: str = "") -> Any:
    return await switch(extra, "  timers: {t1: 0.1, t2: 0.4, t4: 0.5}\n" + sip)


def registrar_of(service: Any) -> Any:
    [module] = [m for m in service.engine.modules if m.name == "registrar"]
    return module


@pytest.fixture
def scanners(peers: Any, tmp_path: Path) -> Any:
    peers.tmp_path = tmp_path
    return peers


async def scan(peers: Any, program: str, *args: str, deadline: float = DEADLINE) -> tuple[int, str]:
    """Run one sipvicious command bound to its own loopback port; its exit code and
    its whole output (through a file: a debug scan prints more than a peer keeps)."""
    path = require_program(program)
    out = peers.tmp_path / f"{program}-{free_port()}.out"
    command = [path, "-b", LOOPBACK, "-P", str(free_port()), *args]
    peer = peers.start(["/bin/sh", "-c", f'exec "$@" > "{out}" 2>&1', "sh", *command], deadline=deadline)
    code = await peer.wait()
    return code, out.read_text(errors="replace")


# svwar --debug prints each datagram it reads as a Python bytes literal.
_DATAGRAM = re.compile(r"^b'(SIP/2\.0 [^\\]*)\\r\\n(.*)'$", re.M)
_TO_USER = re.compile(r"\\r\\nTo: [^\\]*<sip:([^@>]+)@")


def answers_by_extension(output: str) -> dict[str, set[str]]:
    """The status lines svwar received, by the extension (To user) they answer."""
    seen: dict[str, set[str]] = {}
    for status, rest in _DATAGRAM.findall(output):
        user = _TO_USER.search("\\r\\n" + rest)
        if user is not None:
            seen.setdefault(user.group(1), set()).add(status)
    return seen


def found_extensions(output: str) -> list[str]:
    """The extensions in svwar's result table (empty when it "found nothing")."""
    return re.findall(r"^\|\s*(\d+)\s*\|", output, re.M)


# -- svwar ------------------------------------------------------------------------------------


# The known extensions first: svwar compares each answer with the one a random
# (surely unknown) extension got, and stops at the first answer it cannot place.
RANGE = "1050,1077,1000-1100"


@pytest.mark.parametrize("method", ["REGISTER", "OPTIONS", "INVITE"])
@pytest_twisted.ensureDeferred
async def test_svwar_finds_no_extension(reactor, switch, scanners, method):
    """svwar (forced past its own sanity check) over 1000-1100 reports none: the
    known 1050 gets the very answer its random unknown extension got (REGISTER:
    401 for all, so svwar gives up; OPTIONS: 200 for each; INVITE:
    refused 400 before any user is looked up, as svwar's From and To are equal)."""
    service = await start_switch(switch, scanner_config())
    code, output = await scan(scanners, "svwar", "--force", "--debug", "-m", method, "-e", RANGE,
                              "-p", str(service.port), LOOPBACK)
    assert code == 0, output[-3000:]
    assert found_extensions(output) == [], output[-3000:]
    assert "found nothing" in output
    answers = answers_by_extension(output)
    assert "1050" in answers and len(answers) >= 2, answers
    finals = set().union(*answers.values()) - {"SIP/2.0 100 Trying"}
    expected = {"REGISTER": "SIP/2.0 401 Unauthorized", "OPTIONS": "SIP/2.0 200 OK",
                "INVITE": "SIP/2.0 400 From and To are the same"}[method]
    assert finals == {expected}, answers
    if method == "OPTIONS":
        # Nothing stops it but the per-source rate limit (30 requests in 2 s by
        # default, once the flood protection is in): dozens of answers, all alike.
        assert len(answers) >= 25, sorted(answers)
    assert not service.engine.calls


# -- svcrack ----------------------------------------------------------------------------------


def cracked(output: str, user: str) -> str | None:
    """The password svcrack's result table gives for `user`, or None."""
    match = re.search(rf"^\|\s*{user}\s*\|\s*(\S+)\s*\|\s*$", output, re.M)
    return match.group(1) if match else None


def dictionary(path: Path, wrong: int, right: str) -> Path:
    """`wrong` wrong passwords, then the right one."""
    path.write_text("".join(f"guess{n:03d}\n" for n in range(wrong)) + right + "\n")
    return path


@pytest_twisted.ensureDeferred
async def test_svcrack_is_shut_out_before_its_50th_guess_then_gets_in(reactor, switch, scanners, tmp_path):
    """svcrack with 1050's password as its 60th word: after 10 failed guesses the
    source is shut out for 8 s (answered 403 by the registrar's throttle, or
    dropped once the ban list has it), so the password is never tried; after the
    block the right password works again."""
    service = await start_switch(switch, scanner_config())
    registrar = registrar_of(service)
    words = dictionary(tmp_path / "words.txt", 59, KNOWN["1050"])
    started = reactor.seconds()
    # It gives up after 2 s without an answer; answered 403s keep it trying, so
    # it is stopped before the block ends.
    code, output = await scan(scanners, "svcrack", "--maximumtime", "2", "-u", "1050", "-d", str(words),
                              "-p", str(service.port), LOOPBACK, deadline=BLOCK - 2)
    judged = registrar.counts()["auth_failed"]
    assert cracked(output, "1050") is None, output[-3000:]
    assert 1 <= judged <= 10, registrar.counts()
    assert registrar.counts()["blocked_sources"] == 1, registrar.counts()

    await task.deferLater(reactor, max(0.0, started + BLOCK + 1.0 - reactor.seconds()), lambda: None)
    retry = dictionary(tmp_path / "retry.txt", 0, KNOWN["1050"])
    code, output = await scan(scanners, "svcrack", "-u", "1050", "-d", str(retry), "-p", str(service.port),
                              LOOPBACK)
    assert code == 0, output[-3000:]
    assert cracked(output, "1050") == KNOWN["1050"], output[-3000:]


# -- svmap ------------------------------------------------------------------------------------


def svmap_agent(output: str, port: int) -> str:
    """The User Agent column of svmap's row for the switch."""
    match = re.search(rf"^\|\s*{re.escape(LOOPBACK)}:{port}\s*\|\s*(.*?)\s*\|\s*$", output, re.M)
    assert match is not None, output[-3000:]
    return match.group(1)


@pytest.mark.parametrize(
    "setting, shown",
    [("", f"phpvoip/{__version__}"), ("  user_agent: Acme PBX 9\n", "Acme PBX 9"),
     ('  user_agent: ""\n', "unknown")],
)
@pytest_twisted.ensureDeferred
async def test_svmap_shows_what_user_agent_says(reactor, switch, scanners, setting, shown):
    """svmap reports the Server header of the OPTIONS answer: the default names
    phpvoip and its version, `sip.user_agent` changes it, and empty hides it."""
    service = await start_switch(switch, scanner_config(), setting)
    code, output = await scan(scanners, "svmap", "-p", str(service.port), LOOPBACK)
    assert code == 0, output[-3000:]
    assert svmap_agent(output, service.port) == shown
