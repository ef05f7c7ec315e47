"""An outside line's registration upstream (RFC 3261 §10.2), as one state machine.

The switch registers its line number at a carrier or a bigger PBX like a phone does:
REGISTER, answer the 401/407 digest challenge, refresh before the binding lapses,
unregister on shutdown. `Registration` is that client and the line's health at once;
its state is what the manhole and metrics show.

States and events (the table `TRANSITIONS` below is the only place they change)::

    unregistered --start--> registering --ok--> registered --refresh--> refreshing
    registering, refreshing --challenge | too-brief--> (same state, REGISTER again)
    registering, refreshing --ok--> registered
    registering, refreshing --error--> retrying --retry--> registering
    registering, refreshing --refused--> failed-auth --retry--> registering
    registered --lost--> registering            (keepalive found the server gone)
    registered, refreshing, registering --stop--> unregistering --done--> unregistered
    retrying, failed-auth --stop--> unregistered

`retrying` waits with capped exponential backoff (5 s doubling to 5 min by default);
`failed-auth` (the server refused our credentials: a second challenge right after
answering one, or 403) waits long (5 min by default), so a line with a wrong password
sends two REGISTERs per wait and never hammers its server. Every wait has jitter from
an injected random source, so many lines started together drift apart.

Nothing here knows the engine: requests go out through a `send(request, destination)`
callable returning a Deferred that fires with the final response (a local 408 on
timeout, a local 503 on a transport error), and time comes from an `IReactorTime`.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from phpvoip.sip.address import Address
from phpvoip.sip.digest import DigestClient, choose_challenge
from phpvoip.sip.headers import CSeq, NameAddr, canonical_key
from phpvoip.sip.ids import new_call_id, new_tag
from phpvoip.sip.message import Request, Response
from phpvoip.sip.transaction import is_local
from phpvoip.sip.uri import URI

__all__ = [
    "LineCounters",
    "LineState",
    "LineStateError",
    "Registration",
    "RegistrationPolicy",
    "TRANSITIONS",
    "header_lines",
]

log = Logger()

Send = Callable[[Request, Address], "defer.Deferred[Response]"]


class LineState:
    """The states of a line's registration, as the manhole shows them."""

    UNREGISTERED = "unregistered"  # not started, stopped, or unregistered
    REGISTERING = "registering"  # a REGISTER is out, no binding known at the server
    REGISTERED = "registered"  # the server holds our binding; a refresh is scheduled
    REFRESHING = "refreshing"  # registered, and the refresh REGISTER is out
    RETRYING = "retrying"  # the server failed or did not answer: waiting to retry
    FAILED_AUTH = "failed-auth"  # the server refused our credentials: long wait
    UNREGISTERING = "unregistering"  # REGISTER with Expires: 0 is out (shutdown)


S = LineState

# (state, event) -> next state. Anything not listed is a bug and raises.
TRANSITIONS: dict[tuple[str, str], str] = {
    (S.UNREGISTERED, "start"): S.REGISTERING,
    (S.REGISTERING, "ok"): S.REGISTERED,
    (S.REGISTERING, "challenge"): S.REGISTERING,
    (S.REGISTERING, "too-brief"): S.REGISTERING,
    (S.REGISTERING, "error"): S.RETRYING,
    (S.REGISTERING, "refused"): S.FAILED_AUTH,
    (S.REGISTERING, "stop"): S.UNREGISTERING,
    (S.REGISTERED, "refresh"): S.REFRESHING,
    (S.REGISTERED, "lost"): S.REGISTERING,
    (S.REGISTERED, "stop"): S.UNREGISTERING,
    (S.REFRESHING, "ok"): S.REGISTERED,
    (S.REFRESHING, "challenge"): S.REFRESHING,
    (S.REFRESHING, "too-brief"): S.REFRESHING,
    (S.REFRESHING, "error"): S.RETRYING,
    (S.REFRESHING, "refused"): S.FAILED_AUTH,
    (S.REFRESHING, "stop"): S.UNREGISTERING,
    (S.RETRYING, "retry"): S.REGISTERING,
    (S.RETRYING, "stop"): S.UNREGISTERED,
    (S.FAILED_AUTH, "retry"): S.REGISTERING,
    (S.FAILED_AUTH, "stop"): S.UNREGISTERED,
    (S.UNREGISTERING, "challenge"): S.UNREGISTERING,
    (S.UNREGISTERING, "done"): S.UNREGISTERED,
}

