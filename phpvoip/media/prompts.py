"""Named voice prompts: a name such as "goodbye" -> the WAV file that says it.

Applications name prompts rather than paths so that an operator can replace any of
them (another voice, another language) by dropping a file of the same name into a
directory of their own (`add_directory`), which is searched before the bundled set
under phpvoip/sounds/ (made by tools/make_sounds.py). Anything that is not a name
(a path, PCM bytes, an Audio) passes through unchanged, so `resolve` can sit in
front of every play().
"""

from __future__ import annotations

import os
from pathlib import Path

from phpvoip.media.endpoint import PlayItem
from phpvoip.media.music import music_on_hold
from phpvoip.media.wav import Audio

__all__ = [
    "BUNDLED", "NAMES", "add_directory", "directories", "exists", "music_on_hold",
    "path", "remove_directory", "resolve", "say_number",
]

BUNDLED = Path(__file__).resolve().parent.parent / "sounds"

# Every name the bundled set provides; tools/make_sounds.py says what each one says.
NAMES: tuple[str, ...] = (
    "greeting", "menu", "invalid", "no-input", "goodbye", "transferring", "unavailable",
    "closed", "operator", "please-hold",
    *(f"number-{n}" for n in range(20)),
    *(f"number-{n}" for n in range(20, 100, 10)),
    "hundred", "minute", "minutes", "star", "pound",
    "queue-welcome", "queue-position", "queue-wait", "queue-leave", "queue-full",
    "agent-logged-in", "agent-logged-out", "agent-paused", "agent-unpaused", "beep",
)

_EXTENSIONS = (".wav",)
_extra: list[Path] = []  # operators' directories, searched first, most recent first


def add_directory(directory: str | os.PathLike[str]) -> None:
    """Search `directory` for prompts before the bundled ones (an operator's own
    recordings override ours by name). Raise ValueError if it is not a directory."""
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"{os.fspath(directory)}: prompt directory does not exist or is not a directory")
    d = d.resolve()
    if d in _extra:
        _extra.remove(d)
    _extra.insert(0, d)


def remove_directory(directory: str | os.PathLike[str]) -> None:
    """Stop searching `directory` (a reload that drops the config key). Idempotent."""
    d = Path(directory).resolve()
    if d in _extra:
        _extra.remove(d)


def directories() -> list[Path]:
    """Where names are looked up, in order: operators' directories, then the bundled set."""
    return [*_extra, BUNDLED]


def _is_name(item: str) -> bool:
    # A name is one word of letters, digits, '-' and '_': anything with a path
    # separator or an extension is taken for a path.
    return bool(item) and all(c.isalnum() or c in "-_" for c in item)


def path(name: str) -> Path | None:
    """The file that says `name`, or None when no directory has it."""
    if not _is_name(name):
        return None
    for d in directories():
        for ext in _EXTENSIONS:
            candidate = d / (name + ext)
            if candidate.is_file():
                return candidate
    return None


def exists(name: str) -> bool:
    """Whether `name` is a prompt some directory provides."""
    return path(name) is not None


def resolve(item: PlayItem) -> PlayItem:
    """A prompt name -> its file's path; a path, PCM bytes or Audio unchanged.

    Raise ValueError naming the prompt for a name no directory provides, so a typo
    in an application fails where it is made, not as a missing file later."""
    if isinstance(item, bytes | bytearray | memoryview | Audio | os.PathLike):
        return item
    if not isinstance(item, str):
        raise TypeError(f"cannot play {type(item).__name__}: give a prompt name, a path, PCM bytes or Audio")
    if not _is_name(item):
        return item  # a path: read_wav reports a missing or bad file with its name
    found = path(item)
    if found is None:
        where = ", ".join(os.fspath(d) for d in directories())
        raise ValueError(f"unknown prompt {item!r} (looked in {where})")
    return os.fspath(found)


def say_number(n: int) -> list[str]:
    """The prompt names that say `n` (0-999), e.g. 342 -> number-3 hundred number-40 number-2."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"say_number takes an int, not {type(n).__name__}")
    if not 0 <= n <= 999:
        raise ValueError(f"say_number: {n} is outside 0-999")
    if n == 0:
        return ["number-0"]
    out: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        out += [f"number-{hundreds}", "hundred"]
    if rest >= 20:
        tens, units = divmod(rest, 10)
        out.append(f"number-{tens * 10}")
        if units:
            out.append(f"number-{units}")
    elif rest:
        out.append(f"number-{rest}")
    return out
