"""The plugin package where module types are found (twisted.plugin).

phpvoip's own module types live in `phpvoip_builtin`; a package of plugins adds
its own file to a ``phpvoip/plugins/`` directory anywhere on ``sys.path`` (with no
``__init__.py`` there), and `pluginPackagePaths` puts that directory on this
package's path, which is where ``getPlugins(IModuleType, phpvoip.plugins)`` looks.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
