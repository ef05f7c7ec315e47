"""Where a message comes from or goes to: transport, host and port."""

from __future__ import annotations

from typing import NamedTuple


class Address(NamedTuple):
    """A transport address such as ``Address("udp", "127.0.0.1", 5060)``.

    `transport` is lower case (``udp`` or ``tcp``); `host` is an IP literal
    (IPv6 without brackets).
    """

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"
