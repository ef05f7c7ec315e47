#!/usr/bin/env python3
"""Make the bundled prompts in phpvoip/sounds/: `make sounds` runs this.

Each prompt is spoken by espeak-ng and turned by sox into 8 kHz mono mu-law WAV,
band-limited to the telephone band, with leading and trailing silence trimmed and
the level normalized (mu-law halves the size of 16-bit PCM and is what RTP carries).
Without espeak-ng or sox each prompt becomes a short tone pattern of its own, so a
machine without them still gets a complete, playable set (and a warning). The files
are committed; running this again rewrites them. Nothing is downloaded.

    python tools/make_sounds.py [--out DIR] [--tones] [--voice en-us]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from phpvoip.media.g711 import ulaw_encode  # noqa: E402
from phpvoip.media.prompts import NAMES  # noqa: E402

_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy",
         80: "eighty", 90: "ninety"}

# What each prompt says. Phrases that lead into a number ("you are caller number")
# stop where the number prompts take over.
TEXTS: dict[str, str] = {
    "greeting": "Thank you for calling.",
    "menu": "Please enter the extension you want, or press zero for the operator.",
    "invalid": "Sorry, that is not a valid choice.",
    "no-input": "Sorry, we did not receive your choice.",
    "goodbye": "Goodbye.",
    "transferring": "Please wait while your call is transferred.",
    "unavailable": "The person you are calling is not available.",
    "closed": "We are closed now. Please call again during our opening hours.",
    "operator": "Connecting you to the operator.",
    "please-hold": "Please hold.",
    **{f"number-{n}": word for n, word in enumerate(_WORDS)},
    **{f"number-{n}": word for n, word in _TENS.items()},
    "hundred": "hundred",
    "minute": "minute",
    "minutes": "minutes",
    "star": "star",
    "pound": "pound",
    "queue-welcome": "Thank you for calling. All our agents are busy. Please stay on the line.",
    "queue-position": "You are caller number",
    "queue-wait": "Your estimated wait is",
    "queue-leave": "To leave the queue, press",
    "queue-full": "Sorry, all our agents are busy and no more callers can wait. Please call again later.",
    "agent-logged-in": "You are logged in.",
    "agent-logged-out": "You are logged out.",
    "agent-paused": "You are paused.",
    "agent-unpaused": "You are available again.",
}
_BEEP = "beep"  # a tone, not a word, whatever tools are installed
_RATE = 8000


def _tone_pcm(freqs: list[float], on: float, off: float) -> bytes:
    """Beeps at each of `freqs` in turn, `on` seconds each with `off` of silence,
    with 5 ms ramps so that they do not click."""
    out = array("h")
    ramp = int(0.005 * _RATE)
    for f in freqs:
        n = int(on * _RATE)
        for i in range(n):
            env = min(1.0, i / ramp, (n - 1 - i) / ramp)
            out.append(round(0.3 * 32767 * env * math.sin(2 * math.pi * f * i / _RATE)))
        out.extend([0] * int(off * _RATE))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def _fallback(name: str) -> bytes:
    """A tone pattern standing in for a prompt: numbers beep their value's digits
    (count of short beeps), other prompts get a two-note motif of their own."""
    if name.startswith("number-"):
        n = int(name.split("-")[1])
        return _tone_pcm([660.0] * max(1, n % 10 or n // 10), 0.08, 0.08)
    index = sorted(TEXTS).index(name) if name in TEXTS else 0
    return _tone_pcm([400.0 + 40 * (index % 16), 500.0 + 30 * (index // 16)], 0.15, 0.05)


def _write_ulaw(path: Path, pcm16: bytes) -> None:
    """A mu-law WAV by hand: the standard library's wave module writes only PCM."""
    data = ulaw_encode(pcm16)
    fmt = (7).to_bytes(2, "little") + (1).to_bytes(2, "little") + _RATE.to_bytes(4, "little")
    fmt += _RATE.to_bytes(4, "little") + (1).to_bytes(2, "little") + (8).to_bytes(2, "little")
    fmt += (0).to_bytes(2, "little")  # cbSize: non-PCM formats carry it
    fact = (len(data)).to_bytes(4, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"fact" + (4).to_bytes(4, "little") + fact
    body += b"data" + len(data).to_bytes(4, "little") + data + (b"\0" if len(data) & 1 else b"")
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)


def _speak(text: str, voice: str, workdir: Path) -> bytes:
    """16-bit 8 kHz PCM of `text` spoken by espeak-ng and shaped by sox."""
    raw, shaped = workdir / "raw.wav", workdir / "shaped.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text],
                   check=True, timeout=30, capture_output=True)
    subprocess.run(
        ["sox", str(raw), "-r", str(_RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(shaped),
         "highpass", "300", "lowpass", "3400",
         # trim silence at both ends (the reverse trick trims the tail), keep 50 ms pads
         "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse",
         "pad", "0.05", "0.05", "norm", "-3"],
        check=True, timeout=30, capture_output=True)
    with wave.open(str(shaped), "rb") as w:
        return w.readframes(w.getnframes())


def main(argv: list[str] | None = None) -> int:
    """Write one WAV per prompt name into --out; return 0, or 1 when names lack a text."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "phpvoip" / "sounds")
    parser.add_argument("--tones", action="store_true", help="tone patterns only, even with espeak-ng")
    parser.add_argument("--voice", default="en-us", help="espeak-ng voice (default en-us)")
    args = parser.parse_args(argv)
    missing = [n for n in NAMES if n not in TEXTS and n != _BEEP]
    if missing:
        print(f"make_sounds: no text for {', '.join(missing)}", file=sys.stderr)
        return 1
    speak = not args.tones and shutil.which("espeak-ng") and shutil.which("sox")
    if not speak and not args.tones:
        print("make_sounds: espeak-ng or sox is missing; writing tone patterns instead of speech",
              file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(set(NAMES) | set(TEXTS)):
            if name == _BEEP:
                pcm = _tone_pcm([1000.0], 0.25, 0.0)
            elif speak:
                pcm = _speak(TEXTS[name], args.voice, Path(tmp))
            else:
                pcm = _fallback(name)
            target = args.out / f"{name}.wav"
            _write_ulaw(target, pcm)
            total += os.path.getsize(target)
    print(f"make_sounds: {len(set(NAMES) | set(TEXTS))} prompts in {args.out}, {total // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
