"""An example phpvoip module type from a package of its own: ``type: blocklist``.

The module code is in `phpvoip_blocklist.blocklist`; phpvoip finds the type through
the drop-in file ``phpvoip/plugins/phpvoip_blocklist.py`` that this package installs.
"""

from phpvoip_blocklist.blocklist import Blocklist, BlocklistSettings, parse_settings

__all__ = ["Blocklist", "BlocklistSettings", "parse_settings"]
