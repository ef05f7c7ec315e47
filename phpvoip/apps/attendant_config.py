"""The auto attendant's config: menus, actions, prompts, direct dialling, hours.

Everything is checked when the file is read, so a menu that names a sub-menu
nobody defined, a digit that is not a key on a phone or a prompt no directory
provides is a ``FILE: KEY: problem`` error at start (or reload), never a caller
stuck in silence. The smallest config (DESIGN.md) is::

    - type: attendant
      number: "800"
      menu: {"1": "1001"}

`menu` is either that short form (digit -> action) or a full menu (``greeting``,
``options``, ``timeout``, ...); `menus` holds named sub-menus of the full form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phpvoip.apps.hours import BusinessHours, parse_hours
from phpvoip.apps.settings import AppSettings, app_settings
from phpvoip.settings import ConfigError, Section

__all__ = [
    "Action", "AttendantSettings", "DirectDial", "Menu", "parse_settings",
]

KEYS = "0123456789*#"
MAIN = "main"
CLOSED = "closed"
# What each kind of action does (for the docs, the manhole and error messages).
KINDS = {
    "dial": "reach a number through the router (extension, queue, line, app); back to the menu if it fails",
    "transfer": "blind transfer through the router: the attendant is out of the call at once",
    "menu": "go to a named sub-menu",
    "operator": "reach the operator",
    "repeat": "play this menu again",
    "hangup": "say goodbye and hang up",
}
_MENU_KEYS = ("greeting", "options", "timeout", "retries", "timeout_retries", "invalid_retries",
              "direct_dial", "direct_dial_max")

Prompt = tuple[str, ...]


@dataclass(frozen=True)
class Action:
    """What a digit does: `kind` (one of KINDS) and its number or menu name."""

    kind: str
    target: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.target}".strip()


@dataclass(frozen=True)
class Menu:
    """One menu: what it says, what each digit does and how patient it is."""

    name: str
    greeting: Prompt
    options: dict[str, Action]
    timeout: float = 10.0
    timeout_retries: int = 3
    invalid_retries: int = 3
    direct_dial: DirectDial | None = None  # None: the attendant's


@dataclass(frozen=True)
class DirectDial:
    """Which digit strings typed at a menu are numbers to dial directly.

    Patterns use X (any digit), N (2-9), Z (1-9) and literal digits, so they know
    both when a prefix can still become a number and when a number is complete.
    A regular expression cannot tell the first: typed digits are taken while they
    keep coming (up to `max_digits`) and then matched whole."""

    patterns: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    max_digits: int = 10

    @property
    def enabled(self) -> bool:
        return bool(self.patterns) or self.regex is not None

    def could_start(self, digits: str) -> bool:
        """Whether `digits` is (or may still become) a number to dial directly."""
        if self.regex is not None and len(digits) <= self.max_digits and digits.isdigit():
            return True
        return any(len(digits) <= len(p) and _fit(p, digits) for p in self.patterns)

    def matches(self, digits: str) -> bool:
        """Whether `digits` is a whole number to dial."""
        if self.regex is not None and self.regex.fullmatch(digits):
            return True
        return any(len(p) == len(digits) and _fit(p, digits) for p in self.patterns)

    def complete(self, digits: str) -> bool:
        """Whether `digits` is a number no further digit could extend."""
        return self.matches(digits) and not any(
            self.could_start(digits + d) for d in "0123456789") and self.regex is None

    def describe(self) -> str:
        parts = list(self.patterns) + ([f"/{self.regex.pattern}/"] if self.regex is not None else [])
        return ", ".join(parts) or "off"


def _fit(pattern: str, digits: str) -> bool:
    """Whether `digits` fits the start of `pattern` (which is at least as long)."""
    return all(_fits(pattern[i], d) for i, d in enumerate(digits))


def _fits(pattern_char: str, digit: str) -> bool:
    if pattern_char == "X":
        return digit.isdigit()
    if pattern_char == "N":
        return digit in "23456789"
    if pattern_char == "Z":
        return digit in "123456789"
    return pattern_char == digit


@dataclass(frozen=True, kw_only=True)
class AttendantSettings(AppSettings):
    """The shared application keys plus the menus and how they behave."""

    menus: dict[str, Menu]
    operator: str | None = None
    direct_dial: DirectDial = field(default_factory=DirectDial)
    inter_digit_timeout: float = 2.0
    hours: BusinessHours | None = None
    closed_menu: str = CLOSED
    prompts: dict[str, Prompt] = field(default_factory=dict)
    ring_timeout: float = 30.0


DEFAULT_PROMPTS: dict[str, Prompt] = {
    "invalid": ("invalid",),
    "timeout": ("no-input",),
    "goodbye": ("goodbye",),
    "unavailable": ("unavailable",),
    "transferring": ("transferring",),
}


def _prompt_ok(item: str) -> str | None:
    """Why `item` cannot be played, or None when it can."""
    from phpvoip.media import prompts

    if all(c.isalnum() or c in "-_" for c in item):
        if item in prompts.NAMES or prompts.exists(item):
            return None
        return f"{item!r} is not a prompt name (known: {', '.join(prompts.NAMES[:10])}, ...) nor a file"
    if not Path(item).is_file():
        return f"{item!r}: no such WAV file"
    return None


def parse_prompt(section: Section, name: str, default: Prompt) -> Prompt:
    """A prompt name, a WAV path or a list of them; an empty list says nothing."""
    if not section.has(name):
        section.raw(name, None)
        return default
    value = section.raw(name, [])
    items = section.strings(name) if value != [] else []
    for i, item in enumerate(items):
        problem = _prompt_ok(item)
        if problem is not None:
            raise ConfigError(section.file, section.key(name) + (f"[{i}]" if isinstance(value, list) else ""),
                              problem)
    return tuple(items)


def _action(section: Section, key: str, value: Any) -> Action:
    """One option's value: a number, a word, or a one-key mapping."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        if value in ("operator", "repeat", "hangup"):
            return Action(value)
        if not value or not all(c in KEYS + "+" for c in value):
            raise section.error(key, f"{value!r} is not a number to dial nor one of operator, repeat, hangup "
                                     "(or use {menu: NAME}, {number: N}, {app: N}, {transfer: N})")
        return Action("dial", value)
    if isinstance(value, dict) and len(value) == 1:
        [(kind, target)] = value.items()
        words = {"menu": "menu", "number": "dial", "app": "dial", "transfer": "transfer"}
        if kind in words and isinstance(target, (str, int)) and not isinstance(target, bool) and str(target):
            return Action(words[kind], str(target))
    raise section.error(key, "must be a number, operator, repeat, hangup or one of "
                             "{menu: NAME}, {number: N}, {app: N}, {transfer: N}")


