"""The one generator of every identifier the switch makes: tags, branches, Call-IDs.

All three are random hex from the operating system's generator, so that they are
unique in space and time without coordination between processes (§8.1.1.4,
§8.1.1.7, §19.3), and none leaks a counter an attacker could guess.
"""

from __future__ import annotations

from secrets import token_hex

__all__ = ["MAGIC_COOKIE", "new_branch", "new_call_id", "new_tag"]

# §8.1.1.7: every branch made by an RFC 3261 element starts with this.
MAGIC_COOKIE = "z9hG4bK"


def new_tag() -> str:
    """A From/To tag: 48 random bits (§19.3 asks for at least 32)."""
    return token_hex(6)


def new_branch() -> str:
    """A Via branch for a new client transaction: the magic cookie and 80 random
    bits (§8.1.1.7)."""
    return MAGIC_COOKIE + token_hex(10)


def new_call_id(host: str) -> str:
    """A Call-ID: 80 random bits at `host` (§8.1.1.4 recommends the host part)."""
    return f"{token_hex(10)}@{host}"
