"""The contracts through which the engine, modules, legs and applications meet.

Vocabulary (DESIGN.md §1): every call is two legs. The *inbound leg* faces the caller
(the switch is its UAS; the seed calls it the "callee" session), the *outbound leg*
faces the destination (the switch is its UAC; the seed's "caller" session). A module
hands the engine an inbound leg from ``callin()`` and an outbound leg from
``callout()``; from then on the bridge owns both and relays what one leg reports to
the other.

Legs talk to their owner with a small vocabulary borrowed from the sippy B2BUA:
progress (18x), answered (2xx), failed (final error before answer), ended (hang-up),
and in-dialog requests (re-INVITE, UPDATE, INFO) with their answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from zope.interface import Attribute, Interface

__all__ = [
    "CallRejected",
    "Cause",
    "CallGone",
    "IAppCall",
    "IApplication",
    "ICallLeg",
    "ICallLegListener",
    "ICallObserver",
    "IEngine",
    "ILegHost",
    "ILocationStore",
    "IMediaEngine",
    "IMediaSession",
    "MediaUnavailable",
    "IModule",
    "IModuleType",
    "IRouter",
    "IncomingCall",
    "LegReply",
    "LegState",
    "NotMine",
]


class NotMine(Exception):
    """A module's answer "this call or request is not for me": try the next one.

    The engine traps only this; any other exception is a bug and is logged."""


class CallRejected(Exception):
    """A module takes the call but refuses it: answer the caller with `status`.

    E.g. 403 for a known user whose credentials do not match, or the registrar's 407
    challenge. `headers` are extra ``(name, value)`` pairs for the answer.

    A refusal that is not `final` (a challenge) lets the engine ask the remaining
    modules first: a module that knows the caller by its address (a trunk, a line)
    takes the call without credentials; only when none does is this the answer."""

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        final: bool = True,
    ) -> None:
        super().__init__(f"{status} {reason or ''}".strip())
        self.status = status
        self.reason = reason
        self.headers = headers
        self.final = final


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a leg or call ended: a SIP status (or None for a plain BYE) and text.

    Carried to the other leg as an RFC 3326 Reason header and kept for the call
    record."""

    status: int | None = None
    text: str = ""
    origin: str = "remote"  # "remote" (the far end), "local" (the switch), "timeout"

    @property
    def reason_header(self) -> str:
        """The RFC 3326 Reason value: a SIP cause for a status, else Q.850 cause 16
        (normal call clearing), which is what a plain hang-up is."""
        text = self.text.replace('"', "'")
        if self.status is None:
            value = "Q.850;cause=16"
        else:
            value = f"SIP;cause={self.status}"
        return f'{value};text="{text}"' if text else value


NORMAL_CLEARING = Cause(None, "Normal call clearing")


@dataclass(frozen=True, slots=True)
class LegReply:
    """The final answer to an in-dialog request relayed through a leg."""

    status: int
    reason: str = ""
    body: bytes = b""
    content_type: str | None = None


class LegState(Enum):
    """The states every leg goes through, whatever its kind (each kind's own table
    says which events move it between them)."""

    IDLE = "idle"  # outbound: not dialled yet
    CALLING = "calling"  # INVITE sent / received, no answer yet
    EARLY = "early"  # a provisional with a To tag (ringing, early media)
    ESTABLISHED = "established"  # answered and (for SIP) ACKed
    TERMINATED = "terminated"


@dataclass(slots=True)
class IncomingCall:
    """What the engine knows about a call when it asks the modules about it.

    `invite` is the request as the caller sent it; `source` is where it came from
    (None for a call an application places through the engine); `transaction` is the
    server transaction (None for local calls). Modules read it; they do not answer
    through the transaction themselves — they return a leg or raise."""

    invite: object
    source: object | None = None
    transaction: object | None = None
    call_id: str = ""
    attributes: dict = field(default_factory=dict)  # modules may leave notes here
    id: str = ""  # the switch's own id of the call (its CallRecord's), "" outside calls


