"""The attendant's config: business hours in a timezone, holidays, direct-dial patterns, and
errors that name the file, the key and the problem."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from phpvoip.apps.attendant_config import Action, DirectDial, parse_settings
from phpvoip.apps.hours import parse_hours
from phpvoip.config import load_text
from phpvoip.settings import ConfigError, Section


def at(text: str, zone: str = "Europe/Berlin") -> float:
    """Wall-clock seconds of a local time `text` (ISO) in `zone`."""
    from zoneinfo import ZoneInfo

    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def hours(**data: Any):
    return parse_hours(Section("h.yaml", "modules[0].hours", data))


def settings(**data: Any):
    return parse_settings(Section("a.yaml", "modules[0]", {"number": "800", "menu": {"1": "1001"}, **data}))


def error(**data: Any) -> str:
    with pytest.raises(ConfigError) as e:
        settings(**data)
    return str(e.value)


def test_weekday_ranges_in_the_named_timezone() -> None:
    """Mon-Fri 09:00-17:00 Berlin: open at 09:00 local in winter and summer, closed at 17:00 and weekends."""
    h = hours(timezone="Europe/Berlin", open={"mon-fri": "09:00-17:00"})
    assert h.is_open(at("2026-12-01T09:00"))  # Tuesday, UTC+1
    assert h.is_open(at("2026-07-01T09:00"))  # Wednesday, UTC+2
    assert not h.is_open(at("2026-07-01T08:59"))
    assert not h.is_open(at("2026-12-01T17:00"))
    assert not h.is_open(at("2026-12-05T12:00"))  # Saturday
    # 08:30 UTC is 09:30 in Berlin but 03:30 in New York.
    utc = dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC).timestamp()
    assert h.is_open(utc)
    assert not hours(timezone="America/New_York", open={"mon-fri": "09:00-17:00"}).is_open(utc)


def test_several_ranges_lists_of_days_and_ranges_past_midnight() -> None:
    """sat,sun with two ranges; a Friday range 22:00-02:00 covers early Saturday; daily; 24:00."""
    h = hours(open={"sat,sun": ["10:00-12:00", "14:00-16:00"], "fri": "22:00-02:00", "mon": "00:00-24:00"},
              timezone="UTC")
    assert h.is_open(at("2026-12-05T11:00", "UTC")) and not h.is_open(at("2026-12-05T13:00", "UTC"))
    assert h.is_open(at("2026-12-06T15:59", "UTC"))
    assert h.is_open(at("2026-12-04T23:30", "UTC")) and h.is_open(at("2026-12-05T01:59", "UTC"))
    assert not h.is_open(at("2026-12-05T02:00", "UTC"))
    assert h.is_open(at("2026-12-07T00:00", "UTC")) and h.is_open(at("2026-12-07T23:59", "UTC"))
    assert hours(open={"daily": "08:00-09:00"}).week == (((480, 540),),) * 7
    assert hours(open={"fri-mon": "08:00-09:00"}).week[1] == ()


def test_holidays_close_the_whole_day() -> None:
    """A listed date (string or YAML date) is closed whatever the week says."""
    h = hours(timezone="Europe/Berlin", open={"mon-fri": "09:00-17:00"},
              holidays=["2026-12-24", dt.date(2026, 12, 25)])
    assert not h.is_open(at("2026-12-24T10:00")) and not h.is_open(at("2026-12-25T10:00"))
    assert h.is_open(at("2026-12-23T10:00"))
    assert "2 holiday(s)" in h.describe() and "mon 09:00-17:00" in h.describe()


def test_direct_dial_patterns() -> None:
    """X, N, Z and literal digits: prefixes may still grow, whole matches are complete."""
    d = DirectDial(("1XXX", "2NZ"))
    assert d.could_start("1") and d.could_start("100") and not d.could_start("10000")
    assert d.matches("1002") and d.complete("1002") and not d.matches("100")
    assert d.matches("229") and not d.matches("219") and not d.matches("220")
    assert not d.could_start("3")
    both = DirectDial(("1XX", "1XXX"))
    assert both.matches("100") and not both.complete("100") and both.complete("1000")


def test_minimal_and_full_config() -> None:
    """The short form, a full menu, sub-menus, every kind of action and the shared app keys."""
    s = settings()
    assert s.menus["main"].options == {"1": Action("dial", "1001")}
    assert s.menus["main"].greeting == ("greeting", "menu")
    assert (s.menus["main"].timeout, s.menus["main"].timeout_retries, s.inter_digit_timeout) == (10.0, 3, 2.0)
    assert s.number == "800" and s.ports == (31100, 31199) and s.operator is None
    s = settings(operator=1001, direct_dial=["1XXX", "2XX"], timeout=5, invalid_retries=2,
                 menu={"greeting": ["greeting", "menu"], "retries": 4,
                       "options": {1: {"menu": "sales"}, "2": {"app": 9196}, "3": {"number": "0049301234"},
                                   "4": {"transfer": "700"}, "0": "operator", "*": "repeat", "#": "hangup"}},
                 menus={"sales": {"1": "2001"}})
    main = s.menus["main"]
    assert main.options["1"] == Action("menu", "sales") and main.options["2"] == Action("dial", "9196")
    assert main.options["4"] == Action("transfer", "700") and main.options["#"] == Action("hangup")
    assert (main.timeout, main.timeout_retries, main.invalid_retries) == (5.0, 4, 4)
    assert s.menus["sales"].invalid_retries == 2 and s.menus["sales"].greeting == ("menu",)
    assert s.direct_dial.patterns == ("1XXX", "2XX") and s.operator == "1001"


@pytest.mark.parametrize(("data", "key", "problem"), [
    ({"menu": {"12": "1001"}}, "modules[0].menu.12", "one key of a phone"),
    ({"menu": {"1": "ten"}}, "modules[0].menu.1", "not a number to dial"),
    ({"menu": {"1": {"menu": "nowhere"}}}, "modules[0].menu.1", "no menu 'nowhere'"),
    ({"menu": {"options": {"0": "operator"}}}, "modules[0].menu.options.0", "'operator:' number"),
    ({"menu": {"options": {"1": "1"}, "timeout": "long"}}, "modules[0].menu.timeout", "must be a number"),
    ({"menu": {"options": {"1": "1"}, "colour": 1}}, "modules[0].menu.colour", "unknown key"),
    ({"menus": {"main": {"1": "1"}}}, "modules[0].menus.main", "top menu"),
    ({"direct_dial": "(1"}, "modules[0].direct_dial", "neither a pattern"),
    ({"menu": {"options": {"1": "1"}, "direct_dial": True}}, "modules[0].menu.direct_dial", "false for none"),
    ({"menu": {"options": {"1": "1"}, "direct_dial": "(2"}}, "modules[0].menu.direct_dial",
     "neither a pattern"),
    ({"prompts": {"invalid": "no-such-prompt"}}, "modules[0].prompts.invalid", "not a prompt name"),
    ({"prompts": {"goodbye": ["goodbye", "/no/such.wav"]}}, "modules[0].prompts.goodbye[1]", "no such WAV"),
    ({"prompts": {"bye": "goodbye"}}, "modules[0].prompts.bye", "unknown key"),
    ({"hours": {"open": {"mon": "9-17"}}}, "modules[0].hours.open.mon", "not a time HH:MM"),
    ({"hours": {"open": {"mon": "09:00-09:00"}}}, "modules[0].hours.open.mon", "empty range"),
    ({"hours": {"open": {"monday": "09:00-17:00"}}}, "modules[0].hours.open.monday", "not a day"),
    ({"hours": {"open": {"mon": "09:00-25:00"}}}, "modules[0].hours.open.mon", "not a time of day"),
    ({"hours": {"timezone": "Mars/Olympus", "open": {"mon": "09:00-17:00"}}}, "modules[0].hours.timezone",
     "not a known timezone"),
    ({"hours": {"open": {"mon": "09:00-17:00"}, "holidays": ["12/25"]}}, "modules[0].hours.holidays[0]",
     "not a date"),
    ({"hours": {"open": {"mon": "09:00-17:00"}, "closed_menu": "night"}}, "modules[0].hours.closed_menu",
     "no menu 'night'"),
    ({"hours": {}}, "modules[0].hours.open", "is required"),
])
def test_config_errors_name_file_key_and_problem(data: dict[str, Any], key: str, problem: str) -> None:
    """Each mistake is refused with 'a.yaml: <key>: <problem>'."""
    message = error(**data)
    assert message.startswith(f"a.yaml: {key}: "), message
    assert problem in message


def test_whole_file_with_an_attendant_loads() -> None:
    """The DESIGN.md minimal config loads through the config loader and the plugin."""
    text = "modules:\n  - type: attendant\n    number: '800'\n    menu: {'1': '1001'}\n"
    config = load_text(text, "x.yaml")
    [module] = config.modules
    assert module.type == "attendant"
    assert module.settings.menus["main"].options["1"] == Action("dial", "1001")
    with pytest.raises(ConfigError, match=r"x.yaml: modules\[0\].menu: is required"):
        load_text("modules:\n  - type: attendant\n    number: '800'\n", "x.yaml")


def test_same_text_same_settings() -> None:
    """Two reads of one config are equal, so a reload keeps the running attendant untouched."""
    def data() -> dict[str, Any]:
        return {"number": "800", "menu": {"1": "1001"}, "direct_dial": ["1XXX", r"2\d+"],
                "hours": {"open": {"mon": "09:00-10:00"}, "holidays": ["2026-12-25"]}}

    first = parse_settings(Section("a.yaml", "modules[0]", data()))
    assert first == parse_settings(Section("a.yaml", "modules[0]", data()))
    changed = data()
    changed["menu"] = {"1": "1002"}
    assert first != parse_settings(Section("a.yaml", "modules[0]", changed))
