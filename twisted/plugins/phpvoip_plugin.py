"""Makes `twistd phpvoip` available (Twisted finds this file in twisted/plugins)."""

from twisted.application.service import ServiceMaker

phpvoip = ServiceMaker(
    "phpvoip",
    "phpvoip.tap",
    "A SIP softswitch (back-to-back user agent)",
    "phpvoip",
)