class ICallLegListener(Interface):
    """Who owns a leg (the bridge, or an application) and hears what it reports."""

    def leg_progress(leg, status, reason, sdp):
        """The leg's far end sent a provisional response (180, 183, ...), with SDP
        (bytes) for early media or None."""

    def leg_answered(leg, sdp):
        """The far end answered (2xx); `sdp` is its answer or None."""

    def leg_acked(leg, sdp):
        """The far end ACKed a 2xx of ours that carried an offer (its INVITE had no
        SDP: RFC 3261 §13.2.1, RFC 3264 §5); `sdp` is the answer from the ACK, or
        None when the ACK had none. Only then is it called: a plain ACK is not news."""

    def leg_failed(leg, status, reason):
        """An outbound leg ended with a final error before answer (486, 404, 408 for
        no answer, 503 for an unreachable destination, ...)."""

    def leg_ended(leg, cause):
        """The far end hung up (BYE or CANCEL) or stopped answering (keepalive);
        `cause` is a `Cause`."""

    def leg_request(leg, method, body, content_type, headers):
        """The far end sent an in-dialog request to relay (re-INVITE, UPDATE, INFO).

        Returns a Deferred firing with a `LegReply` that the leg sends back."""

    def leg_refer(leg, target, referred_by, report):
        """The far end asks to be replaced by `target` (a REFER, RFC 3515: a blind
        transfer): the other party of the call should talk to `target` instead.

        `target` is the Refer-To URI, `referred_by` the Referred-By value or None.
        Return (or fire a Deferred with) the `LegReply` for the REFER: 202 once the
        target is being called, else the failure (404 when no module reaches it).
        After a 202, call ``report(status, reason)`` with the target's progress; a
        final status (>= 200) ends the report (the leg sends the NOTIFYs)."""


class ICallLeg(Interface):
    """One side of a call, a SIP dialog or one half of a local pair."""

    id = Attribute("A short id unique in this process, for logs and records.")
    state = Attribute("One of the `LegState` values.")
    listener = Attribute("The `ICallLegListener` to report to; set by the owner.")
    local_party = Attribute("The NameAddr this leg presents as itself.")
    remote_party = Attribute("The NameAddr of the far end.")
    remote_sdp = Attribute("The last SDP (bytes) the far end sent, or None.")
    offer = Attribute("For outbound legs: the SDP offer to send when dialling.")

    def dial():
        """Outbound legs: send the INVITE. Progress arrives through the listener."""

    def progress(status, reason, sdp):
        """Inbound legs: send a provisional response (18x), `sdp` for early media."""

    def answer(sdp):
        """Inbound legs: answer the caller with 200 and `sdp`."""

    def reject(status, reason, headers=()):
        """Inbound legs before answer: send a final error response."""

    def acknowledge(sdp):
        """Send the ACK held for a 2xx that carried an offer to an INVITE without
        one (a delayed offer), with `sdp` as its answer (None: an ACK without a
        body). A leg holding no ACK ignores it; a SIP leg sends the ACK by itself
        after a few seconds if nobody calls this."""

    def hangup(cause):
        """End the leg in whatever way its state allows: CANCEL (outbound, not yet
        answered), a final error (inbound, not yet answered), or BYE. Idempotent."""

    def request(method, body, content_type, headers=()):
        """Send an in-dialog request (re-INVITE, UPDATE, INFO) to the far end.

        Returns a Deferred firing with the `LegReply`."""


