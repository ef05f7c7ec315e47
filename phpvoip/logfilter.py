"""Keeps the media sockets' open and close lines out of the log.

Twisted announces every UDP port it binds ("_RtpPort starting on 30000") and closes
("(UDP Port 30000 Closed)") at INFO, and cannot be told not to. The relay opens two
to four such ports per call and every application call one more, so a busy switch
logged a dozen lines per call that say nothing about it. This predicate drops the
"starting" line of the media protocols below and the "Closed" line of exactly the
ports it dropped that for; the SIP ports' lines, and everything else, pass.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.logger import ILogFilterPredicate, PredicateResult
from zope.interface import implementer

__all__ = ["MEDIA_PROTOCOLS", "QuietMediaPorts"]

# The DatagramProtocol classes of media sockets (phpvoip/media/relay.py, endpoint.py).
MEDIA_PROTOCOLS = frozenset(("_RtpPort", "_RtcpPort", "_EndpointSocket"))
_STARTING = re.compile(r"(\w+) starting on (\d+)\Z")
_CLOSED = re.compile(r"\(UDP Port (\d+) Closed\)\Z")


@implementer(ILogFilterPredicate)
class QuietMediaPorts:
    """A log filter predicate: `no` for the media ports' open and close lines."""

    __slots__ = ("_ports",)

    def __init__(self) -> None:
        self._ports: set[str] = set()  # media ports whose "starting" line was dropped

    def __call__(self, event: dict[str, Any]) -> PredicateResult:
        if event.get("log_namespace") != "log_legacy":
            return PredicateResult.maybe
        text = event.get("log_text") or ""
        if text.endswith("Closed)"):
            closed = _CLOSED.match(text)
            if closed is not None and closed.group(1) in self._ports:
                self._ports.discard(closed.group(1))
                return PredicateResult.no
        elif " starting on " in text:
            starting = _STARTING.match(text)
            if starting is not None and starting.group(1) in MEDIA_PROTOCOLS:
                self._ports.add(starting.group(2))
                return PredicateResult.no
        return PredicateResult.maybe
