"""An ended call lets go of itself: nothing that lingers for 64*T1 keeps it alive."""

from __future__ import annotations

import gc
import weakref

from phpvoip.interfaces import Cause
from tests.unit.test_bridge import make_call


def test_ended_bridge_detaches_from_its_legs():
    """Once the call has ended the legs no longer point at the bridge, so legs kept by
    lingering transactions do not keep the bridge and the other leg alive."""
    clock, bridge, caller_phone, callee_phone, *_ = make_call()
    callee_phone.answer(b"answer")
    callee_phone.hangup(Cause(None, "bye"))
    assert bridge.inbound.listener is None and bridge.outbound.listener is None


def test_ended_bridge_is_freed_without_the_cycle_collector():
    """With the legs detached, dropping the last outside reference frees the bridge by
    reference counting alone (no full collection needed)."""
    clock, bridge, caller_phone, callee_phone, caller, callee, rings, ended = make_call()
    callee_phone.answer(b"answer")
    caller_phone.hangup(Cause(None, "bye"))
    ref = weakref.ref(bridge)
    outbound = bridge.outbound  # kept, as a lingering INVITE transaction would keep its leg
    gc.disable()
    try:
        del bridge, ended[:]
        assert ref() is None
    finally:
        gc.enable()
    assert outbound.listener is None