# States in which a REGISTER of ours is waiting for its answer.
_SENDING = frozenset((S.REGISTERING, S.REFRESHING, S.UNREGISTERING))


class LineStateError(RuntimeError):
    """An event the current state has no transition for (a bug, not a network
    problem)."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"line registration: no transition for {event!r} in state {state!r}")
        self.state = state
        self.event = event


@dataclass(frozen=True, slots=True)
class RegistrationPolicy:
    """Timings of a line's registration; the defaults suit a public carrier."""

    expires: int = 3600  # seconds asked for in each REGISTER
    refresh_fraction: float = 0.6  # refresh at this share of the granted time ...
    refresh_jitter: float = 0.05  # ... give or take this share
    retry_min: float = 5.0  # first wait after a failure; doubles per failure ...
    retry_max: float = 300.0  # ... up to this
    auth_retry: float = 300.0  # wait after the server refused our credentials
    retry_jitter: float = 0.2  # waits are shortened by up to this share
    max_challenges: int = 2  # challenges answered in one attempt before giving up
    max_too_brief: int = 3  # 423 answers followed in one attempt
    unregister_timeout: float = 2.0  # how long stop() waits for the Expires: 0 answer


@dataclass(slots=True)
class LineCounters:
    """What a line has done since start, for the manhole and metrics."""

    registers_sent: int = 0
    registrations: int = 0  # 2xx answers to a REGISTER with Expires > 0
    challenges_answered: int = 0
    auth_refusals: int = 0  # times the line went to failed-auth
    failures: int = 0  # other failed attempts (error answers, timeouts)
    timeouts: int = 0  # of which no answer at all (local 408/503)
    keepalives_sent: int = 0
    keepalives_failed: int = 0
    calls_in: int = 0
    calls_out: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def header_lines(message: Request | Response, name: str) -> list[str]:
    """Every line of a header as written, unsplit: challenge values hold commas, so
    `Message.get_all` (which splits at them) cannot be used for them."""
    key = canonical_key(name)
    return [text for header, text in message.headers() if canonical_key(header) == key]


