"""Registrar config: defaults, users (map, CSV and YAML files, HA1), and errors that
name the key."""

from __future__ import annotations

import textwrap

import pytest

from phpvoip.config import ConfigError, load_text
from phpvoip.modules.registrar import RegistrarSettings
from phpvoip.modules.users import UserDirectory, UserSpec
from phpvoip.sip.digest import ha1

MD5 = ha1("1001", "pbx.test", "pw")
SHA = ha1("1001", "pbx.test", "pw", "SHA-256")


def settings_of(body: str, file: str = "test.yaml") -> RegistrarSettings:
    text = "sip: {}\nmodules:\n  - type: registrar\n" + textwrap.indent(textwrap.dedent(body), "    ")
    return load_text(text, file).modules[0].settings


def error_of(body: str, file: str = "test.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        settings_of(body, file)
    return info.value


def test_defaults():
    """min 60, max 3600, default 3600, SHA-256 then MD5, 300 s nonces, weight 100."""
    s = settings_of('users: {"1001": {password: x}}\n')
    assert (s.min_expires, s.max_expires, s.default_expires) == (60, 3600, 3600)
    assert s.algorithms == ("SHA-256", "MD5") and s.nonce_lifetime == 300.0 and s.weight == 100
    assert (s.auth_failures.limit, s.auth_failures.window, s.auth_failures.block) == (10, 60.0, 300.0)
    assert s.realm is None and s.route_to == "source" and s.challenge_unknown is True


def test_user_shapes():
    """A user is a password, a mapping with a password, or HA1 hashes; numeric
    names are taken as text."""
    s = settings_of(f"users: {{1001: pw, '1002': {{password: pw2}}, '1003': {{ha1_md5: {MD5.upper()}}}}}\n")
    assert s.users == {
        "1001": UserSpec("pw"),
        "1002": UserSpec("pw2"),
        "1003": UserSpec(None, MD5, None),
    }


def test_user_spec_never_shows_its_secret():
    """A UserSpec's repr hides the password (tracebacks, logs)."""
    assert "pw" not in repr(UserSpec("pw"))


@pytest.mark.parametrize(
    "body, key, words",
    [
        ("users: {}\n", "modules[0].users", "needs users"),
        ("users: [1001]\n", "modules[0].users", "mapping"),
        ("users: {'1001': {}}\n", "modules[0].users.1001", "needs a password"),
        ("users: {'1001': {password: x, ha1_md5: " + MD5 + "}}\n", "modules[0].users.1001", "not both"),
        ("users: {'1001': {ha1_md5: abc}}\n", "modules[0].users.1001", "32 hexadecimal"),
        ("users: {'1001': {ha1_sha256: " + MD5 + "}}\n", "modules[0].users.1001", "64 hexadecimal"),
        ("users: {'1001': {pasword: x}}\n", "modules[0].users.1001", "unknown key 'pasword'"),
        ("users: {'10 01': x}\n", "modules[0].users.10 01", "not a valid user name"),
        ("users: {'1001': ''}\n", "modules[0].users.1001", "must not be empty"),
        ("users: {a: x}\nmin_expires: 600\nmax_expires: 60\n", "modules[0].max_expires", "below min_expires"),
        ("users: {a: x}\ndefault_expires: 10\n", "modules[0].default_expires", "between"),
        ("users: {a: x}\nmin_expires: -1\n", "modules[0].min_expires", "at least 0"),
        ("users: {a: x}\nalgorithms: [MD5, SHA-1]\n", "modules[0].algorithms[1]", "SHA-1"),
        ("users: {a: x}\nalgorithms: [MD5, md5]\n", "modules[0].algorithms[1]", "twice"),
        ("users: {a: x}\nalgorithms: []\n", "modules[0].algorithms", "at least one"),
        ("users: {a: x}\nauth_failures: {limit: -1}\n", "modules[0].auth_failures.limit", "at least 0"),
        ("users: {a: x}\nauth_failures: {lmit: 3}\n", "modules[0].auth_failures.lmit", "unknown key"),
        ("users: {a: x}\nroute_to: dns\n", "modules[0].route_to", "'source' or 'contact'"),
        ("users: {a: x}\nnonce_lifetime: 1\n", "modules[0].nonce_lifetime", "at least 5"),
        ("users: {a: x}\nrealm: 'a\"b'\n", "modules[0].realm", "cannot be a digest realm"),
        ("users: {a: x}\nmin_expire: 60\n", "modules[0].min_expire", "unknown key"),
        ("users: {a: x}\nusers_file: missing.csv\n", "modules[0].users_file", "cannot read"),
    ],
)
def test_errors_name_the_key(body, key, words):
    """Every mistake is reported with its key path and what is wrong."""
    e = error_of(body)
    assert e.key == key, str(e)
    assert words in e.problem, str(e)


def test_csv_users_file_relative_to_the_config(tmp_path):
    """A CSV users file (two or three columns, comments) is read relative to the
    config file and merged with `users`."""
    (tmp_path / "users.csv").write_text(f"# extensions\n2001,pw1\n\n2002,{MD5},{SHA}\n")
    s = settings_of("users: {'1001': pw}\nusers_file: users.csv\n", str(tmp_path / "phpvoip.yaml"))
    assert s.users == {"1001": UserSpec("pw"), "2001": UserSpec("pw1"), "2002": UserSpec(None, MD5, SHA)}


def test_csv_users_file_with_a_header(tmp_path):
    """A header line names the columns, in any order and subset."""
    path = tmp_path / "users.csv"
    path.write_text(f"ha1_md5,username\n{MD5},3001\n")
    s = settings_of(f"users_file: {path}\n")
    assert s.users == {"3001": UserSpec(None, MD5, None)}


def test_yaml_users_file(tmp_path):
    """A YAML users file has the shape of the `users` map."""
    path = tmp_path / "users.yaml"
    path.write_text("'4001': {password: pw}\n4002: pw2\n")
    assert settings_of(f"users_file: {path}\n").users == {"4001": UserSpec("pw"), "4002": UserSpec("pw2")}


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("u.csv", "2001\n", "line 1: expected username,password"),
        ("u.csv", "2001,a\n2001,b\n", "line 2: user '2001' is listed twice"),
        ("u.csv", "username,pin\n", "line 1: unknown column 'pin'"),
        ("u.csv", "username,password\n2001\n", "line 2: 1 columns where the header has 2"),
        ("u.csv", "2001,abc,def\n", "line 1: ha1_md5 must be 32"),
        ("u.yaml", "- 2001\n", "must be a mapping"),
        ("u.yaml", "'2001': {password: }\n", "user 2001: needs a password"),
        ("u.yaml", "a: [\n", "not valid YAML"),
        ("u.txt", "2001,pw\n", "must end in .csv, .yaml or .yml"),
    ],
)
def test_users_file_errors_name_file_and_line(tmp_path, name, content, words):
    """A bad users file is reported under users_file with the file and line."""
    path = tmp_path / name
    path.write_text(content)
    e = error_of(f"users_file: {path}\n")
    assert e.key == "modules[0].users_file"
    assert words in e.problem and str(path) in e.problem, str(e)


