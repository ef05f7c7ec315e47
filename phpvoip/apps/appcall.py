"""`AppCall`: one call as a terminal application sees it (`IAppCall`).

It is a `MediaLeg` (the SIP side: offer/answer, in-dialog requests) plus what an
application does with the call: play prompts, collect and buffer digits, record,
hold, and hand the caller on (`transfer`, `bridge`). Every action returns a
Deferred; when the call ends, every pending one fails with `CallGone`, `ended`
fires with the `Cause`, the endpoint is closed and every timer cancelled.

Digits (RFC 4733 or SIP INFO) go into one buffer in arrival order. A digit that
interrupts a `play` stays there and is the first one `collect` returns; a `play`
with `interruptible=True` while digits are already buffered (typed ahead) is not
played at all and fires with the first of them.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from phpvoip.apps.answering import MediaLeg
from phpvoip.apps.bridging import BridgeAttempt
from phpvoip.bridge_rebridge import TRANSFERRED, RebridgeFailed
from phpvoip.interfaces import NORMAL_CLEARING, CallGone, Cause, IAppCall, LegState
from phpvoip.media import prompts, tones

if TYPE_CHECKING:
    from phpvoip.apps.base import Application

__all__ = ["AppCall", "MAX_DURATION", "SILENCE_PEAK"]

log = Logger()

MAX_DURATION = Cause(None, "Maximum duration reached", "local")
# A 20 ms frame whose loudest sample stays under this (about -30 dBFS) is silence
# for record(silence_seconds=...): line noise and comfort noise stay below it.
SILENCE_PEAK = 1000


def _resolve(item: Any) -> Any:
    """A prompt name -> its file (phpvoip.media.prompts); anything else as is."""
    return prompts.resolve(item)


def _music() -> bytes:
    return prompts.music_on_hold()


class _Collect:
    __slots__ = ("deferred", "max_digits", "terminator", "timeout", "inter_digit", "got", "timer")

    def __init__(self, max_digits: int, terminator: str, timeout: float, inter_digit: float) -> None:
        self.deferred: defer.Deferred = defer.Deferred()
        self.max_digits = max_digits
        self.terminator = terminator
        self.timeout = timeout
        self.inter_digit = inter_digit
        self.got = ""
        self.timer: Any = None


class _Recording:
    __slots__ = ("deferred", "terminator", "samples", "timer", "silence_timer", "silence", "last_voice")

    def __init__(self, terminator: str, silence: float | None, now: float) -> None:
        self.deferred: defer.Deferred = defer.Deferred()
        self.terminator = terminator
        self.samples = 0
        self.timer: Any = None
        self.silence_timer: Any = None
        self.silence = silence
        self.last_voice = now


def _quiet_call_gone(failure: Failure) -> None:
    failure.trap(CallGone)


@implementer(IAppCall)
class AppCall(MediaLeg):
    """The application's call: built by `phpvoip.apps.base.Application`, handed
    to its ``run(call)``. `outgoing` for a call the application placed."""

    __slots__ = (
        "id", "caller", "number", "answered", "ended", "outgoing", "_pending", "_digits",
        "_digit_callbacks", "_play", "_hold", "_collect", "_recording", "_answering", "_timer",
        "_leaving", "_end_cause", "__weakref__",
    )

    def __init__(self, app: Application, leg: Any, call_id: str, record_id: str, number: str,
                 caller: str, outgoing: bool = False) -> None:
        super().__init__(app, leg, call_id)
        self.id = record_id
        self.caller = caller
        self.number = number
        self.outgoing = outgoing
        self.answered = False
        self.ended: defer.Deferred = defer.Deferred()
        self._pending: set[defer.Deferred] = set()
        self._digits: list[str] = []
        self._digit_callbacks: list[Callable[[str], Any]] = []
        self._play: tuple[defer.Deferred, bool] | None = None  # (what play() returned, interruptible)
        self._hold = False
        self._collect: _Collect | None = None
        self._recording: _Recording | None = None
        self._answering: defer.Deferred | None = None
        self._timer: Any = None  # max duration
        self._leaving = False  # handed to transfer/bridge: the end is not the app's failure
        self._end_cause: Cause | None = None

    def __repr__(self) -> str:
        return f"<AppCall {self.id} {self.caller}->{self.number}{' ended' if self.done else ''}>"

    @property
    def clock(self) -> Any:
        return self.app.reactor

    # -- bookkeeping ------------------------------------------------------------------------

    def _new(self, canceller: Any = None) -> defer.Deferred:
        """A Deferred that fails with CallGone if the call ends before it fires."""
        d: defer.Deferred = defer.Deferred(canceller)
        if self.done:
            d.errback(CallGone(self._cause()))
            return d
        self._pending.add(d)
        d.addBoth(self._settled, d)
        return d

    def _settled(self, result: Any, d: defer.Deferred) -> Any:
        self._pending.discard(d)
        return result

    def _cause(self) -> Cause | None:
        return self._end_cause

    def _gone(self) -> defer.Deferred:
        return defer.fail(CallGone(self._cause()))

    def _started(self) -> None:
        """The app side is live (answered or connected): the max duration runs."""
        self.answered = True
        self._timer = self.clock.callLater(self.app.settings.max_duration, self._too_long)
        endpoint = self.endpoint
        if endpoint is not None:
            endpoint.on_dtmf = self._digit
            endpoint.on_audio = self._audio

    def _too_long(self) -> None:
        self._timer = None
        log.info("{name}: call {call} reached max_duration", name=self.app.name, call=self.id)
        self.hang_up(MAX_DURATION)

    # -- answering ---------------------------------------------------------------------------

    def answer(self) -> defer.Deferred:
        if self.done:
            return self._gone()
        if self.answered or self._answering is not None:
            return self._answering if self._answering is not None else defer.succeed(None)
        self._answering = d = self._new()
        self.send_answer()
        return d

    def media_ready(self) -> None:
        self._started()
        d, self._answering = self._answering, None
        if d is not None and not d.called:
            d.callback(None)

    def connected(self) -> None:
        self._started()
        self.app.call_connected(self)

    def ringing(self) -> None:
        if not self.done and not self.answered:
            self.leg.progress(180, "Ringing", None)

    # -- playing ------------------------------------------------------------------------------

    def play(self, prompt: Any, interruptible: bool = False, loop: bool = False) -> defer.Deferred:
        if self.done or self.endpoint is None:
            return self._gone()
        if interruptible and self._digits:
            return defer.succeed(self._digits[0])  # typed ahead: skip the prompt
        try:
            items = [_resolve(p) for p in prompt] if isinstance(prompt, list | tuple) else [_resolve(prompt)]
        except (ValueError, TypeError) as e:
            return defer.fail(e)
        return self._start_play(items, interruptible, loop)

    def _start_play(self, items: list[Any], interruptible: bool, loop: bool) -> defer.Deferred:
        self._hold = False
        self._end_play(None)
        mine = self._new()
        self._play = (mine, interruptible)
        played = self.endpoint.play(items, loop=loop)  # type: ignore[union-attr]

        def finished(result: Any) -> None:
            if self._play is not None and self._play[0] is mine:
                self._play = None
            if not mine.called:
                if isinstance(result, Failure):
                    mine.errback(result)
                else:
                    mine.callback(None)

        played.addBoth(finished)
        return mine

    def _end_play(self, result: str | None) -> None:
        """Fire the current play's Deferred with `result` and stop the endpoint."""
        current, self._play = self._play, None
        if current is not None and not current[0].called:
            current[0].callback(result)
        if self.endpoint is not None and self.endpoint.playing:
            self.endpoint.stop_playing()

    def stop(self) -> None:
        self._hold = False
        self._end_play(None)

    def hold(self, music: Any = None) -> None:
        if self.done or self.endpoint is None:
            return
        item = _music() if music is None else _resolve(music)
        d = self._start_play([item], False, True)
        self._pending.discard(d)  # nobody waits on hold: its end is no failure
        d.addErrback(lambda f: log.failure("{name}: music on hold failed", f, name=self.app.name))
        self._hold = True

    # -- digits -----------------------------------------------------------------------------------

    def on_digit(self, callback: Callable[[str], Any]) -> None:
        self._digit_callbacks.append(callback)

    def flush_digits(self) -> None:
        self._digits.clear()

    def _digit(self, digit: str, duration_ms: int = 0) -> None:
        self._digits.append(digit)
        for callback in list(self._digit_callbacks):
            try:
                callback(digit)
            except Exception:
                log.failure("{name}: digit callback failed", name=self.app.name)
        recording = self._recording
        if recording is not None and digit == recording.terminator:
            self._digits.pop()
            self._stop_recording()
            return
        if self._play is not None and self._play[1]:
            self._end_play(digit)
        if self._collect is not None:
            self._feed()

    def collect(self, max_digits: int = 1, timeout: float = 10.0, inter_digit_timeout: float = 2.0,
                terminator: str | None = "#") -> defer.Deferred:
        if self.done:
            return self._gone()
        if max_digits < 1:
            raise ValueError(f"max_digits must be 1 or more, not {max_digits}")
        if self._collect is not None:
            self._end_collect()  # a new collect takes over; the old one gets what it has
        job = _Collect(max_digits, terminator or "", timeout, inter_digit_timeout)
        self._collect = job
        d = job.deferred
        self._pending.add(d)
        d.addBoth(self._settled, d)
        self._feed()
        if self._collect is job:
            first_wait = timeout if not job.got else inter_digit_timeout
            job.timer = self.clock.callLater(first_wait, self._end_collect)
        return d

    def _feed(self) -> None:
        """Give buffered digits to the collect under way, in order."""
        job = self._collect
        assert job is not None
        while self._digits:
            digit = self._digits.pop(0)
            if job.terminator and digit == job.terminator:
                self._end_collect()
                return
            job.got += digit
            if len(job.got) >= job.max_digits:
                self._end_collect()
                return
        if job.timer is not None and job.got:
            job.timer.reset(job.inter_digit)

    def _end_collect(self) -> None:
        job, self._collect = self._collect, None
        if job is None:
            return
        if job.timer is not None and job.timer.active():
            job.timer.cancel()
        if not job.deferred.called:
            job.deferred.callback(job.got)

    # -- recording -----------------------------------------------------------------------------------

    def record(self, path: Any, max_seconds: float = 60.0, terminator: str | None = "#",
               silence_seconds: float | None = None) -> defer.Deferred:
        if self.done or self.endpoint is None:
            return self._gone()
        if self._recording is not None:
            self._stop_recording()
        try:
            self.endpoint.record(path)
        except OSError as e:
            return defer.fail(e)
        job = _Recording(terminator or "", silence_seconds, self.clock.seconds())
        self._recording = job
        d = job.deferred
        self._pending.add(d)
        d.addBoth(self._settled, d)
        job.timer = self.clock.callLater(max_seconds, self._stop_recording)
        if silence_seconds is not None:
            job.silence_timer = self.clock.callLater(silence_seconds, self._silence_check)
        return d

    def _audio(self, pcm: bytes) -> None:
        job = self._recording
        if job is None:
            return
        job.samples += len(pcm) // 2
        if job.silence is not None:
            samples = array("h", pcm)
            if samples and max(max(samples), -min(samples)) >= SILENCE_PEAK:
                job.last_voice = self.clock.seconds()

    def _silence_check(self) -> None:
        job = self._recording
        if job is None:
            return
        quiet_until = job.last_voice + job.silence  # type: ignore[operator]
        now = self.clock.seconds()
        if now >= quiet_until - 1e-9:
            self._stop_recording()
        else:
            job.silence_timer = self.clock.callLater(quiet_until - now, self._silence_check)

    def _stop_recording(self) -> None:
        job, self._recording = self._recording, None
        if job is None:
            return
        for timer in (job.timer, job.silence_timer):
            if timer is not None and timer.active():
                timer.cancel()
        if self.endpoint is not None:
            self.endpoint.stop_recording()
        if not job.deferred.called:
            job.deferred.callback(job.samples / 8000)

    # -- handing the caller on ---------------------------------------------------------------------------

    def _caller_leg(self) -> Any:
        """The leg of the party this call talks to, as the bridge holds it."""
        bridge = self.app.engine.calls.get(self.id)
        if bridge is None:
            return None
        return bridge.other(self.leg.peer)

    def transfer(self, number: str) -> defer.Deferred:
        if self.done:
            return defer.succeed(None)
        if not self.answered:  # the bridge re-bridges answered calls only
            return self.answer().addCallback(lambda _: self.transfer(number))
        keep = self._caller_leg()
        if keep is None:
            return self._gone()
        self._ringback()
        self._leaving = True
        d = self.app.engine.transfer(self.id, keep, number, by="app")

        def failed(failure: Failure) -> None:
            failure.trap(RebridgeFailed)
            self._leaving = False
            e = failure.value
            log.info("{name}: call {call}: transfer to {number} failed: {status} {reason}",
                     name=self.app.name, call=self.id, number=number, status=e.status, reason=e.reason)
            if not self.done:
                self.hang_up(Cause(e.status, e.reason, "local"))

        return d.addCallbacks(lambda _: None, failed)

    def bridge(self, numbers: str | list[str], ring_timeout: float | None = None) -> defer.Deferred:
        if self.done:
            return self._gone()
        if not self.answered:
            return self.answer().addCallback(lambda _: self.bridge(numbers, ring_timeout))
        keep = self._caller_leg()
        if keep is None:
            return self._gone()
        attempt = BridgeAttempt(self.app.engine, self.id, keep, numbers, ring_timeout)
        # Cancelling stops the ringing: the attempt fails (487) and the caller stays.
        mine = self._new(lambda _: attempt.cancel())
        started_ringback = self._ringback()
        self._leaving = True

        def outcome(result: Any) -> None:
            if isinstance(result, Failure):
                self._leaving = False
                if started_ringback and self._play is not None and self._play[0] is started_ringback:
                    self.stop()
                if keep.state is LegState.TERMINATED:
                    # The caller hung up while they rang: the bridge stops the ringing
                    # (487) before this call hears of the end. That is the caller gone,
                    # not a number that failed (a queue must not count it as missed).
                    result = Failure(CallGone(self._cause()))
            if not mine.called:
                mine.callback(result) if not isinstance(result, Failure) else mine.errback(result)

        attempt.start().addBoth(outcome)
        return mine

    def _ringback(self) -> defer.Deferred | None:
        """Ringback for the caller while someone else rings, unless something plays."""
        if self.endpoint is None or self._play is not None:
            return None  # what plays (music on hold, a prompt) goes on
        d = self._start_play([tones.ringback()], False, True)
        self._pending.discard(d)
        return d

    # -- ending -------------------------------------------------------------------------------------------

    def hangup(self, cause: Cause | None = None) -> None:
        if self.done:
            return
        cause = cause or NORMAL_CLEARING
        if not self.answered and cause.status is None:
            cause = Cause(480, "Temporarily Unavailable", "local")
        self.hang_up(cause)

    def finish(self, cause: Cause) -> None:
        if self.done:
            return
        self.done = True  # first: whatever the app does as its Deferreds fail is refused
        self._end_cause = cause
        recording = self._recording
        for timer in (self._timer, getattr(self._collect, "timer", None),
                      getattr(recording, "timer", None), getattr(recording, "silence_timer", None)):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._collect = self._recording = self._play = None
        gone = CallGone(cause)
        for d in list(self._pending):
            if not d.called:
                d.errback(gone)
                if isinstance(d.result, Failure):
                    # Nobody waited on it (a play() not awaited while the app
                    # collects): settled quietly, not an "Unhandled error".
                    d.addErrback(_quiet_call_gone)
        self._pending.clear()
        self._digit_callbacks.clear()
        super().finish(cause)  # closes the endpoint and its recording
        self.ended.callback(cause)
        self.app.call_finished(self, cause)

    @property
    def transferred(self) -> bool:
        """Whether the call left the application by a transfer or bridge."""
        return self._end_cause is TRANSFERRED
