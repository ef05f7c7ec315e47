"""What a leg owes the far end after accepting its REFER: NOTIFYs (RFC 3515).

Accepting a REFER creates an implicit subscription to the ``refer`` event package
(RFC 3515 §2.4.4): the REFER-recipient "MUST send a NOTIFY ... immediately after
accepting", reporting ``SIP/2.0 100 Trying`` in a message/sipfrag body, then one
NOTIFY per progress of the referred call and a last one with its final status, which
ends the subscription. A REFER with ``Refer-Sub: false`` (RFC 4488) asks for no
NOTIFYs at all.

Reports made before the 202 has gone out (a target that fails at once) are held and
sent after the first NOTIFY, so that the transferor always sees them in order.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["SIPFRAG", "ReferSubscription"]

SIPFRAG = "message/sipfrag;version=2.0"
# RFC 3515 §2.4.4 leaves the subscription's length to the notifier; a minute is
# what common phones ask for and covers a ring timeout's worth of NOTIFYs.
EXPIRES = 60


class ReferSubscription:
    """The NOTIFYs for one accepted REFER: ``send(event, state, body)`` sends one."""

    __slots__ = ("event", "subscribed", "_send", "_accepted", "_held", "_last", "done")

    def __init__(self, cseq: int, send: Callable[[str, str, bytes], None], subscribed: bool = True) -> None:
        # §2.4.6: the id parameter is the CSeq number of the REFER (needed when a
        # dialog sees more than one REFER; always given here).
        self.event = f"refer;id={cseq}"
        self.subscribed = subscribed
        self._send = send
        self._accepted = False
        self._held: list[tuple[int, str]] = []
        self._last: int | None = None
        self.done = False

    def accepted(self) -> None:
        """The 202 is on its way: report 100 Trying, then anything held."""
        self._accepted = True
        self._notify(100, "Trying")
        held, self._held = self._held, []
        for status, reason in held:
            self.report(status, reason)

    def report(self, status: int, reason: str) -> None:
        """The referred call's progress; a final status ends the subscription."""
        if self.done:
            return
        if not self._accepted:
            self._held.append((status, reason))
            return
        if status == self._last and status < 200:
            return
        self._notify(status, reason)

    def _notify(self, status: int, reason: str) -> None:
        self._last = status
        final = status >= 200
        if final:
            self.done = True
        if not self.subscribed:
            return
        state = "terminated;reason=noresource" if final else f"active;expires={EXPIRES}"
        self._send(self.event, state, f"SIP/2.0 {status} {reason}\r\n".encode())
