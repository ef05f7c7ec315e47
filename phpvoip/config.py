"""The YAML configuration: read, validate, and turn into plain config objects.

Every problem is reported as ``FILE: KEY.PATH: what is wrong`` and found before the
service binds a socket, so a bad config never half-starts a switch.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phpvoip.limits import LimitSettings, limit_settings
from phpvoip.mediaconfig import MediaSettings, media_settings
from phpvoip.moduletypes import DuplicateModuleType, find_module_types
from phpvoip.opsconfig import (
    CdrSettings,
    ConsoleSettings,
    LadderSettings,
    ManholeSettings,
    MetricsSettings,
    cdr_settings,
    console_settings,
    ladder_settings,
    manhole_settings,
    metrics_settings,
)
from phpvoip.settings import ConfigError, Section
from phpvoip.sip.address import Address
from phpvoip.sip.limits import DEFAULT_LIMITS, MessageLimits
from phpvoip.sip.timers import Timers

__all__ = [
    "Config",
    "ConfigError",
    "ModuleConfig",
    "Section",
    "CallSettings",
    "build_module",
    "load",
    "load_text",
    "module_types",
]

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
    user_agent: str = "phpvoip"  # User-Agent of requests, Server of answers; "" sends neither
    # max_headers, max_header_length, max_vias, max_sdp_size (phpvoip.sip.limits)
    limits: MessageLimits = DEFAULT_LIMITS


@dataclass(frozen=True)
class CallSettings:
    """How long calls may ring and last, and how their legs are kept alive."""

    ring_timeout: float = 60.0
    max_duration: float = 4 * 3600.0
    keepalive_interval: float = 30.0


@dataclass(frozen=True)
class ModuleConfig:
    """One entry of ``modules:``; `settings` is what the type's parser returned,
    `kind` the `IModuleType` plugin that parsed it and will build the module."""

    type: str
    name: str
    settings: Any
    kind: Any = None


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
    manhole: ManholeSettings | None = None
    metrics: MetricsSettings | None = None
    cdr: CdrSettings = field(default_factory=CdrSettings)
    ladders: LadderSettings = field(default_factory=LadderSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    console: ConsoleSettings | None = None
    prompts: str | None = None  # an operator's directory of prompts, searched before ours


def build_module(module: ModuleConfig) -> Any:
    """Create the module a `ModuleConfig` describes, with its type's factory."""
    return module.kind.build(module.name, module.settings)


def module_types() -> list[str]:
    """The names of every module type the plugins declare."""
    return sorted(find_module_types())


# Sections the design reserves for features this version does not have yet.
_NOT_YET: dict[str, str] = {}


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
    manhole = manhole_settings(top)
    metrics = metrics_settings(top)
    cdr = cdr_settings(top, storage.kind)
    ladders = ladder_settings(top)
    limits = limit_settings(top)
    media = media_settings(top)
    console = console_settings(top)
    prompts = top.string("prompts", None)
    if prompts is not None and not Path(prompts).is_dir():
        raise top.error("prompts", f"{prompts!r} is not a directory (of WAV prompts named like ours)")
    top.check_unknown()
    return Config(file, sip, storage, calls, modules, routes, log_level, manhole, metrics, cdr, ladders,
                  limits, media, console, prompts)


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
    user_agent = section.string("user_agent", "phpvoip").strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in user_agent):
        raise section.error("user_agent", "must be one line of printable text")
    limits = _message_limits(section)
    section.check_unknown()
    return SipSettings(listen, domain, Timers(float(t1), float(t2), float(t4)), max_size, user_agent,
                       limits=limits)


def _message_limits(section: Section) -> MessageLimits:
    """``sip:`` max_headers, max_header_length, max_vias, max_sdp_size, with floors
    that honest messages stay above (RFC 4475's longreq has 34 Vias)."""
    d = DEFAULT_LIMITS
    return MessageLimits(
        max_headers=section.integer("max_headers", d.max_headers, minimum=20, maximum=10000),
        max_header_length=section.integer(
            "max_header_length", d.max_header_length, minimum=256, maximum=65535
        ),
        max_vias=section.integer("max_vias", d.max_vias, minimum=5, maximum=1000),
        max_sdp_size=section.integer("max_sdp_size", d.max_sdp_size, minimum=512, maximum=65535),
    )


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
    items = top.items("modules")
    if not items:
        return []
    try:
        types = find_module_types()
    except DuplicateModuleType as e:
        raise top.error("modules", str(e)) from None
    modules: list[ModuleConfig] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        section = Section(top.file, top.key("modules") + f"[{i}]", item)
        type_name = section.string("type")
        kind = types.get(type_name)
        if kind is None:
            known = ", ".join(sorted(types)) or "none"
            raise section.error("type", f"unknown module type {type_name!r} (known: {known})")
        name = section.string("name", type_name if type_name not in names else f"{type_name}{i}")
        if name in names:
            raise section.error("name", f"another module is already named {name!r}")
        names.add(name)
        try:
            settings = kind.parse(section)
        except ConfigError:
            raise
        except Exception as e:
            # A plugin's parser that fails in its own way still names file and key.
            problem = f"module type {type_name!r} could not read its settings: {e!r}"
            raise section.error("type", problem) from e
        section.check_unknown()
        modules.append(ModuleConfig(type_name, name, settings, kind))
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