def _menu(section: Section, name: str, defaults: dict[str, Any], short: bool) -> Menu:
    direct: DirectDial | None = None
    if short:
        options_section, greeting = section, defaults["greeting"]
        timeout = defaults["timeout"]
        timeout_retries, invalid_retries = defaults["timeout_retries"], defaults["invalid_retries"]
    else:
        greeting = parse_prompt(section, "greeting", defaults["greeting"])
        options_section = section.section("options")
        timeout = float(section.number("timeout", defaults["timeout"], minimum=0.5))
        # A menu's own `retries` sets both of its limits; otherwise the attendant's hold.
        own = section.has("retries")
        retries = section.integer("retries", defaults["retries"], minimum=1)
        timeout_retries = section.integer("timeout_retries", retries if own else defaults["timeout_retries"],
                                          minimum=1)
        invalid_retries = section.integer("invalid_retries", retries if own else defaults["invalid_retries"],
                                          minimum=1)
        direct = _menu_direct_dial(section)
        section.check_unknown()
    options: dict[str, Action] = {}
    for key, value in options_section.data.items():
        digit = str(key)
        options_section.raw(key)
        if len(digit) != 1 or digit not in KEYS:
            raise options_section.error(digit, "an option is one key of a phone: 0-9, * or #")
        options[digit] = _action(options_section, digit, value)
    return Menu(name, greeting, options, timeout, timeout_retries, invalid_retries, direct)


def _menu_direct_dial(section: Section) -> DirectDial | None:
    """A menu's own `direct_dial`: patterns as the attendant's, or false (or [])
    for none in this menu; absent, the attendant's apply."""
    if not section.has("direct_dial"):
        return None
    value = section.raw("direct_dial")
    if value is False or value == []:
        return DirectDial()
    if value is True:
        raise section.error("direct_dial", "patterns (as the attendant's), or false for none in this menu")
    return _direct_dial(section)


