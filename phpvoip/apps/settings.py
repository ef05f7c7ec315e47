"""Settings every terminal application shares, read the same way for all of them.

`app_settings(section)` reads ``number``, ``address``, ``ports``, ``weight`` and
``max_duration`` and returns them as keyword arguments, so that an application's
own settings dataclass (a subclass of `AppSettings`) is built as
``MySettings(**app_settings(section), greeting=section.string("greeting"))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phpvoip.settings import Section

__all__ = ["AppSettings", "DEFAULT_PORTS", "app_settings", "parse_settings", "port_range"]

DEFAULT_PORTS = "31100-31199"


@dataclass(frozen=True, kw_only=True)
class AppSettings:
    """`number` to answer on; RTP `ports` (inclusive range) on `address`; `weight`
    among the modules; `max_duration` seconds before the application hangs up."""

    number: str
    address: str = "127.0.0.1"
    ports: tuple[int, int] = (31100, 31199)
    weight: int = 80
    max_duration: float = 3600.0


def port_range(section: Section, name: str, default: str) -> tuple[int, int]:
    """An inclusive ``"low-high"`` range of RTP ports (or one even port)."""
    text = section.string(name, default)
    low, sep, high = text.partition("-")
    try:
        first, last = int(low), int(high if sep else low)
    except ValueError:
        raise section.error(name, f"must be a port range like {default!r}, not {text!r}") from None
    if not 1 <= first <= last <= 65535:
        raise section.error(name, f"must be a range of ports 1-65535, low first, not {text!r}")
    if first == last and first % 2:
        raise section.error(name, f"needs an even port (RTP, RFC 3550 §11), not {text!r}")
    return first, last


def app_settings(section: Section, ports: str = DEFAULT_PORTS, weight: int = 80,
                 max_duration: float = 3600.0) -> dict[str, Any]:
    """The shared keys of an application's section, as keyword arguments for its
    settings class; the defaults given here are the application's own."""
    return {
        "number": section.string("number"),
        "address": section.string("address", "127.0.0.1"),
        "ports": port_range(section, "ports", ports),
        "weight": section.integer("weight", weight),
        "max_duration": float(section.number("max_duration", max_duration, minimum=1)),
    }


def parse_settings(section: Section) -> AppSettings:
    """For an application that has no keys of its own."""
    return AppSettings(**app_settings(section))
