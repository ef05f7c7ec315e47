"""Reading and writing the WAV files the endpoint plays and records."""

from __future__ import annotations

import struct
import wave

import pytest

from phpvoip.media.g711 import alaw_decode, ulaw_decode
from phpvoip.media.wav import Audio, WavWriter, read_wav


def riff(*chunks: tuple[bytes, bytes], size: int | None = None) -> bytes:
    """A RIFF WAVE file made of `chunks` (id, body), padded as RIFF says."""
    body = b"WAVE"
    for chunk_id, data in chunks:
        body += chunk_id + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body


def fmt(tag: int = 1, channels: int = 1, rate: int = 8000, bits: int = 16, extra: bytes = b"") -> tuple:
    align = channels * bits // 8
    return (b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits) + extra)


def write(tmp_path, blob: bytes, name: str = "prompt.wav"):
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def test_writer_output_reads_back_as_pcm(tmp_path):
    """Samples written in pieces come back whole, and `wave` agrees on the header."""
    path = tmp_path / "rec.wav"
    pcm = struct.pack("<6h", 0, 1, -1, 32767, -32768, 1000)
    with WavWriter(path) as w:
        w.write(pcm[:4])
        w.write(pcm[4:])
        assert w.frames == 6
    assert w.closed
    audio = read_wav(path)
    assert (audio.encoding, audio.sample_rate, audio.data) == ("L16", 8000, pcm)
    assert audio.pcm16() == pcm
    assert audio.seconds == pytest.approx(6 / 8000)
    with wave.open(str(path)) as check:
        assert (check.getnchannels(), check.getsampwidth(), check.getframerate(), check.getnframes()) == (
            1, 2, 8000, 6)


def test_writer_with_nothing_written_makes_an_empty_valid_file(tmp_path):
    """A recording that heard nothing is still a WAV file with no samples."""
    path = tmp_path / "empty.wav"
    w = WavWriter(path)
    w.close()
    w.close()
    assert read_wav(path).data == b""
    with pytest.raises(ValueError, match="closed"):
        w.write(b"\0\0")


def test_writer_refuses_half_a_sample(tmp_path):
    """An odd number of bytes is not 16-bit PCM."""
    with WavWriter(tmp_path / "x.wav") as w, pytest.raises(ValueError, match="even"):
        w.write(b"\0")


@pytest.mark.parametrize(("tag", "encoding", "decode"), [(7, "PCMU", ulaw_decode), (6, "PCMA", alaw_decode)])
def test_g711_files_are_read_as_they_are(tmp_path, tag, encoding, decode):
    """μ-law and A-law files keep their bytes (sent as they are) and decode to PCM on demand."""
    samples = bytes([0xFF, 0x80, 0x00, 0xD5, 0x2A])
    path = write(tmp_path, riff(fmt(tag, bits=8), (b"data", samples)))
    audio = read_wav(path)
    assert (audio.encoding, audio.sample_rate, audio.data) == (encoding, 8000, samples)
    assert audio.pcm16() == decode(samples)
    assert audio.seconds == pytest.approx(5 / 8000)
    assert encoding in repr(audio)


def test_other_chunks_odd_sizes_and_a_fmt_extension_are_skipped(tmp_path):
    """LIST/fact chunks (odd-sized ones padded), and fmt with cbSize, do not disturb reading."""
    samples = b"\x01\x00\x02\x00"
    extended = fmt(7, bits=8, extra=b"\0\0")
    blob = riff((b"LIST", b"INFOabc"), extended, (b"fact", b"\4\0\0\0"), (b"data", samples))
    assert read_wav(write(tmp_path, blob)).data == samples


def test_wave_format_extensible_takes_its_subformat(tmp_path):
    """WAVE_FORMAT_EXTENSIBLE names the real format in its SubFormat GUID."""
    guid = struct.pack("<H", 7) + bytes(14)
    extra = struct.pack("<HHI", 22, 8, 4) + guid
    path = write(tmp_path, riff(fmt(0xFFFE, bits=8, extra=extra), (b"data", b"\xff\xff")))
    assert read_wav(path).encoding == "PCMU"


def test_a_data_chunk_cut_short_is_read_to_its_last_whole_sample(tmp_path):
    """A recorder killed before patching sizes leaves a too-large size: read what is there."""
    blob = riff(fmt(), (b"data", b"\x01\x00\x02\x00\x03"))
    blob = blob[:-1]  # drop the pad byte: the chunk now claims 5 bytes and has 5
    blob = blob[: blob.index(b"data") + 4] + struct.pack("<I", 0xFFFFFFFF) + blob[blob.index(b"data") + 8 :]
    assert read_wav(write(tmp_path, blob)).data == b"\x01\x00\x02\x00"


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"OggS" + bytes(40), "not a WAV file"),
        (b"RIFF\0\0\0\0WAVE", "no usable fmt chunk"),
        (riff(fmt()), "no data chunk"),
        (riff((b"fmt ", b"\1\0\1\0"), (b"data", b"")), "no usable fmt chunk"),
        (riff(fmt(3, bits=32), (b"data", b"")), r"format 3 \(IEEE float\) is not supported"),
        (riff(fmt(0x55), (b"data", b"")), r"format 85 \(MP3\)"),
        (riff(fmt(0x1234), (b"data", b"")), r"format 4660 \(unknown\)"),
        (riff(fmt(channels=2), (b"data", b"")), "2 channels; only mono"),
        (riff(fmt(rate=16000), (b"data", b"")), "sample rate 16000 Hz; only 8000 Hz"),
        (riff(fmt(rate=44100), (b"data", b"")), "sample rate 44100 Hz"),
        (riff(fmt(bits=8), (b"data", b"")), "8 bits a sample; L16 files must have 16"),
        (riff(fmt(7, bits=16), (b"data", b"")), "16 bits a sample; PCMU files must have 8"),
        (riff(fmt(0xFFFE, extra=b"\x16\0"), (b"data", b"")), "EXTENSIBLE fmt chunk is too short"),
    ],
)
def test_unsupported_files_are_refused_naming_the_file_and_the_reason(tmp_path, blob, message):
    """Every refusal is a ValueError that says which file and what is wrong."""
    path = write(tmp_path, blob, "bad-prompt.wav")
    with pytest.raises(ValueError, match=message) as caught:
        read_wav(path)
    assert str(path) in str(caught.value)


def test_a_missing_file_is_an_os_error(tmp_path):
    """A path that does not exist fails as the OS says, not as a format error."""
    with pytest.raises(FileNotFoundError):
        read_wav(tmp_path / "nope.wav")


def test_audio_of_pcm_is_its_own_pcm():
    """L16 audio needs no decoding."""
    assert Audio("L16", 8000, b"\1\0").pcm16() == b"\1\0"
