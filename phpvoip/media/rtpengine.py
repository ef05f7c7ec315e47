"""Media through an external rtpengine, driven over its ng control protocol.

The switch keeps the signalling; rtpengine relays the RTP. Each call is one ng
call-id and each side of the bridge one ng tag: an offer made by side ``a`` for side
``b`` is ``offer`` with from-tag a and to-tag b, its answer is ``answer`` with
from-tag a (the offerer) and to-tag b. rtpengine rewrites c=/m= to its own ports,
latches on the source the packets really come from, and handles re-offers from
either side (hold, a new address) within the same call-id.

Health: `start` pings and fails when rtpengine does not answer. Later, a request
that times out marks the engine down: `session` refuses new calls with
`MediaUnavailable` (the bridge answers 503, or the fallback engine takes them)
and the engine pings every `ping_interval` seconds until rtpengine answers again.
Calls in progress keep using rtpengine; their requests are still tried.

Media timeout: one timer for the whole engine asks rtpengine about each answered
call once per ``rtp_timeout / 3`` seconds, the queries spread over that period.
rtpengine reports, per stream, the wall-clock second of its last packet (and resets
it at every offer/answer). Its clock is not ours, so the engine only watches that
figure change: when the newest "last packet" of a call has not moved for
`rtp_timeout` seconds of our clock, the call has had no media (or signalling) for
that long, give or take one polling period, and ``on_timeout()`` is called once.
A call on hold with every stream inactive is never timed out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from phpvoip.interfaces import IMediaEngine, IMediaSession, MediaUnavailable
from phpvoip.media.ng import NgClient, NgError, NgTimeout, parse_ng_address

__all__ = ["OFFER_FLAGS", "RtpengineEngine", "RtpengineSession", "counters_from_query"]

_log = Logger(namespace="phpvoip.media.rtpengine")

# What a B2BUA asks of rtpengine on every offer and answer: its own address in the
# SDP origin and session c= line (the parties must not see each other's), plain
# RTP without ICE candidates (rtpengine would otherwise add its own). The SDP's
# m=/c= of each stream are always rewritten to rtpengine's ports.
OFFER_FLAGS: dict[str, Any] = {"replace": ["origin", "session-connection"], "ICE": "remove"}


@implementer(IMediaEngine)
class RtpengineEngine:
    """An `IMediaEngine` that hands each call's media to rtpengine.

    `ng` is rtpengine's control address (``udp:HOST:PORT``, an IP literal);
    `timeout`/`retries` govern every ng request; `rtp_timeout` (seconds, 0 = off)
    ends calls without media; `ping_interval` is how often a down rtpengine is
    probed."""

    name = "rtpengine"

    def __init__(
        self,
        reactor: Any,
        ng: str = "udp:127.0.0.1:2223",
        timeout: float = 1.0,
        retries: int = 2,
        rtp_timeout: float = 60.0,
        ping_interval: float = 5.0,
    ) -> None:
        self.reactor = reactor
        self.ng = ng
        self.address = parse_ng_address(ng)
        self.rtp_timeout = rtp_timeout
        self.ping_interval = ping_interval
        self.client = NgClient(self.address, reactor, timeout, retries)
        self.up = False
        self._port: Any = None
        self._sessions: dict[str, RtpengineSession] = {}
        self._polled: deque[RtpengineSession] = deque()
        self._poll_timer: IDelayedCall | None = None
        self._ping_timer: IDelayedCall | None = None
        self._stopped = False

    # -- IMediaEngine

    def start(self) -> defer.Deferred:
        """Bind the control socket and ping; errback with MediaUnavailable naming the
        address when rtpengine does not answer."""
        if self._port is None:
            host = self.address[0]
            interface = "::" if ":" in host else ("127.0.0.1" if host.startswith("127.") else "")
            self._port = self.reactor.listenUDP(0, self.client, interface=interface)
        self._stopped = False

        def answered(reply: dict) -> None:
            if reply.get("result") != b"pong":
                result = reply.get("result")
                raise MediaUnavailable(f"rtpengine at {self.ng} answered ng ping with {result!r}")
            self.up = True
            _log.info("rtpengine at {ng} answers", ng=self.ng)

        def failed(failure: Failure) -> None:
            failure.trap(NgTimeout, NgError)
            raise MediaUnavailable(f"rtpengine at {self.ng} does not answer ng ping")

        return self.client.request({"command": "ping"}).addCallbacks(answered, failed)

    def session(self, call_id: str, on_timeout: Callable[[], None]) -> RtpengineSession:
        """A session for `call_id`; MediaUnavailable while rtpengine is down."""
        if not self.up or self._stopped:
            raise MediaUnavailable(f"rtpengine at {self.ng} is not answering")
        if call_id in self._sessions:
            raise ValueError(f"media session {call_id!r} exists already")
        session = RtpengineSession(self, call_id, on_timeout)
        self._sessions[call_id] = session
        return session

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """Delete every call on rtpengine, stop the timers and the socket."""
        self._stopped = True
        for timer in (self._poll_timer, self._ping_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._poll_timer = self._ping_timer = None
        yield defer.DeferredList([session.close() for session in list(self._sessions.values())])
        self.client.close()
        if self._port is not None:
            port, self._port = self._port, None
            yield port.stopListening()
        self.up = False

    # -- what sessions use

    @property
    def sessions(self) -> int:
        """How many calls the engine holds on rtpengine."""
        return len(self._sessions)

    def request(self, message: dict[str, Any]) -> defer.Deferred:
        """Send an ng request; a timeout marks the engine down (and still fails)."""
        d = self.client.request(message)
        d.addErrback(self._timed_out)
        return d

    def _timed_out(self, failure: Failure) -> Failure:
        if failure.check(NgTimeout) and self.up and not self._stopped:
            self.up = False
            _log.warn("rtpengine at {ng} stopped answering ({error}); new calls are refused until it does",
                      ng=self.ng, error=failure.getErrorMessage())
            self._ping_timer = self.reactor.callLater(self.ping_interval, self._probe)
        return failure

    def _probe(self) -> None:
        self._ping_timer = None
        if self._stopped:
            return

        def answered(reply: dict) -> None:
            if reply.get("result") == b"pong" and not self._stopped:
                self.up = True
                _log.info("rtpengine at {ng} answers again", ng=self.ng)
                self._schedule_poll()
            else:
                again(None)

        def again(_: Any) -> None:
            if not self._stopped:
                self._ping_timer = self.reactor.callLater(self.ping_interval, self._probe)

        self.client.request({"command": "ping"}).addCallbacks(answered, again)

    def _forget(self, session: RtpengineSession) -> None:
        if self._sessions.get(session.call_id) is session:
            del self._sessions[session.call_id]

    # -- the media timeout poll: one timer, sessions queried in turn

    def _watch(self, session: RtpengineSession) -> None:
        """From its first answer on, `session` is checked for media."""
        if self.rtp_timeout <= 0 or session.watched:
            return
        session.watched = True
        session.progress_at = self.reactor.seconds()
        self._polled.append(session)
        self._schedule_poll()

    def _schedule_poll(self) -> None:
        if self._poll_timer is None and self._polled and not self._stopped:
            period = self.rtp_timeout / 3.0
            self._poll_timer = self.reactor.callLater(period / len(self._polled), self._poll)

    def _poll(self) -> None:
        self._poll_timer = None
        while self._polled and self._polled[0].closed:
            self._polled.popleft()
        if not self._polled:
            return
        if not self.up:
            return  # nothing to learn while rtpengine is down; the probe restarts the poll
        session = self._polled[0]
        self._polled.rotate(-1)
        session.check_media()
        self._schedule_poll()


@implementer(IMediaSession)
class RtpengineSession:
    """The media of one call on rtpengine (call-id = the switch's call id)."""

    __slots__ = ("call_id", "closed", "engine", "progress_at", "watched", "_closing", "_counters",
                 "_last_packet", "_on_timeout", "_timed_out")

    def __init__(self, engine: RtpengineEngine, call_id: str, on_timeout: Callable[[], None]) -> None:
        self.engine = engine
        self.call_id = call_id
        self._on_timeout = on_timeout
        self._counters: dict[str, dict[str, Any]] = {}
        self._last_packet = 0
        self._timed_out = False
        self._closing: defer.Deferred | None = None
        self.closed = False
        self.watched = False
        self.progress_at = 0.0

    def offer(self, from_side: str, to_side: str, sdp: bytes) -> defer.Deferred:
        """ng ``offer`` from-tag=from_side, to-tag=to_side; fires with the SDP for
        to_side's party."""
        return self._sdp_request("offer", from_side, to_side, sdp)

    def answer(self, from_side: str, to_side: str, sdp: bytes) -> defer.Deferred:
        """ng ``answer`` for the offer to_side made: from-tag is the offerer
        (to_side), to-tag the answerer (from_side)."""
        d = self._sdp_request("answer", to_side, from_side, sdp)

        def answered(result: bytes) -> bytes:
            self.engine._watch(self)
            return result

        return d.addCallback(answered)

    def _sdp_request(self, command: str, from_tag: str, to_tag: str, sdp: bytes) -> defer.Deferred:
        if self.closed:
            return defer.fail(MediaUnavailable(f"media session {self.call_id} is closed"))
        message = {"command": command, "call-id": self.call_id, "from-tag": from_tag, "to-tag": to_tag,
                   "sdp": bytes(sdp), **OFFER_FLAGS}

        def done(reply: dict) -> bytes:
            result = reply.get("sdp")
            if not isinstance(result, bytes):
                raise ValueError(f"rtpengine's {command} reply has no SDP")
            return result

        return self.engine.request(message).addCallbacks(done, self._failed, errbackArgs=(command,))

    def _failed(self, failure: Failure, command: str) -> Failure:
        """The IMediaSession errors: MediaUnavailable for silence, ValueError for a refusal."""
        if failure.check(NgTimeout):
            raise MediaUnavailable(f"rtpengine at {self.engine.ng} did not answer {command}")
        if failure.check(NgError):
            if "out of ports" in failure.value.reason.lower():  # rtpengine: "Ran out of ports"
                raise MediaUnavailable(f"rtpengine at {self.engine.ng}: {failure.value.reason}")
            raise ValueError(failure.value.reason)
        return failure

    def counters(self) -> dict[str, dict[str, Any]]:
        """The figures of the last query (or of the delete, once closed)."""
        return {direction: dict(figures) for direction, figures in self._counters.items()}

    def refresh(self) -> defer.Deferred:
        """Query rtpengine now; fires with the fresh `counters()` (the poll does this
        on its own every rtp_timeout/3 seconds). Fails like `offer`."""

        def queried(reply: dict) -> dict:
            self._update(reply)
            return self.counters()

        d = self.engine.request({"command": "query", "call-id": self.call_id})
        return d.addCallbacks(queried, self._failed, errbackArgs=("query",))

    def close(self) -> defer.Deferred:
        """ng ``query`` for the final counters (rtpengine's ``delete`` answers a bare
        ``ok``), then ``delete``. Errors are logged, never raised; a second close
        waits for the first."""
        if self._closing is not None:
            return _follow(self._closing)
        self.closed = True
        self.engine._forget(self)
        self._closing = defer.Deferred()
        self._close().addBoth(lambda _: self._closing.callback(None))
        return _follow(self._closing)

    @defer.inlineCallbacks
    def _close(self) -> Any:
        if self.engine.up:  # down, the query would only add its timeout to the delete's
            try:
                self._update((yield self.engine.request({"command": "query", "call-id": self.call_id})))
            except (NgError, NgTimeout):
                pass  # the delete below says what matters
        try:
            yield self.engine.request({"command": "delete", "call-id": self.call_id})
        except (NgError, NgTimeout) as e:
            _log.warn("rtpengine delete of call {callID} failed: {error}", callID=self.call_id, error=e)

    # -- the media timeout

    def check_media(self) -> None:
        """Query rtpengine (from the engine's poll) and call on_timeout once when no
        stream has moved for rtp_timeout."""
        if self.closed or self._timed_out:
            return

        def queried(reply: dict) -> None:
            if self.closed or self._timed_out:
                return
            self._update(reply)
            now = self.engine.reactor.seconds()
            latest, active = _media_state(reply)
            if latest != self._last_packet:
                self._last_packet = latest
                self.progress_at = now
            elif active and now - self.progress_at >= self.engine.rtp_timeout:
                self._time_out(f"no media for {now - self.progress_at:.0f}s")

        def failed(failure: Failure) -> None:
            if failure.check(NgError) and "call-id" in failure.value.reason.lower() and not self.closed:
                # rtpengine dropped the call itself (its own --timeout, or a restart):
                # the media is gone either way.
                self._time_out(f"rtpengine no longer knows the call ({failure.value.reason})")
            elif not failure.check(NgTimeout, NgError):
                _log.failure("media query of call {callID} failed", failure, callID=self.call_id)

        self.engine.request({"command": "query", "call-id": self.call_id}).addCallbacks(queried, failed)

    def _time_out(self, why: str) -> None:
        self._timed_out = True
        _log.info("call {callID}: media timeout: {why}", callID=self.call_id, why=why)
        try:
            self._on_timeout()
        except Exception:
            _log.failure("on_timeout of call {callID} failed", callID=self.call_id)

    def _update(self, reply: dict) -> None:
        figures = counters_from_query(reply)
        if figures:
            self._counters = figures


def _follow(deferred: defer.Deferred) -> defer.Deferred:
    """A Deferred that fires when `deferred` does, without touching its result."""
    follower: defer.Deferred = defer.Deferred()
    deferred.addBoth(lambda result: (follower.callback(None), result)[1])
    return follower


def _media_state(reply: dict) -> tuple[int, bool]:
    """The newest "last packet" over every stream, and whether any media section
    may carry media (has "send" or "recv" among its flags)."""
    latest = 0
    active = False
    tags = reply.get("tags")
    for tag in tags.values() if isinstance(tags, dict) else ():
        for media in tag.get("medias", ()) if isinstance(tag, dict) else ():
            flags = media.get("flags", ())
            if b"send" in flags or b"recv" in flags:
                active = True
            for stream in media.get("streams", ()):
                last = stream.get("last packet")
                if isinstance(last, int) and last > latest:
                    latest = last
    return latest, active


def counters_from_query(reply: dict) -> dict[str, dict[str, Any]]:
    """Figures by direction from a ``query`` (or ``delete``) reply.

    A tag's stream counts what rtpengine received from that tag's party, so tag
    ``a`` in dialogue with ``b`` gives ``"a>b"``: packets and bytes (whole RTP
    datagrams, header included, as rtpengine counts them) summed over the tag's RTP
    streams. "lost" and "jitter_ms" come from rtpengine's per-SSRC figures, which
    it fills only from RTCP reports; without them the keys are absent."""
    tags = reply.get("tags")
    if not isinstance(tags, dict):
        return {}
    ssrcs = reply.get("SSRC") if isinstance(reply.get("SSRC"), dict) else {}
    result: dict[str, dict[str, Any]] = {}
    for name, tag in tags.items():
        if not isinstance(tag, dict):
            continue
        peers = [_text(entry.get("tag")) for entry in tag.get("subscribers", ()) if isinstance(entry, dict)]
        if not peers and tag.get("in dialogue with"):
            peers = [_text(tag["in dialogue with"])]
        if not peers:
            continue
        figures: dict[str, Any] = {"packets": 0, "bytes": 0}
        for media in tag.get("medias", ()):
            for stream in media.get("streams", ()):
                if b"RTP" not in stream.get("flags", ()):
                    continue
                stats = stream.get("stats", {})
                figures["packets"] += int(stats.get("packets", 0))
                figures["bytes"] += int(stats.get("bytes", 0))
                quality = ssrcs.get(str(stream.get("SSRC", "")))
                if isinstance(quality, dict) and "cumulative loss" in quality:
                    figures["lost"] = figures.get("lost", 0) + int(quality["cumulative loss"])
                    average = quality.get("average MOS")
                    if isinstance(average, dict) and "jitter" in average:
                        figures["jitter_ms"] = float(average["jitter"])
        result[f"{name}>{peers[0]}"] = figures
    return result


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