class ILegHost(Interface):
    """What a SIP leg needs from the switch, and all it may use of it.

    Legs see this and nothing else of the engine: where the switch is reachable,
    how to send (through a client transaction or directly), the registry of
    dialogs that routes in-dialog requests to their leg, and the timers."""

    clock = Attribute("The IReactorTime every timer must use.")
    timers = Attribute("The `phpvoip.sip.timers.Timers` in force.")
    keepalive_interval = Attribute("Seconds between in-dialog probes of an answered leg; 0 = off.")

    def local_address(transport):
        """The `Address` the switch is reachable at over `transport`."""

    def new_call_id():
        """A fresh Call-ID at the switch's address."""

    def add_contact(message, transport, party):
        """Set the switch's Contact on `message`, with the user part of `party`."""

    def add_capabilities(message):
        """Add Allow, Supported and User-Agent (or Server) to `message`."""

    def start_transaction(request, destination, on_response):
        """Send `request` through a new client transaction; `on_response(response)`
        hears every response (a local 408/503 on timeout or transport error).
        Returns the transaction."""

    def send_direct(message, destination):
        """Send outside any transaction (the ACK for a 2xx, a 2xx retransmission)."""

    def dialog_started(dialog, leg):
        """Route in-dialog requests of `dialog` to `leg` until the dialog ends."""

    def dialog_owner(dialog):
        """The leg owning `dialog`, or None."""

    def ringing(leg):
        """An inbound leg waits for its answer: a CANCEL of its INVITE reaches it."""

    def settled(leg):
        """An inbound leg has answered or refused: no CANCEL can reach it."""

    def leg_started():
        """A leg was made (for the live-object counts)."""

    def leg_finished(leg):
        """The leg has ended (for the live-object counts)."""


class ICallObserver(Interface):
    """Hears every event of the switch (`phpvoip.events`): the call events
    (attempt, routed, ringing, answered, transferred, ended) and, on the same
    stream, the registrar's (`Registered`, `Unregistered`, `RegistrationRefused`)
    and the outside lines' (`LineStateChanged`). Registered with
    `IEngine.add_observer`; it picks the events it wants by type and ignores the
    others, including kinds added later.

    Called on the reactor thread as things happen: it must not block, and it must
    not change the call (it gets the record, not the legs). An observer that raises
    is logged and skipped; the call goes on."""

    def call_event(event):
        """`event` is a `phpvoip.events.Event`: a `CallEvent` subclass, or a
        registration or line event."""


class IModule(Interface):
    """The switch's proxy for a group of endpoints (registrar, line, trunk, app).

    Modules are asked in order of `weight`, highest first. Each method either handles
    what it is given, or raises `NotMine` so the engine asks the next module."""

    name = Attribute("The module's name from the config, unique in the switch.")
    weight = Attribute("Order of asking: higher first.")

    def start(engine):
        """Begin work (register upstream, load bindings, ...); `engine` provides
        `IEngine`. May return a Deferred."""

    def stop():
        """Stop work (unregister, flush). May return a Deferred."""

    def callin(call):
        """`call` is an `IncomingCall`. Return (or fire a Deferred with) the inbound
        `ICallLeg` that will face the caller if the caller is one of this module's
        endpoints; raise `NotMine` if not; raise `CallRejected` to refuse it."""

    def callout(invite, call):
        """`invite` is the request after routing, `call` the `IncomingCall` as it
        arrived. Return the outbound `ICallLeg` (not yet dialled) if the destination
        is one of this module's endpoints; raise `NotMine` if not; `CallRejected`
        to refuse (e.g. 480 for a registered user with no reachable contact)."""

    def request(request, transaction, source):
        """An out-of-dialog request other than INVITE (REGISTER, OPTIONS, MESSAGE,
        SUBSCRIBE, ...). Answer it through `transaction.respond()` and return True,
        or raise `NotMine`.

        Two optional methods, looked up with getattr (a module without them works):
        ``reconfigure(settings) -> bool`` takes changed settings in place on a
        reload (False: stop this instance and start a new one); and
        ``explain_callout(invite) -> str | None`` says, without side effects,
        whether and why `callout` would take a routed request (the manhole's
        ``route()``)."""


class IModuleType(Interface):
    """A kind of module that the YAML names with ``type:`` (registrar, trunk, ...).

    Every module type, phpvoip's own and those of outside packages alike, is a
    twisted.plugin object providing this (and ``twisted.plugin.IPlugin``), found with
    ``getPlugins(IModuleType, phpvoip.plugins)``. A package adds one by installing a
    file into the ``phpvoip/plugins/`` directory (without an ``__init__.py``); see the
    README's "Writing a module"."""

    name = Attribute("The ``type:`` value that selects it, e.g. ``'registrar'``; unique.")
    description = Attribute("One line saying what such a module is for.")

    def parse(section):
        """Validate one ``modules[i]`` entry, a `phpvoip.settings.Section`, and return
        the settings object `build` takes. Read every key through the section's
        getters (``string``, ``integer``, ``strings``, ``peer_address``, ...); raise
        ``section.error(key, problem)`` for anything wrong. Keys ``type`` and ``name``
        are the config's; any key left unread is refused as unknown afterwards.
        Must not bind sockets or start timers: it runs before the switch starts."""

    def build(name, settings):
        """Return the `IModule` for `settings` (what `parse` returned), named
        `name`. It is started later with `IModule.start(engine)`."""