def test_user_in_both_places_is_an_error(tmp_path):
    """A user both in `users` and in the users file is refused, not guessed."""
    path = tmp_path / "u.csv"
    path.write_text("1001,pw\n")
    e = error_of(f"users: {{'1001': x}}\nusers_file: {path}\n")
    assert e.key == "modules[0].users_file" and "also in" in e.problem


def test_users_from_store_needs_no_users():
    """users_from_store alone is a valid registrar."""
    assert settings_of("users_from_store: true\n").users_from_store is True


def test_directory_keeps_hashes_not_passwords():
    """The directory hashes a password for the realm and keeps no plain text."""
    directory = UserDirectory("pbx.test")
    directory.add("1001", "pw", algorithms=("MD5", "SHA-256"))
    assert directory.lookup("1001", "pbx.test", "MD5") == MD5
    assert directory.lookup("1001", "pbx.test", "SHA-256") == SHA
    assert directory.lookup("1001", "other", "MD5") is None
    assert directory.lookup("1002", "pbx.test", "MD5") is None
    assert "pw" not in repr(directory._users)
    directory.add("1003", ha1_md5=MD5)
    assert directory.lookup("1003", "pbx.test", "SHA-256") is None
    directory.remove("1003")
    assert "1003" not in directory and len(directory) == 1
