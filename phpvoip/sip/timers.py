"""The RFC 3261 timer base values (§17.1.1.1, Table 4), configurable per switch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timers:
    """T1 (RTT estimate), T2 (cap on non-INVITE retransmission interval) and T4
    (longest time a message stays in the network), in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:
        """Timer B/F/H/J and the 2xx retransmission give-up time: 64*T1."""
        return 64 * self.t1