class IApplication(IModule):
    """A terminal application: endpoints living inside the switch.

    To receive a call, its `callout()` returns one leg of a local pair and keeps the
    other; to place one, it submits an INVITE with `IEngine.place_call()` and its
    `callin()` returns one leg of a pair."""

    number = Attribute("The number the application answers on.")


class IAppCall(Interface):
    """One call as a terminal application sees it (`phpvoip.apps.base`): the
    application's end of a local leg pair plus the RTP endpoint it speaks through.

    Every action returns a Deferred (or nothing) and never blocks, so a whole call
    can be written as one ``async def`` run with ``defer.ensureDeferred``. When the
    caller hangs up, every pending Deferred of the call fails with `CallGone` and
    `ended` fires; an application need not check after each step.

    Digits (RFC 4733 or SIP INFO) are kept in arrival order in one buffer: a digit
    that interrupts a `play` is not lost but is the first one `collect` returns, so
    an extension typed during a greeting is dialled whole."""

    id = Attribute("The switch's id of the call (its CallRecord's, as in the manhole).")
    caller = Attribute("The calling party's user part (a number), '' if none.")
    number = Attribute("The number that was dialled (the To user after routing).")
    answered = Attribute("True once `answer()` has fired.")
    ended = Attribute("A Deferred firing with the ending `Cause` when the call is over, "
                      "whoever ended it (hang-up, transfer away, max duration).")

    def answer():
        """Answer the call (200 with the endpoint's SDP). Fires when answered (for
        a delayed offer: when the ACK's answer has been taken)."""

    def ringing():
        """Send 180 Ringing to the caller before answering (optional)."""

    def play(prompt, interruptible=False, loop=False):
        """Play `prompt`: a prompt name (`phpvoip.media.prompts`), a WAV path, PCM
        bytes (a tone), or a list of those, one after the other. Fires with None
        when played (or stopped by another play, `hold` or `stop`), or with the
        digit that interrupted it when `interruptible`; the digit stays buffered
        for `collect`. An interruptible play while digits are already buffered
        (typed ahead) is skipped and fires at once with the first of them."""

    def stop():
        """Stop what is playing (its Deferred fires with None)."""

    def collect(max_digits=1, timeout=10.0, inter_digit_timeout=2.0, terminator="#"):
        """Fire with the digits typed: buffered ones first, until `max_digits`,
        the `terminator` (not included), `timeout` seconds without a first digit
        or `inter_digit_timeout` seconds after the last. Fires with '' when
        nothing was typed."""

    def flush_digits():
        """Forget buffered digits (e.g. before a prompt that must not be skipped)."""

    def record(path, max_seconds=60.0, terminator="#", silence_seconds=None):
        """Record what the caller says to a WAV at `path` until `max_seconds`, the
        `terminator` digit, or (when set) that many seconds of silence. Fires with
        the seconds recorded."""

    def hold(music=None):
        """Play music on hold (the bundled music when None) in a loop until the
        next `play`, `stop` or the end of the call. Returns at once."""

    def transfer(number):
        """Blind transfer: route `number` as a call from the caller, through the
        router and the modules (an extension, a queue, an outside line, another
        application) and hand the caller over when it answers; the application
        is done with this call at once. If the target fails, the caller is hung
        up with the target's status. Fires with None when handed over or ended."""

    def bridge(numbers, ring_timeout=None):
        """Supervised: ring `numbers` (one number, or a list to ring all at once)
        while the caller keeps hearing what this call plays (ringback by default
        when nothing plays), and connect the caller to the first that answers.
        Fires with the number that answered, after which the application is out
        of the call (`ended` fires with the transfer cause). Fails with
        `phpvoip.bridge.RebridgeFailed` (status, reason, and `failures`: number ->
        (status, reason)) when none answered within `ring_timeout` seconds (480
        "No Answer", the bridge's ring timeout; the call's ring_timeout when None)
        or all refused (a number no module takes: 404): the caller stays with the
        application, which may go on. Cancelling the Deferred while they ring
        stops the ringing (CANCEL): it fails with 487 "Request Terminated"."""

    def hangup(cause=None):
        """End the call (BYE, or a refusal with the cause's status when not yet
        answered). Idempotent."""

    def on_digit(callback):
        """Also call ``callback(digit)`` for every digit received, as it comes."""


