"""Console passwords: PBKDF2-SHA256 hashes in one self-describing string.

``pbkdf2_sha256$<iterations>$<salt, base64>$<hash, base64>``: the format Django
and passlib write, so that the iteration count can grow with time and an old hash
still verifies. Only hashlib and hmac (constant-time comparison) are used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

__all__ = ["DEFAULT_ITERATIONS", "HashFormatError", "check_hash", "hash_password", "verify_password"]

PREFIX = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 310_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
MIN_ITERATIONS = 1_000  # below this a hash is a typo or a toy, not a protection
MAX_ITERATIONS = 10_000_000  # a bound on the work one login attempt can cost


class HashFormatError(ValueError):
    """A `password_hash` that is not ``pbkdf2_sha256$N$salt$hash``."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """The stored form of `password`, with a fresh 16-byte salt unless given one."""
    if salt is None:
        salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{PREFIX}${iterations}${_b64(salt)}${_b64(digest)}"


def check_hash(text: str) -> tuple[int, bytes, bytes]:
    """The iterations, salt and digest of a stored hash; HashFormatError saying
    what is wrong with it otherwise (for the config's error message)."""
    parts = text.split("$")
    if len(parts) != 4 or parts[0] != PREFIX:
        raise HashFormatError(f"is not '{PREFIX}$<iterations>$<salt>$<hash>' "
                              "(make one with python -m phpvoip.console.passwd)")
    if not parts[1].isdigit() or not MIN_ITERATIONS <= int(parts[1]) <= MAX_ITERATIONS:
        raise HashFormatError(f"iterations must be a number from {MIN_ITERATIONS} to {MAX_ITERATIONS}")
    try:
        salt, digest = _unb64(parts[2]), _unb64(parts[3])
    except (binascii.Error, ValueError):
        raise HashFormatError("salt and hash must be base64") from None
    if len(salt) < 8 or len(digest) != 32:
        raise HashFormatError("the salt must be at least 8 bytes and the hash 32 (SHA-256)")
    return int(parts[1]), salt, digest


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored`; False for a malformed hash."""
    try:
        iterations, salt, digest = check_hash(stored)
    except HashFormatError:
        return False
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(candidate, digest)
