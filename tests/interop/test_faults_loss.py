"""Fault: 20 % random loss in both directions (issue 14, item 5).

`bench/loss.py` makes a network namespace of its own whose loopback drops 20 % of
the datagrams to the switch and, separately, 20 % of those from it (nftables
``numgen random`` on the input hook: this kernel has no `netem`), and runs the real
switch, a SIPp callee and a SIPp caller inside it. 200 calls at 20/s: at least
99 % complete, any other ends with a SIP answer (or the caller's own RFC
retransmission limit; never a hang), and afterwards the switch holds no call, leg, dialog or transaction.
`bench/loss.sh` runs the long version.
"""

from __future__ import annotations

import json
import os

import pytest

from bench.loss import run, unavailable

pytestmark = pytest.mark.interop


@pytest.fixture
def lossy_namespace_possible() -> None:
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def test_calls_complete_over_a_link_losing_20_percent(lossy_namespace_possible, tmp_path):
    # T1 0.25 s at the switch keeps its retransmissions and Timer J (64*T1) short
    # enough for the test; bench/loss.sh runs with the RFC's 0.5 s.
    figures = run(calls=200, rate=20, loss=20, workdir=tmp_path, t1=0.25)
    print(json.dumps(figures))
    detail = json.dumps(figures, indent=1)
    # The link really lost a fifth of what crossed it.
    assert 15 <= figures["loss_measured_percent"] <= 25, detail
    assert figures["completed"] + figures["failed"] == 200, detail
    assert figures["completed"] >= 198, detail
    # A call that failed got a SIP answer, or its caller gave up after its own
    # retransmissions (RFC Timer B: 1 in ~3,000 calls when every try and its
    # answer cross two 20 % hops), or the switch ended it with BYE because the
    # SIPp callee gave up on it (a SIPp race on a retransmitted INVITE, see
    # bench/loss.py); none waited forever, and SIPp ended by itself.
    allowed = ("retransmissions exhausted", "BYE")
    assert all(key.isdigit() or key in allowed for key in figures["failures"]), detail
    assert figures["failures"].get("BYE", 0) <= figures["callee_aborted"], detail
    assert sum(figures["failures"].values()) >= figures["failed"], detail
    assert figures["uac_exit"] in (0, 1), detail  # 1: some calls failed
    assert all(value == 0 for value in figures["after"].values()), detail