class CallGone(Exception):
    """The call of an `IAppCall` is over: what its pending actions fail with."""

    def __init__(self, cause: Cause | None = None) -> None:
        super().__init__(str(cause) if cause is not None else "call ended")
        self.cause = cause


class IRouter(Interface):
    """The static route table (DESIGN.md §1 step 2)."""

    def route(invite):
        """Return the request to send on: a rewritten copy (Request-URI, From, To)
        or `invite` itself when no route matches. Contact never changes."""

    def route_with(invite):
        """Like `route`, and say why: ``(request, route)`` with the `Route` that
        matched, or None."""

    def reload(routes):
        """Replace the table (e.g. on SIGHUP) without touching calls in progress."""


class IEngine(Interface):
    """Everything the switch offers modules, applications and operators' tools."""

    domain = Attribute("The domain / realm this switch serves.")
    clock = Attribute("The IReactorTime every timer must use.")
    timers = Attribute("The `phpvoip.sip.timers.Timers` in force.")
    store = Attribute("The `ILocationStore` (None when the switch runs without one).")
    router = Attribute("The `IRouter` every call goes through.")
    modules = Attribute("The `IModule`s, highest weight first.")
    calls = Attribute("Calls in progress: the switch's call id -> its `phpvoip.bridge.Bridge`.")
    records = Attribute("The `CallRecord`s of the last ended calls, newest last.")
    events = Attribute("The `phpvoip.events.CallEvents` publisher: modules publish their "
                       "registration and line events through its `publish(event)`.")

    def local_address(transport):
        """The `Address` the switch is reachable at over `transport` (for Via,
        Contact)."""

    def inbound_leg(call):
        """A SIP leg answering the caller of `call` (an `IncomingCall`)."""

    def outbound_leg(invite, destination, credentials=None):
        """A SIP leg that will send `invite` (a Request built by the module: target
        URI, From, To set; Via, Contact, Call-ID, CSeq are the leg's) to
        `destination` (an `Address`). `credentials` (a digest client) answers
        401/407 challenges."""

    def local_pair():
        """Two legs joined by method calls, for applications: returns
        ``(engine_side, app_side)``."""

    def place_call(invite):
        """Run an application's INVITE through callin → route → callout → bridge as
        if it came from the network. Returns a Deferred firing with the call id."""

    def send_request(request, destination):
        """Send an out-of-dialog request (REGISTER, OPTIONS) through a client
        transaction. Returns a Deferred firing with the final Response."""

    def add_observer(observer):
        """Subscribe an `ICallObserver` to every event (calls, registrations, lines)."""

    def remove_observer(observer):
        """Unsubscribe it (no error if it was not subscribed)."""

    def rebridge(call_id, keep, joining):
        """Re-bridge call `call_id`: dial `joining` (an outbound `ICallLeg`, not
        dialled yet) with the SDP of `keep` (one of the call's two legs); when it
        answers, hang up the other leg and join `keep` to `joining`, re-INVITEing
        `keep` when the media changed. Returns a Deferred firing with `joining`
        once joined, or failing with `phpvoip.bridge.RebridgeFailed` (the call
        stays as it was)."""

    def transfer(call_id, keep, target, by="switch"):
        """Blind transfer: route `target` (a URI or a number) as a call from
        `keep`'s party, through the router and `callout`, and re-bridge `keep`
        to it. Fires with the new leg, or fails with `RebridgeFailed` carrying the
        status (404 when no module reaches the target)."""

    def counts():
        """Live objects: calls, legs, dialogs, client and server transactions
        (a dict of ints that returns to zeros when the switch is idle)."""

    def hangup(call_id, cause=None):
        """End a call in progress from the switch's side (both legs get a Reason).
        Returns True if there was such a call."""


