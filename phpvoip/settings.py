"""The config primitives every module type validates its section with.

`Section` is one mapping of the YAML file with typed getters that know their key
path, and `ConfigError` is the one error they raise: ``FILE: KEY.PATH: problem``.
Both `phpvoip.config` (the file as a whole) and every module type, built-in or from
a plugin package, use them, so that a plugin's mistakes read like every other
config error. Nothing here imports a module type or the config loader.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from phpvoip.sip.address import Address

__all__ = ["ConfigError", "Section"]

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
        if value != value or value in (float("inf"), float("-inf")):  # YAML's .nan, .inf
            raise self.error(name, f"must be a finite number, not {value}")
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