def _is_short(data: Any) -> bool:
    return isinstance(data, dict) and not any(str(k) in _MENU_KEYS for k in data)


def _direct_dial(section: Section) -> DirectDial:
    values = section.strings("direct_dial", [])
    max_digits = section.integer("direct_dial_max", 10, minimum=1, maximum=32)
    patterns, regex = [], None
    for i, text in enumerate(values):
        key = "direct_dial" + (f"[{i}]" if len(values) > 1 else "")
        if text and all(c in "0123456789XNZ*#" for c in text):
            patterns.append(text)
            continue
        if regex is not None:
            raise ConfigError(section.file, section.key(key), "only one regular expression is allowed")
        try:
            regex = re.compile(text)
        except re.error as e:
            raise ConfigError(section.file, section.key(key),
                              f"{text!r} is neither a pattern of digits and X, N, Z nor a regular "
                              f"expression ({e})") from None
    return DirectDial(tuple(patterns), regex, max_digits)


def parse_settings(section: Section) -> AttendantSettings:
    """Read one ``type: attendant`` module; every mistake names its key."""
    timeout = float(section.number("timeout", 10.0, minimum=0.5))
    retries = section.integer("retries", 3, minimum=1)
    defaults = {
        "greeting": ("menu",),
        "timeout": timeout,
        "retries": retries,
        "timeout_retries": section.integer("timeout_retries", retries, minimum=1),
        "invalid_retries": section.integer("invalid_retries", retries, minimum=1),
    }
    prompts_section = section.section("prompts", {})
    prompts = {name: parse_prompt(prompts_section, name, default)
               for name, default in DEFAULT_PROMPTS.items()}
    prompts_section.check_unknown()
    menus: dict[str, Menu] = {}
    main_data = section.raw("menu")
    main = section.section("menu")
    menus[MAIN] = _menu(main, MAIN, {**defaults, "greeting": ("greeting", "menu")}, _is_short(main_data))
    named = section.section("menus", {})
    for key in named.data:
        name = str(key)
        if name == MAIN:
            raise named.error(name, f"{MAIN!r} is the top menu's name (set it with 'menu:')")
        data = named.raw(key)
        menus[name] = _menu(named.section(key), name, defaults, _is_short(data))
    operator = section.string("operator", None)
    hours = None
    closed_menu = CLOSED
    if section.has("hours"):
        hours_section = section.section("hours")
        closed_menu = hours_section.string("closed_menu", CLOSED)
        hours = parse_hours(hours_section)
        if closed_menu not in menus:
            if closed_menu != CLOSED:
                raise hours_section.error("closed_menu", f"no menu {closed_menu!r} under menus "
                                                        f"(there are: {', '.join(menus)})")
            # The built-in out-of-hours menu: say so and say goodbye.
            menus[CLOSED] = Menu(CLOSED, ("closed",), {}, timeout, 1, 1, DirectDial())
    settings = AttendantSettings(
        **app_settings(section),
        menus=menus,
        operator=operator,
        direct_dial=_direct_dial(section),
        inter_digit_timeout=float(section.number("inter_digit_timeout", 2.0, minimum=0.2)),
        hours=hours,
        closed_menu=closed_menu,
        prompts=prompts,
        ring_timeout=float(section.number("ring_timeout", 30.0, minimum=1)),
    )
    _check_references(section, settings)
    return settings


def _check_references(section: Section, settings: AttendantSettings) -> None:
    """Every {menu: X} names a menu; `operator` is set where an option uses it."""
    for menu in settings.menus.values():
        raw = _raw_menu(section, menu.name)
        where = "menu" if menu.name == MAIN else f"menus.{menu.name}"
        prefix = f"{where}." if _is_short(raw) else f"{where}.options."
        for digit, action in menu.options.items():
            if action.kind == "menu" and action.target not in settings.menus:
                raise ConfigError(section.file, section.key(prefix + digit),
                                  f"no menu {action.target!r} (there are: {', '.join(settings.menus)})")
            if action.kind == "operator" and settings.operator is None:
                raise ConfigError(section.file, section.key(prefix + digit),
                                  "'operator' needs the attendant's 'operator:' number to be set")


def _raw_menu(section: Section, name: str) -> Any:
    if name == MAIN:
        return section.data.get("menu")
    return (section.data.get("menus") or {}).get(name)
