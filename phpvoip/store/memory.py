"""The in-memory location store: `storage: memory:`. Nothing survives a restart.

It still keeps its own copies of what it is given, so it behaves like a store that
writes somewhere else: a binding changed after `save()` is not changed in the store.
"""

from __future__ import annotations

import copy
import secrets

from twisted.internet import defer
from zope.interface import implementer

from phpvoip.interfaces import ILocationStore
from phpvoip.store import Binding, UserRecord

__all__ = ["MemoryStore"]


@implementer(ILocationStore)
class MemoryStore:
    """Bindings, users and secrets in dicts; every Deferred has already fired."""

    def __init__(self) -> None:
        self.bindings: dict[tuple[str, str], Binding] = {}
        self.users: dict[str, UserRecord] = {}
        self._secrets: dict[str, bytes] = {}
        self.closed = False

    def __repr__(self) -> str:
        return f"<MemoryStore bindings={len(self.bindings)} users={len(self.users)}>"

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("the store is closed")

    def load(self, now: float) -> defer.Deferred:
        lapsed = [k for k, b in self.bindings.items() if b.expires_at <= now]
        for k in lapsed:
            del self.bindings[k]
        return defer.succeed([copy.copy(b) for b in self.bindings.values()])

    def save(self, binding: Binding) -> defer.Deferred:
        self._check_open()
        self.bindings[(binding.aor, binding.key)] = copy.copy(binding)
        return defer.succeed(None)

    def delete(self, aor: str, key: str) -> defer.Deferred:
        self._check_open()
        self.bindings.pop((aor, key), None)
        return defer.succeed(None)

    def flush(self) -> defer.Deferred:
        return defer.succeed(None)

    def close(self) -> defer.Deferred:
        self.closed = True
        return defer.succeed(None)

    def secret(self, name: str) -> defer.Deferred:
        if name not in self._secrets:
            self._secrets[name] = secrets.token_bytes(32)
        return defer.succeed(self._secrets[name])

    def load_users(self) -> defer.Deferred:
        return defer.succeed(list(self.users.values()))

    def save_user(self, user: UserRecord) -> defer.Deferred:
        self._check_open()
        self.users[user.username] = user
        return defer.succeed(None)

    def delete_user(self, username: str) -> defer.Deferred:
        self._check_open()
        self.users.pop(username, None)
        return defer.succeed(None)
