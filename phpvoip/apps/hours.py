"""Business hours: when a company answers, in its own timezone.

An attendant picks its menu by asking `BusinessHours.is_open(now)` once per call,
`now` being wall-clock seconds from an injected clock (so tests fix the time). The
week is a table of opening ranges per weekday in a named timezone (zoneinfo, so
summer time moves with the zone); a range whose end is not after its start runs
past midnight into the next day ("22:00-06:00" on Friday covers Saturday morning).
Holidays are local dates on which nothing is open, whatever the table says.

Config (a mapping under ``hours:``)::

    timezone: Europe/Berlin
    open:
      mon-fri: "09:00-17:00"
      sat: ["10:00-12:00", "14:00-16:00"]
    holidays: ["2026-12-25", "2026-12-26"]
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field

from phpvoip.settings import Section

__all__ = ["BusinessHours", "DAYS", "parse_hours"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_LENGTH = 24 * 60


@dataclass(frozen=True)
class BusinessHours:
    """Opening ranges per weekday (Monday = 0) in minutes since local midnight."""

    timezone: str = "UTC"
    week: tuple[tuple[tuple[int, int], ...], ...] = ((),) * 7
    holidays: frozenset[dt.date] = field(default_factory=frozenset)

    def local(self, now: float) -> dt.datetime:
        """`now` (wall-clock seconds) as a time in this timezone."""
        return dt.datetime.fromtimestamp(now, zoneinfo.ZoneInfo(self.timezone))

    def is_open(self, now: float) -> bool:
        """Whether `now` (wall-clock seconds) falls in an opening range and not on
        a holiday."""
        local = self.local(now)
        if local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        for start, end in self.week[day]:
            if start < end and start <= minute < end:
                return True
            if end <= start and minute >= start:  # runs past midnight: its evening part
                return True
        for start, end in self.week[(day - 1) % 7]:
            if end <= start and minute < end:  # yesterday's range running into today
                return True
        return False

    def describe(self) -> str:
        """A short text for the manhole: the ranges by day and the holidays."""
        parts = []
        for name, ranges in zip(DAYS, self.week, strict=True):
            if ranges:
                parts.append(name + " " + ",".join(f"{_hhmm(s)}-{_hhmm(e)}" for s, e in ranges))
        text = "; ".join(parts) or "never open"
        if self.holidays:
            text += f"; {len(self.holidays)} holiday(s)"
        return f"{text} ({self.timezone})"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _days(section: Section, key: str) -> list[int]:
    """'mon', 'mon-fri', 'sat,sun', 'daily' -> weekday numbers."""
    text = key.strip().lower()
    if text in ("daily", "every day", "all"):
        return list(range(7))
    days: list[int] = []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        if first not in DAYS or (sep and last not in DAYS):
            raise section.error(key, f"is not a day or range of days (like mon, mon-fri, sat,sun, daily), "
                                     f"days are {', '.join(DAYS)}")
        a, b = DAYS.index(first), DAYS.index(last if sep else first)
        days.extend((a + i) % 7 for i in range((b - a) % 7 + 1))
    return days


def _minute(section: Section, key: str, text: str) -> int:
    hours, sep, minutes = text.strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise section.error(key, f"{text!r} is not a time HH:MM")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > _DAY_LENGTH:
        raise section.error(key, f"{text!r} is not a time of day (00:00-24:00)")
    return value


def _range(section: Section, key: str, text: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    if not sep:
        raise section.error(key, f"{text!r} is not a range of times like '09:00-17:00'")
    first, last = _minute(section, key, start), _minute(section, key, end)
    if first == last or first == _DAY_LENGTH:
        raise section.error(key, f"{text!r} is an empty range")
    return first, last


def parse_hours(section: Section) -> BusinessHours:
    """Read an ``hours:`` mapping; every mistake names its key."""
    zone = section.string("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise section.error("timezone", f"{zone!r} is not a known timezone (e.g. Europe/Berlin)") from None
    week: list[list[tuple[int, int]]] = [[] for _ in DAYS]
    opening = section.section("open")
    if not opening.data:
        raise section.error("open", "is required: the opening ranges by day, e.g. {mon-fri: '09:00-17:00'}")
    for key in opening.data:
        name = str(key)
        values = opening.strings(key)
        for day in _days(opening, name):
            for text in values:
                week[day].append(_range(opening, name, text))
    holidays: set[dt.date] = set()
    for i, item in enumerate(section.items("holidays")):
        if isinstance(item, dt.date) and not isinstance(item, dt.datetime):
            holidays.add(item)  # YAML reads an unquoted 2026-12-25 as a date
            continue
        try:
            holidays.add(dt.date.fromisoformat(str(item)))
        except ValueError:
            raise section.error(f"holidays[{i}]", f"{item!r} is not a date YYYY-MM-DD") from None
    section.check_unknown()
    return BusinessHours(zone, tuple(tuple(sorted(r)) for r in week), frozenset(holidays))
