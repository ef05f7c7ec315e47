"""Call ladders on the wire: a SIPp call through the switch, every message of both
legs in the ladder, and the pcap read back by tshark as the same SIP messages."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import utils

from tests.interop.conftest import sipp_args
from tests.interop.test_trunk_flows import CALL_STATE, DEADLINE, _wait_for, header, trunk_config, wait_bound
from tests.support import free_port, require_program

pytestmark = pytest.mark.interop

LADDERS = "ladders: {enabled: true, calls: 10, messages: 200}\n"
_MARKER = re.compile(r"^.*message (sent \(\d+ bytes\)|received \[\d+\] bytes)\s*:?\s*$", re.M)


def logged(log: Path) -> list[tuple[bool, str, str, str]]:
    """Every message a SIPp peer logged (``-trace_msg``), retransmissions included,
    as (sent by the peer, start line, Call-ID, CSeq)."""
    text = log.read_text(errors="replace")
    parts = _MARKER.split(text)
    found = []
    # split() alternates text and the captured "sent ..."/"received ..." group.
    for kind, chunk in zip(parts[1::2], parts[2::2], strict=True):
        message = chunk.split("\n-----", 1)[0].strip("\n")
        start = message.split("\n", 1)[0].strip()
        found.append((kind.startswith("sent"), start, header(message, "Call-ID") or "",
                      " ".join((header(message, "CSeq") or "").split())))
    return found


def ladder_keys(entries: list[Any]) -> list[tuple[bool, str, str, str]]:
    """The ladder's messages keyed like `logged`, seen from the switch (True: sent
    by the switch)."""
    return [(e.outgoing, e.start_line.strip(), e.call_id, e.cseq) for e in entries]


async def tshark_read(tshark: str, path: Path) -> list[tuple[str, str, str]]:
    """(start line, Call-ID, CSeq) of every SIP message tshark dissects in `path`."""
    fields = ("sip.Request-Line", "sip.Status-Line", "sip.Call-ID", "sip.CSeq")
    args = ["-r", str(path), "-Y", "sip", "-T", "fields", "-E", "separator=\t"]
    for field in fields:
        args += ["-e", field]
    out, err, code = await utils.getProcessOutputAndValue(tshark, args)
    assert code == 0, err.decode(errors="replace")
    rows = []
    for line in out.decode().splitlines():
        request, status, call_id, cseq = line.split("\t")
        rows.append(((request or status).strip(), call_id, " ".join(cseq.split())))
    return rows


async def call_through(reactor: Any, sipp: str, switch: Any, peers: Any, tmp_path: Path,
                       caller_transport: tuple[str, ...]) -> tuple[Any, Path, Path]:
    """One SIPp uac call (built-in scenario) to a SIPp uas behind a trunk, with
    ladders on; returns the switch and both peers' message logs."""
    uas_port = free_port()
    service = await switch(trunk_config(uas_port) + LADDERS)
    uac_log, uas_log = tmp_path / "uac.log", tmp_path / "uas.log"
    common = ("-m", "1", "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error", "-trace_msg")
    uas = peers.start(sipp_args(sipp, "uas", uas_port, None, *common, "-message_file", str(uas_log)),
                      deadline=DEADLINE)
    await wait_bound(reactor, uas, uas_port)
    uac = peers.start(sipp_args(sipp, "uac", free_port(), service.port, "-s", "2005", *common,
                                "-message_file", str(uac_log), *caller_transport), deadline=DEADLINE)
    assert await uac.wait() == 0, uac.output
    assert await uas.wait() == 0, uas.output
    # The callee's 200 to our BYE may still be on its way when the caller is done.
    state = await _wait_for(reactor, service.engine, CALL_STATE, 5.0)
    assert not any(state.values()), state
    return service, uac_log, uas_log


@pytest.mark.parametrize("caller_transport", [(), ("-t", "t1")], ids=["udp", "tcp-caller"])
@pytest_twisted.ensureDeferred
async def test_ladder_and_pcap_hold_every_message_of_a_sipp_call(
        reactor: Any, sipp: str, switch: Any, peers: Any, tmp_path: Path,
        caller_transport: tuple[str, ...]) -> None:
    """Every message both SIPp peers sent or received is in the call's ladder (and
    nothing else), the diagram draws them, and tshark reads the pcap back as them."""
    tshark = require_program("tshark")
    service, uac_log, uas_log = await call_through(reactor, sipp, switch, peers, tmp_path, caller_transport)
    [record] = service.engine.records
    ladders = service.ladders
    entries = ladders.messages(record)
    uac, uas = logged(uac_log), logged(uas_log)
    assert len(uac) >= 7 and len(uas) >= 6  # INVITE (100) 180 200 ACK BYE 200, at least
    # What a peer sent, the switch received, and the other way round.
    expected = Counter((not sent, start, call_id, cseq) for sent, start, call_id, cseq in uac + uas)
    assert Counter(ladder_keys(entries)) == expected
    assert entries[0].call_id == record.sip_call_ids[0] == uac[0][2]
    assert set(record.sip_call_ids) == {uac[0][2], uas[0][2]}
    caller = entries[0].remote
    assert caller.transport == ("tcp" if caller_transport else "udp")
    assert {e.remote.transport for e in entries if e.remote != caller} == {"udp"}

    text = ladders.ladder_text(record.id)
    arrows = text.splitlines()[6:]
    assert len(arrows) == len(entries)
    for arrow, entry in zip(arrows, entries, strict=True):
        assert entry.label in arrow
    for label in ("INVITE", "100 Trying", "180 Ringing", "200 OK", "ACK", "BYE"):
        assert label in text

    pcap = tmp_path / "call.pcap"
    assert ladders.write_pcap(record, str(pcap)) == len(entries)
    read_back = await tshark_read(tshark, pcap)
    assert read_back == [(start, call_id, cseq) for _, start, call_id, cseq in ladder_keys(entries)]