def _delta_seconds(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.split(";")[0].split("(")[0].strip()  # Retry-After may carry a comment
    # isdigit() is true of "²", which int() refuses: only ASCII digits are a delta.
    return int(text) if text.isascii() and text.isdigit() else None


class Registration:
    """Keeps one address-of-record bound at one registrar (RFC 3261 §10.2).

    `aor` is the line's public identity (To and From), `server` where the packets
    go, `contact` the switch's own URI the server will send calls to. One Call-ID
    and From tag serve every REGISTER of this object's life, with CSeq rising by
    one per request (§10.2.4: "a UA SHOULD use the same Call-ID for all
    registrations during a single boot cycle").
    """

    def __init__(
        self,
        aor: URI,
        server: Address,
        contact: URI,
        credentials: DigestClient | None,
        clock: IReactorTime,
        send: Send,
        policy: RegistrationPolicy | None = None,
        counters: LineCounters | None = None,
        random: Callable[[], float] = _random.random,
        name: str = "line",
    ) -> None:
        self.aor = aor
        self.server = server
        self.contact = contact
        self.credentials = credentials
        self.clock = clock
        self.send = send
        self.policy = policy or RegistrationPolicy()
        self.counters = counters or LineCounters()
        self.random = random
        self.name = name
        self.state = S.UNREGISTERED
        self.call_id = new_call_id(contact.host)
        self.from_tag = new_tag()
        self.cseq = 0
        self.expires = self.policy.expires  # raised by 423 Min-Expires, then kept
        self.granted: int | None = None  # what the server granted last time
        self.registered_until: float | None = None
        self.next_attempt: float | None = None  # when the waiting timer fires
        self.last_status: int | None = None
        self.last_reason = ""
        self.failures = 0  # consecutive failed attempts (for the backoff)
        self._timer: IDelayedCall | None = None
        self._pending: int | None = None  # CSeq of the REGISTER awaiting its answer
        self._sent_credentials = False
        self._challenges = 0  # answered in this attempt
        self._too_brief = 0  # 423s followed in this attempt
        self._waiters: list[defer.Deferred] = []
        self._stop_bound: IDelayedCall | None = None
        # Told ``(old, new)`` on every change of state (the line publishes it).
        self.on_state: Callable[[str, str], None] | None = None

    def __repr__(self) -> str:
        return f"<Registration {self.name} {self.aor} {self.state}>"

    # -- the state machine -------------------------------------------------------------

    def _transition(self, event: str) -> str:
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            raise LineStateError(self.state, event)
        old, self.state = self.state, new
        if new != old:
            log.debug(
                "line {line}: {old} --{event}--> {new}", line=self.name, old=old, event=event, new=new
            )
            if self.on_state is not None:
                self.on_state(old, new)
        return new

    @property
    def registered(self) -> bool:
        """Whether the server should hold our binding now."""
        return self.state in (S.REGISTERED, S.REFRESHING)

    # -- what the line asks ---------------------------------------------------------------

    def start(self) -> None:
        """Register now (from `unregistered`; a no-op in any other state)."""
        if self.state != S.UNREGISTERED:
            return
        self._transition("start")
        self._new_attempt()
        self._send_register(self.expires)

    def lost(self) -> None:
        """The server stopped answering our keepalives: register again at once
        rather than wait for the refresh, so the failure shows and the backoff
        starts. Only a registered line reacts; the others are at it already."""
        if self.state == S.REGISTERED:
            self._cancel_timer()
            self._transition("lost")
            self._new_attempt()
            self._send_register(self.expires)

    def stop(self) -> defer.Deferred:
        """Unregister (Expires: 0) if the server may hold our binding. The Deferred
        fires with None once the server answers, or after the policy's
        `unregister_timeout`, whichever comes first; it never fails."""
        waiter: defer.Deferred = defer.Deferred()
        if self.state == S.UNREGISTERING:
            self._waiters.append(waiter)
            return waiter
        self._cancel_timer()
        if self.state == S.UNREGISTERED:
            return defer.succeed(None)
        if self._transition("stop") == S.UNREGISTERED:
            self._pending = None  # an answer still on its way is of no interest now
            return defer.succeed(None)
        self._waiters.append(waiter)
        self._new_attempt()
        self._stop_bound = self.clock.callLater(self.policy.unregister_timeout, self._unregistered, "timeout")
        self._send_register(0)
        return waiter

    # -- requests -------------------------------------------------------------------------

    def build_register(self, expires: int) -> Request:
        """The next REGISTER (§10.2): Request-URI the registrar's domain, To and
        From the address-of-record, our Contact; no Via (the sender adds it with a
        fresh branch). Carries credentials when we hold a challenge from before, so
        a refresh usually needs no new round trip (RFC 7616 §3.4: nc counts
        reuses of a nonce)."""
        self.cseq += 1
        aor = self.aor
        request = Request("REGISTER", URI("sip", None, aor.host, aor.port))
        from_ = NameAddr(aor.copy())
        from_.tag = self.from_tag
        request.add("From", from_)
        request.add("To", NameAddr(aor.copy()))
        request.add("Call-ID", self.call_id)
        request.add("CSeq", CSeq(self.cseq, "REGISTER"))
        request.add("Contact", NameAddr(self.contact.copy()))
        request.add("Expires", str(expires))
        credentials = self.credentials
        self._sent_credentials = credentials is not None and credentials.challenge is not None
        if self._sent_credentials:
            assert credentials is not None
            request.add(credentials.header_name, credentials.authorization("REGISTER", str(request.uri)))
        return request

    def _send_register(self, expires: int) -> None:
        request = self.build_register(expires)
        cseq = self._pending = self.cseq
        self.counters.registers_sent += 1
        d = defer.maybeDeferred(self.send, request, self.server)
        d.addCallbacks(self._answered, self._send_failed, callbackArgs=(cseq,), errbackArgs=(cseq,))
        d.addErrback(self._bug)

    def _send_failed(self, failure: Failure, cseq: int) -> None:
        # The sender promised a local 408/503 instead of failing; treat it as one.
        log.failure("line {line}: sending REGISTER failed", failure, line=self.name)
        self._answered(Response(503, "Send Failed"), cseq, local=True)

    def _bug(self, failure: Failure) -> None:
        log.failure("line {line}: error handling a REGISTER answer", failure, line=self.name)

    # -- answers ------------------------------------------------------------------------

    def _answered(self, response: Response, cseq: int, local: bool = False) -> None:
        if cseq != self._pending:
            return  # the answer to a REGISTER we no longer wait for (stopped meanwhile)
        self._pending = None
        status = response.status
        self.last_status, self.last_reason = status, response.reason
        if self.state == S.UNREGISTERING:
            self._unregister_answered(response)
        elif 200 <= status < 300:
            self._ok(response)
        elif status in (401, 407):
            self._challenged(response)
        elif status == 423:
            self._interval_too_brief(response)
        elif status == 403:
            self._refused(f"{status} {response.reason}")
        else:
            self._error(response, local=local or is_local(response))

    def _ok(self, response: Response) -> None:
        granted = self._granted(response)
        if granted <= 0:
            # The registrar listed our contact with no time left: it did not bind us.
            self._error(response, "no time granted")
            return
        was = self.state
        self._transition("ok")
        self.counters.registrations += 1
        self.failures = 0
        self.granted = granted
        now = self.clock.seconds()
        self.registered_until = now + granted
        fraction = self.policy.refresh_fraction + self.policy.refresh_jitter * (2 * self.random() - 1)
        delay = max(granted * fraction, min(1.0, granted / 2))
        self._wait(delay, "refresh")
        # Info when the line comes up, debug for each routine refresh.
        emit = log.info if was == S.REGISTERING else log.debug
        emit(
            "line {line}: {aor} registered at {server} for {granted}s, refresh in {delay:.1f}s",
            line=self.name,
            aor=str(self.aor),
            server=str(self.server),
            granted=granted,
            delay=delay,
        )

    def _granted(self, response: Response) -> int:
        """The expiry the registrar granted for our contact (§10.2.4): the
        ``expires`` parameter of our Contact in the 2xx, else its Expires header,
        else what we asked for."""
        ours = self.contact
        for contact in response.contact if isinstance(response.contact, list) else ():
            uri = contact.uri
            if (
                uri.user == ours.user
                and uri.host.lower() == ours.host.lower()
                and (uri.port or 5060) == (ours.port or 5060)
            ):
                value = _delta_seconds(contact.params.get("expires"))
                if value is not None:
                    return value
        value = _delta_seconds(response.get("Expires"))
        return value if value is not None else self.expires

    def _challenged(self, response: Response) -> None:
        credentials = self.credentials
        proxy = response.status == 407
        values = header_lines(response, "Proxy-Authenticate" if proxy else "WWW-Authenticate")
        if credentials is None:
            self._refused(f"{response.status} but the line has no password")
            return
        if self._challenges >= self.policy.max_challenges:
            self._refused(f"{response.status} after {self._challenges} answered challenges")
            return
        if choose_challenge(values) is None:
            self._refused(f"{response.status} with no challenge we can answer")
            return
        if not credentials.update(values, proxy=proxy, had_credentials=self._sent_credentials):
            self._refused(f"{response.status}: credentials refused")
            return
        self._challenges += 1
        self.counters.challenges_answered += 1
        self._transition("challenge")
        self._send_register(self.expires)

    def _interval_too_brief(self, response: Response) -> None:
        # §10.2.8: the UA "MAY retry ... with an expiration interval that is
        # greater than or equal to" the 423's Min-Expires; we keep it for refreshes.
        minimum = _delta_seconds(response.get("Min-Expires"))
        if minimum is None or minimum <= self.expires or self._too_brief >= self.policy.max_too_brief:
            self._error(response, "423 without a usable Min-Expires")
            return
        log.info(
            "line {line}: server wants expires >= {minimum} (asked {asked})",
            line=self.name,
            minimum=minimum,
            asked=self.expires,
        )
        self._too_brief += 1
        self.expires = minimum
        self._transition("too-brief")
        self._send_register(self.expires)

    def _refused(self, why: str) -> None:
        self._transition("refused")
        self.counters.auth_refusals += 1
        self.registered_until = None
        if self.credentials is not None:
            # Start the next attempt clean: credentials from the refused nonce
            # would only earn one more useless round trip.
            self.credentials.challenge = None
            self.credentials.nc = 0
        delay = self._jittered(self.policy.auth_retry)
        log.warn(
            "line {line}: {aor} refused by {server} ({why}); next try in {delay:.0f}s",
            line=self.name,
            aor=str(self.aor),
            server=str(self.server),
            why=why,
            delay=delay,
        )
        self._wait(delay, "retry")

    def _error(self, response: Response, why: str | None = None, local: bool = False) -> None:
        self._transition("error")
        self.failures += 1
        self.counters.failures += 1
        if local:
            self.counters.timeouts += 1
        self.registered_until = None
        delay = self.backoff(self.failures)
        retry_after = _delta_seconds(response.get("Retry-After")) if not local else None
        if retry_after is not None:
            # RFC 3261 §21.5.4/§20.33: the server says when to come back; capped so
            # a bogus value cannot park the line for days.
            delay = max(delay, min(float(retry_after), self.policy.retry_max))
        log.warn(
            "line {line}: REGISTER to {server} failed: {status} {reason}; retry {n} in {delay:.0f}s",
            line=self.name,
            server=str(self.server),
            status=response.status,
            reason=why or response.reason,
            n=self.failures,
            delay=delay,
        )
        self._wait(delay, "retry")

    def _unregister_answered(self, response: Response) -> None:
        status = response.status
        if status in (401, 407) and self.credentials is not None and self._challenges < 1:
            values = header_lines(response, "Proxy-Authenticate" if status == 407 else "WWW-Authenticate")
            if self.credentials.update(values, proxy=status == 407, had_credentials=self._sent_credentials):
                self._challenges += 1
                self.counters.challenges_answered += 1
                self._transition("challenge")
                self._send_register(0)
                return
        self._unregistered(f"{status} {response.reason}")

    def _unregistered(self, outcome: str) -> None:
        if self.state != S.UNREGISTERING:
            return
        if self._stop_bound is not None and self._stop_bound.active():
            self._stop_bound.cancel()
        self._stop_bound = None
        self._pending = None
        self._transition("done")
        self.registered_until = None
        log.info("line {line}: unregistered from {server} ({outcome})", line=self.name,
                 server=str(self.server), outcome=outcome)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # -- timers ---------------------------------------------------------------------------

    def backoff(self, failures: int) -> float:
        """The wait after `failures` failed attempts in a row: `retry_min`
        doubling per failure up to `retry_max`, then shortened by jitter."""
        policy = self.policy
        exponent = min(max(failures - 1, 0), 32)
        return self._jittered(min(policy.retry_max, policy.retry_min * 2**exponent))

    def _jittered(self, delay: float) -> float:
        # Shortening only, so the configured maximum stays a true maximum.
        return delay * (1.0 - self.policy.retry_jitter * self.random())

    def _wait(self, delay: float, event: str) -> None:
        self._cancel_timer()
        self.next_attempt = self.clock.seconds() + delay
        self._timer = self.clock.callLater(delay, self._timer_fired, event)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.next_attempt = None

    def _timer_fired(self, event: str) -> None:
        self._timer = None
        self.next_attempt = None
        self._transition(event)
        self._new_attempt()
        self._send_register(self.expires)

    def _new_attempt(self) -> None:
        self._challenges = 0
        self._too_brief = 0

    # -- for the manhole ----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The line's registration as plain data."""
        now = self.clock.seconds()
        return {
            "state": self.state,
            "aor": str(self.aor),
            "server": str(self.server),
            "expires": self.expires,
            "granted": self.granted,
            "expires_in": None if self.registered_until is None else max(0.0, self.registered_until - now),
            "next_attempt_in": None if self.next_attempt is None else max(0.0, self.next_attempt - now),
            "last_status": self.last_status,
            "last_reason": self.last_reason,
            "failures": self.failures,
            "call_id": self.call_id,
            "cseq": self.cseq,
        }
