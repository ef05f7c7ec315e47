"""The console's config section, password hashes, its wiring as a child service, a
real HTTP login on 127.0.0.1 (twisted.web.client.Agent), and the record search."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
from http.cookies import SimpleCookie
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.web.client import Agent, FileBodyProducer
from twisted.web.http_headers import Headers

from phpvoip import config
from phpvoip.cdr import CallDetailRecords, cdr_row, select_records
from phpvoip.config import ConfigError, load_text
from phpvoip.console.passwords import HashFormatError, check_hash, hash_password, verify_password
from phpvoip.console.records import RecordQuery, find_records, switch_call_id
from phpvoip.opsconfig import CdrSettings
from phpvoip.service import build_service
from phpvoip.store.sqlite import CDR_COLUMNS, CDR_MEDIA_COLUMNS, SCHEMA, SqliteStore
from tests.unit.test_cdr import ended

FAST = hash_password("s3cret", 1_000)


def console_yaml(body: str) -> str:
    return f"sip: {{listen: [udp:127.0.0.1:25170]}}\nconsole:\n{body}"


# -- passwords ------------------------------------------------------------------------------------


def test_a_hash_verifies_its_password_only():
    """pbkdf2_sha256$N$salt$hash: the right password verifies, another does not;
    two hashes of one password differ (fresh salts)."""
    stored = hash_password("pw", 1_000)
    assert stored.startswith("pbkdf2_sha256$1000$")
    assert verify_password("pw", stored) and not verify_password("pW", stored)
    assert hash_password("pw", 1_000) != stored
    assert not verify_password("pw", "pbkdf2_sha256$1000$bad")


@pytest.mark.parametrize(("text", "problem"), [
    ("sha1$1$abc$def", "is not 'pbkdf2_sha256"),
    ("pbkdf2_sha256$10$c2FsdHNhbHQ$" + "A" * 43, "iterations"),
    ("pbkdf2_sha256$1000$!!$!!", "base64"),
    ("pbkdf2_sha256$1000$c2FsdHNhbHQ$c2hvcnQ", "32"),
])
def test_malformed_hashes_say_what_is_wrong(text: str, problem: str):
    """A hash that is not one names its fault."""
    with pytest.raises(HashFormatError, match=problem):
        check_hash(text)


def test_passwd_prints_a_hash_for_the_password_on_stdin():
    """python -m phpvoip.console.passwd reads stdin (no terminal) and prints a hash
    that verifies."""
    out = subprocess.run([sys.executable, "-m", "phpvoip.console.passwd", "--iterations", "1000"],
                         input="hunter2\n", capture_output=True, text=True, timeout=30, check=True)
    assert verify_password("hunter2", out.stdout.strip())


# -- the section ----------------------------------------------------------------------------------


def test_console_section_with_a_hash_and_a_plaintext_password():
    """Defaults: session_timeout 3600, allow_remote false; plaintext is hashed at load."""
    loaded = load_text(console_yaml(
        f"  listen: 'tcp:8080:interface=127.0.0.1'\n"
        f"  users: {{admin: {{password_hash: '{FAST}'}}, ops: {{password: letmein}}}}\n"))
    settings = loaded.console
    assert settings.listen.port == 8080 and settings.session_timeout == 3600 and not settings.allow_remote
    admin, ops = settings.users
    assert (admin.name, admin.password_hash, admin.plaintext) == ("admin", FAST, False)
    assert ops.plaintext and verify_password("letmein", ops.password_hash)
    assert "letmein" not in ops.password_hash
    assert load_text("sip: {}\n").console is None


@pytest.mark.parametrize(("body", "key", "problem"), [
    ("  listen: 'tcp:8080'\n  users: {a: {password: x}}\n", "console.listen", "reachable from other hosts"),
    ("  listen: 'tcp:8080:interface=192.0.2.1'\n  users: {a: {password: x}}\n", "console.listen",
     "allow_remote"),
    ("  listen: 'http:8080'\n  users: {a: {password: x}}\n", "console.listen", "is not 'tcp:PORT"),
    ("  listen: 'tcp:8080:interface=127.0.0.1'\n", "console.users", "at least one user"),
    ("  listen: 'tcp:8080:interface=127.0.0.1'\n  users: {a: {}}\n", "console.users.a", "one of them"),
    (f"  listen: 'tcp:8080:interface=127.0.0.1'\n  users: {{a: {{password: x, password_hash: '{FAST}'}}}}\n",
     "console.users.a", "one of them"),
    ("  listen: 'tcp:8080:interface=127.0.0.1'\n  users: {a: {password_hash: 'md5$x'}}\n",
     "console.users.a.password_hash", "python -m phpvoip.console.passwd"),
    ("  listen: 'tcp:8080:interface=127.0.0.1'\n  users: {a: {password: ''}}\n", "console.users.a.password",
     "empty"),
    ("  listen: 'tcp:8080:interface=127.0.0.1'\n  users: {a: {password: x, role: admin}}\n",
     "console.users.a.role", "unknown key"),
    ("  listen: 'tcp:8080:interface=127.0.0.1'\n  users: {a: {password: x}}\n  session_timeout: 1\n",
     "console.session_timeout", "at least 10"),
    ("  listen: 'tcp:8080:interface=127.0.0.1'\n  users: {a: {password: x}}\n  port: 8080\n",
     "console.port", "unknown key"),
])
def test_config_mistakes_name_file_key_and_problem(body: str, key: str, problem: str):
    """Each mistake is a ConfigError naming the file, the key and the problem, before
    anything binds."""
    with pytest.raises(ConfigError) as caught:
        load_text(console_yaml(body), "switch.yaml")
    assert caught.value.file == "switch.yaml" and caught.value.key == key and problem in caught.value.problem
    assert str(caught.value).startswith(f"switch.yaml: {key}: ")


def test_remote_listen_with_allow_remote():
    """allow_remote: true lets the console listen on every interface."""
    loaded = load_text(console_yaml("  listen: 'tcp:8080'\n  allow_remote: true\n"
                                    "  users: {a: {password: x}}\n"))
    assert loaded.console.allow_remote and loaded.console.listen.interface == ""


# -- wiring and a real port -------------------------------------------------------------------------


def test_the_service_adds_the_console_child(tmp_path: Path):
    """build_service makes the console a child named for bind errors, its feed observing the engine."""
    path = tmp_path / "phpvoip.yaml"
    path.write_text(console_yaml(f"  listen: 'tcp:18080:interface=127.0.0.1'\n"
                                 f"  users: {{admin: {{password_hash: '{FAST}'}}}}\n"))
    service = build_service(config.load(path), Clock())
    [child] = [c for c in service.child_specs if c.key == "console.listen"]
    assert child.name == "the web console" and child.address == "tcp:18080:interface=127.0.0.1"
    assert child.service.console_feed in service.engine.events.observers


@pytest.fixture
def reactor() -> Any:
    from twisted.internet import reactor

    return reactor


async def _request(agent: Agent, method: bytes, url: str, body: bytes = b"",
                   headers: dict[bytes, list[bytes]] | None = None) -> tuple[Any, bytes]:
    producer = FileBodyProducer(io.BytesIO(body)) if body else None
    all_headers = {b"content-type": [b"application/x-www-form-urlencoded"], **(headers or {})}
    response = await agent.request(method, url.encode(), Headers(all_headers), producer)
    body_read: defer.Deferred = defer.Deferred()
    response.deliverBody(_Body(body_read))
    return response, await body_read


class _Body(Protocol):
    """Collects a response body (readBody warns about the client's transport in this Twisted)."""

    def __init__(self, done: defer.Deferred) -> None:
        self.done, self.parts = done, []

    def dataReceived(self, data: bytes) -> None:
        self.parts.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(b"".join(self.parts))


@pytest_twisted.ensureDeferred
async def test_login_over_a_real_port(tmp_path: Path, reactor: Any):
    """On a real 127.0.0.1 port (bound at start like any child): a wrong password is
    401 without a cookie; the right one gets the session cookie with its flags, which
    opens /calls and /api/calls; no cookie is redirected to /login."""
    path = tmp_path / "phpvoip.yaml"
    path.write_text(console_yaml(f"  listen: 'tcp:0:interface=127.0.0.1'\n"
                                 f"  users: {{admin: {{password_hash: '{FAST}'}}}}\n"))
    service = build_service(config.load(path), reactor)
    [child] = [c.service for c in service.child_specs if c.key == "console.listen"]
    child.privilegedStartService()
    child.startService()
    try:
        port = await child._waitingForPort
        base = f"http://127.0.0.1:{port.getHost().port}"
        agent = Agent(reactor)
        wrong, _ = await _request(agent, b"POST", base + "/login", b"username=admin&password=nope")
        assert wrong.code == 401 and not wrong.headers.hasHeader(b"set-cookie")
        right, _ = await _request(agent, b"POST", base + "/login", b"username=admin&password=s3cret")
        assert right.code == 303 and right.headers.getRawHeaders(b"location") == [b"/"]
        [raw] = [v.decode() for v in right.headers.getRawHeaders(b"set-cookie")]
        flags = {part.strip().lower() for part in raw.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        morsel = SimpleCookie(raw)["phpvoip_session"]
        cookie = {b"cookie": [f"phpvoip_session={morsel.value}".encode()]}
        page, body = await _request(agent, b"GET", base + "/calls", headers=cookie)
        assert page.code == 200 and b'id="calls-table"' in body
        api, body = await _request(agent, b"GET", base + "/api/calls", headers=cookie)
        assert api.code == 200 and body == b"[]"
        anonymous, _ = await _request(agent, b"GET", base + "/calls")
        assert anonymous.code == 303 and anonymous.headers.getRawHeaders(b"location") == [b"/login"]
    finally:
        await defer.maybeDeferred(child.stopService)


# -- the record search ------------------------------------------------------------------------------


def test_select_records_filters_by_number_time_and_disposition():
    """cdr.select_records: newest first; number matches caller, callee or the routed
    numbers; [since, until) on the start time; disposition; LIMIT."""
    db = sqlite3.connect(":memory:")
    for statement in SCHEMA:
        db.execute(statement)
    columns = CDR_COLUMNS + CDR_MEDIA_COLUMNS
    rows = [cdr_row("B", ended(n, start=1000.0 + n * 10, answered=n % 2 == 0)) for n in range(1, 7)]
    db.executemany(f"INSERT INTO cdr ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
    cursor = db.cursor()
    assert [r["id"] for r in select_records(cursor)] == [f"B-call-{n}" for n in range(6, 0, -1)]
    assert [r["id"] for r in select_records(cursor, number="2003")] == ["B-call-3"]
    assert [r["id"] for r in select_records(cursor, number="+492004")] == ["B-call-4"]
    assert [r["id"] for r in select_records(cursor, since=1020.0, until=1040.0)] == ["B-call-3", "B-call-2"]
    assert [r["id"] for r in select_records(cursor, disposition="FAILED")] == ["B-call-5", "B-call-3",
                                                                               "B-call-1"]
    assert len(select_records(cursor, limit=2)) == 2
    assert select_records(cursor, number="1001", limit=1)[0]["caller"] == "1001"


@pytest_twisted.ensureDeferred
async def test_records_come_from_the_cdr_table_after_a_flush(tmp_path: Path, reactor: Any):
    """With call records on, the search first writes what is queued (a call that
    just ended is found) and then reads the SQLite table, with the filters."""
    store = SqliteStore(tmp_path / "cdr.db", reactor)
    records = CallDetailRecords(store, CdrSettings(True, 200, 60.0), Clock(), boot="20261203T090000Z-ab12")
    try:
        for n in range(1, 4):
            records.call_event(ended(n, start=1000.0 + n, answered=n != 2))
        assert records.queued == 3  # a minute before its timer would write them
        service = SimpleNamespace(cdr=records, engine=SimpleNamespace(store=store))
        rows = await find_records(service, RecordQuery(disposition="ANSWERED"))
        assert [r["id"] for r in rows] == ["20261203T090000Z-ab12-call-3", "20261203T090000Z-ab12-call-1"]
        assert records.queued == 0 and rows[0]["billsec"] == 30.0
        assert switch_call_id(rows[0]["id"]) == "call-3"
    finally:
        await records.stop()
        await store.close()
