"""Location stores: the memory store and the SQLite store (real reactor, temp file)."""

from __future__ import annotations

import sqlite3

import pytest
import pytest_twisted
from twisted.internet import defer
from zope.interface.verify import verifyObject

from phpvoip.config import StorageSettings
from phpvoip.interfaces import ILocationStore
from phpvoip.sip.address import Address
from phpvoip.store import Binding, UserRecord, format_source, open_store, parse_source
from phpvoip.store.memory import MemoryStore
from phpvoip.store.sqlite import SqliteStore


def binding(
    aor: str = "1001", key: str = "sip:1001@192.0.2.10:5060", expires_at: float = 1000.0, **kwargs
) -> Binding:
    fields = dict(
        aor=aor, key=key, contact=key, expires_at=expires_at, call_id="c1",
        cseq=2, q=0.5, source=Address("udp", "198.51.100.7", 40123), registered_at=10.0, user_agent="ua",
    )
    fields.update(kwargs)
    return Binding(**fields)


def same(a: Binding, b: Binding) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in Binding.__slots__)


@pytest.fixture
def reactor():
    from twisted.internet import reactor

    return reactor


@pytest.fixture
def sqlite_path(tmp_path):
    return tmp_path / "sub" / "dir" / "phpvoip.db"


@pytest_twisted.async_yield_fixture
async def sqlite_store(reactor, sqlite_path):
    store = SqliteStore(sqlite_path, reactor)
    yield store
    await store.close()


# -- helpers ------------------------------------------------------------------------------


def test_source_text_round_trip():
    """Source addresses (IPv4, IPv6, none) survive their text form."""
    for source in (Address("udp", "192.0.2.1", 5060), Address("tcp", "2001:db8::1", 5061), None):
        assert parse_source(format_source(source)) == source
    assert parse_source("garbage") is None


def test_remaining_rounds_and_never_goes_negative():
    """remaining() gives whole seconds left, 0 once lapsed."""
    b = binding(expires_at=100.0)
    assert b.remaining(39.6) == 60 and b.remaining(100.0) == 0 and b.remaining(500.0) == 0
    assert b.remaining(99.8) == 1


def test_open_store_kinds(reactor, tmp_path):
    """open_store makes a memory store or a SQLite store from the settings."""
    assert isinstance(open_store(StorageSettings("memory"), reactor), MemoryStore)
    store = open_store(StorageSettings("sqlite", str(tmp_path / "x.db")), reactor)
    try:
        assert isinstance(store, SqliteStore)
    finally:
        store.pool.close()
    with pytest.raises(ValueError):
        open_store(StorageSettings("redis", "x"), reactor)


# -- memory -------------------------------------------------------------------------------


def test_memory_store_provides_the_interface():
    """The memory store meets ILocationStore."""
    assert verifyObject(ILocationStore, MemoryStore())


def test_memory_store_round_trip():
    """Saved bindings load back as copies; delete removes; lapsed are dropped."""
    store = MemoryStore()
    original = binding()
    store.save(original)
    store.save(binding(key="sip:other", expires_at=50.0))
    original.cseq = 99  # the store kept its own copy
    loaded = store.load(60.0).result
    assert len(loaded) == 1 and loaded[0].cseq == 2
    store.delete("1001", original.key)
    assert store.load(60.0).result == []


def test_memory_store_secret_is_stable():
    """The same name gives the same secret; another name another one."""
    store = MemoryStore()
    assert store.secret("a").result == store.secret("a").result != store.secret("b").result


def test_memory_store_refuses_writes_after_close():
    """A closed store takes no writes."""
    store = MemoryStore()
    store.close()
    with pytest.raises(RuntimeError):
        store.save(binding())


# -- SQLite -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sqlite_store_provides_the_interface(sqlite_store, sqlite_path):
    """The SQLite store meets ILocationStore and creates the database's directory."""
    assert verifyObject(ILocationStore, sqlite_store)
    assert sqlite_path.parent.is_dir()


