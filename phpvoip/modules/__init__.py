"""Modules: the switch's proxies for groups of SIP endpoints (registrar, line, trunk).

Their types are declared in `phpvoip.plugins.phpvoip_builtin` and found through
twisted.plugin like any outside package's.
"""
