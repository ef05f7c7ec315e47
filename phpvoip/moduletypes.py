"""Module types: what ``type:`` in the YAML names, found through twisted.plugin.

`find_module_types` asks ``twisted.plugin.getPlugins`` for every `IModuleType` in
the `phpvoip.plugins` package (phpvoip's own file and any other package's drop-in),
so the config never imports a module itself. `ModuleType` is the plain way to
declare one: it names the Python module that holds the settings parser and the
module class, and imports it only when a config uses that type.
"""

from __future__ import annotations

import importlib
from typing import Any

from twisted.plugin import IPlugin, getPlugins
from zope.interface import implementer

from phpvoip.interfaces import IModuleType

__all__ = ["DuplicateModuleType", "ModuleType", "find_module_types"]


@implementer(IPlugin, IModuleType)
class ModuleType:
    """A module type whose code is imported on first use.

    `module` is the dotted name of the Python module, `factory` the name in it
    that builds the module (called as ``factory(name, settings)``), `parser` the
    name of its settings parser (called with the module's `Section`)."""

    def __init__(self, name: str, description: str, module: str, factory: str,
                 parser: str = "parse_settings") -> None:
        self.name = name
        self.description = description
        self.module = module
        self.factory = factory
        self.parser = parser

    def __repr__(self) -> str:
        return f"<ModuleType {self.name} from {self.module}>"

    def _attribute(self, name: str) -> Any:
        return getattr(importlib.import_module(self.module), name)

    def parse(self, section: Any) -> Any:
        return self._attribute(self.parser)(section)

    def build(self, name: str, settings: Any) -> Any:
        return self._attribute(self.factory)(name, settings)


class DuplicateModuleType(Exception):
    """Two plugins declare the same type name; `plugins` are both of them."""

    def __init__(self, name: str, plugins: tuple[Any, Any]) -> None:
        super().__init__(f"module type {name!r} is declared twice: {plugins[0]!r} and {plugins[1]!r}")
        self.name = name
        self.plugins = plugins


def find_module_types(package: Any = None) -> dict[str, Any]:
    """Every `IModuleType` plugin by name. `package` defaults to `phpvoip.plugins`.

    A plugin file that fails to import is logged by twisted.plugin and skipped;
    two plugins with one name raise `DuplicateModuleType`."""
    if package is None:
        import phpvoip.plugins as package
    found: dict[str, Any] = {}
    for plugin in getPlugins(IModuleType, package):
        other = found.get(plugin.name)
        if other is not None and other is not plugin:
            raise DuplicateModuleType(plugin.name, (other, plugin))
        found[plugin.name] = plugin
    return found
