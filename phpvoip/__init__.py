"""phpvoip: a SIP softswitch (back-to-back user agent) on Twisted."""

__version__ = "0.1.0"
