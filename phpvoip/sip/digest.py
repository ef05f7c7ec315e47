"""HTTP Digest authentication for SIP, both sides (RFC 3261 §22, RFC 7616, RFC 8760).

Server side (registrar: 401 + WWW-Authenticate; call admission: 407 +
Proxy-Authenticate): `DigestServer` mints nonces it can check later without storing
them, and `verify()` checks an Authorization value against an HA1 the caller looks
up, so plain passwords never need to be stored.

Client side (an outside line answering its carrier's 401/407): `choose_challenge`
picks the challenge to answer, `answer_challenge` builds the Authorization value,
`DigestClient` keeps the nonce and its nonce count between requests.

Algorithms: MD5, SHA-256 and SHA-512-256 (when the local OpenSSL has it), each also
in its ``-sess`` variant (RFC 7616 §3.4.2). qop ``auth`` and ``auth-int`` on both
sides, and the RFC 2069 form without qop for old clients. Not done: ``userhash``
(RFC 7616 §3.4.4), ``username*`` (RFC 5987 encoding), Authentication-Info
(``rspauth``, ``nextnonce``), checking that ``uri`` equals the Request-URI.

Nothing here logs a password, an HA1 or a response value.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable, Iterable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from phpvoip.sip.authheaders import Challenge, Credentials, parse_challenges, parse_credentials
from phpvoip.sip.errors import ParseError

__all__ = [
    "DigestClient",
    "DigestServer",
    "HA1Lookup",
    "Outcome",
    "Result",
    "UnsupportedChallenge",
    "answer_challenge",
    "canonical_algorithm",
    "choose_challenge",
    "compute_response",
    "ha1",
]

_log = Logger()


def _sha512_256() -> Callable[..., object] | None:
    try:
        hashlib.new("sha512_256")
    except ValueError:  # an OpenSSL without it
        return None
    return lambda data=b"": hashlib.new("sha512_256", data)


# Base algorithms (RFC 7616 §3.2 / RFC 8760 §2.3) and their strength for a client's
# choice among several challenges (higher is stronger).
_HASHES: dict[str, Callable[..., object]] = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
if (_sha512 := _sha512_256()) is not None:
    _HASHES["SHA-512-256"] = _sha512
_STRENGTH = {"MD5": 1, "SHA-256": 2, "SHA-512-256": 3}
_CANONICAL = {name.lower(): name for name in _HASHES} | {
    f"{name.lower()}-sess": f"{name}-sess" for name in _HASHES
}


def canonical_algorithm(name: str | None) -> str | None:
    """The canonical spelling of a supported algorithm (``sha-256`` → ``SHA-256``),
    MD5 when absent (RFC 7616 §3.3), None when we cannot compute it."""
    if name is None:
        return "MD5"
    return _CANONICAL.get(name.lower())


def _split(algorithm: str) -> tuple[str, bool]:
    """``SHA-256-sess`` → (``SHA-256``, True)."""
    if algorithm.endswith("-sess"):
        return algorithm[:-5], True
    return algorithm, False


def _h(base: str, text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return _HASHES[base](data).hexdigest()  # type: ignore[attr-defined]


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """``H(username:realm:password)`` (RFC 7616 §3.4.2), what a user store keeps
    instead of the password. For a ``-sess`` algorithm this is still the plain HA1;
    the session part is folded in per request."""
    canon = canonical_algorithm(algorithm)
    if canon is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return _h(_split(canon)[0], f"{username}:{realm}:{password}")


def compute_response(
    algorithm: str,
    ha1_hex: str,
    nonce: str,
    method: str,
    uri: str,
    *,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The request-digest of RFC 7616 §3.4.1 (with qop) or RFC 2069 (without).

    `algorithm` must be canonical (see `canonical_algorithm`); `nc` is the 8-hex
    string exactly as sent, since it is hashed as text.
    """
    base, sess = _split(algorithm)
    key = ha1_hex.lower()
    if sess:
        # RFC 7616 §3.4.2: A1 = H(user:realm:passwd) ":" nonce ":" cnonce
        key = _h(base, f"{key}:{nonce}:{cnonce or ''}")
    if qop == "auth-int":
        # RFC 7616 §3.4.3: A2 = Method ":" request-uri ":" H(entity-body)
        ha2 = _h(base, f"{method}:{uri}:{_h(base, body)}")
    else:
        ha2 = _h(base, f"{method}:{uri}")
    if qop:
        return _h(base, f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(base, f"{key}:{nonce}:{ha2}")


# -- server side -----------------------------------------------------------------

HA1Lookup = Callable[[str, str, str], "str | None"]
"""``(username, realm, algorithm) -> HA1 hex or None``; `algorithm` is the base one
(``MD5``, ``SHA-256``, ``SHA-512-256``), never ``-sess``."""


class Outcome(enum.Enum):
    """What `DigestServer.verify` decided, and how the caller answers:

    ======== ====================================================================
    OK       accept the request
    STALE    nonce expired, response right: challenge again with ``stale=true``
    REPLAY   nonce count not above the last one seen (or a no-qop nonce reused):
             challenge again with ``stale=true``; an honest client that raced
             itself re-authenticates, a replayer gains nothing
    INVALID  nonce or opaque not ours (forged, altered, or from before a restart
             with another secret): challenge again
    FAILED   wrong response, unknown user or another realm (one outcome, so it
             cannot be used to find user names): challenge again or 403
    BAD      credentials missing a parameter or using an algorithm/qop we did not
             offer: 400
    ======== ====================================================================
    """

    OK = "ok"
    STALE = "stale"
    REPLAY = "replay"
    INVALID = "invalid"
    FAILED = "failed"
    BAD = "bad"


class Result:
    """The outcome of one verification; `reason` is for logs and never holds a
    secret (it is the same for an unknown user and a wrong password)."""

    __slots__ = ("outcome", "reason", "username", "algorithm")

    def __init__(
        self, outcome: Outcome, reason: str, username: str | None = None, algorithm: str | None = None
    ) -> None:
        self.outcome = outcome
        self.reason = reason
        self.username = username
        self.algorithm = algorithm

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def stale(self) -> bool:
        """Whether the next challenge should carry ``stale=true``."""
        return self.outcome is Outcome.STALE or self.outcome is Outcome.REPLAY

    def __repr__(self) -> str:
        return f"<Result {self.outcome.value}: {self.reason}>"


_NONCE_RAW = 8 + 12  # milliseconds since the clock's epoch, then a random salt
_NONCE_MAC = 16  # HMAC-SHA256 truncated to 128 bits (RFC 2104 §5 allows >= half)
_NONCE_LEN = 48  # base64url of 36 bytes, no padding
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class DigestServer:
    """Challenges requests and verifies their credentials for one realm.

    Nonces are ``base64url(time, salt, HMAC-SHA256(secret, time|salt|realm|source))``:
    any nonce we minted can be checked without storing it, and its age comes from
    the injected clock. Use a `secret` that survives restarts (from the config or
    the store) or clients holding a nonce from before get one extra challenge.

    Replay protection keeps, per nonce, the highest ``nc`` accepted (RFC 7616
    §3.3: the server "should" check the count). Only requests whose response was
    right are recorded, so forged requests cannot fill the table. Entries leave
    when their nonce expires; above `max_tracked` the least recently used are
    dropped and any nonce minted no later than a dropped one is then treated as
    stale, so dropping never reopens a replay.

    Interop: the default order (SHA-256, then MD5) is RFC 8760's, but SIPp 3.6
    reads only the first challenge and baresip 1.0 (libre 1.1) gives up on any
    challenge that is not MD5 (tests/interop/test_digest_*.py); for such clients
    offer ``algorithms=("MD5",)``.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes | None,
        clock: IReactorTime,
        nonce_lifetime: float = 300.0,
        algorithms: Iterable[str] = ("SHA-256", "MD5"),
        qop: Iterable[str] = ("auth",),
        allow_no_qop: bool = True,
        max_tracked: int = 100_000,
    ) -> None:
        self.realm = realm
        self._secret = secret if secret else secrets.token_bytes(32)
        self.clock = clock
        self.nonce_lifetime = nonce_lifetime
        algs = []
        for name in algorithms:
            canon = canonical_algorithm(name)
            if canon is None:
                raise ValueError(f"unsupported digest algorithm {name!r}")
            algs.append(canon)
        if not algs:
            raise ValueError("no digest algorithm to offer")
        self.algorithms = tuple(algs)
        self.qop = tuple(q.lower() for q in qop)
        if not set(self.qop) <= {"auth", "auth-int"}:
            raise ValueError(f"unsupported qop in {self.qop!r}")
        self.allow_no_qop = allow_no_qop
        self.max_tracked = max_tracked
        self.opaque = base64.urlsafe_b64encode(
            hmac.digest(self._secret, b"opaque|" + realm.encode(), "sha256")[:12]
        ).decode()
        # nonce -> (milliseconds minted, highest nc accepted); insertion order = LRU
        self._seen: dict[str, tuple[int, int]] = {}
        self._forgotten_upto = -1  # newest mint time among entries dropped for space
        self._next_sweep = 0.0

    # -- nonces -------------------------------------------------------------------

    def _mac(self, raw: bytes, source: str | None) -> bytes:
        data = raw + b"|" + self.realm.encode() + b"|" + (source or "").encode()
        return hmac.digest(self._secret, data, "sha256")[:_NONCE_MAC]

    def make_nonce(self, source: str | None = None) -> str:
        """A fresh nonce; `source` (the client's host) binds it to that address."""
        millis = int(self.clock.seconds() * 1000)
        raw = struct.pack(">Q", millis) + secrets.token_bytes(_NONCE_RAW - 8)
        return base64.urlsafe_b64encode(raw + self._mac(raw, source)).decode().rstrip("=")

    def nonce_time(self, nonce: str, source: str | None = None) -> int | None:
        """When we minted `nonce` (milliseconds), or None if we did not mint it
        for this realm and source."""
        if len(nonce) != _NONCE_LEN or not set(nonce) <= _B64URL:
            return None
        blob = base64.urlsafe_b64decode(nonce)
        raw, mac = blob[:_NONCE_RAW], blob[_NONCE_RAW:]
        if not hmac.compare_digest(mac, self._mac(raw, source)):
            return None
        return struct.unpack(">Q", raw[:8])[0]

    # -- challenges ---------------------------------------------------------------

    def challenges(self, stale: bool = False, source: str | None = None) -> list[Challenge]:
        """One challenge per algorithm, most preferred first (RFC 8760 §2.4), all
        with the same fresh nonce."""
        nonce = self.make_nonce(source)
        out = []
        for algorithm in self.algorithms:
            params = {"realm": self.realm, "nonce": nonce, "opaque": self.opaque, "algorithm": algorithm}
            if self.qop:
                params["qop"] = ",".join(self.qop)
            if stale:
                params["stale"] = "true"
            out.append(Challenge("Digest", params))
        return out

    def challenge(self, stale: bool = False, source: str | None = None) -> list[str]:
        """The WWW-Authenticate (or Proxy-Authenticate) values to send, one per
        header line, in order."""
        return [str(c) for c in self.challenges(stale, source)]

    def find_credentials(self, values: Iterable[str]) -> Credentials | None:
        """Among Authorization (or Proxy-Authorization) header values, the Digest
        credentials for our realm (RFC 3261 §22.3: a request may carry credentials
        for several realms). None if there are none for us; ParseError if there
        are none for us and some value was malformed."""
        error: ParseError | None = None
        for value in values:
            try:
                cred = parse_credentials(value)
            except ParseError as e:
                error = error or e
                continue
            if cred.is_digest and cred.realm == self.realm:
                return cred
        if error is not None:
            raise error
        return None

    # -- verification ---------------------------------------------------------------

    def verify(
        self,
        credentials: Credentials,
        method: str,
        ha1_lookup: HA1Lookup,
        source: str | None = None,
        body: bytes = b"",
    ) -> Result:
        """Check credentials answering one of our challenges (RFC 7616 §3.4,
        RFC 3261 §22.4). `method` is the request's method, `source` the host the
        challenge was bound to (or None), `body` the request body (for auth-int).
        """
        result = self._verify(credentials, method, ha1_lookup, source, body)
        if result.outcome is Outcome.OK:
            return result  # the common case, logged by whoever acts on it
        _log.debug(
            "digest {outcome} for {username!r} in {realm!r}: {reason}",
            outcome=result.outcome.value,
            username=credentials.username,
            realm=self.realm,
            reason=result.reason,
        )
        return result

    def _verify(
        self, cred: Credentials, method: str, ha1_lookup: HA1Lookup, source: str | None, body: bytes
    ) -> Result:
        if not cred.is_digest:
            return Result(Outcome.BAD, f"scheme {cred.scheme} is not Digest")
        p = cred.params
        for name in ("username", "realm", "nonce", "uri", "response"):
            if not p.get(name):
                return Result(Outcome.BAD, f"missing {name}")
        username = p["username"]
        if p["realm"] != self.realm:
            return Result(Outcome.FAILED, "credentials for another realm", username)
        algorithm = canonical_algorithm(p.get("algorithm"))
        if algorithm not in self.algorithms:
            return Result(Outcome.BAD, f"algorithm {cred.algorithm} was not offered", username)
        qop = cred.qop
        nc_value = 0
        if qop is not None:
            if qop not in self.qop:
                return Result(Outcome.BAD, f"qop {qop} was not offered", username, algorithm)
            # RFC 7616 §3.4: cnonce and nc "MUST" be sent when qop is.
            if not cred.cnonce:
                return Result(Outcome.BAD, "qop without cnonce", username, algorithm)
            nc = cred.nc or ""
            if not 1 <= len(nc) <= 8 or any(ch not in "0123456789abcdefABCDEF" for ch in nc):
                return Result(Outcome.BAD, "qop without a valid nc", username, algorithm)
            nc_value = int(nc, 16)
        elif not self.allow_no_qop:
            return Result(Outcome.BAD, "qop required", username, algorithm)
        elif algorithm.endswith("-sess"):
            return Result(Outcome.BAD, "-sess without qop has no cnonce", username, algorithm)
        opaque = p.get("opaque")
        if opaque is not None and not hmac.compare_digest(opaque.encode(), self.opaque.encode()):
            return Result(Outcome.INVALID, "opaque is not ours", username, algorithm)
        nonce = p["nonce"]
        minted = self.nonce_time(nonce, source)
        if minted is None:
            return Result(Outcome.INVALID, "nonce is not ours", username, algorithm)

        base = _split(algorithm)[0]
        stored = ha1_lookup(username, self.realm, base)
        # An unknown user costs the same hashing as a known one and ends in the
        # same outcome, so neither time nor answer tells them apart.
        key = stored if stored is not None else secrets.token_hex(len(_h(base, b"")) // 2)
        expected = compute_response(
            algorithm, key, nonce, method, p["uri"], qop=qop, nc=cred.nc, cnonce=cred.cnonce, body=body
        )
        matches = hmac.compare_digest(expected.encode(), p["response"].lower().encode())
        if stored is None or not matches:
            return Result(Outcome.FAILED, "wrong credentials", username, algorithm)

        now = self.clock.seconds()
        if now * 1000 - minted > self.nonce_lifetime * 1000:
            return Result(Outcome.STALE, "nonce expired", username, algorithm)
        seen = self._seen.get(nonce)
        if seen is None:
            if minted <= self._forgotten_upto:
                return Result(Outcome.STALE, "nonce no longer tracked", username, algorithm)
        elif nc_value <= seen[1]:
            # RFC 7616 §5.5: a repeated nonce count means a replay.
            return Result(Outcome.REPLAY, "nonce count not increased", username, algorithm)
        self._remember(nonce, minted, nc_value, now)
        return Result(Outcome.OK, "ok", username, algorithm)

    def _remember(self, nonce: str, minted: int, nc: int, now: float) -> None:
        if now >= self._next_sweep:
            self._sweep(now)
        self._seen.pop(nonce, None)
        self._seen[nonce] = (minted, nc)
        while len(self._seen) > self.max_tracked:
            oldest = next(iter(self._seen))
            self._forgotten_upto = max(self._forgotten_upto, self._seen.pop(oldest)[0])

    def _sweep(self, now: float) -> None:
        """Drop the entries of expired nonces: those fail as stale before the
        replay check, so their counts no longer matter."""
        horizon = now * 1000 - self.nonce_lifetime * 1000
        self._seen = {n: e for n, e in self._seen.items() if e[0] >= horizon}
        self._next_sweep = now + self.nonce_lifetime / 4

    @property
    def tracked(self) -> int:
        """How many nonces the replay table holds (for metrics and tests)."""
        return len(self._seen)


# -- client side -----------------------------------------------------------------


class UnsupportedChallenge(ValueError):
    """A challenge this client cannot answer (scheme, algorithm or qop)."""


def _answerable(challenge: Challenge) -> str | None:
    """Why `challenge` cannot be answered, or None if it can."""
    if not challenge.is_digest:
        return f"scheme {challenge.scheme} is not Digest"
    if not challenge.realm or not challenge.nonce:
        return "challenge without realm or nonce"
    algorithm = canonical_algorithm(challenge.get("algorithm"))
    if algorithm is None:
        return f"algorithm {challenge.algorithm} is not supported"
    offered = challenge.qop_options
    if offered and not {"auth", "auth-int"} & set(offered):
        return f"no supported qop in {offered}"
    if not offered and algorithm.endswith("-sess"):
        return "-sess without qop"
    return None


def choose_challenge(values: Iterable[str | Challenge], strongest: bool = True) -> Challenge | None:
    """The challenge to answer among WWW-/Proxy-Authenticate values.

    RFC 8760 §2.4 has the client "use the topmost header field that it supports
    unless a local policy dictates otherwise". Our policy (`strongest`) takes the
    strongest algorithm, ties going to the topmost: challenges are not integrity
    protected, so honouring the order lets an on-path attacker push MD5 to the top
    (RFC 8760 §3). Values that do not parse or cannot be answered are skipped;
    only the realm of the first answerable challenge is considered.
    """
    best: Challenge | None = None
    best_rank = -1
    for value in values:
        if isinstance(value, Challenge):
            found = [value]
        else:
            try:
                found = parse_challenges(value)
            except ParseError:
                continue
        for challenge in found:
            if _answerable(challenge) is not None:
                continue
            if best is not None and challenge.realm != best.realm:
                continue
            if not strongest:
                return challenge
            base, sess = _split(canonical_algorithm(challenge.get("algorithm")) or "MD5")
            rank = _STRENGTH[base] * 2 + (0 if sess else 1)
            if rank > best_rank:
                best, best_rank = challenge, rank
    return best


def answer_challenge(
    challenge: Challenge,
    method: str,
    uri: str,
    username: str,
    password: str | None = None,
    *,
    ha1_hex: str | None = None,
    nc: int = 1,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The Authorization (or Proxy-Authorization) value answering `challenge`
    (RFC 7616 §3.4, RFC 3261 §22.2).

    Give `password`, or `ha1_hex` computed for the challenge's realm and base
    algorithm. qop ``auth`` is taken when offered, else ``auth-int`` (hashing
    `body`); without qop the RFC 2069 form is sent (no nc, no cnonce).
    """
    why = _answerable(challenge)
    if why is not None:
        raise UnsupportedChallenge(why)
    algorithm = canonical_algorithm(challenge.get("algorithm"))
    assert algorithm is not None  # _answerable checked it
    realm = challenge.realm or ""
    nonce = challenge.nonce or ""
    if ha1_hex is None:
        if password is None:
            raise ValueError("answer_challenge needs a password or an HA1")
        ha1_hex = ha1(username, realm, password, algorithm)
    offered = challenge.qop_options
    qop = "auth" if "auth" in offered else "auth-int" if "auth-int" in offered else None
    params = {"username": username, "realm": realm, "nonce": nonce, "uri": uri}
    if not 1 <= nc <= 0xFFFFFFFF:
        raise ValueError(f"nonce count {nc} out of range")
    nc_text = f"{nc:08x}"  # RFC 7616 §3.4: nc = 8LHEX
    cnonce_text = cnonce or secrets.token_hex(8)
    # Without qop, compute_response leaves nc and cnonce out (RFC 2069 form).
    params["response"] = compute_response(
        algorithm, ha1_hex, nonce, method, uri, qop=qop, nc=nc_text, cnonce=cnonce_text, body=body
    )
    if "algorithm" in challenge.params:
        # Echo it only when the server named one: some RFC 2069 servers reject
        # parameters they did not send.
        params["algorithm"] = challenge.params["algorithm"]
    if qop is not None:
        params["cnonce"] = cnonce_text
        params["nc"] = nc_text
        params["qop"] = qop
    if challenge.opaque is not None:
        params["opaque"] = challenge.opaque
    return str(Credentials("Digest", params))


class DigestClient:
    """A user's credentials and the last challenge from one server, counting nonce
    uses so refreshes can reuse a nonce (RFC 7616 §3.4: nc counts the requests
    sent with the same nonce).

    ``update()`` takes the challenge values of a 401/407; ``authorization()``
    builds the next header value. The caller still bounds retries per request.
    """

    __slots__ = ("username", "_password", "challenge", "proxy", "nc")

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password
        self.challenge: Challenge | None = None
        self.proxy = False
        self.nc = 0

    @property
    def header_name(self) -> str:
        """Where the credentials go: Proxy-Authorization after a 407 (RFC 3261 §22.3)."""
        return "Proxy-Authorization" if self.proxy else "Authorization"

    def update(
        self, values: Iterable[str | Challenge], proxy: bool = False, had_credentials: bool = False
    ) -> bool:
        """Take the challenges of a 401 (or of a 407 with `proxy`); true if
        retrying with credentials can help.

        `had_credentials` says whether the refused request carried ours. False
        when nothing can be answered, or when credentials made from a nonce's
        first use were refused without ``stale=true``: the server refused the
        password itself, and sending it again would loop. A refusal of a reused
        nonce (nc > 1) earns one retry with the new nonce, since servers that
        forget nonces often do not say stale.
        """
        challenge = choose_challenge(values)
        if challenge is None:
            return False
        refused = had_credentials and not challenge.stale and self.nc == 1
        if self.challenge is None or challenge.nonce != self.challenge.nonce:
            self.nc = 0
        self.challenge = challenge
        self.proxy = proxy
        return not refused

    def authorization(self, method: str, uri: str, body: bytes = b"") -> str:
        """The next Authorization value for a request, counting one more use of
        the current nonce."""
        if self.challenge is None:
            raise ValueError("no challenge to answer yet")
        self.nc += 1
        return answer_challenge(
            self.challenge, method, uri, self.username, self._password, nc=self.nc, body=body
        )

    def __repr__(self) -> str:
        return f"<DigestClient {self.username!r} nc={self.nc}>"
