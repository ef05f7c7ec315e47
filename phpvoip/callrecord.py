"""The record of one call attempt: who called whom, how it was routed, how it ended.

The engine opens a `CallRecord` when an INVITE arrives (or an application places a
call) and the call fills it in as it goes; every call event carries it, so that an
observer (call records, metrics, the manhole, the console) reads one object instead
of reaching into legs. Its `id` is the switch's own and stays the same when the call
is re-bridged or transferred; `call_id` is the SIP Call-ID the caller used.

How a call ended is said three ways, as billing systems expect:

- `status`: the final SIP status the caller saw (200 once answered);
- `disposition`: ANSWERED, NO ANSWER, BUSY, CANCELLED or FAILED (as Asterisk's CDR);
- `cause`: the RFC 3326 Reason value, ``Q.850;cause=16`` for a normal hang-up or
  ``SIP;cause=486`` for a refusal, with `q850` the ISDN cause number for it
  (RFC 3398 §8.2.6.1 maps SIP statuses to Q.850).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ANSWERED", "BUSY", "CANCELLED", "FAILED", "NO_ANSWER", "CallRecord", "disposition_for", "q850_for",
]

ANSWERED = "ANSWERED"
NO_ANSWER = "NO ANSWER"
BUSY = "BUSY"
CANCELLED = "CANCELLED"
FAILED = "FAILED"

# RFC 3398 §8.2.6.1: the Q.850 cause an ISUP gateway sends for a SIP final status.
_Q850 = {
    400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21, 408: 102,
    410: 22, 413: 127, 414: 127, 415: 79, 416: 127, 420: 127, 421: 127, 423: 127,
    480: 18, 481: 41, 482: 25, 483: 25, 484: 28, 485: 1, 486: 17, 487: 127, 488: 127,
    500: 41, 501: 79, 502: 38, 503: 41, 504: 102, 505: 127, 513: 127,
    600: 17, 603: 21, 604: 1, 606: 58,
}
NORMAL_CLEARING_Q850 = 16


def q850_for(status: int | None) -> int:
    """The Q.850 cause for a final SIP status (None: a normal hang-up, cause 16)."""
    if status is None or 200 <= status < 300:
        return NORMAL_CLEARING_Q850
    return _Q850.get(status, 31 if status < 600 else 21)  # 31: normal, unspecified


def disposition_for(status: int | None, answered: bool, cancelled: bool) -> str:
    """ANSWERED, NO ANSWER, BUSY, CANCELLED or FAILED for how a call ended."""
    if answered:
        return ANSWERED
    if cancelled or status == 487:
        return CANCELLED
    if status in (486, 600):
        return BUSY
    if status in (408, 480):
        return NO_ANSWER
    return FAILED


@dataclass(slots=True, eq=False)
class CallRecord:
    """One call attempt, answered or not; filled in as the call goes on."""

    id: str  # the switch's own, stable across re-bridging ("call-17")
    call_id: str  # the caller's SIP Call-ID
    caller: str  # user part of From as it arrived
    callee: str  # user part of To as it arrived
    start: float
    source: Any = None  # the Address the INVITE came from; None when an app placed it
    route: Any = None  # the `phpvoip.router.Route` that matched, or None
    routed_from: str = ""
    routed_to: str = ""
    inbound_module: str = ""
    outbound_module: str = ""
    ring: float | None = None  # first ringing (18x) heard by the caller
    answer: float | None = None
    end: float | None = None
    status: int | None = None  # final status the caller saw (200 if answered)
    reason: str = ""  # the text of why it ended
    cause: str = ""  # RFC 3326 form: "Q.850;cause=16" or "SIP;cause=486"
    q850: int | None = None
    disposition: str = ""
    hangup_by: str = ""  # "caller", "callee" or "switch"
    transfers: list[str] = field(default_factory=list)  # targets it was transferred to
    # The SIP Call-IDs of its legs on the wire, the caller's first, then each leg the
    # switch dialled (forks' branches, transfer targets): what finds a call's ladder.
    sip_call_ids: list[str] = field(default_factory=list)
    # What the media engine measured, by direction ("a>b": the caller's packets to the
    # callee; "c" and on are legs joined by transfers), and under "sides" whether each
    # side stood for the "caller" or the "callee"; None with direct media.
    media: dict | None = None

    @property
    def duration(self) -> float:
        """Talk time in seconds (billable: answer to end; 0 when unanswered)."""
        if self.answer is None or self.end is None:
            return 0.0
        return self.end - self.answer

    @property
    def setup_time(self) -> float | None:
        """Seconds from the INVITE to the answer, or to the end of an unanswered
        call; None while neither has happened."""
        until = self.answer if self.answer is not None else self.end
        return None if until is None else until - self.start

    @property
    def total_time(self) -> float:
        """Seconds from the INVITE to the end (0 while the call goes on)."""
        return 0.0 if self.end is None else self.end - self.start

    def finish(self, when: float, status: int | None, reason: str, by: str,
               cause_status: int | None = None, cancelled: bool = False) -> None:
        """Close the record. `status` is the final status the caller saw (ignored
        once answered: that was 200); `cause_status` the SIP status behind the
        ending (a BYE's Reason, 408 for a dead peer; None for a plain hang-up;
        by default `status` when unanswered)."""
        answered = self.answer is not None
        self.end = when
        self.status = 200 if answered else status
        self.reason = reason
        self.hangup_by = by
        if not answered and cause_status is None:
            cause_status = status
        self.cause = "Q.850;cause=16" if cause_status is None else f"SIP;cause={cause_status}"
        self.q850 = q850_for(cause_status)
        self.disposition = disposition_for(self.status, answered, cancelled)
