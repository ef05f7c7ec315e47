"""The `media:` section of the config: where the media of calls goes.

``mode: direct`` (the default when the section is absent) leaves SDP untouched and
media flows between the endpoints; ``relay`` passes it through the switch's own RTP
relay; ``rtpengine`` hands it to an rtpengine daemon over its ng protocol,
optionally falling back to the relay while rtpengine does not answer.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from phpvoip.settings import Section

__all__ = ["MODES", "MediaSettings", "build_media_engine", "media_settings"]

MODES = ("direct", "relay", "rtpengine")

_PORTS = re.compile(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*\Z")
_NG = re.compile(r"udp:(\[[0-9A-Fa-f:.]+\]|[0-9.]+):(\d{1,5})\Z")


@dataclass(frozen=True)
class MediaSettings:
    """`media:`. `address` is where the relay binds and what its SDP names; `ports`
    the relay's RTP port range (even first, RTCP on the odd one above each);
    `rtp_timeout` ends calls silent that long (seconds, 0 = never); `ng`, `timeout`
    and `retries` reach rtpengine; `fallback` ("relay" or None) takes new calls while
    rtpengine does not answer."""

    mode: str = "direct"
    address: str = "127.0.0.1"
    ports: tuple[int, int] = (30000, 30999)
    rtp_timeout: float = 60.0
    ng: str = "udp:127.0.0.1:2223"
    timeout: float = 1.0
    retries: int = 2
    fallback: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether the switch touches media at all."""
        return self.mode != "direct"


def media_settings(top: Section) -> MediaSettings:
    """Read ``media:``; absent means direct media (SDP passed through unchanged)."""
    if not top.has("media"):
        return MediaSettings()
    section = top.section("media")
    mode = section.string("mode", "direct")
    if mode not in MODES:
        raise section.error("mode", f"{mode!r} is not one of {', '.join(MODES)}")
    address = section.string("address", "127.0.0.1")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise section.error("address", f"{address!r} is not an IP address (names are not resolved)") from None
    ports = _port_range(section)
    rtp_timeout = float(section.number("rtp_timeout", 60.0, minimum=0, maximum=86400))
    ng = section.string("ng", "udp:127.0.0.1:2223")
    m = _NG.match(ng)
    if m is None:
        raise section.error("ng", f"{ng!r} is not 'udp:IP:PORT'")
    try:
        ipaddress.ip_address(m.group(1).strip("[]"))
    except ValueError:
        raise section.error("ng", f"{m.group(1)!r} is not an IP address") from None
    if not 0 < int(m.group(2)) < 65536:
        raise section.error("ng", f"port {m.group(2)} is out of range")
    timeout = float(section.number("timeout", 1.0, minimum=0.01, maximum=60))
    retries = section.integer("retries", 2, minimum=0, maximum=10)
    fallback = section.string("fallback", None)
    if fallback is not None:
        if fallback != "relay":
            raise section.error("fallback", f"{fallback!r} is not 'relay'")
        if mode != "rtpengine":
            raise section.error("fallback", "only rtpengine falls back (set mode: rtpengine)")
    section.check_unknown()
    return MediaSettings(mode, address, ports, rtp_timeout, ng, timeout, retries, fallback)


def _port_range(section: Section) -> tuple[int, int]:
    text = section.string("ports", "30000-30999")
    m = _PORTS.match(text)
    if m is None:
        raise section.error("ports", f"{text!r} is not 'LOW-HIGH'")
    low, high = int(m.group(1)), int(m.group(2))
    if low < 1024 or high > 65535:
        raise section.error("ports", f"{text!r} must lie within 1024-65535")
    if low % 2:
        raise section.error("ports", f"the first port {low} must be even (RTP even, RTCP odd)")
    if low >= high:
        raise section.error("ports", f"{text!r} runs backwards or is empty (low < high)")
    return low, high


def build_media_engine(settings: MediaSettings, reactor: Any) -> Any:
    """The `IMediaEngine` for `settings`, not started; None in direct mode."""
    if not settings.enabled:
        return None
    from phpvoip.media.relay import RelayEngine

    if settings.mode == "relay":
        return RelayEngine(reactor, settings.address, settings.ports, settings.rtp_timeout)
    from phpvoip.media.rtpengine import RtpengineEngine

    engine = RtpengineEngine(reactor, settings.ng, settings.timeout, settings.retries, settings.rtp_timeout)
    if settings.fallback == "relay":
        from phpvoip.media.fallback import FallbackEngine

        relay = RelayEngine(reactor, settings.address, settings.ports, settings.rtp_timeout)
        return FallbackEngine(engine, relay)
    return engine