class ILocationStore(Interface):
    """Where the registrar keeps bindings (`phpvoip.store.Binding`) so they survive
    a restart, and optionally the users it authenticates.

    The service opens it (`phpvoip.store.open_store`) and offers it as
    `IEngine.store`; the registrar takes it from there in `start()`. Every method
    returns a Deferred and none blocks the reactor: a store that writes to disk
    queues the write and does it on its own thread. Writes are applied in the
    order they were made; a save and a later delete of the same binding end
    with it deleted. Expiry times are absolute wall-clock seconds."""

    def load(now):
        """Fire with a list of every stored binding that is still valid at `now`
        (wall-clock seconds); lapsed ones are dropped from the store."""

    def save(binding):
        """Store or replace one binding, keyed by (``aor``, ``key``). Fires when
        the write is durable."""

    def delete(aor, key):
        """Remove one binding (no error when there is none). Fires when durable."""

    def flush():
        """Fire when every write made so far is durable."""

    def close():
        """Flush and release the store; it takes no writes afterwards."""

    def secret(name):
        """Fire with a random secret (bytes) made the first time `name` is asked
        for and the same ever after (nonce keys that outlive a restart)."""

    def load_users():
        """Fire with a list of `phpvoip.store.UserRecord` kept in the store."""

    def save_user(user):
        """Store or replace a `UserRecord`."""

    def delete_user(username):
        """Remove a user (no error when there is none)."""


class MediaUnavailable(Exception):
    """The media engine cannot take a new call now (port range exhausted, rtpengine
    not answering): the call is refused with 503 and a log line."""


class IMediaSession(Interface):
    """The media of one call as the media engine sees it: one side per leg.

    Sides are named by the bridge (any short strings, e.g. ``"a"`` and ``"b"``, and a
    new name when a transfer brings in a third party). An SDP offer or answer made by
    one side's party is handed to `offer` or `answer` before it is sent to the other
    side's party; what comes back is the SDP to send instead (the relay's own address
    and ports for that side). Both return Deferreds because an external engine is
    asked over the network; the in-process relay fires them at once."""

    def offer(from_side, to_side, sdp):
        """Fire with `sdp` (bytes, made by `from_side`'s party) rewritten for
        `to_side`'s party. Errback with `MediaUnavailable` when no ports are left
        or the engine does not answer, and with ValueError for SDP it cannot use."""

    def answer(from_side, to_side, sdp):
        """Fire with the answer `sdp` (made by `from_side`'s party to an offer
        from `to_side`'s) rewritten for `to_side`'s party. From now on media flows
        between the two sides."""

    def counters():
        """A dict of figures by direction, e.g. ``{"a>b": {"packets": 1, "bytes":
        160, "lost": 0, "jitter_ms": 0.0}, ...}``: what the engine measured."""

    def close():
        """Release the ports (or delete the call on the engine). Idempotent; returns
        a Deferred that fires when done (errors are logged, never raised)."""


class IMediaEngine(Interface):
    """Where calls get their media handled: in-process relay or rtpengine.

    The bridge opens one session per call whose SDP it carries."""

    name = Attribute("The media mode: 'relay' or 'rtpengine'.")

    def start():
        """Fire when ready; errback (with a message naming what failed) when the
        engine cannot be used, which stops the switch before it binds SIP."""

    def session(call_id, on_timeout):
        """Return a new `IMediaSession` for the call `call_id` (a string unique in
        this process). `on_timeout()` is called once if the call has had no media
        for the configured `rtp_timeout`. Raise `MediaUnavailable` when a new call
        cannot be taken."""

    def stop():
        """Close every session and release the ports; returns a Deferred."""
