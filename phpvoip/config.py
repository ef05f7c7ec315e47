"""The YAML configuration: read, validate, and turn into plain config objects.

Every problem is reported as ``FILE: KEY.PATH: what is wrong`` and found before the
service binds a socket, so a bad config never half-starts a switch.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phpvoip.sip.address import Address
from phpvoip.sip.timers import Timers

__all__ = [
    "Config",
    "ConfigError",
    "ModuleConfig",
    "Section",
    "CallSettings",
    "load",
    "load_text",
    "register_module_type",
]

_MISSING: Any = object()


class ConfigError(Exception):
    """A config problem: which file, which key path, what is wrong."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}: {problem}" if key else f"{file}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


class Section:
    """A mapping in the config, with typed getters that report the key path."""

    def __init__(self, file: str, path: str, data: Any) -> None:
        self.file = file
        self.path = path
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(file, path or "(top level)", f"must be a mapping, not {_kind(data)}")
        self.data = data
        self._read: set[str] = set()

    def key(self, name: str | int) -> str:
        if isinstance(name, int):
            return f"{self.path}[{name}]"
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str | int, problem: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), problem)

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        self._read.add(name)
        if name not in self.data or self.data[name] is None:
            if default is _MISSING:
                raise self.error(name, "is required")
            return default
        return self.data[name]

    def string(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.error(name, f"must be a string, not {_kind(value)}")
        return str(value)

    def number(
        self,
        name: str,
        default: Any = _MISSING,
        minimum: float | None = None,
        maximum: float | None = None,
        integer: bool = False,
    ) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise self.error(name, f"must be {'an integer' if integer else 'a number'}, not {_kind(value)}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be at least {minimum}, not {value}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be at most {maximum}, not {value}")
        return value

    def integer(
        self, name: str, default: Any = _MISSING, minimum: int | None = None, maximum: int | None = None
    ) -> Any:
        return self.number(name, default, minimum, maximum, integer=True)

    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, not {_kind(value)}")
        return value

    def strings(self, name: str, default: Any = _MISSING) -> Any:
        """A list of strings (a single string is taken as a list of one)."""
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return [str(value)]
        if not isinstance(value, list):
            raise self.error(name, f"must be a list, not {_kind(value)}")
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                raise ConfigError(self.file, f"{self.key(name)}[{i}]", f"must be a string, not {_kind(item)}")
        return [str(item) for item in value]

    def peer_address(self, name: str) -> Address:
        """A peer's transport address, ``[udp:|tcp:]IP[:PORT]`` (port 5060 by
        default, IPv6 in brackets). Host names are refused: nothing is resolved."""
        text = self.string(name)
        transport = "udp"
        if text[:4].lower() in ("udp:", "tcp:"):
            transport, text = text[:3].lower(), text[4:]
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ("5060" if not rest else "x")
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        else:
            host, port_text = text, "5060"
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise self.error(name, f"{host!r} is not an IP address (names are not resolved)") from None
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise self.error(name, f"{port_text!r} is not a port")
        return Address(transport, host, int(port_text))

    def section(self, name: str, default: Any = _MISSING) -> Section:
        value = self.raw(name, {} if default is _MISSING else default)
        return Section(self.file, self.key(name), value)

    def items(self, name: str) -> list[Any]:
        value = self.raw(name, [])
        if not isinstance(value, list):
            raise self.error(name, f"must be a list, not {_kind(value)}")
        return value

    def check_unknown(self) -> None:
        """Refuse keys nobody read: most often a typo."""
        for name in self.data:
            if name not in self._read:
                known = ", ".join(sorted(self._read)) or "none"
                raise self.error(str(name), f"unknown key (known here: {known})")


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


_LISTEN = re.compile(r"(udp|tcp):(\[[0-9A-Fa-f:.]+\]|[0-9.]+):(\d{1,5})\Z", re.I)


def parse_listen(section: Section, index: int, text: str) -> Address:
    m = _LISTEN.match(text)
    if m is None:
        raise ConfigError(
            section.file,
            f"{section.key('listen')}[{index}]",
            f"{text!r} is not TRANSPORT:IP:PORT (transport udp or tcp, an IP address, a port)",
        )
    transport, host, port = m.group(1).lower(), m.group(2).strip("[]"), int(m.group(3))
    try:
        ipaddress.ip_address(host)
    except ValueError:
        where = f"{section.key('listen')}[{index}]"
        raise ConfigError(section.file, where, f"{host!r} is not an IP address") from None
    if not 0 <= port <= 65535:
        raise ConfigError(section.file, f"{section.key('listen')}[{index}]", f"port {port} is out of range")
    return Address(transport, host, port)


@dataclass(frozen=True)
class SipSettings:
    listen: list[Address]
    domain: str
    timers: Timers
    max_message_size: int = 65535
    user_agent: str = "phpvoip"


@dataclass(frozen=True)
class CallSettings:
    """How long calls may ring and last, and how their legs are kept alive."""

    ring_timeout: float = 60.0
    max_duration: float = 4 * 3600.0
    keepalive_interval: float = 30.0


@dataclass(frozen=True)
class ModuleConfig:
    """One entry of ``modules:``; `settings` is what the type's parser returned."""

    type: str
    name: str
    settings: Any


@dataclass(frozen=True)
class StorageSettings:
    kind: str  # "memory" or "sqlite"
    path: str | None = None


LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


@dataclass
class Config:
    file: str
    sip: SipSettings
    storage: StorageSettings
    calls: CallSettings
    modules: list[ModuleConfig] = field(default_factory=list)
    routes: list[Any] = field(default_factory=list)
    log_level: str = "info"


# type name -> (parser(section) returning the settings, factory(name, settings) -> IModule)
_MODULE_TYPES: dict[str, tuple[Callable[[Section], Any], Callable[[str, Any], Any] | None]] = {}


def register_module_type(
    name: str, parser: Callable[[Section], Any], factory: Callable[[str, Any], Any] | None = None
) -> None:
    """Let a module type validate its own config section, and say how to build it."""
    _MODULE_TYPES[name] = (parser, factory)


def build_module(module: ModuleConfig) -> Any:
    """Create the module a `ModuleConfig` describes."""
    _parser, factory = _MODULE_TYPES[module.type]
    if factory is None:
        raise ValueError(f"module type {module.type!r} has no factory")
    return factory(module.name, module.settings)


def module_types() -> list[str]:
    _load_builtin_modules()
    return sorted(_MODULE_TYPES)


def _load_builtin_modules() -> None:
    # Importing the packages registers their module types.
    import phpvoip.apps
    import phpvoip.modules  # noqa: F401


# Sections the design reserves for features this version does not have yet.
_NOT_YET = {
    "media": "RTP media relay",
    "manhole": "the manhole shell",
    "metrics": "the metrics endpoint",
}


def load(path: str | Path) -> Config:
    """Read and validate a config file."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(file, "", f"cannot read: {e.strerror or e}") from None
    return load_text(text, file)


def load_text(text: str, file: str = "<config>") -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(file, "", f"not valid YAML: {where}{getattr(e, 'problem', e)}") from None
    top = Section(file, "", data)
    sip = _sip_settings(top.section("sip"))
    storage = _storage(top, "storage")
    calls = _call_settings(top.section("calls", {}))
    modules = _modules(top)
    routes = _routes(top)
    log_level = top.string("log_level", "info")
    if log_level not in LOG_LEVELS:
        raise top.error("log_level", f"{log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    for name, feature in _NOT_YET.items():
        if top.has(name):
            top.raw(name)
            raise top.error(name, f"{feature} is not available in this version of phpvoip")
    top.check_unknown()
    return Config(file, sip, storage, calls, modules, routes, log_level)


def _sip_settings(section: Section) -> SipSettings:
    listen_texts = section.strings("listen", ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"])
    if not listen_texts:
        raise section.error("listen", "must name at least one address")
    listen = [parse_listen(section, i, text) for i, text in enumerate(listen_texts)]
    seen: set[Address] = set()
    for i, address in enumerate(listen):
        if address in seen:
            raise ConfigError(section.file, f"{section.key('listen')}[{i}]", f"{address} is listed twice")
        seen.add(address)
    domain = section.string("domain", listen[0].host)
    if not re.match(r"[A-Za-z0-9\-.:\[\]]+\Z", domain):
        raise section.error("domain", f"{domain!r} is not a host name or address")
    timers_section = section.section("timers", {})
    t1 = timers_section.number("t1", 0.5, minimum=0.01, maximum=60)
    t2 = timers_section.number("t2", 4.0, minimum=0.01, maximum=600)
    t4 = timers_section.number("t4", 5.0, minimum=0.01, maximum=600)
    if t2 < t1:
        raise timers_section.error("t2", f"must not be below t1 ({t1})")
    timers_section.check_unknown()
    max_size = section.integer("max_message_size", 65535, minimum=1500, maximum=65535)
    user_agent = section.string("user_agent", "phpvoip")
    section.check_unknown()
    return SipSettings(listen, domain, Timers(float(t1), float(t2), float(t4)), max_size, user_agent)


def _storage(top: Section, name: str) -> StorageSettings:
    text = top.string(name, "memory")
    kind, _, rest = text.partition(":")
    # `memory` is also accepted without its colon: in YAML a bare `memory:` at the
    # end of a line starts a mapping.
    if kind == "memory" and not rest:
        return StorageSettings("memory")
    if kind == "sqlite" and rest:
        return StorageSettings("sqlite", rest)
    raise top.error(name, f"{text!r} is not 'memory:' or 'sqlite:PATH'")


def _call_settings(section: Section) -> CallSettings:
    settings = CallSettings(
        ring_timeout=float(section.number("ring_timeout", 60.0, minimum=1, maximum=3600)),
        max_duration=float(section.number("max_duration", 4 * 3600.0, minimum=1)),
        keepalive_interval=float(section.number("keepalive_interval", 30.0, minimum=0)),
    )
    section.check_unknown()
    return settings


def _modules(top: Section) -> list[ModuleConfig]:
    _load_builtin_modules()
    modules: list[ModuleConfig] = []
    names: set[str] = set()
    for i, item in enumerate(top.items("modules")):
        section = Section(top.file, top.key("modules") + f"[{i}]", item)
        type_name = section.string("type")
        entry = _MODULE_TYPES.get(type_name)
        if entry is None:
            known = ", ".join(sorted(_MODULE_TYPES)) or "none"
            raise section.error("type", f"unknown module type {type_name!r} (known: {known})")
        name = section.string("name", type_name if type_name not in names else f"{type_name}{i}")
        if name in names:
            raise section.error("name", f"another module is already named {name!r}")
        names.add(name)
        settings = entry[0](section)
        section.check_unknown()
        modules.append(ModuleConfig(type_name, name, settings))
    return modules


def _routes(top: Section) -> list[Any]:
    from phpvoip.router import Route, RouteError

    routes = []
    for i, item in enumerate(top.items("routes")):
        section = Section(top.file, top.key("routes") + f"[{i}]", item)
        fields = {k: section.string(k, "*" if k.startswith("in_") else None) for k in Route.FIELDS}
        section.check_unknown()
        try:
            routes.append(Route.from_fields(**fields))
        except RouteError as e:
            raise section.error(e.field, e.problem) from None
    return routes
