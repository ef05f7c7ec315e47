"""Console logins and sessions.

A session is a random token in the ``phpvoip_session`` cookie (HttpOnly, so page
scripts cannot read it; SameSite=Strict, so another site's form does not carry it)
with its own CSRF token, which every page repeats in a ``<meta>`` tag and every POST
must send back (form field ``csrf`` or header ``X-CSRF-Token``). Sessions live in
memory: a restart logs everybody out. Idle ones end after `timeout` seconds of the
injected clock; expired ones are swept at each login, so their number stays bounded
by the logins of one timeout.

Checking a password costs a PBKDF2 computation (a quarter of a second at the default
iterations): it runs in the reactor's thread pool (hashlib lets go of the GIL for
it), so that guesses do not stall calls, and at most `MAX_CHECKS` run at once; more
attempts meanwhile are turned away (`Busy`) rather than queued. An address that
keeps failing is turned away before any check (`Throttled`, see `throttle`).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger

from phpvoip.console.passwords import check_hash, verify_password
from phpvoip.console.throttle import LoginThrottle
from phpvoip.opsconfig import ConsoleSettings

__all__ = ["COOKIE", "Busy", "Session", "Sessions", "Throttled"]

log = Logger()

COOKIE = b"phpvoip_session"
MAX_CHECKS = 4


def _decoy(stored: str) -> str:
    """A hash no password matches, as costly as `stored`: checked when the user is
    unknown, so that a wrong name takes as long as a wrong password."""
    iterations = check_hash(stored)[0]
    return f"pbkdf2_sha256${iterations}$ZGVjb3lzYWx0$" + "A" * 43


class Busy(Exception):
    """Too many password checks in progress: try again shortly."""


class Throttled(Exception):
    """Too many failed logins from this address: wait `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class Session:
    """One logged-in browser: its user, CSRF token and last use."""

    __slots__ = ("token", "user", "csrf", "last_seen")

    def __init__(self, user: str, now: float) -> None:
        self.token = secrets.token_urlsafe(32)
        self.user = user
        self.csrf = secrets.token_urlsafe(32)
        self.last_seen = now

    def csrf_ok(self, sent: str | bytes | None) -> bool:
        """Whether `sent` is this session's CSRF token (constant-time)."""
        if sent is None:
            return False
        if isinstance(sent, bytes):
            sent = sent.decode("utf-8", "replace")
        return hmac.compare_digest(sent, self.csrf)


class Sessions:
    """The users who may log in, and the sessions open now."""

    def __init__(self, settings: ConsoleSettings, clock: Any) -> None:
        self.clock = clock
        self.timeout = settings.session_timeout
        self.hashes = {user.name: user.password_hash for user in settings.users}
        self.decoy = _decoy(settings.users[0].password_hash)
        self.open: dict[str, Session] = {}
        self.checking = 0  # password checks in progress
        self.throttle = LoginThrottle(clock, settings.login_attempts, settings.login_window,
                                      settings.login_max_delay)
        for user in settings.users:
            if user.plaintext:
                log.warn("console: user {user} has a plaintext password in the config; put its "
                         "password_hash there instead (python -m phpvoip.console.passwd)", user=user.name)

    def login(self, user: str, password: str, source: str = "") -> defer.Deferred:
        """Fires with a new session when `password` is `user`'s, else None; fails
        with `Throttled` when `source` (the client's address) failed too often, with
        `Busy` when `MAX_CHECKS` checks are already running. The check runs in a
        thread when the clock is a real reactor (inline under a task.Clock)."""
        wait = self.throttle.retry_after(source)
        if wait:
            return defer.fail(Throttled(wait))
        if self.checking >= MAX_CHECKS:
            return defer.fail(Busy())
        stored = self.hashes.get(user)
        target = stored if stored is not None else self.decoy
        if IReactorThreads.providedBy(self.clock):
            d = threads.deferToThreadPool(self.clock, self.clock.getThreadPool(), verify_password,
                                          password, target)
        else:
            d = defer.succeed(verify_password(password, target))
        self.checking += 1

        def checked(ok: bool) -> Session | None:
            self.checking -= 1
            ok = ok and stored is not None
            if ok:
                self.throttle.succeeded(source)
            else:
                self.throttle.failed(source)
            return self._open(user, ok, source)

        def failed(failure: Any) -> Any:
            self.checking -= 1
            return failure

        return d.addCallbacks(checked, failed)

    def _open(self, user: str, ok: bool, source: str = "") -> Session | None:
        if not ok:
            log.info("console: login refused for {user!r} from {address}", user=user, address=source or "?")
            return None
        self._sweep()
        session = Session(user, self.clock.seconds())
        self.open[session.token] = session
        log.info("console: {user} logged in from {address}", user=user, address=source or "?")
        return session

    def find(self, token: str | bytes | None) -> Session | None:
        """The live session of a cookie value, its idle time restarted; None when
        there is none or it has been idle too long."""
        if not token:
            return None
        if isinstance(token, bytes):
            token = token.decode("ascii", "replace")
        session = self.open.get(token)
        if session is None:
            return None
        now = self.clock.seconds()
        if now - session.last_seen > self.timeout:
            del self.open[token]
            return None
        session.last_seen = now
        return session

    def alive(self, session: Session) -> bool:
        """Whether `session` is still open and not idle too long (without touching it)."""
        return (self.open.get(session.token) is session
                and self.clock.seconds() - session.last_seen <= self.timeout)

    def logout(self, session: Session) -> None:
        self.open.pop(session.token, None)

    def _sweep(self) -> None:
        now = self.clock.seconds()
        for token in [t for t, s in self.open.items() if now - s.last_seen > self.timeout]:
            del self.open[token]
