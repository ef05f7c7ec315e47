"""SIP requests and responses: `parse(bytes)` and `bytes(message)` (RFC 3261 §7, §25).

This is the public face of the message layer (DESIGN.md: `phpvoip.sip.message.parse`
and `phpvoip.sip.message.ParseError`); the code lives by topic:

- `message_model`: `Message`, `Request`, `Response` (ordered header lines, typed
  values read on demand, serialization) and `REASONS`;
- `message_parser`: `parse`, the start line and header section grammar, and the
  checks RFC 4475 asks for;
- `headers` and `uri`: the typed header values and URIs both of them use.
"""

from __future__ import annotations

from phpvoip.sip.errors import ParseError
from phpvoip.sip.message_model import REASONS, Message, Request, Response
from phpvoip.sip.message_parser import KNOWN_METHODS, parse

__all__ = ["Message", "ParseError", "Request", "Response", "parse", "REASONS", "KNOWN_METHODS"]
