"""A media engine that falls back to another while the first is down.

``media: {mode: rtpengine, fallback: relay}``: calls go to rtpengine; while it is
not answering (its `session` raises MediaUnavailable) new calls go to the
in-process relay instead of getting 503. A call stays on the engine it started
on. One case is caught later than `session`: rtpengine stops answering between
`session` and the call's first offer. Nothing has been set up then, so that first
offer is made again on the fallback and the call never notices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from phpvoip.interfaces import IMediaEngine, IMediaSession, MediaUnavailable

__all__ = ["FallbackEngine", "FallbackSession"]

_log = Logger(namespace="phpvoip.media.fallback")


@implementer(IMediaEngine)
class FallbackEngine:
    """`primary` while it takes calls, `fallback` while it does not.

    Both are started; the switch does not start when the primary cannot be
    reached (a wrong address should be noticed, not silently relayed)."""

    def __init__(self, primary: Any, fallback: Any) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = primary.name
        self.fallen_back = 0  # calls given to the fallback, for logs and tests

    def start(self) -> defer.Deferred:
        """Start the fallback, then the primary; fails when either fails."""
        return defer.maybeDeferred(self.fallback.start).addCallback(lambda _: self.primary.start())

    def session(self, call_id: str, on_timeout: Callable[[], None]) -> Any:
        """The primary's session, or the fallback's when the primary refuses."""
        try:
            primary = self.primary.session(call_id, on_timeout)
        except MediaUnavailable as e:
            self.fallen_back += 1
            _log.info("call {callID}: media on {fallback}: {reason}", callID=call_id,
                      fallback=self.fallback.name, reason=e)
            return self.fallback.session(call_id, on_timeout)
        return FallbackSession(self, primary, call_id, on_timeout)

    def stop(self) -> defer.Deferred:
        """Stop both engines."""
        return defer.DeferredList(
            [defer.maybeDeferred(self.primary.stop), defer.maybeDeferred(self.fallback.stop)]
        ).addCallback(lambda _: None)


@implementer(IMediaSession)
class FallbackSession:
    """A primary session that moves to the fallback if its very first offer finds
    the primary gone; afterwards it is the primary session's plain proxy."""

    __slots__ = ("call_id", "current", "engine", "_moved", "_on_timeout", "_started")

    def __init__(
        self, engine: FallbackEngine, primary: Any, call_id: str, on_timeout: Callable[[], None]
    ) -> None:
        self.engine = engine
        self.current = primary
        self.call_id = call_id
        self._on_timeout = on_timeout
        self._started = False
        self._moved = False

    def offer(self, from_side: str, to_side: str, sdp: bytes) -> defer.Deferred:
        """The current engine's offer; a first offer lost to a down primary is made
        again on the fallback."""
        if self._started:
            return self.current.offer(from_side, to_side, sdp)
        self._started = True
        d = self.current.offer(from_side, to_side, sdp)

        def unavailable(failure: Failure) -> Any:
            failure.trap(MediaUnavailable)
            if self._moved:
                return failure
            self._moved = True
            abandoned = self.current
            try:
                self.current = self.engine.fallback.session(self.call_id, self._on_timeout)
            except MediaUnavailable:
                return failure
            abandoned.close()
            self.engine.fallen_back += 1
            _log.info("call {callID}: media moved to {fallback}: {reason}", callID=self.call_id,
                      fallback=self.engine.fallback.name, reason=failure.getErrorMessage())
            return self.current.offer(from_side, to_side, sdp)

        return d.addErrback(unavailable)

    def answer(self, from_side: str, to_side: str, sdp: bytes) -> defer.Deferred:
        """The current engine's answer."""
        self._started = True
        return self.current.answer(from_side, to_side, sdp)

    def counters(self) -> dict:
        """The current engine's figures."""
        return self.current.counters()

    def close(self) -> defer.Deferred:
        """Close the current engine's session."""
        return self.current.close()
