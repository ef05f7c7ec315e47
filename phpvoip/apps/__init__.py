"""Terminal applications: endpoints that live inside the switch.

Their types are declared in `phpvoip.plugins.phpvoip_builtin`, like the modules'.
"""
