"""Modules: the switch's proxies for groups of SIP endpoints (registrar, line, trunk).

Importing this package registers every built-in module type with `phpvoip.config`.
"""
from phpvoip.modules import channel, registrar, trunk  # noqa: F401  (importing registers their types)
