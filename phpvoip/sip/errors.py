"""Errors of the SIP layer, each carrying the status a server would answer with.

Two kinds, as h11 separates them: the peer sent something we cannot accept
(`ParseError`, `ProtocolError`: remote faults, answered on the wire), and we used the
API wrongly (`LocalProtocolError`: a bug on our side, never sent to a peer).
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """The peer broke the protocol; `status` and `reason` form the answer to send."""

    status = 400

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status


class ParseError(ProtocolError):
    """Bytes that are not a well-formed SIP message (RFC 3261 §25).

    `start_line` and `headers` hold what could still be read (raw ``(name, value)``
    pairs, unfolded: every header line that splits at a colon, those after the
    fault too), so that a server can answer 400 when Via, From, To, Call-ID and
    CSeq are readable (RFC 3261 §8.2, RFC 4475 §3.1.2). `status` is the answer:
    400, 505 for a SIP version other than 2.0, 501 for an unknown method whose
    CSeq does not match (RFC 4475 §3.1.2.18).
    """

    def __init__(
        self,
        reason: str,
        status: int | None = None,
        start_line: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(reason, status)
        self.start_line = start_line
        self.headers = headers or []


class LocalProtocolError(RuntimeError):
    """We asked the SIP layer to do something the protocol forbids (a bug here)."""
