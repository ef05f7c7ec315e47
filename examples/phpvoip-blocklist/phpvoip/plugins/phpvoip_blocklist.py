"""Declares the ``blocklist`` module type to phpvoip (found through twisted.plugin).

This file is installed into phpvoip's ``phpvoip/plugins/`` directory; it must stay
tiny and import nothing heavy: phpvoip imports every file there to list the module
types, and `ModuleType` imports `phpvoip_blocklist.blocklist` only when a config
uses ``type: blocklist``.
"""

from phpvoip.moduletypes import ModuleType

blocklist = ModuleType(
    "blocklist",
    "refuses calls from listed numbers before any other module sees them",
    "phpvoip_blocklist.blocklist",
    "Blocklist",
)
