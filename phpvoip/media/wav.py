"""8 kHz mono WAV files: what the endpoint plays (16-bit PCM, μ-law, A-law) and records.

Reading parses the RIFF chunks itself: the standard library's `wave` reads only
integer PCM, and prompts are often stored as G.711 so that they can be sent as they
are. One parser for the three formats gives one set of error messages, each naming
the file and what is wrong with it. Writing goes through `wave`, which patches the
RIFF and data sizes when the file is closed.
"""

from __future__ import annotations

import os
import struct
import wave

from phpvoip.media.g711 import alaw_decode, ulaw_decode

__all__ = ["Audio", "WavWriter", "read_wav", "RATE"]

RATE = 8000  # the one sample rate of G.711 and of everything the endpoint sends

_PCM, _ALAW, _ULAW, _EXTENSIBLE = 1, 6, 7, 0xFFFE
_ENCODINGS = {_PCM: ("L16", 16), _ALAW: ("PCMA", 8), _ULAW: ("PCMU", 8)}
_FORMAT_NAMES = {2: "MS ADPCM", 3: "IEEE float", 0x11: "IMA ADPCM", 0x31: "GSM 6.10", 0x55: "MP3"}


class Audio:
    """Samples read from a file: `encoding` is 'L16' (16-bit little-endian PCM),
    'PCMU' or 'PCMA' (one byte a sample); `data` holds the samples."""

    __slots__ = ("encoding", "sample_rate", "data")

    def __init__(self, encoding: str, sample_rate: int, data: bytes) -> None:
        self.encoding = encoding
        self.sample_rate = sample_rate
        self.data = data

    @property
    def seconds(self) -> float:
        """How long the audio plays."""
        width = 2 if self.encoding == "L16" else 1
        return len(self.data) / width / self.sample_rate

    def pcm16(self) -> bytes:
        """The samples as 16-bit little-endian PCM, whatever the file held."""
        if self.encoding == "PCMU":
            return ulaw_decode(self.data)
        if self.encoding == "PCMA":
            return alaw_decode(self.data)
        return self.data

    def __repr__(self) -> str:
        return f"<Audio {self.encoding}/{self.sample_rate} {self.seconds:.3f}s>"


def _chunks(blob: bytes, name: str):
    """(id, body) for each chunk of a RIFF WAVE file; a last chunk cut short is
    given as far as it goes (some recorders never patch the sizes)."""
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    offset = 12
    while offset + 8 <= len(blob):
        chunk_id = blob[offset : offset + 4]
        (size,) = struct.unpack_from("<I", blob, offset + 4)
        start = offset + 8
        yield chunk_id, blob[start : start + size]
        offset = start + size + (size & 1)  # chunks are padded to an even length


def _format_tag(fmt: bytes, name: str) -> int:
    (tag,) = struct.unpack_from("<H", fmt)
    if tag == _EXTENSIBLE:
        # WAVEFORMATEXTENSIBLE: cbSize, valid bits, channel mask, then the SubFormat
        # GUID whose first two bytes are the format tag proper.
        if len(fmt) < 40:
            raise ValueError(f"{name}: WAVE_FORMAT_EXTENSIBLE fmt chunk is too short")
        (tag,) = struct.unpack_from("<H", fmt, 24)
    return tag


def read_wav(path: str | os.PathLike[str]) -> Audio:
    """Read an 8 kHz mono WAV file of 16-bit PCM, μ-law or A-law.

    Raise ValueError naming the file and what is wrong with it (format, rate,
    channels, sample size, missing chunks) for anything else, and OSError when the
    file cannot be read."""
    name = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read()
    fmt = data = None
    for chunk_id, body in _chunks(blob, name):
        if chunk_id == b"fmt " and fmt is None:
            fmt = body
        elif chunk_id == b"data" and data is None:
            data = body
    if fmt is None or len(fmt) < 16:
        raise ValueError(f"{name}: no usable fmt chunk")
    if data is None:
        raise ValueError(f"{name}: no data chunk")
    _tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", fmt)
    tag = _format_tag(fmt, name)
    if tag not in _ENCODINGS:
        described = _FORMAT_NAMES.get(tag, "unknown")
        raise ValueError(
            f"{name}: format {tag} ({described}) is not supported; use 16-bit PCM (1), A-law (6) or μ-law (7)"
        )
    encoding, wanted_bits = _ENCODINGS[tag]
    if channels != 1:
        raise ValueError(f"{name}: {channels} channels; only mono is supported")
    if rate != RATE:
        raise ValueError(f"{name}: sample rate {rate} Hz; only {RATE} Hz is supported")
    if bits != wanted_bits:
        raise ValueError(f"{name}: {bits} bits a sample; {encoding} files must have {wanted_bits}")
    width = wanted_bits // 8
    return Audio(encoding, rate, data[: len(data) - len(data) % width])


class WavWriter:
    """Writes 8 kHz mono 16-bit PCM to `path` as it arrives; `close` fixes the sizes.

    A recording cut short (the process killed) leaves a file whose header claims no
    samples; readers that trust the header see it empty, ours reads what is there."""

    __slots__ = ("path", "_wave", "frames")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._wave: wave.Wave_write | None = wave.open(self.path, "wb")
        self._wave.setnchannels(1)
        self._wave.setsampwidth(2)
        self._wave.setframerate(RATE)
        self.frames = 0

    def write(self, pcm16: bytes) -> None:
        """Append 16-bit little-endian samples (an odd trailing byte is a caller's bug)."""
        if self._wave is None:
            raise ValueError(f"{self.path}: recording is closed")
        if len(pcm16) % 2:
            raise ValueError("16-bit PCM must have an even number of bytes")
        self._wave.writeframesraw(pcm16)
        self.frames += len(pcm16) // 2

    @property
    def closed(self) -> bool:
        """Whether close() has run (writing then is an error)."""
        return self._wave is None

    def close(self) -> None:
        """Patch the RIFF and data sizes and close the file. Idempotent."""
        if self._wave is not None:
            w, self._wave = self._wave, None
            w.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
