"""Call flows through the switch between two SIPp peers (issue 4 checks).

SIPp UAC → switch (trunk in) → switch (trunk out) → SIPp UAS, one scenario pair per
flow. Each test checks both SIPp exit codes, what the switch recorded for the call
(`engine.records`) and that the engine holds nothing afterwards (`wait_idle`).
SIPp writes every message it sent and received to a log (``-trace_msg``), which the
tests read to check headers the scenarios cannot easily check themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from tests.interop.conftest import sipp_args, wait_idle
from tests.support import free_port

pytestmark = pytest.mark.interop

DEADLINE = 40.0  # seconds before a SIPp peer is killed


def trunk_config(uas_port: int, calls: str = "keepalive_interval: 0", transport: str = "") -> str:
    return (
        "calls: {" + calls + "}\n"
        "modules:\n"
        "  - type: trunk\n"
        "    name: backend\n"
        f"    address: {transport}127.0.0.1:{uas_port}\n"
        "    allow: [127.0.0.1]\n"
        "    numbers: ['*']\n"
    )


@dataclass
class Run:
    """One flow's outcome: the switch, both peers and their message logs."""

    service: Any
    uac: Any
    uas: Any
    uac_log: Path
    uas_log: Path
    counts: dict[str, int]

    @property
    def records(self) -> list[Any]:
        return list(self.service.engine.records)


async def run_flow(
    reactor: Any,
    sipp: str,
    switch: Any,
    peers: Any,
    tmp_path: Path,
    uac_scenario: str,
    uas_scenario: str,
    calls: int = 1,
    settings: str = "keepalive_interval: 0",
    uac_extra: tuple[str, ...] = (),
    uas_extra: tuple[str, ...] = (),
    trunk_transport: str = "",
    timers: str | None = None,
) -> Run:
    """Run one UAS and one UAC scenario through a fresh switch; assert both exit 0."""
    uas_port = free_port()
    extra = trunk_config(uas_port, settings, trunk_transport)
    service = await (switch(extra) if timers is None else switch(extra, timers))
    uac_log, uas_log = tmp_path / "uac_messages.log", tmp_path / "uas_messages.log"
    common = ("-m", str(calls), "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error", "-trace_msg")
    uas = peers.start(
        sipp_args(sipp, uas_scenario, uas_port, None, *common, "-message_file", str(uas_log), *uas_extra),
        deadline=DEADLINE,
    )
    uac = peers.start(
        sipp_args(sipp, uac_scenario, free_port(), service.port, "-s", "2005", *common,
                  "-message_file", str(uac_log), *uac_extra),
        deadline=DEADLINE,
    )
    uac_code = await uac.wait()
    uas_code = await uas.wait()
    assert uac_code == 0, f"UAC exit {uac_code}:\n{uac.output}\n{_tail(uac_log)}"
    assert uas_code == 0, f"UAS exit {uas_code}:\n{uas.output}\n{_tail(uas_log)}"
    counts = await wait_idle(reactor, service.engine)
    return Run(service, uac, uas, uac_log, uas_log, counts)


def _tail(path: Path, size: int = 6000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


def received(log: Path, start_line: str) -> list[str]:
    """The messages a SIPp peer received whose first line starts with `start_line`."""
    text = log.read_text(errors="replace")
    messages = re.split(r"\n-{10,}[^\n]*\n", text)
    found = []
    for chunk in re.split(r"^.*message received \[\d+\] bytes :\s*$", text, flags=re.M)[1:]:
        message = chunk.split("\n-----", 1)[0].strip("\n")
        if message.startswith(start_line):
            found.append(message)
    del messages
    return found


def header(message: str, name: str) -> str | None:
    """The first value of a header in a message as SIPp logged it."""
    match = re.search(rf"^{re.escape(name)}\s*:\s*(.*?)\s*$", message, flags=re.M | re.I)
    return match.group(1) if match else None


@pytest_twisted.ensureDeferred
async def test_callee_hangs_up_first(reactor, sipp, switch, peers, tmp_path):
    """The callee's BYE after answer reaches the caller as a BYE it answers 200."""
    run = await run_flow(reactor, sipp, switch, peers, tmp_path, "uac_callee_bye.xml", "uas_bye_first.xml",
                         calls=3)
    assert not any(run.counts.values()), run.counts
    assert len(run.records) == 3
    for record in run.records:
        assert record.status == 200 and record.answer is not None and record.end is not None
        assert record.hangup_by == "callee"
    assert len(received(run.uac_log, "BYE ")) == 3