@pytest_twisted.ensureDeferred
async def test_sqlite_round_trip(sqlite_store):
    """Every field of a binding comes back from the database as it went in."""
    original = binding(q=None)
    await sqlite_store.save(original)
    await sqlite_store.save(binding(key="sip:1001@192.0.2.11", source=None, user_agent=None))
    loaded = await sqlite_store.load(0.0)
    assert len(loaded) == 2
    by_key = {b.key: b for b in loaded}
    assert same(by_key[original.key], original)
    assert by_key["sip:1001@192.0.2.11"].source is None


@pytest_twisted.ensureDeferred
async def test_sqlite_delete_and_replace(sqlite_store):
    """A later save replaces; delete removes; deleting nothing is no error."""
    await sqlite_store.save(binding(cseq=2))
    await sqlite_store.save(binding(cseq=3))
    assert [b.cseq for b in await sqlite_store.load(0.0)] == [3]
    await sqlite_store.delete("1001", "sip:1001@192.0.2.10:5060")
    await sqlite_store.delete("1001", "nothing")
    assert await sqlite_store.load(0.0) == []


@pytest_twisted.ensureDeferred
async def test_sqlite_load_drops_lapsed_rows(sqlite_store, sqlite_path):
    """load(now) returns only live bindings and deletes the lapsed ones."""
    await sqlite_store.save(binding(key="live", expires_at=200.0))
    await sqlite_store.save(binding(key="dead", expires_at=100.0))
    assert [b.key for b in await sqlite_store.load(150.0)] == ["live"]
    with sqlite3.connect(sqlite_path) as db:
        assert db.execute("SELECT contact_key FROM bindings").fetchall() == [("live",)]


@pytest_twisted.ensureDeferred
async def test_sqlite_writes_are_coalesced_in_order(sqlite_store):
    """Many writes made at once go out in a few commits, in order: a save then a
    delete of the same binding ends deleted; a delete then a save ends saved."""
    writes = [sqlite_store.save(binding(key=f"k{i}", cseq=i)) for i in range(500)]
    writes.append(sqlite_store.delete("1001", "k7"))
    writes.append(sqlite_store.delete("1001", "k8"))
    writes.append(sqlite_store.save(binding(key="k8", cseq=1000)))
    await defer.gatherResults(writes)
    loaded = {b.key: b.cseq for b in await sqlite_store.load(0.0)}
    assert len(loaded) == 499 and "k7" not in loaded and loaded["k8"] == 1000
    assert sqlite_store.batches <= 3


@pytest_twisted.ensureDeferred
async def test_sqlite_save_keeps_a_copy(sqlite_store):
    """A binding changed after save() is stored as it was when saved."""
    original = binding()
    d = sqlite_store.save(original)
    original.cseq = 99
    await d
    assert [b.cseq for b in await sqlite_store.load(0.0)] == [2]


@pytest_twisted.ensureDeferred
async def test_sqlite_survives_reopening(reactor, sqlite_path):
    """Bindings, users and secrets written before close are there after reopening."""
    first = SqliteStore(sqlite_path, reactor)
    await first.save(binding())
    await first.save_user(UserRecord("2001", "a" * 32, "b" * 64))
    secret = await first.secret("digest")
    first.save(binding(key="written-at-close"))
    await first.close()
    second = SqliteStore(sqlite_path, reactor)
    try:
        keys = sorted(b.key for b in await second.load(0.0))
        assert keys == ["sip:1001@192.0.2.10:5060", "written-at-close"]
        assert await second.load_users() == [UserRecord("2001", "a" * 32, "b" * 64)]
        assert await second.secret("digest") == secret
        assert await second.secret("other") != secret
    finally:
        await second.close()


@pytest_twisted.ensureDeferred
async def test_sqlite_users(sqlite_store):
    """Users are saved, replaced and deleted."""
    await sqlite_store.save_user(UserRecord("2001", "a" * 32, None))
    await sqlite_store.save_user(UserRecord("2001", None, "c" * 64))
    await sqlite_store.save_user(UserRecord("2002", "d" * 32, None))
    await sqlite_store.delete_user("2002")
    assert await sqlite_store.load_users() == [UserRecord("2001", None, "c" * 64)]


