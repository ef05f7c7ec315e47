"""Module types come from twisted.plugin: phpvoip's own and outside ones alike."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

import phpvoip.plugins
from phpvoip.config import ConfigError, build_module, load_text, module_types
from phpvoip.interfaces import IModule, IModuleType
from phpvoip.moduletypes import find_module_types

PACKAGE = Path(phpvoip.plugins.__file__).parent.parent
BUILTIN = {"registrar", "channel", "trunk", "robot", "echo"}
# The smallest valid section of each built-in type.
MINIMAL = {
    "registrar": "{type: registrar, users: {'1001': {password: x}}}",
    "channel": "{type: channel, user: '2005@carrier', password: x, server: '127.0.0.1:5070'}",
    "trunk": "{type: trunk, address: '127.0.0.1:5080'}",
    "robot": "{type: robot, number: '9000'}",
    "echo": "{type: echo, number: '9196'}",
}

PLUGIN = '''
from zope.interface import implementer
from twisted.plugin import IPlugin
from phpvoip.interfaces import IModuleType, IModule, NotMine

@implementer(IModule)
class Greeter:
    weight = 10
    def __init__(self, name, settings):
        self.name, self.settings = name, settings
    def start(self, engine): pass
    def stop(self): pass
    def callin(self, call): raise NotMine()
    def callout(self, invite, call): raise NotMine()
    def request(self, request, transaction, source): raise NotMine()

@implementer(IPlugin, IModuleType)
class GreeterType:
    name = "{name}"
    description = "a test plugin"
    def parse(self, section):
        return section.integer("times", minimum=1)
    def build(self, name, settings):
        return Greeter(name, settings)

greeter = GreeterType()
'''


@pytest.fixture
def drop_in(tmp_path, monkeypatch):
    """Install plugin files the way an outside package does: into a
    ``phpvoip/plugins/`` directory (no ``__init__.py``) elsewhere on sys.path."""
    directory = tmp_path / "phpvoip" / "plugins"
    directory.mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    from twisted.plugin import pluginPackagePaths

    paths = pluginPackagePaths("phpvoip.plugins")
    assert str(directory) in paths
    monkeypatch.setattr(phpvoip.plugins, "__path__", [*phpvoip.plugins.__path__, str(directory)])

    def add(filename: str, name: str) -> None:
        (directory / filename).write_text(PLUGIN.replace("{name}", name))

    return add


def test_builtin_types_are_plugins():
    """Every built-in type is found through getPlugins and provides IModuleType."""
    types = find_module_types()
    assert BUILTIN <= set(types)
    for plugin in types.values():
        assert verifyObject(IModuleType, plugin)


def test_builtin_types_build_modules():
    """Each built-in type parses its minimal section and builds an IModule."""
    for name, entry in MINIMAL.items():
        loaded = load_text(f"modules: [{entry}]")
        module = build_module(loaded.modules[0])
        assert verifyObject(IModule, module), name
        assert module.name == name


def test_unknown_type_lists_known_ones():
    """An unknown type names the file, the key and every known type."""
    with pytest.raises(ConfigError) as info:
        load_text("modules: [{type: teleporter}]", "x.yaml")
    assert info.value.key == "modules[0].type"
    message = str(info.value)
    assert message.startswith("x.yaml: modules[0].type: unknown module type 'teleporter'")
    for name in BUILTIN:
        assert name in message
    assert module_types() == sorted(find_module_types())


def test_outside_plugin_is_found_and_validated(drop_in):
    """A drop-in plugin's type works in the YAML and its errors read like ours."""
    drop_in("greeter_plugin.py", "greeter")
    loaded = load_text("modules: [{type: greeter, times: 3}]", "x.yaml")
    module = build_module(loaded.modules[0])
    assert module.settings == 3 and verifyObject(IModule, module)
    with pytest.raises(ConfigError) as info:
        load_text("modules: [{type: greeter, times: 0}]", "x.yaml")
    assert str(info.value) == "x.yaml: modules[0].times: must be at least 1, not 0"
    with pytest.raises(ConfigError) as info:
        load_text("modules: [{type: greeter, times: 1, color: red}]", "x.yaml")
    assert info.value.key == "modules[0].color"


def test_duplicate_type_names_are_refused(drop_in):
    """Two plugins declaring one type name make the config fail, naming both."""
    drop_in("trunk_again.py", "trunk")
    with pytest.raises(ConfigError) as info:
        load_text("modules: [{type: trunk, address: '127.0.0.1:5080'}]", "x.yaml")
    assert "'trunk' is declared twice" in str(info.value)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_modules_do_not_import_the_config_loader():
    """The config <-> modules cycle is gone: modules and apps use phpvoip.settings."""
    for path in list((PACKAGE / "modules").glob("*.py")) + list((PACKAGE / "apps").glob("*.py")):
        imported = _imports(path)
        assert "phpvoip.config" not in imported, path.name
    config_imports = _imports(PACKAGE / "config.py")
    assert not {m for m in config_imports if m.startswith(("phpvoip.modules", "phpvoip.apps"))}


def test_loading_config_imports_only_the_types_it_uses():
    """Module code is imported on first use: a trunk-only config loads no registrar."""
    code = textwrap.dedent("""
        import sys
        from phpvoip.config import load_text
        load_text("modules: [{type: trunk, address: '127.0.0.1:5080'}]")
        print(sorted(m for m in sys.modules if m.startswith(("phpvoip.modules.", "phpvoip.apps."))))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['phpvoip.modules.trunk']"
