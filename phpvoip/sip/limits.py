"""How much of a message the switch reads before it refuses it (config ``sip:``).

A SIP server on the internet gets scanner traffic and crafted messages; each limit
bounds the work one message can cause, and every refusal carries the status to
answer with (`phpvoip.sip.errors.ParseError.status`):

- ``max_message_size`` (65535) and ``max_sdp_size`` (16384): size limits, answered
  ``513 Message Too Large`` (RFC 3261 §21.5.14: "the request message length is
  longer than the server is willing to process"); the SDP limit counts the body of
  a message whose Content-Type is application/sdp.
- ``max_headers`` (200), ``max_header_length`` (8192, one line as received) and
  ``max_vias`` (70, Via values in all Via lines: more hops than the usual
  Max-Forwards of 70 allow is no honest request; RFC 4475's longreq has 34): shape
  limits, answered ``400`` with a reason phrase naming the limit. They are not
  about size, and a phone that meets one has a bug to fix, not a message to
  shorten.

When the message cannot be answered (no readable Via, a response, an ACK) it is
dropped, and the transport counts it as a parse error.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "UNLIMITED", "MessageLimits"]


@dataclass(frozen=True, slots=True)
class MessageLimits:
    """The bounds `phpvoip.sip.message.parse` checks (the message size is the
    transport's: it is checked before any parsing)."""

    max_headers: int = 200
    max_header_length: int = 8192
    max_vias: int = 70
    max_sdp_size: int = 16384


DEFAULT_LIMITS = MessageLimits()
# For tests and benchmarks of the parser itself: nothing is refused for its shape.
UNLIMITED = MessageLimits(2**62, 2**62, 2**62, 2**62)
