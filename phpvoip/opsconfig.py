"""The operations sections of the config: `manhole`, `metrics`, `cdr`, `ladders`, `console`.

Each is read into a small frozen object; a section that is absent gives None (manhole,
metrics: nothing listens) or its defaults (cdr, ladders). The listen addresses are
Twisted endpoint descriptions restricted to TCP, because the switch must be able to
say whether they are reachable from outside: one that is not on loopback is refused
unless the section says ``allow_remote: true``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from phpvoip.settings import ConfigError, Section

__all__ = [
    "CdrSettings",
    "ConsoleSettings",
    "ConsoleUser",
    "LadderSettings",
    "ListenSettings",
    "ManholeSettings",
    "MetricsSettings",
    "cdr_settings",
    "console_settings",
    "ladder_settings",
    "manhole_settings",
    "metrics_settings",
]

_TCP_ENDPOINT = re.compile(r"tcp:(\d{1,5})((?::[a-z]+=(?:\\.|[^:\\])*)*)\Z")


@dataclass(frozen=True)
class ListenSettings:
    """A TCP listen address: the endpoint description as written, and its parts."""

    endpoint: str  # "tcp:2222:interface=127.0.0.1", for twisted.application.strports
    port: int
    interface: str  # "" means every interface

    @property
    def loopback(self) -> bool:
        return bool(self.interface) and ipaddress.ip_address(self.interface).is_loopback


@dataclass(frozen=True)
class ManholeSettings:
    """`manhole:`: an SSH server on `listen` giving a Python shell on the live switch.
    Only the public keys in `authorized_keys` get in (the file is read at each login);
    `host_key` is the server's own key, made on first start when the file does not
    exist."""

    listen: ListenSettings
    authorized_keys: str
    host_key: str = "var/manhole_host_key"
    allow_remote: bool = False


@dataclass(frozen=True)
class MetricsSettings:
    """`metrics:`: Prometheus text at `path` on `listen`."""

    listen: ListenSettings
    path: str = "/metrics"
    allow_remote: bool = False


@dataclass(frozen=True)
class CdrSettings:
    """`cdr:`: one row per call attempt in the SQLite store's ``cdr`` table, written
    in batches of at most `batch` rows, at least every `flush_interval` seconds."""

    enabled: bool = False
    batch: int = 200
    flush_interval: float = 1.0


@dataclass(frozen=True)
class LadderSettings:
    """`ladders:`: the SIP messages of the last `calls` calls, at most `messages`
    each, for ``trace(call)``."""

    enabled: bool = True
    calls: int = 200
    messages: int = 100


@dataclass(frozen=True)
class ConsoleUser:
    """One console login: the name and its `pbkdf2_sha256$…` hash (a plaintext
    password in the config is hashed at load; `plaintext` says it was, for a warning).

    Two loads of one plaintext give two hashes (a fresh salt each time), so users
    compare by `source`: the configured hash, or a SHA-256 of the plaintext; a
    reload then sees no change where the file has none."""

    name: str
    password_hash: str = field(compare=False)
    plaintext: bool = False
    source: str = ""


@dataclass(frozen=True)
class ConsoleSettings:
    """`console:`: the web console (`phpvoip.console`) on `listen`; `users` may log
    in, a session ends after `session_timeout` idle seconds. An address that fails
    `login_attempts` logins within `login_window` seconds waits (1 s, doubling up to
    `login_max_delay`) before it may try again; /calls shows at most `max_rows` calls.
    Behind `trusted_proxies`, the client is the address they forward."""

    listen: ListenSettings
    users: tuple[ConsoleUser, ...]
    session_timeout: float = 3600.0
    allow_remote: bool = False
    login_attempts: int = 5
    login_window: float = 300.0
    login_max_delay: float = 300.0
    max_rows: int = 500
    # Reverse proxies whose X-Forwarded-For is believed (phpvoip.console.clients).
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


def parse_listen(section: Section, name: str, allow_remote: bool) -> ListenSettings:
    """``tcp:PORT[:interface=IP][:backlog=N]``: the subset of Twisted's endpoint
    descriptions that a switch can check for reachability."""
    text = section.string(name)
    m = _TCP_ENDPOINT.match(text)
    if m is None:
        raise section.error(name, f"{text!r} is not 'tcp:PORT:interface=IP'")
    port = int(m.group(1))
    if not 0 <= port <= 65535:
        raise section.error(name, f"port {port} is out of range")
    interface = ""
    for option in filter(None, re.split(r"(?<!\\):", m.group(2))):
        key, _, value = option.partition("=")
        if key == "interface":
            interface = value.replace("\\:", ":")
        elif key != "backlog":
            raise section.error(name, f"{key!r} is not an option here (interface, backlog)")
    if interface:
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            raise section.error(name, f"{interface!r} is not an IP address") from None
    listen = ListenSettings(text, port, interface)
    if not listen.loopback and not allow_remote:
        where = interface or "every interface"
        raise section.error(name, f"{where} is reachable from other hosts: listen on 127.0.0.1 "
                                  "or ::1, or set allow_remote: true")
    return listen


def manhole_settings(top: Section) -> ManholeSettings | None:
    if not top.has("manhole"):
        return None
    section = top.section("manhole")
    allow_remote = section.boolean("allow_remote", False)
    listen = parse_listen(section, "listen", allow_remote)
    # Relative paths are taken from the working directory, as storage: sqlite:PATH is.
    # The file is read at each login, so it may not exist yet (nobody gets in until
    # a key is added); a directory or some other thing in its place is a mistake.
    keys = section.string("authorized_keys")
    if Path(keys).exists() and not Path(keys).is_file():
        raise section.error("authorized_keys", f"{keys!r} is not a file")
    host_key = section.string("host_key", "var/manhole_host_key")
    section.check_unknown()
    return ManholeSettings(listen, keys, host_key, allow_remote)


def metrics_settings(top: Section) -> MetricsSettings | None:
    if not top.has("metrics"):
        return None
    section = top.section("metrics")
    allow_remote = section.boolean("allow_remote", False)
    listen = parse_listen(section, "listen", allow_remote)
    path = section.string("path", "/metrics")
    if not re.match(r"/[A-Za-z0-9_\-./]*\Z", path):
        raise section.error("path", f"{path!r} is not a URL path")
    section.check_unknown()
    return MetricsSettings(listen, path, allow_remote)


def cdr_settings(top: Section, storage_kind: str) -> CdrSettings:
    """On by default when the store is SQLite (where the rows go), off otherwise."""
    section = top.section("cdr", {})
    enabled = section.boolean("enabled", storage_kind == "sqlite")
    if enabled and storage_kind != "sqlite":
        raise section.error("enabled", "call records are kept in the SQLite store: "
                                       "set storage: sqlite:PATH")
    batch = section.integer("batch", 200, minimum=1, maximum=10000)
    interval = float(section.number("flush_interval", 1.0, minimum=0.01, maximum=3600))
    section.check_unknown()
    return CdrSettings(enabled, batch, interval)


def ladder_settings(top: Section) -> LadderSettings:
    section = top.section("ladders", {})
    settings = LadderSettings(
        section.boolean("enabled", True),
        section.integer("calls", 200, minimum=1, maximum=100000),
        section.integer("messages", 100, minimum=2, maximum=10000),
    )
    section.check_unknown()
    return settings


def console_settings(top: Section) -> ConsoleSettings | None:
    """The `console:` section; None when absent. Each user needs a `password_hash`
    (made by ``python -m phpvoip.console.passwd``) or a plaintext `password`."""
    if not top.has("console"):
        return None
    # Imported here: the hash format belongs to the console, which imports this module.
    from phpvoip.console.passwords import HashFormatError, check_hash, hash_password

    section = top.section("console")
    allow_remote = section.boolean("allow_remote", False)
    listen = parse_listen(section, "listen", allow_remote)
    timeout = float(section.number("session_timeout", 3600, minimum=10, maximum=30 * 86400))
    attempts = section.integer("login_attempts", 5, minimum=1, maximum=1000)
    window = float(section.number("login_window", 300, minimum=1, maximum=86400))
    max_delay = float(section.number("login_max_delay", 300, minimum=1, maximum=86400))
    max_rows = section.integer("max_rows", 500, minimum=1, maximum=100000)
    proxies = []
    names = section.strings("trusted_proxies", [])
    for i, text in enumerate(names):
        try:
            proxies.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            key = section.key("trusted_proxies" + (f"[{i}]" if len(names) > 1 else ""))
            raise ConfigError(section.file, key, f"{text!r} is not an IP address or network "
                                                 "(e.g. 127.0.0.1, 10.0.0.0/8)") from None
    users_section = section.section("users")
    users: list[ConsoleUser] = []
    for name in users_section.data:
        entry = users_section.section(str(name))
        if entry.has("password_hash") == entry.has("password"):
            raise users_section.error(str(name), "give password_hash (from python -m "
                                                 "phpvoip.console.passwd) or password, one of them")
        if entry.has("password_hash"):
            text = entry.string("password_hash")
            try:
                check_hash(text)
            except HashFormatError as e:
                raise entry.error("password_hash", str(e)) from None
            users.append(ConsoleUser(str(name), text, source=text))
        else:
            password = entry.string("password")
            if not password:
                raise entry.error("password", "must not be empty")
            users.append(ConsoleUser(str(name), hash_password(password), plaintext=True,
                                     source=hashlib.sha256(password.encode()).hexdigest()))
        entry.check_unknown()
    if not users:
        raise section.error("users", "name at least one user (nobody could log in)")
    section.check_unknown()
    return ConsoleSettings(listen, tuple(users), timeout, allow_remote, attempts, window, max_delay, max_rows,
                           tuple(proxies))
