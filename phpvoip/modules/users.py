"""The registrar's users: read from the config, a users file or the store, and kept
by the registrar as HA1 hashes (RFC 7616 §3.4.2) only. Plain passwords from the
config or a users file do stay in the parsed config's settings: give HA1s there
(or use the store) to keep passwords out of the process entirely.

Config shapes (`users:` and YAML users files)::

    users:
      "1001": {password: secret1}
      "1002": {ha1_md5: 0b3c…, ha1_sha256: 5e1a…}   # H(user:realm:password)
      "1003": secret3                               # short for {password: …}

CSV users files: one user a line, ``#`` comments; without a header line the
columns are ``username,password`` (two columns) or ``username,ha1_md5,ha1_sha256``
(three); a first line that has a ``username`` cell is a header naming the columns
(``username`` and any of ``password``, ``ha1_md5``, ``ha1_sha256``, in any order).
An HA1 only works for the realm it was made with: the registrar's `realm`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from phpvoip.settings import ConfigError, Section
from phpvoip.sip.digest import ha1
from phpvoip.store import UserRecord

__all__ = ["UserDirectory", "UserSpec", "parse_users", "read_users_file"]

_HEX32 = re.compile(r"[0-9a-fA-F]{32}\Z")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}\Z")
# A user name as it may appear in the user part of a SIP URI, unescaped: no
# whitespace, no control characters, no '@' or ':' (they would split the URI).
_USERNAME = re.compile(r"[^\s@:<>\"\x00-\x1f\x7f]{1,64}\Z")


@dataclass(frozen=True, slots=True)
class UserSpec:
    """What the config says about one user: a password or HA1 hashes."""

    password: str | None = None
    ha1_md5: str | None = None
    ha1_sha256: str | None = None

    def __repr__(self) -> str:  # never show a secret in a log or a traceback
        return "<UserSpec>"


def _spec(where: Any, username: str, password: Any, md5: Any, sha256: Any) -> UserSpec:
    """Check one user's fields; `where(problem)` makes the error."""
    if not _USERNAME.match(username):
        raise where(f"{username!r} is not a valid user name")
    for value, name in ((password, "password"), (md5, "ha1_md5"), (sha256, "ha1_sha256")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            raise where(f"{name} must be a string")
    password = None if password is None else str(password)
    md5 = None if md5 in (None, "") else str(md5)
    sha256 = None if sha256 in (None, "") else str(sha256)
    if password is not None and (md5 or sha256):
        raise where("give a password or HA1 hashes, not both")
    if password is None and not (md5 or sha256):
        raise where("needs a password, ha1_md5 or ha1_sha256")
    if password is not None and not password:
        raise where("password must not be empty")
    if md5 is not None and not _HEX32.match(md5):
        raise where("ha1_md5 must be 32 hexadecimal digits")
    if sha256 is not None and not _HEX64.match(sha256):
        raise where("ha1_sha256 must be 64 hexadecimal digits")
    return UserSpec(password, md5 and md5.lower(), sha256 and sha256.lower())


def _from_mapping(data: Any, error: Any) -> dict[str, UserSpec]:
    """`error(key, problem)` makes the ConfigError for a user's key."""
    if not isinstance(data, dict):
        raise error(None, "must be a mapping of user names")
    users: dict[str, UserSpec] = {}
    for raw_name, value in data.items():
        if isinstance(raw_name, bool) or not isinstance(raw_name, (str, int)):
            raise error(None, f"user name {raw_name!r} must be a string")
        name = str(raw_name)

        def where(problem: str, name: str = name) -> ConfigError:
            return error(name, problem)

        if isinstance(value, (str, int)) and not isinstance(value, bool):
            users[name] = _spec(where, name, str(value), None, None)
            continue
        if not isinstance(value, dict):
            raise where("must be a password or a mapping with password / ha1_md5 / ha1_sha256")
        unknown = set(value) - {"password", "ha1_md5", "ha1_sha256"}
        if unknown:
            first = sorted(map(str, unknown))[0]
            raise where(f"unknown key {first!r} (known: ha1_md5, ha1_sha256, password)")
        users[name] = _spec(where, name, value.get("password"), value.get("ha1_md5"), value.get("ha1_sha256"))
    return users


def parse_users(section: Section, name: str = "users") -> dict[str, UserSpec]:
    """The ``users:`` map of a module section."""
    data = section.raw(name, {})

    def error(user: str | None, problem: str) -> ConfigError:
        key = section.key(name) if user is None else f"{section.key(name)}.{user}"
        return ConfigError(section.file, key, problem)

    return _from_mapping(data, error)


_CSV_COLUMNS = ("username", "password", "ha1_md5", "ha1_sha256")


def read_users_file(path: Path, section: Section, name: str = "users_file") -> dict[str, UserSpec]:
    """Users from a YAML (``.yaml``/``.yml``) or CSV (``.csv``) file; errors name
    the config key, the file and the line."""
    key = section.key(name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(section.file, key, f"cannot read {path}: {e.strerror or e}") from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(section.file, key, f"{path} is not valid YAML: {e}") from None

        def error(user: str | None, problem: str) -> ConfigError:
            where = f"{path}" if user is None else f"{path}: user {user}"
            return ConfigError(section.file, key, f"{where}: {problem}")

        return _from_mapping(data if data is not None else {}, error)
    if suffix == ".csv":
        return _read_csv(text, path, section, key)
    raise ConfigError(section.file, key, f"{path}: a users file must end in .csv, .yaml or .yml")


def _read_csv(text: str, path: Path, section: Section, key: str) -> dict[str, UserSpec]:
    users: dict[str, UserSpec] = {}
    columns: tuple[str, ...] | None = None
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in row]

        def where(problem: str, number: int = number) -> ConfigError:
            return ConfigError(section.file, key, f"{path} line {number}: {problem}")

        if columns is None and not users and "username" in (c.lower() for c in cells):
            names = tuple(c.lower() for c in cells)
            bad = [c for c in names if c not in _CSV_COLUMNS]
            if bad:
                raise where(f"unknown column {bad[0]!r} (known: {', '.join(_CSV_COLUMNS)})")
            columns = names
            continue
        if columns is not None:
            if len(cells) != len(columns):
                raise where(f"{len(cells)} columns where the header has {len(columns)}")
            fields = dict(zip(columns, cells, strict=True))
        elif len(cells) == 2:
            fields = {"username": cells[0], "password": cells[1]}
        elif len(cells) == 3:
            fields = {"username": cells[0], "ha1_md5": cells[1], "ha1_sha256": cells[2]}
        else:
            raise where("expected username,password or username,ha1_md5,ha1_sha256")
        username = fields.get("username", "")
        if username in users:
            raise where(f"user {username!r} is listed twice")
        password = fields.get("password") or None
        users[username] = _spec(where, username, password, fields.get("ha1_md5"), fields.get("ha1_sha256"))
    return users


class UserDirectory:
    """User name → HA1 per algorithm for one realm; the `HA1Lookup` of
    `phpvoip.sip.digest.DigestServer.verify`.

    Passwords are hashed when added and not kept here. A user given only as one HA1
    can only answer challenges of that algorithm."""

    __slots__ = ("realm", "_users")

    def __init__(self, realm: str) -> None:
        self.realm = realm
        # username -> {base algorithm: HA1 hex}
        self._users: dict[str, dict[str, str]] = {}

    def __len__(self) -> int:
        return len(self._users)

    def __contains__(self, username: object) -> bool:
        return username in self._users

    def __repr__(self) -> str:
        return f"<UserDirectory {self.realm!r} users={len(self._users)}>"

    def add(
        self,
        username: str,
        password: str | None = None,
        ha1_md5: str | None = None,
        ha1_sha256: str | None = None,
        algorithms: tuple[str, ...] = ("MD5", "SHA-256"),
    ) -> None:
        """Add or replace a user; with a password, HA1s are made for
        `algorithms` (base names, e.g. ``MD5``, ``SHA-256``, ``SHA-512-256``)."""
        hashes: dict[str, str] = {}
        if password is not None:
            for algorithm in algorithms:
                hashes[algorithm] = ha1(username, self.realm, password, algorithm)
        if ha1_md5:
            hashes["MD5"] = ha1_md5.lower()
        if ha1_sha256:
            hashes["SHA-256"] = ha1_sha256.lower()
        self._users[username] = hashes

    def add_spec(
        self, username: str, spec: UserSpec, algorithms: tuple[str, ...] = ("MD5", "SHA-256")
    ) -> None:
        self.add(username, spec.password, spec.ha1_md5, spec.ha1_sha256, algorithms)

    def add_record(self, record: UserRecord) -> None:
        self.add(record.username, None, record.ha1_md5, record.ha1_sha256)

    def remove(self, username: str) -> None:
        self._users.pop(username, None)

    def lookup(self, username: str, realm: str, algorithm: str) -> str | None:
        """The HA1 of `username` for `algorithm` in `realm`, or None."""
        if realm != self.realm:
            return None
        hashes = self._users.get(username)
        return None if hashes is None else hashes.get(algorithm)
