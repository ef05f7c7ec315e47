"""G.711 μ-law (PCMU) and A-law (PCMA) to and from 16-bit little-endian PCM.

The codec is audioop's C code: the standard library's module on Python 3.11 and
3.12 (deprecated there, removed in 3.13) and the ``audioop-lts`` package, which
keeps the same module name, on 3.13 and later (setup.cfg installs it by an
environment marker). Only the deprecation warning of that one import is silenced.
"""

from __future__ import annotations

import sys
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["alaw_decode", "alaw_encode", "ulaw_decode", "ulaw_encode"]

_WIDTH = 2  # bytes per 16-bit sample
# audioop works in the machine's byte order; our PCM is little-endian everywhere.
_SWAP = sys.byteorder == "big"


def ulaw_encode(pcm16le: bytes) -> bytes:
    """μ-law bytes (one per sample) for 16-bit little-endian PCM."""
    return audioop.lin2ulaw(audioop.byteswap(pcm16le, _WIDTH) if _SWAP else pcm16le, _WIDTH)


def ulaw_decode(data: bytes) -> bytes:
    """16-bit little-endian PCM (two bytes per sample) for μ-law bytes."""
    pcm = audioop.ulaw2lin(data, _WIDTH)
    return audioop.byteswap(pcm, _WIDTH) if _SWAP else pcm


def alaw_encode(pcm16le: bytes) -> bytes:
    """A-law bytes (one per sample) for 16-bit little-endian PCM."""
    return audioop.lin2alaw(audioop.byteswap(pcm16le, _WIDTH) if _SWAP else pcm16le, _WIDTH)


def alaw_decode(data: bytes) -> bytes:
    """16-bit little-endian PCM (two bytes per sample) for A-law bytes."""
    pcm = audioop.alaw2lin(data, _WIDTH)
    return audioop.byteswap(pcm, _WIDTH) if _SWAP else pcm