@pytest_twisted.ensureDeferred
async def test_sqlite_closed_store_refuses_writes(reactor, sqlite_path):
    """After close() a write fails instead of vanishing."""
    store = SqliteStore(sqlite_path, reactor)
    await store.close()
    with pytest.raises(RuntimeError):
        await store.save(binding())


@pytest_twisted.ensureDeferred
async def test_registrar_restart_on_sqlite_keeps_remaining_time(reactor, sqlite_path):
    """A registrar on a SQLite store, stopped and started on a fresh store over
    the same file, serves the binding with the time it had left."""
    from twisted.internet.task import Clock

    from tests.unit.registrar_fakes import FakeEngine, Phone

    clock = Clock()
    clock.advance(1_700_000_000)
    store = SqliteStore(sqlite_path, reactor)
    first, _ = await _started(FakeEngine(clock=clock, store=store))
    assert Phone("1001", "secret1").register(first, ["<sip:1001@192.0.2.10>"], expires=600).status == 200
    await first.stop()
    await store.close()
    clock.advance(250)
    store = SqliteStore(sqlite_path, reactor)
    try:
        second, _ = await _started(FakeEngine(clock=clock, store=store))
        [restored] = second.contacts("1001")
        assert restored.remaining(clock.seconds()) == 350
    finally:
        await store.close()


async def _started(engine):
    """A registrar started on `engine` (with a real store the load fires later
    than `registrar_fakes.registrar` expects, so this one waits)."""
    from phpvoip.config import Section
    from phpvoip.modules.registrar import Registrar, parse_settings

    settings = parse_settings(Section("t.yaml", "m", {"users": {"1001": "secret1"}, "algorithms": ["MD5"]}))
    module = Registrar("registrar", settings)
    await module.start(engine)
    return module, engine


def test_users_command_adds_lists_and_removes(tmp_path, monkeypatch, capsys):
    """`python -m phpvoip.store DB users add` keeps only HA1s; list and remove work."""
    import io

    from phpvoip.sip.digest import ha1
    from phpvoip.store.__main__ import main

    db = str(tmp_path / "var" / "users.db")
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert main([db, "users", "add", "3001", "--realm", "pbx.test", "--password-stdin"]) == 0
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT username, ha1_md5, ha1_sha256 FROM users").fetchone()
    assert row == ("3001", ha1("3001", "pbx.test", "s3cret"), ha1("3001", "pbx.test", "s3cret", "SHA-256"))
    assert main([db, "users", "list"]) == 0
    assert capsys.readouterr().out == "3001\n"
    assert main([db, "users", "remove", "3001"]) == 0
    assert main([db, "users", "remove", "3001"]) == 1
    assert main([db, "bindings"]) == 0


@pytest_twisted.ensureDeferred
async def test_registrar_reads_users_added_to_the_sqlite_store(reactor, tmp_path, monkeypatch):
    """Users added with the command are served by a registrar with users_from_store."""
    import io

    from phpvoip.config import Section
    from phpvoip.modules.registrar import Registrar, parse_settings
    from phpvoip.store.__main__ import main
    from tests.unit.registrar_fakes import DOMAIN, FakeEngine, Phone

    db = tmp_path / "users.db"
    monkeypatch.setattr("sys.stdin", io.StringIO("pw4\n"))
    assert main([str(db), "users", "add", "4001", "--realm", DOMAIN, "--password-stdin"]) == 0
    store = SqliteStore(db, reactor)
    try:
        section = Section("t.yaml", "m", {"users_from_store": True, "algorithms": ["SHA-256"]})
        settings = parse_settings(section)
        module = Registrar("registrar", settings)
        await module.start(FakeEngine(store=store))
        assert Phone("4001", "pw4").register(module, ["<sip:4001@192.0.2.10>"]).status == 200
    finally:
        await store.close()
