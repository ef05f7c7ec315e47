"""The bundled prompts, prompt names, numbers spoken as prompts, and music on hold."""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import struct
from array import array
from pathlib import Path

import pytest

from phpvoip.media import music, prompts
from phpvoip.media.wav import RATE, Audio, read_wav

# The names issue 11's applications ask for (the attendant, the queue, the agents).
REQUIRED = (
    "greeting", "menu", "invalid", "no-input", "goodbye", "transferring", "unavailable", "closed",
    "operator", "please-hold", "hundred", "minute", "minutes", "queue-welcome", "queue-position",
    "queue-wait", "queue-leave", "queue-full", "agent-logged-in", "agent-logged-out", "agent-paused",
    "agent-unpaused", "beep",
    *(f"number-{n}" for n in range(20)), *(f"number-{n}" for n in range(20, 100, 10)),
)


def _samples(pcm: bytes) -> array:
    out = array("h", pcm)
    if struct.pack("=h", 1) != struct.pack("<h", 1):
        out.byteswap()
    return out


def _rms(samples) -> float:
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


@pytest.fixture
def own_directory(tmp_path: Path):
    """An operator's prompt directory, removed from the search path afterwards."""
    prompts.add_directory(tmp_path)
    yield tmp_path
    prompts.remove_directory(tmp_path)


@pytest.mark.parametrize("name", REQUIRED)
def test_every_required_name_is_a_readable_8khz_file_with_sound(name: str) -> None:
    """Each name the apps use resolves to a bundled 8 kHz WAV that read_wav accepts and is not silent."""
    assert name in prompts.NAMES
    resolved = prompts.resolve(name)
    assert isinstance(resolved, str) and Path(resolved).parent == prompts.BUNDLED
    audio = read_wav(resolved)
    assert audio.sample_rate == RATE
    assert 0.1 < audio.seconds < 8
    assert _rms(_samples(audio.pcm16())) > 300


def test_bundled_set_stays_small() -> None:
    """The committed prompts stay well under 1 MB in all."""
    total = sum(p.stat().st_size for p in prompts.BUNDLED.glob("*.wav"))
    assert 0 < total < 700_000


def test_unknown_name_is_a_value_error_naming_it() -> None:
    """A misspelt prompt fails at resolve, naming the prompt and where it was looked for."""
    with pytest.raises(ValueError, match=r"'goodby'.*sounds"):
        prompts.resolve("goodby")
    assert not prompts.exists("goodby")
    assert prompts.exists("goodbye")


def test_paths_pcm_and_audio_pass_through() -> None:
    """Things that are not names are returned as they are, for play() to handle."""
    audio = Audio("L16", RATE, b"\0\0")
    pcm = b"\1\0" * 4
    assert prompts.resolve(audio) is audio
    assert prompts.resolve(pcm) is pcm
    assert prompts.resolve("/var/prompts/x.wav") == "/var/prompts/x.wav"
    assert prompts.resolve("custom.wav") == "custom.wav"
    assert prompts.resolve(Path("a/b.wav")) == Path("a/b.wav")
    with pytest.raises(TypeError):
        prompts.resolve(42)  # type: ignore[arg-type]


def test_operator_directory_is_searched_first(own_directory: Path) -> None:
    """An operator's file overrides the bundled prompt of the same name; others still come from the bundle."""
    (own_directory / "goodbye.wav").write_bytes((prompts.BUNDLED / "beep.wav").read_bytes())
    (own_directory / "special-offer.wav").write_bytes((prompts.BUNDLED / "beep.wav").read_bytes())
    assert prompts.resolve("goodbye") == os.fspath(own_directory.resolve() / "goodbye.wav")
    assert prompts.exists("special-offer")
    assert Path(prompts.resolve("menu")).parent == prompts.BUNDLED
    assert prompts.directories()[0] == own_directory.resolve()


def test_add_directory_rejects_a_missing_directory(tmp_path: Path) -> None:
    """A prompt directory that does not exist is an error naming it."""
    with pytest.raises(ValueError, match="nowhere"):
        prompts.add_directory(tmp_path / "nowhere")


@pytest.mark.parametrize(("n", "names"), [
    (0, ["number-0"]),
    (7, ["number-7"]),
    (13, ["number-13"]),
    (20, ["number-20"]),
    (42, ["number-40", "number-2"]),
    (100, ["number-1", "hundred"]),
    (105, ["number-1", "hundred", "number-5"]),
    (342, ["number-3", "hundred", "number-40", "number-2"]),
    (919, ["number-9", "hundred", "number-19"]),
    (999, ["number-9", "hundred", "number-90", "number-9"]),
])
def test_say_number(n: int, names: list[str]) -> None:
    """Numbers are said in English order from the number, hundred and tens prompts."""
    assert prompts.say_number(n) == names


def test_say_number_uses_only_existing_prompts_and_rejects_out_of_range() -> None:
    """Every number 0-999 is said with prompts that exist; others and non-ints are errors."""
    used = {name for n in range(1000) for name in prompts.say_number(n)}
    assert all(prompts.exists(name) for name in used)
    for bad in (-1, 1000):
        with pytest.raises(ValueError):
            prompts.say_number(bad)
    with pytest.raises(TypeError):
        prompts.say_number(1.5)  # type: ignore[arg-type]


def test_music_is_cached_deterministic_and_not_silent() -> None:
    """Music on hold is made once per process, the same bytes every time, and audible."""
    first = prompts.music_on_hold()
    assert prompts.music_on_hold() is first
    assert music.synthesize() == first
    samples = _samples(first)
    assert len(samples) == round(4 * music.CHORD_SECONDS * RATE)
    assert _rms(samples) > 500
    assert max(abs(s) for s in samples) < 32767 * 10 ** (-15 / 20)  # peak at -16 dBFS: no clipping


def test_music_loops_without_a_click() -> None:
    """The loop starts and ends at silence and has no jump larger than the music's own slopes at the seam."""
    samples = _samples(prompts.music_on_hold())
    assert abs(samples[0]) < 50 and abs(samples[-1]) < 50
    seam = [samples[i] for i in range(-40, 0)] + [samples[i] for i in range(40)]
    steps = [abs(b - a) for a, b in itertools.pairwise(seam)]
    largest_inside = max(abs(b - a) for a, b in itertools.pairwise(samples))
    assert max(steps) < largest_inside / 4


def test_make_sounds_falls_back_to_tones(tmp_path: Path) -> None:
    """Without speech tools the script still writes a complete, readable set (tone patterns)."""
    script = Path(__file__).resolve().parents[2] / "tools" / "make_sounds.py"
    spec = importlib.util.spec_from_file_location("make_sounds", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--tones", "--out", str(tmp_path)]) == 0
    for name in prompts.NAMES:
        audio = read_wav(tmp_path / f"{name}.wav")
        assert audio.encoding == "PCMU" and _rms(_samples(audio.pcm16())) > 300
